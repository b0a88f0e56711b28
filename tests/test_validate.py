"""Validation of every format against the float reference on real photos (edgesr.app.validation,
``edgesr validate``): fp32 within 1e-4, fp16 / int8 PSNR drops vs the reference, Core ML
structure (+ numbers where a runtime exists), failures beyond tolerance, bad input."""

from __future__ import annotations

import json

import pytest
from conftest import crop
from edgesr.converters import export_coreml, export_onnx, export_tflite
from edgesr.converters.runtime import coreml_runtime_status
from test_converters_common import tiny_sesr

from edgesr.app.validation import (
    FP16_MAX_DROP_DB,
    FP32_MAX_ABS_ERR,
    failure_message,
    reference_run,
    validate_artifact,
)
from edgesr.cli import main
from edgesr.core.checkpoint import save_checkpoint
from edgesr.core.evaluate import calibration_patches
from edgesr.core.imageio import write_image


@pytest.fixture(scope="module")
def model():
    return tiny_sesr("sesr_m3_relu")


@pytest.fixture(scope="module")
def sets(photo, gray_photo):
    """Whole (odd-sized) crops of two real photographs, one colour and one gray."""
    return {"photos": [("chelsea", crop(photo, 151, 203, 60, 120)), ("camera", crop(gray_photo, 163, 141, 100, 200))]}


@pytest.fixture(scope="module")
def ref(model, sets):
    return reference_run(model, sets)


@pytest.fixture(scope="module")
def arts(model, tmp_path_factory):
    d = tmp_path_factory.mktemp("arts")
    from edgesr.core.contract import IOContract

    calib = calibration_patches(None, IOContract(scale=2), count=16, patch=32)
    return {
        "tflite_fp32": export_tflite(model, d / "m_fp32.tflite", "fp32")["path"],
        "tflite_fp16": export_tflite(model, d / "m_fp16.tflite", "fp16")["path"],
        "tflite_int8": export_tflite(model, d / "m_int8.tflite", "int8", calib)["path"],
        "onnx_fp32": export_onnx(model, d / "m_fp32.onnx")["path"],
        "coreml_fp16": export_coreml(model, d / "m_fp16.mlpackage", "fp16")["path"],
    }


@pytest.fixture(scope="module")
def ckpt(model, tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt", model)


@pytest.mark.parametrize("key", ["tflite_fp32", "onnx_fp32"])
def test_fp32_within_1e4(key, arts, ref):
    r = validate_artifact(arts[key], ref, ref.sets)
    assert r["precision"] == "fp32" and r["skipped"] is None
    assert r["max_abs_err"] <= FP32_MAX_ABS_ERR and r["passed"] is True
    # null means bit-identical outputs (infinite PSNR), which ONNX Runtime's CPU kernels can give
    if r["psnr_vs_reference_db"] is None:
        assert r["max_abs_err"] == 0.0
    else:
        assert r["psnr_vs_reference_db"] > 80.0
    assert set(r["eval"]["photos"]) == {"psnr_y", "ssim_y"}
    assert abs(r["eval"]["photos"]["psnr_y"] - r["reference_eval"]["photos"]["psnr_y"]) < 1e-3


def test_fp16_within_005_db(arts, ref):
    r = validate_artifact(arts["tflite_fp16"], ref, ref.sets)
    assert r["tolerance"]["metric"] == "psnr_drop_db" and r["tolerance"]["max"] == FP16_MAX_DROP_DB
    assert r["tolerance"]["drop_db"]["photos"] <= FP16_MAX_DROP_DB and r["passed"] is True
    assert 0.0 < r["max_abs_err"] < 1e-2  # fp16 weights really are rounded, and only slightly


def test_int8_sane_and_tolerance_is_a_parameter(arts, ref, model, sets):
    from edgesr.core.evaluate import TorchUpscaler, evaluate_sets
    from edgesr.core.models import create

    r = validate_artifact(arts["tflite_int8"], ref, ref.sets)
    bicubic = evaluate_sets(TorchUpscaler(create("bicubic", scale=2)), sets)["photos"]["psnr_y"]
    assert r["eval"]["photos"]["psnr_y"] > bicubic - 6.0  # a real upscaler, not a broken graph (~12 dB)
    assert r["psnr_vs_reference_db"] > 30.0
    drop = r["tolerance"]["drop_db"]["photos"]
    assert ("psnr_drop_db" in r["failed_checks"]) == (drop > 0.15)  # the HR side; the reference side
    assert r["passed"] == (r["failed_checks"] == [])                  # is gated too (test_tolerances)
    strict = validate_artifact(arts["tflite_int8"], ref, ref.sets, int8_tolerance_db=drop - 0.01)
    assert strict["passed"] is False and "psnr_drop_db" in strict["failed_checks"]
    msg = failure_message(strict)
    assert arts["tflite_int8"] in msg and f"{drop:.3f} dB" in msg


def test_coreml_structure_and_numbers_or_skip(arts, ref):
    r = validate_artifact(arts["coreml_fp16"], ref, ref.sets)
    assert r["structure"]["passed"] is True and r["structure"]["weight_dtypes"] == ["FLOAT16"]
    reason = coreml_runtime_status()
    if reason is None:  # macOS or the MIL interpreter: real numbers
        assert r["skipped"] is None and r["passed"] is True
        assert r["tolerance"]["drop_db"]["photos"] <= FP16_MAX_DROP_DB
    else:
        assert r["skipped"] and "macOS" in r["skipped"]
        assert r["max_abs_err"] is None and r["eval"] is None and r["passed"] is True


def test_wrong_reference_fails(arts, sets):
    other = reference_run(tiny_sesr("sesr_m3_relu", seed=5), sets)
    r = validate_artifact(arts["tflite_fp32"], other, sets)
    assert r["passed"] is False and r["max_abs_err"] > FP32_MAX_ABS_ERR
    assert "max abs error" in failure_message(r) and arts["tflite_fp32"] in failure_message(r)


# --------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def photo_dir(sets, tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    for name, img in sets["photos"]:
        write_image(d / f"{name}.png", img)
    return d


def test_cli_validate_ok_and_json(arts, ckpt, photo_dir, tmp_path, capsys):
    out = tmp_path / "v.json"
    rc = main(["validate", arts["onnx_fp32"], "--reference", str(ckpt), "--sets", str(photo_dir), "--json", str(out)])
    assert rc == 0, capsys.readouterr().err
    r = json.loads(out.read_text())
    assert {"max_abs_err", "psnr_vs_reference_db", "eval", "passed", "tolerance", "skipped"} <= set(r)
    assert r["passed"] is True and photo_dir.name in r["eval"]


def test_cli_validate_beyond_tolerance_exits_1(arts, photo_dir, tmp_path, capsys):
    other = save_checkpoint(tmp_path / "other.pt", tiny_sesr("sesr_m3_relu", seed=7))
    rc = main(["validate", arts["tflite_fp32"], "--reference", str(other), "--sets", str(photo_dir)])
    err = capsys.readouterr().err
    assert rc == 1
    assert arts["tflite_fp32"] in err and "max abs error" in err


def test_cli_validate_corrupt_checkpoint_exits_2(arts, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    rc = main(["validate", arts["tflite_fp32"], "--reference", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "bad.pt" in err and err.startswith("edgesr: error:")


def test_cli_validate_missing_artifact_exits_2(ckpt, tmp_path, capsys):
    rc = main(["validate", str(tmp_path / "nope.tflite"), "--reference", str(ckpt)])
    err = capsys.readouterr().err
    assert rc == 2 and "nope.tflite" in err and err.count("\n") == 1
