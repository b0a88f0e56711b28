"""The tolerance policy (edgesr.app.tolerances) and two-sided validation on real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgesr.app.pipeline import below_bicubic
from edgesr.app.tolerances import POLICY, min_psnr_vs_reference_db, tolerance
from edgesr.app.validation import failure_message, reference_run, validate_artifact
from edgesr.core.data import embedded_image, to_luma
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import TorchUpscaler
from edgesr.core.models import create


def test_independent_error_at_the_bound_costs_the_drop():
    """An error independent of the reference's, at exactly the PSNR :func:`min_psnr_vs_reference_db`
    asks for, lowers the PSNR vs HR by the drop tolerance (on a real photo, Gaussian errors)."""
    hr = to_luma(embedded_image("astronaut")).astype(np.float64) * 255.0
    rng = np.random.default_rng(0)
    ref = hr + rng.normal(0.0, 4.0, hr.shape)  # ~36 dB, a SESR-class reference
    ref_psnr = 10 * np.log10(255.0**2 / np.mean((ref - hr) ** 2))
    for drop in (0.05, 0.15):
        need = min_psnr_vs_reference_db(drop, ref_psnr)
        sigma = np.sqrt(255.0**2 / 10 ** (need / 10))
        art = ref + rng.normal(0.0, sigma, hr.shape)
        got = ref_psnr - 10 * np.log10(255.0**2 / np.mean((art - hr) ** 2))
        assert got == pytest.approx(drop, abs=0.01)
    assert min_psnr_vs_reference_db(0.15, 36.0) == pytest.approx(36.0 + 14.54, abs=0.01)
    with pytest.raises(EdgesrError):
        min_psnr_vs_reference_db(0.0, 36.0)


@pytest.mark.parametrize("source_sigma", [3.0, 4.0, 4.05])
def test_independent_error_from_another_source_costs_the_drop_against_the_reference(source_sigma):
    """A QAT checkpoint's int8 artifact is compared with its source (the fine-tuned weights in
    float), which scores apart from the float reference: an error independent of the source's, at
    the bound, leaves the artifact exactly ``drop`` dB below the reference vs HR (Gaussian errors on
    a real photo); a source equal to the reference gives the closed form, and one more than ``drop``
    below the reference leaves no room at all."""
    hr = to_luma(embedded_image("astronaut")).astype(np.float64) * 255.0
    rng = np.random.default_rng(1)

    def psnr(x):
        return 10 * np.log10(255.0**2 / np.mean((x - hr) ** 2))

    ref_psnr = psnr(hr + rng.normal(0.0, 4.0, hr.shape))
    src = hr + rng.normal(0.0, source_sigma, hr.shape)
    need = min_psnr_vs_reference_db(0.15, ref_psnr, psnr(src))
    art = src + rng.normal(0.0, np.sqrt(255.0**2 / 10 ** (need / 10)), hr.shape)
    assert ref_psnr - psnr(art) == pytest.approx(0.15, abs=0.01)
    assert min_psnr_vs_reference_db(0.15, 36.0, 36.0) == pytest.approx(min_psnr_vs_reference_db(0.15, 36.0), abs=1e-9)
    assert min_psnr_vs_reference_db(0.15, 36.0, 36.3) < min_psnr_vs_reference_db(0.15, 36.0) < min_psnr_vs_reference_db(0.15, 36.0, 35.95)
    assert min_psnr_vs_reference_db(0.15, 36.0, 35.8) == float("inf")


def test_every_precision_has_a_stated_reason_and_a_gate_on_both_sides():
    for precision, tol in POLICY.items():
        assert len(tol.why) > 40, precision
        hr_side = tol.max_drop_db is not None or tol.max_abs_err is not None
        ref_side = tol.max_abs_err is not None or tol.max_p999_abs_err is not None
        assert hr_side and ref_side, precision
    assert tolerance("int8", 0.3).max_drop_db == 0.3 and tolerance("fp16", 0.3).max_drop_db == POLICY["fp16"].max_drop_db
    with pytest.raises(EdgesrError, match="int4"):
        tolerance("int4")


@pytest.fixture(scope="module")
def sets():
    return {"photos": [("chelsea", embedded_image("chelsea")[40:200, 60:260]),
                       ("camera", embedded_image("camera")[120:280, 140:340])]}


class _Bicubic(torch.nn.Module):
    """Bicubic x2 (PyTorch's, a = -0.75) with a given contract: an "artifact" of the same I/O."""

    def __init__(self, contract):
        super().__init__()
        self.contract, self.scale = contract, contract.scale

    def forward(self, x):
        return torch.nn.functional.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)


def test_an_artifact_far_from_its_reference_fails_even_when_its_psnr_rises(sets):
    """The one-sided gate's blind spot (an eSR-CNN int8 export: max abs error 4.6e-2 against its
    float model, passed because its PSNR rose). Here the "reference" is an untrained SESR-M3 and
    the "int8 artifact" bicubic interpolation: better on HR, far from the reference."""
    torch.manual_seed(0)
    weak = create("sesr_m3_relu", scale=2, expansion=16).collapse().eval()
    bicubic = _Bicubic(weak.contract)
    ref = reference_run(weak, sets)
    r = validate_artifact(TorchUpscaler(bicubic), ref, sets, precision="int8")
    assert r["tolerance"]["drop_db"]["photos"] < 0  # its PSNR rose: the HR side passes
    assert "psnr_drop_db" not in r["failed_checks"]
    assert {"psnr_vs_reference_db", "p999_abs_err"} <= set(r["failed_checks"]) and r["passed"] is False
    assert r["psnr_vs_reference_db"] < r["tolerance"]["min_psnr_vs_reference_db"]
    assert r["independent_error_cost_db"] > 0.15  # the same fact, as the dB the error would cost
    assert "vs its float reference" in failure_message(r)
    # Measured against its own float reference (the module it was exported from) it is exact.
    own = validate_artifact(TorchUpscaler(bicubic), ref, sets, precision="int8", source_reference=bicubic)
    assert own["max_abs_err"] == 0.0 and own["failed_checks"] == [] and own["passed"] is True
    assert own["independent_error_cost_db"] is None  # identical outputs: no error
    # The bound credits the source's own score against the float reference's.
    assert own["tolerance"]["min_psnr_vs_reference_db"] == pytest.approx(min_psnr_vs_reference_db(
        0.15, ref.eval["photos"]["psnr_y"], own["source_reference_eval"]["photos"]["psnr_y"]), abs=1e-9)


