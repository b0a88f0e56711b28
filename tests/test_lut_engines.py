"""The three LUT engines (numpy reference, PyTorch, portable C) agree bit for bit on real photos."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import crop
from edgesr.lut_baking import engine_c, engine_numpy, engine_torch

from edgesr.core.errors import EdgesrError

ROOT = Path(__file__).resolve().parents[1]


def random_srlut(bits: int, scale: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-128, 128, size=(((256 >> bits) + 1) ** 4, scale * scale), dtype=np.int8)


def random_splut(variant: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    branch = [(65536, 4)] * (1 + 4 * variant) + [(65536, 16)] * 4
    return [rng.integers(-127, 128, size=s, dtype=np.int8) for s in branch * 2]


def edge_images(photo: np.ndarray) -> dict[str, np.ndarray]:
    """Odd-sized crops of a real photo plus the edge cases: black, white, flat, saturated, 1-pixel sides."""
    sat = np.zeros((9, 11), np.uint8)
    sat[:, 5:] = 255
    return {
        "crop_37x51": crop(photo[..., 0], 37, 51, 100, 150),
        "crop_23x17_green": crop(photo[..., 1], 23, 17, 7, 300),
        "crop_1x9": crop(photo[..., 2], 1, 9, 50, 50),
        "crop_7x1": crop(photo[..., 2], 7, 1, 50, 50),
        "crop_2x2": crop(photo[..., 0], 2, 2, 200, 200),
        "zeros": np.zeros((5, 6), np.uint8),
        "white": np.full((6, 5), 255, np.uint8),
        "flat": np.full((4, 7), 128, np.uint8),
        "saturated": sat,
    }


def compare(a: np.ndarray, b: np.ndarray, what: str) -> None:
    mismatch = int((a != b).sum())
    max_err = int(np.abs(a.astype(int) - b.astype(int)).max()) if a.shape == b.shape else -1
    assert a.shape == b.shape and mismatch == 0, f"{what}: {mismatch} mismatches, max |diff| {max_err}, shapes {a.shape} {b.shape}"


@pytest.mark.parametrize("scale,bits", [(2, 4), (3, 4), (4, 4), (2, 3), (4, 5)])
def test_srlut_engines_identical(photo, scale, bits):
    lut = random_srlut(bits, scale, seed=scale * 10 + bits)
    for name, img in edge_images(photo).items():
        ref = engine_numpy.srlut_upscale(lut, bits, scale, img)
        assert ref.shape == (img.shape[0] * scale, img.shape[1] * scale)
        compare(engine_c.srlut_upscale(lut, bits, scale, img), ref, f"C x{scale} k{bits} {name}")
        out_t = engine_torch.srlut_upscale(torch.from_numpy(lut), bits, scale, torch.from_numpy(img)[None])[0].numpy()
        compare(out_t, ref, f"torch x{scale} k{bits} {name}")


def test_srlut_saturating_luts_clip(photo):
    img = crop(photo[..., 0], 13, 15)
    for value, expect in ((127, 255), (-128, 0)):
        lut = np.full((17**4, 4), value, np.int8)
        for engine in (engine_numpy, engine_c):
            assert (engine.srlut_upscale(lut, 4, 2, img) == expect).all()
    # a constant LUT of 32 gives 4 rotations * 32 = 128 everywhere (no interpolation error)
    lut = np.full((17**4, 9), 32, np.int8)
    assert (engine_c.srlut_upscale(lut, 4, 3, img) == 128).all()


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_splut_engines_identical(photo, variant):
    luts = random_splut(variant, seed=variant)
    for name, img in edge_images(photo).items():
        ref = engine_numpy.splut_upscale(luts, variant, img)
        compare(engine_c.splut_upscale(luts, variant, img), ref, f"C SPLUT v{variant} {name}")
        out_t = engine_torch.splut_upscale([torch.from_numpy(a) for a in luts], variant, torch.from_numpy(img)[None])[0]
        compare(out_t.numpy(), ref, f"torch SPLUT v{variant} {name}")
    # a zero LUT set is the nearest-neighbour upscale (input residual only)
    zeros = [np.zeros_like(a) for a in luts]
    img = crop(photo[..., 1], 9, 8)
    compare(engine_c.splut_upscale(zeros, variant, img), np.kron(img, np.ones((4, 4), np.uint8)), "zero SPLUT")


def test_torch_engine_batched_equals_per_image(photo):
    lut = random_srlut(4, 2, seed=3)
    planes = np.stack([crop(photo[..., c], 11, 13, 40, 60) for c in range(3)])
    batched = engine_torch.srlut_upscale(torch.from_numpy(lut), 4, 2, torch.from_numpy(planes)).numpy()
    for c in range(3):
        compare(batched[c], engine_numpy.srlut_upscale(lut, 4, 2, planes[c]), f"batched plane {c}")


def test_c_engine_compiles_warning_free(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    src = ROOT / "lut_baking" / "lut_engine.c"
    res = subprocess.run([cc, "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c", str(src), "-o", str(tmp_path / "e.o")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_c_engine_rejects_bad_arguments(photo):
    img = crop(photo[..., 0], 5, 5)
    with pytest.raises(EdgesrError, match="do not fit"):
        engine_c.srlut_upscale(random_srlut(4, 2, 0), 4, 3, img)  # LUT for x2 used at x3
    with pytest.raises(EdgesrError, match="do not fit"):
        engine_c.splut_upscale(random_splut(0, 0), 1, img)
    lib = engine_c.library()
    assert lib.edgesr_srlut_upscale(None, 4, 2, None, 1, 1, None) != 0
