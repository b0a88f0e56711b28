"""Baking matches the network; the SPLUT network form equals its LUTs; fine-tuning lowers the error; CLIs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import crop
from edgesr.lut_baking import bake_and_finetune, engine_numpy
from edgesr.lut_baking.bake import bake, lattice_values
from edgesr.lut_baking.bundle import load_bundle, upscale_planes
from edgesr.lut_baking.finetune import FinetuneConfig, finetune, lut_forward

from edgesr.cli import main
from edgesr.core.checkpoint import save_checkpoint
from edgesr.core.data import embedded_images
from edgesr.core.errors import EdgesrError
from edgesr.core.imresize import imresize_torch
from edgesr.core.models import create


def seeded(name: str, scale: int, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return create(name, scale=scale, **kw).eval()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_srlut_bake_matches_network_at_lattice_points(scale):
    model = seeded("srlut_s", scale, seed=scale)
    lut = bake(model, bits=4).arrays[0]
    assert lut.shape == (17**4, scale * scale) and lut.dtype == np.int8
    rng = np.random.default_rng(scale)
    idx = rng.integers(0, 17, size=(400, 4))
    values = lattice_values(4)[idx].astype(np.float32) / 255.0
    with torch.no_grad():
        net = model.core(torch.from_numpy(values).reshape(-1, 1, 2, 2)).reshape(400, -1).numpy()
    flat = ((idx[:, 0] * 17 + idx[:, 1]) * 17 + idx[:, 2]) * 17 + idx[:, 3]
    # int8 entry = round(127 * clamp(net, -1, 1)): within half a step of the network
    err = np.abs(lut[flat] - 127.0 * np.clip(net, -1, 1))
    assert err.max() <= 0.5 + 1e-3, f"max |LUT - 127 net| = {err.max():.4f}"


def test_srlut_lut_equals_network_on_lattice_images(photo):
    model = seeded("srlut_s", 2, seed=7)
    lut = bake(model, bits=4).arrays[0]
    img = (crop(photo[..., 0], 15, 17) // 16 * 16).astype(np.uint8)  # every pixel on the lattice
    out = engine_numpy.srlut_upscale(lut, 4, 2, img).astype(np.float64)
    with torch.no_grad():
        net = model(torch.from_numpy(img.astype(np.float32) / 255.0)[None, None])[0, 0].numpy() * 255.0
    # 4 rotations, each entry within 0.5 of 127*net, then the final rounding
    assert np.abs(out - net).max() <= 4 * 0.5 + 0.5 + 1e-3


@pytest.mark.parametrize("name", ["splut_s", "splut_m"])
def test_splut_network_equals_its_luts(photo, name):
    model = seeded(name, 4, seed=1)
    bundle = bake(model)
    img = crop(photo[..., 1], 13, 19, 60, 80)
    with torch.no_grad():
        net = model(torch.from_numpy(img.astype(np.float32) / 255.0)[None, None])[0, 0].numpy()
    lut_out = upscale_planes(bundle, img[None], "c")[0]
    mismatch = int((np.round(net * 255.0).astype(np.uint8) != lut_out).sum())
    assert mismatch == 0, f"{mismatch} of {lut_out.size} pixels differ between network and baked LUTs"


def test_finetuning_lowers_the_error():
    images = embedded_images("train")[:3]
    model = seeded("srlut_s", 2, seed=3)
    bundle = bake(model, bits=4)
    held = FinetuneConfig(steps=0, batch=8, lr_patch=16, seed=99)

    def mse(b):
        from edgesr.lut_baking.finetune import batches

        lr, hr = next(batches(images, 2, held))
        params = [torch.from_numpy(a.astype(np.float32)) for a in b.arrays]
        with torch.no_grad():
            return torch.mean((lut_forward(b, params, lr) - hr) ** 2).item()

    tuned = finetune(bundle, images, FinetuneConfig(steps=25, batch=8, lr_patch=16, lr=0.5, seed=0))
    before, after = mse(bundle), mse(tuned)
    assert after < 0.9 * before, f"fine-tuning MSE {before:.5f} -> {after:.5f}"
    assert tuned.arrays[0].dtype == np.int8 and np.abs(tuned.arrays[0].astype(int)).max() <= 127


def test_bake_cli_and_bake_and_finetune(tmp_path, capsys):
    model = seeded("srlut_s", 3, seed=0)
    ckpt = save_checkpoint(tmp_path / "m.pt", model)
    assert main(["bake", str(ckpt), "--bits", "5", "--out", str(tmp_path / "m.lut")]) == 0
    bundle = load_bundle(tmp_path / "m.lut")
    assert (bundle.method, bundle.scale, bundle.bits, bundle.arrays[0].shape) == ("srlut", 3, 5, (9**4, 9))
    assert main(["finetune-lut", str(tmp_path / "m.lut"), "--steps", "2", "--batch", "2", "--patch", "8",
                 "--out", str(tmp_path / "ft.lut")]) == 0
    assert load_bundle(tmp_path / "ft.lut").source["finetune_steps"] == 2
    res = bake_and_finetune(ckpt, tmp_path / "run", embedded_images("train")[:2], finetune_steps=1)
    assert [r["stage"] for r in res] == ["baked", "finetuned"]
    assert all(r["format"] == "lut" and r["precision"] == "int8" and r["bytes"] > 9**4 for r in res)
    assert main(["bake", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.lut")]) == 2
    assert "missing.pt" in capsys.readouterr().err


def test_bake_refuses_other_models():
    with pytest.raises(EdgesrError, match="not a LUT model"):
        bake(create("sesr_m3", scale=2))
    with pytest.raises(EdgesrError, match="4 bits"):
        bake(seeded("splut_s", 4), bits=3)


def test_registry_contracts_and_shapes():
    for name, scales in (("srlut_s", (2, 3, 4)), ("splut_s", (4,)), ("splut_m", (4,)), ("splut_l", (4,))):
        for s in scales:
            model = create(name, scale=s)
            assert model.contract.color == "rgb" and model.contract.per_channel and model.contract.channels == 1
            x = torch.rand(2, 1, 5, 6)
            y = model.eval()(x)
            assert y.shape == (2, 1, 5 * s, 6 * s) and 0 <= y.min() and y.max() <= 1
    with pytest.raises(EdgesrError):
        create("splut_s", scale=2)
    lr = imresize_torch(torch.rand(1, 1, 16, 16), 0.5, quantize=True)
    model = create("srlut_s", scale=2).train()
    model(lr).mean().backward()  # trainable through the rotation ensemble
    assert model.core[0].weight.grad is not None
