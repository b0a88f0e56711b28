"""Tiled upscaling equals the whole-image result exactly; receptive fields are what the networks do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgesr.core.color import rgb_to_y
from edgesr.core.contract import IOContract
from edgesr.core.data import embedded_image
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import FunctionUpscaler, TorchUpscaler, upscale_photo
from edgesr.core.imresize import imresize, upscale_bicubic, upscale_bicubic_uint8
from edgesr.core.models import create, list_models
from edgesr.core.models.splitsr import SplitSR
from edgesr.core.tiling import tile_grid, upscale_tiled
from edgesr.lut_baking.bundle import LutBundle, LutUpscaler

PAPER_SIZE_SLOW = {"splitsr"}  # receptive field 103 at C=64: its formula is covered by small SplitSRs below


def _deploy(module):
    return (module.collapse() if hasattr(module, "collapse") else module).eval()


def measured_receptive_field(module, photo: np.ndarray, places: int = 3) -> int:
    """Side of the LR window that changes the output: one input pixel is changed (to 0, 1 and
    mid-grey) at ``places`` places of a real photo, and the farthest LR pixel whose s x s
    outputs move gives the radius r; returns 2r + 1. Quantized LUT stages pass a change on
    only when it crosses a level, so they need more places."""
    s, rf = module.scale, module.receptive_field
    n = rf + 4 + (rf + 1) % 2
    c = n // 2
    y = (rgb_to_y(photo) / 255.0).astype(np.float32)
    radius = 0
    for at in np.linspace(40, 460 - n, places).astype(int):
        x = torch.from_numpy(np.ascontiguousarray(y[at : at + n, at : at + n]))[None, None]
        x = x.repeat(3, 1, 1, 1)  # same batch size for both runs: the same conv algorithm
        x2 = x.clone()
        x2[:, 0, c, c] = torch.tensor([0.0, 1.0, 0.5])
        with torch.inference_mode():
            ys, xs = torch.nonzero(module(x2) != module(x), as_tuple=True)[2:]
        if len(ys):
            radius = max(radius, int((ys // s - c).abs().max()), int((xs // s - c).abs().max()))
    return 2 * radius + 1


def _registry_modules():
    for entry in list_models():
        if entry.name not in PAPER_SIZE_SLOW:
            yield pytest.param(entry.name, entry.scales[0], id=f"{entry.name}_x{entry.scales[0]}")


@pytest.mark.parametrize("name, scale", _registry_modules())
def test_declared_receptive_field_is_the_networks(name, scale):
    torch.manual_seed(0)
    module = create(name, scale=scale, **({"expansion": 16} if name.startswith("sesr") else {}))
    deploy = _deploy(module)
    assert module.receptive_field == deploy.receptive_field
    lut = entry_family(name) == "lut"
    if lut:  # unclipped (an untrained SR-LUT net can clip every output to 0)
        deploy.train()
    assert measured_receptive_field(deploy, embedded_image("astronaut"), 14 if lut else 3) == deploy.receptive_field


def entry_family(name: str) -> str:
    return next(e.family for e in list_models() if e.name == name)


@pytest.mark.parametrize("channels, groups, blocks, hybrid, alpha", [(16, 3, 6, 2, 0.25), (12, 1, 5, 1, 0.34), (8, 2, 2, 0, 0.5)])
def test_splitsr_receptive_field_formula(channels, groups, blocks, hybrid, alpha):
    torch.manual_seed(0)
    module = SplitSR(2, channels=channels, groups=groups, blocks=blocks, hybrid_index=hybrid, alpha=alpha).collapse()
    assert measured_receptive_field(module, embedded_image("astronaut")) == module.receptive_field


def test_paper_splitsr_receptive_field_by_the_same_formula():
    module = create("splitsr", scale=2)
    # head 1 + 3 split groups (6 blocks, 4 channel quarters: 2 convs each, + group conv) + 3 residual groups (12 + 1) + 2
    assert module.receptive_field == 2 * (1 + 3 * 3 + 3 * 13 + 2) + 1


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return embedded_image("coffee")[:150, :217]  # odd size, real photo


TILES = (40, 100)  # 150 x 217: edge tiles of 30, 17, 50 and 17 pixels


@pytest.mark.parametrize("name, scale", [("sesr_m5", 2), ("sesr_m3_relu", 3), ("splitsr_s", 2), ("esr_tr", 4), ("esr_cnn", 2),
                                         ("pkn", 3), ("pkn_fixed", 2), ("srlut_s", 4), ("splut_m", 4), ("bicubic", 3)])
def test_tiled_equals_whole_for_every_family(photo, name, scale):
    torch.manual_seed(0)
    module = create(name, scale=scale, **({"expansion": 16} if name.startswith("sesr") else {}))
    upscaler = TorchUpscaler(_deploy(module))
    whole = upscale_photo(upscaler, photo)
    for tile in TILES:
        np.testing.assert_array_equal(upscale_tiled(upscaler, photo, tile), whole, err_msg=f"tile {tile}")


def _random_bundle(method: str, scale: int, variant: int = 0) -> LutBundle:
    """Valid LUT shapes with random int8 entries: locality does not depend on the values."""
    rng = np.random.default_rng(1)
    if method == "srlut":
        shapes, bits = [(17**4, scale * scale)], 4
    else:
        shapes, bits = ([(65536, 4)] * (1 + 4 * variant) + [(65536, 16)] * 4) * 2, 4
    arrays = [rng.integers(-127, 128, s, dtype=np.int8) for s in shapes]
    return LutBundle(method, scale, bits, arrays, IOContract(scale=scale, color="rgb", channels=1, per_channel=True), variant)


@pytest.mark.parametrize("method, scale, variant", [("srlut", 2, 0), ("splut", 4, 1), ("splut", 4, 2)])
def test_tiled_equals_whole_for_lut_bundles(photo, method, scale, variant):
    upscaler = LutUpscaler(_random_bundle(method, scale, variant))
    crop = photo[:75, :149]
    whole = upscale_photo(upscaler, crop)
    for tile in (32, 64):
        np.testing.assert_array_equal(upscale_tiled(upscaler, crop, tile), whole, err_msg=f"tile {tile}")


@pytest.mark.parametrize("layout", ["gray", "gray_alpha", "rgba"])
def test_tiled_equals_whole_for_every_layout(photo, layout):
    torch.manual_seed(0)
    upscaler = TorchUpscaler(_deploy(create("sesr_m3", scale=2, expansion=16)))
    alpha = np.linspace(0, 255, photo.shape[1], dtype=np.uint8)[None].repeat(photo.shape[0], 0)
    img = {"gray": photo[..., 1], "gray_alpha": np.dstack([photo[..., 1], alpha]), "rgba": np.dstack([photo, alpha])}[layout]
    np.testing.assert_array_equal(upscale_tiled(upscaler, img, 64), upscale_photo(upscaler, img))


def test_upscaler_without_receptive_field_runs_in_one_piece(photo):
    contract = IOContract(scale=2, color="y", channels=1)
    upscaler = FunctionUpscaler(lambda x: np.repeat(np.repeat(x, 2, axis=2), 2, axis=3), contract)
    with pytest.warns(UserWarning, match="no receptive field"):
        out = upscale_tiled(upscaler, photo, 64)
    np.testing.assert_array_equal(out, upscale_photo(upscaler, photo))


def test_tile_grid_covers_once():
    seen = np.zeros((45, 70), int)
    for y0, y1, x0, x1 in tile_grid(45, 70, 16):
        seen[y0:y1, x0:x1] += 1
    assert (seen == 1).all()
    for bad in (0, 15, 64.0, True):
        with pytest.raises(EdgesrError, match="tile size"):
            upscale_tiled(TorchUpscaler(create("bicubic", scale=2)), np.zeros((4, 4), np.uint8), bad)


def test_thin_photo_and_photo_smaller_than_a_tile(photo):
    torch.manual_seed(0)
    upscaler = TorchUpscaler(_deploy(create("sesr_m3", scale=3, expansion=16)))
    for img in (photo[:23, :217], photo[:150, :9], photo[:40, :50], photo[:90, :217]):
        np.testing.assert_array_equal(upscale_tiled(upscaler, img, 64), upscale_photo(upscaler, img))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fast_bicubic_equals_imresize(scale):
    """The per-phase bicubic equals MATLAB's imresize: bit for bit on uint8, to float rounding otherwise."""
    for name in ("coffee", "camera"):
        img = embedded_image(name)[:97, :131]
        np.testing.assert_array_equal(upscale_bicubic_uint8(img, scale), imresize(img, scale))
        ref = imresize(img.astype(np.float64), scale)
        np.testing.assert_allclose(upscale_bicubic(img, scale, np.float64), ref, rtol=0, atol=1e-9)
        np.testing.assert_allclose(upscale_bicubic(img, scale), ref, rtol=0, atol=255 * 4e-7)
    for tiny in [(1, 1), (1, 5), (2, 3)]:
        img = embedded_image("camera")[: tiny[0], : tiny[1]]
        np.testing.assert_array_equal(upscale_bicubic_uint8(img, scale), imresize(img, scale))
