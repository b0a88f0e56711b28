"""The standard SR evaluation protocol: MATLAB bicubic, BT.601 Y, PSNR/SSIM, bicubic tables."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgesr.core.color import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from edgesr.core.imageio import read_image
from edgesr.core.imresize import (
    contributions,
    imresize,
    imresize_torch,
    make_lr,
    modcrop,
)
from edgesr.core.metrics import gaussian_window_1d, psnr, ssim


def test_contributions_weights_sum_to_one_and_stay_in_bounds():
    for n_in, n_out, s in [(17, 34, 2.0), (51, 17, 1 / 3), (64, 16, 0.25), (9, 36, 4.0)]:
        idx, w = contributions(n_in, n_out, s)
        np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)
        assert idx.min() >= 0 and idx.max() < n_in


def test_bicubic_reproduces_linear_ramps_in_the_interior():
    # Keys' a = -0.5 kernel reproduces polynomials up to degree 2: a ramp stays a ramp.
    ramp = np.add.outer(np.arange(40.0) * 3.0, np.arange(50.0) * 2.0)
    up = imresize(ramp, 2)
    u = (np.arange(1, 81) / 2 + 0.25) - 1  # MATLAB's mapping, 0-based
    v = (np.arange(1, 101) / 2 + 0.25) - 1
    expected = np.add.outer(u * 3.0, v * 2.0)
    np.testing.assert_allclose(up[4:-4, 4:-4], expected[4:-4, 4:-4], atol=1e-9)


def test_uint8_path_rounds_between_passes(photo):
    hr = modcrop(photo, 4)
    rounded = imresize(hr, 0.25)
    floating = imresize(hr, 0.25, round_between_passes=False)
    assert rounded.dtype == np.uint8 and rounded.shape == (hr.shape[0] // 4, hr.shape[1] // 4, 3)
    diff = np.abs(rounded.astype(int) - floating.astype(int))
    assert diff.max() == 1 and 0 < (diff > 0).mean() < 0.5  # differ, by rounding only


def test_output_size_is_ceil():
    img = np.zeros((10, 7), dtype=np.uint8)
    assert imresize(img, 1 / 3).shape == (4, 3)
    assert imresize(img, 3).shape == (30, 21)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_torch_bicubic_matches_numpy_reference(photo, scale):
    y = rgb_to_y(modcrop(photo[:121, :133], scale)) / 255.0
    ref = imresize(y, 1.0 / scale)
    got = imresize_torch(torch.from_numpy(y)[None, None].float(), 1.0 / scale)[0, 0].numpy()
    np.testing.assert_allclose(got, ref, atol=2e-6)
    up_ref = imresize(ref, scale)
    up = imresize_torch(torch.from_numpy(ref)[None, None], scale)[0, 0].numpy()
    np.testing.assert_allclose(up, up_ref, atol=1e-12)


def test_torch_quantized_path_matches_uint8_path_up_to_ties(photo):
    # The batched matmul sums in another order than the reference, so a value within an
    # ulp of .5 may round the other way: those are the only differences allowed.
    hr = modcrop(photo[:200, :200], 2)
    ref = imresize(hr, 0.5).astype(np.float64)
    x = torch.from_numpy(hr.transpose(2, 0, 1)[None].astype(np.float64) / 255)
    got = np.round(imresize_torch(x, 0.5, quantize=True)[0].numpy().transpose(1, 2, 0) * 255)
    diff = np.abs(got - ref)
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.01


def test_ycbcr_round_trip_and_known_values(photo):
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(photo)), photo, atol=1e-9)
    assert rgb_to_y(np.array([[[0, 0, 0]]], np.uint8))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(np.array([[[255, 255, 255]]], np.uint8))[0, 0] == pytest.approx(235.0)
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(rgb_to_y(gray), gray.astype(np.float64))  # gray is its own Y


def test_psnr_and_ssim_basic_properties(gray_photo):
    a = gray_photo[:100, :120].astype(np.float64)
    b = np.clip(a + np.random.default_rng(0).normal(0, 5, a.shape), 0, 255)
    mse = np.mean((a[2:-2, 2:-2] - b[2:-2, 2:-2]) ** 2)
    assert psnr(a, b, border=2) == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-12)
    assert psnr(a, a) == float("inf")
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert 0 < ssim(a, b, border=2) < 1
    w = gaussian_window_1d()
    assert len(w) == 11 and w.sum() == pytest.approx(1.0)


def test_ssim_separable_window_equals_direct_2d():
    from scipy.signal import convolve2d

    from edgesr.core.metrics import _filter_valid

    x = np.random.default_rng(1).random((40, 37)) * 255
    w = np.outer(gaussian_window_1d(), gaussian_window_1d())
    np.testing.assert_allclose(_filter_valid(x), convolve2d(x, w, mode="valid"), rtol=0, atol=1e-10)


# --------------------------------------------------------------- benchmark data


def test_lr_matches_benchmark_lr_files_exactly(shared_data):
    # EDSR/BasicSR LR (uint8 rounding between passes) and SR-LUT's LR (float intermediate).
    for path in sorted((shared_data / "Set5" / "HR").glob("*.png")):
        hr = modcrop(read_image(path), 4)
        edsr = read_image(shared_data / "Set5" / "LR_bicubic" / "X4" / path.name)
        srlut = read_image(shared_data / "Set5" / "LR_srlut" / "X4" / path.name)
        np.testing.assert_array_equal(make_lr(hr, 4), edsr, err_msg=path.name)
        np.testing.assert_array_equal(imresize(hr, 0.25, round_between_passes=False), srlut, err_msg=path.name)


def test_srlut_x2_x3_lr_files_exactly(shared_data):
    # Measured: SR-LUT's X2 and X3 files were made with MATLAB's uint8 rounding between
    # passes (X3 from the uncropped HR); only their X4 files kept a float intermediate.
    for path in sorted((shared_data / "Set5" / "HR").glob("*.png")):
        hr = read_image(path)
        for s in (2, 3):
            ref = read_image(shared_data / "Set5" / "LR_srlut" / f"X{s}" / path.name)
            src = modcrop(hr, s) if s == 2 else hr
            np.testing.assert_array_equal(imresize(src, 1 / s), ref, err_msg=f"{path.name} x{s}")


# Published bicubic baselines (PSNR dB / SSIM on Y), e.g. Lim et al. (EDSR) and Zhang et al. (RCAN) tables.
PUBLISHED_BICUBIC = {
    2: {"Set5": (33.66, 0.9299), "Set14": (30.24, 0.8688), "B100": (29.56, 0.8431), "Urban100": (26.88, 0.8403)},
    3: {"Set5": (30.39, 0.8682), "Set14": (27.55, 0.7742), "B100": (27.21, 0.7385), "Urban100": (24.46, 0.7349)},
    4: {"Set5": (28.42, 0.8104), "Set14": (26.00, 0.7027), "B100": (25.96, 0.6675), "Urban100": (23.14, 0.6577)},
}


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_eval_cli_reproduces_published_bicubic(shared_data, tmp_path, scale):
    from edgesr.cli import main

    out = tmp_path / "bicubic.json"
    sets = "Set5,Set14,B100" if scale != 4 else "Set5,Set14,B100,Urban100"  # Urban100 once: 30 s a scale
    assert main(["eval", "--model", "bicubic", "--scale", str(scale), "--data-root", str(shared_data), "--sets", sets, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["model"] == "bicubic" and result["scale"] == scale
    for name, r in result["eval"].items():
        pub_psnr, pub_ssim = PUBLISHED_BICUBIC[scale][name]
        assert r["psnr_y"] == pytest.approx(pub_psnr, abs=0.02), name
        # SSIM implementations of the published tables differ in the 4th decimal.
        assert r["ssim_y"] == pytest.approx(pub_ssim, abs=0.001), name