def test_a_source_far_below_the_reference_leaves_no_room(sets):
    """Exported from a module that scores more than the drop tolerance below the float reference:
    no error against that source is within tolerance, and the message says why."""
    torch.manual_seed(0)
    weak = create("sesr_m3_relu", scale=2, expansion=16).collapse().eval()
    bicubic = _Bicubic(weak.contract)
    r = validate_artifact(TorchUpscaler(weak), bicubic, sets,
                          precision="int8", source_reference=weak)
    assert r["max_abs_err"] == 0.0 and "psnr_vs_reference_db" in r["failed_checks"]
    assert r["tolerance"]["min_psnr_vs_reference_db"] is None and "no error against the source" in failure_message(r)


def test_a_float_model_below_bicubic_is_flagged(sets):
    torch.manual_seed(0)
    weak = reference_run(create("sesr_m3_relu", scale=2, expansion=16).collapse().eval(), sets).eval
    bic = reference_run(create("bicubic", scale=2), sets).eval
    (warning,) = below_bicubic(weak, bic)
    assert "photos" in warning and f"{weak['photos']['psnr_y']:.2f}" in warning and "below bicubic" in warning
    assert below_bicubic(bic, weak) == []


# --------------------------------------------------------------------------- on-device golden tolerances (issue 13)


def test_device_tolerance_of_an_int8_output_is_whole_steps_plus_one():
    """int8 outputs move by whole output steps: the measured steps (rounded up) plus one step of
    margin, so a one-step GPU difference (the 6.7e-4 bound of old failed it) passes."""
    from edgesr.app.tolerances import device_tolerance

    step = 1 / 255
    assert device_tolerance("int8", 0.0, step)["max_abs"] == pytest.approx(step)
    one = device_tolerance("int8", step, step)
    assert one["max_abs"] == pytest.approx(2 * step) and one["margin"] == pytest.approx(step)
    assert device_tolerance("int8", 1.5 * step, step)["max_abs"] == pytest.approx(3 * step)
    three = float(np.float32(3) * np.float32(step))  # three steps as float32 dequantization gives them
    assert device_tolerance("int8", three, step)["max_abs"] == pytest.approx(4 * step)
    assert device_tolerance("int8", 6.7e-4, step, "x")["max_abs"] == pytest.approx(2 * step)
    assert "plus one step" in one["why"] and device_tolerance("int8", 0.0, step, "rows.gpu_fp16")["source"] == "rows.gpu_fp16"


def test_device_tolerance_of_a_float_output_doubles_the_measurement():
    from edgesr.app.tolerances import FP16_ULP_AT_ONE, device_tolerance

    t = device_tolerance("fp16", 2e-3)
    assert t["max_abs"] == pytest.approx(4e-3) and t["measured_max_abs"] == 2e-3
    assert device_tolerance("fp16", 6.7e-4)["max_abs"] == pytest.approx(6.7e-4 + FP16_ULP_AT_ONE)
    assert device_tolerance("fp32", 1e-7)["max_abs"] == pytest.approx(1e-7 + FP16_ULP_AT_ONE)
    for bad in (-1.0, float("nan")):
        with pytest.raises(EdgesrError, match="finite number >= 0"):
            device_tolerance("fp16", bad)
    with pytest.raises(EdgesrError, match="step must be > 0"):
        device_tolerance("int8", 0.0, 0.0)


def test_device_tolerances_come_from_the_emulation_rows_of_a_real_int8_export():
    """From an int8 SESR export's emulation matrix on real photos: the GPU and NPU tolerances are
    what those rows measured against XNNPACK plus one output step; skipped rows give none."""
    from edgesr.quantization.integer_ref import IntegerReference
    from test_integer_ref_models import zoo_int8

    from edgesr.app.tolerances import device_tolerances
    from edgesr.app.validation import emulation_matrix

    path, module = zoo_int8("sesr_m3")
    rows = emulation_matrix(path, module, [("chelsea", embedded_image("chelsea")[40:111, 120:213])])
    step = IntegerReference(path).output_tensor.s
    tol = device_tolerances("int8", rows, step, "rows")
    assert set(tol) == {"gpu", "npu"} and tol["gpu"]["source"] == "rows.gpu_fp16"
    for engine, row in (("gpu", "gpu_fp16"), ("npu", "npu_int8")):
        measured = rows[row]["max_abs_err_vs_xnnpack"]
        assert tol[engine]["measured_max_abs"] == measured
        assert measured + step - 1e-9 <= tol[engine]["max_abs"] <= measured + 2 * step
    assert device_tolerances("int8", {"gpu_fp16": {"skipped": "no"}}, step) == {}
