"""``edgesr run`` end to end on the embedded photographs: artifacts validated, report keys
stable, interruption loses no finished work, bad input refused."""

from __future__ import annotations

import json

import pytest

from edgesr.app.pipeline import run_pipeline
from edgesr.cli import main
from edgesr.core.errors import EdgesrError

QUICK = {"model": "sesr_m3_relu", "steps": 12, "batch": 4, "qat_steps": 4, "formats": ("tflite", "onnx", "coreml"),
         "precisions": ("fp32", "int8"), "progress": False}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    report = run_pipeline(out=str(out), **QUICK)
    return out, report


def test_report_json_has_the_stable_keys(finished_run):
    out, _ = finished_run
    on_disk = json.loads((out / "report.json").read_text())
    for key in ("model", "scale", "params", "params_deploy", "macs_per_frame_720p", "eval", "artifacts"):
        assert key in on_disk
    assert on_disk["model"] == "sesr_m3_relu" and on_disk["scale"] == 2
    assert set(on_disk["eval"]) == {"embedded"} and set(on_disk["eval"]["embedded"]) == {"psnr_y", "ssim_y"}
    kinds = {(a["format"], a["precision"]) for a in on_disk["artifacts"]}
    assert {("torch", "fp32"), ("tflite", "fp32"), ("tflite", "int8"), ("onnx", "fp32"), ("coreml", "fp32")} <= kinds
    for a in on_disk["artifacts"]:
        assert (out / a["path"]).exists() and a["bytes"] > 0
        v = a["validation"]
        assert {"max_abs_err", "psnr_vs_reference_db", "eval"} <= set(v)
        if v.get("skipped") is None:
            assert v["eval"]["embedded"]["psnr_y"] > 20
    fp32 = [a["validation"] for a in on_disk["artifacts"] if a["precision"] == "fp32" and a["format"] in ("tflite", "onnx")]
    assert all(v["passed"] and v["max_abs_err"] <= 1e-4 for v in fp32)
    tflite = {a["precision"]: a["validation"]["xnnpack"] for a in on_disk["artifacts"] if a["format"] == "tflite"}
    for prec in ("fp32", "int8"):  # SESR-ReLU runs whole on XNNPACK (the int8 output clamp is dropped)
        assert tflite[prec]["partitions"] == 1 and tflite[prec]["ops_outside"] == [], prec
    assert (out / "report.md").read_text().count("| tflite |") >= 2
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_json_records_the_emulation_matrix(finished_run):
    """Every network artifact's validation holds the emulation matrix, computed on crops of the
    evaluation photographs; for the int8 TFLite export every engine has numbers: the GPU and NPU
    rows run the int8 file, within a few output steps of LiteRT's XNNPACK output."""
    from edgesr.app.validation import EMULATION_CROP, EMULATION_ENGINES, FLOAT_NO_INT8

    out, _ = finished_run
    arts = json.loads((out / "report.json").read_text())["artifacts"]
    for a in arts:
        v = a["validation"]
        if a["format"] == "torch":
            assert "emulation" not in v
            continue
        assert tuple(v["emulation"]) == EMULATION_ENGINES
        assert v["emulation_images"]["crop_px"] == EMULATION_CROP
        assert v["emulation_images"]["images"] == ["embedded/chelsea", "embedded/coffee", "embedded/camera"]
    int8 = next(a["validation"]["emulation"] for a in arts if (a["format"], a["precision"]) == ("tflite", "int8"))
    for row in int8.values():
        assert set(row) == {"psnr_y", "ssim_y", "psnr_vs_reference_db", "max_abs_err", "max_abs_err_vs_xnnpack", "arithmetic"}
        assert row["psnr_y"] > 20 and 0 < row["max_abs_err"] < 0.5 and row["max_abs_err_vs_xnnpack"] <= 6 / 255
    assert 2e-3 < int8["gpu_fp16"]["max_abs_err"] and 2e-3 < int8["xnnpack"]["max_abs_err"]  # both run the int8 graph
    fp32 = next(a["validation"]["emulation"] for a in arts if (a["format"], a["precision"]) == ("tflite", "fp32"))
    assert fp32["npu_int8"] == {"skipped": FLOAT_NO_INT8} and fp32["cpu_reference"]["max_abs_err"] <= 1e-4
    assert "Emulation matrix (128 px centre crops" in (out / "report.md").read_text()


def test_restart_with_same_out_reuses_finished_work(finished_run):
    out, _ = finished_run
    files = {p: p.stat().st_mtime_ns for d in ("artifacts", "validation") for p in (out / d).iterdir()}
    ckpt = out / "checkpoints" / "last.pt"
    before = ckpt.stat().st_mtime_ns
    run_pipeline(out=str(out), **QUICK)
    assert ckpt.stat().st_mtime_ns == before  # training was complete: not redone
    # exports, validations and emulation matrices were complete: not redone
    assert {p: p.stat().st_mtime_ns for d in ("artifacts", "validation") for p in (out / d).iterdir()} == files


def test_restart_computes_only_a_missing_emulation(finished_run, monkeypatch):
    """A run interrupted after an artifact's validation but before its emulation matrix finishes
    just the matrix on restart."""
    import edgesr.app.pipeline

    out, _ = finished_run
    cached = next((out / "validation").glob("*_int8.tflite.json"))
    v = json.loads(cached.read_text())
    full = v.pop("emulation")
    cached.write_text(json.dumps(v))

    def no_revalidation(*a, **k):
        raise AssertionError("a finished validation was recomputed")

    monkeypatch.setattr(edgesr.app.pipeline, "validate_artifact", no_revalidation)
    report = run_pipeline(out=str(out), **QUICK)
    again = json.loads(cached.read_text())["emulation"]
    assert again == full
    assert next(a for a in report["artifacts"] if a["path"].endswith("_int8.tflite"))["validation"]["emulation"] == full


def test_interrupted_export_resumes(tmp_path, monkeypatch):
    import importlib

    export = importlib.import_module("edgesr.app.pipeline")  # where the pipeline looks the exporter up

    calls = []
    real = export.export_onnx

    def interrupted(*a, **k):
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "export_onnx", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(out=str(tmp_path), **{**QUICK, "formats": ("tflite", "onnx")})
    done = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "artifacts").iterdir()}
    assert any(n.endswith(".tflite") for n in done) and not any(n.endswith(".onnx") for n in done)
    monkeypatch.setattr(export, "export_onnx", real)
    report = run_pipeline(out=str(tmp_path), **{**QUICK, "formats": ("tflite", "onnx")})
    assert {a["format"] for a in report["artifacts"]} == {"torch", "tflite", "onnx"}
    for name, mtime in done.items():
        assert (tmp_path / "artifacts" / name).stat().st_mtime_ns == mtime


def test_out_of_another_model_is_refused(finished_run):
    out, _ = finished_run
    with pytest.raises(EdgesrError, match="sesr_m3_relu"):
        run_pipeline(out=str(out), **{**QUICK, "model": "sesr_m5"})


def test_bad_input_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["run", "--out", str(blocker / "run"), "--steps", "1"]) == 2
    assert "cannot create" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["run", "--data", str(empty), "--out", str(tmp_path / "r2"), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "no image" in err
    assert not (tmp_path / "r2" / "checkpoints").exists()
    assert main(["run", "--model", "sesr_m5", "--scale", "7"]) == 2
