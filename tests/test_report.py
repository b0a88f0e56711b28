"""`edgesr report`: Pareto page, error map and emulation matrix for a run folder."""

from __future__ import annotations

import json

import pytest
from test_integer_ref_models import zoo_int8

from edgesr.app.reporting import _pareto, emulation_matrix
from edgesr.cli import main
from edgesr.core.checkpoint import save_checkpoint
from edgesr.core.data import embedded_image
from edgesr.core.errors import EdgesrError


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from edgesr.converters.export import export_tflite

    path, module = zoo_int8("sesr_m3")
    d = tmp_path_factory.mktemp("run")
    save_checkpoint(d / "checkpoints" / "deploy.pt", module, form="deploy")
    (d / "artifacts").mkdir()
    (d / "artifacts" / path.name).write_bytes(path.read_bytes())
    fp32 = export_tflite(module, d / "artifacts" / "sesr_m3_x2_fp32.tflite", "fp32")
    report = {"model": "sesr_m3", "scale": 2, "params": 0, "params_deploy": 0, "macs_per_frame_720p": 0,
              "eval": {"embedded": {"psnr_y": 30.0, "ssim_y": 0.9}},
              "artifacts": [
                  {"format": "tflite", "precision": "int8", "path": f"artifacts/{path.name}", "bytes": path.stat().st_size,
                   "validation": {"eval": {"embedded": {"psnr_y": 29.5, "ssim_y": 0.88}}}},
                  {"format": "tflite", "precision": "fp32", "path": "artifacts/sesr_m3_x2_fp32.tflite", "bytes": fp32["bytes"],
                   "validation": {"eval": {"embedded": {"psnr_y": 30.0, "ssim_y": 0.9}}}},
                  {"format": "coreml", "precision": "fp16", "path": "artifacts/missing.mlpackage", "bytes": 1,
                   "validation": {"eval": {}}}]}
    (d / "report.json").write_text(json.dumps(report))
    return d


def test_pareto_front():
    assert _pareto([(1.0, 30.0), (2.0, 31.0), (3.0, 30.5), (1.0, 29.0)]) == [0, 1]


def test_emulation_matrix_on_a_real_photo(run_dir):
    path, module = zoo_int8("sesr_m3")
    m = emulation_matrix(path, module, [("chelsea", embedded_image("chelsea")[:96, :128])])
    assert set(m) == {"cpu_reference", "xnnpack", "gpu_fp16", "npu_int8"}
    assert all(set(r) == {"psnr_y", "ssim_y", "psnr_vs_reference_db", "max_abs_err", "max_abs_err_vs_xnnpack", "arithmetic"}
               for r in m.values())
    # every engine runs the int8 file: the same int8 error against the float model, a few output steps apart
    for engine in ("cpu_reference", "gpu_fp16", "npu_int8"):
        assert abs(m[engine]["psnr_vs_reference_db"] - m["xnnpack"]["psnr_vs_reference_db"]) < 2
        assert m[engine]["max_abs_err_vs_xnnpack"] <= 4 / 255
    assert 25 < m["xnnpack"]["psnr_vs_reference_db"] < 60 and m["xnnpack"]["max_abs_err"] > 1 / 255


def test_emulation_matrix_lives_in_validation():
    """One evaluation path: the report uses edgesr.app.validation's matrix, not a copy."""
    import edgesr.app.validation

    assert emulation_matrix is edgesr.app.validation.emulation_matrix


def test_report_page(run_dir, capsys):
    assert main(["report", str(run_dir), "--size", "64x64", "--repeats", "2"]) == 0
    out = json.loads((run_dir / "deployment_report.json").read_text())
    lat = {a["precision"]: a["latency_ms"] for a in out["artifacts"]}
    assert lat["int8"] > 0 and lat["fp32"] > 0 and lat["fp16"] is None
    assert out["error_map"]["photo"] == "chelsea" and out["error_map"]["max"] >= 1
    assert set(out["emulation"]) == {"cpu_reference", "xnnpack", "gpu_fp16", "npu_int8"}
    md = (run_dir / "deployment_report.md").read_text()
    assert "Pareto" in md and "Emulation matrix" in md and "Core ML needs a Mac" in md and "max abs err vs float" in md
    assert (run_dir / "deployment_report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_errors(tmp_path):
    with pytest.raises(EdgesrError, match="no report.json"):
        from edgesr.app.reporting import render_report

        render_report(tmp_path)
    (tmp_path / "report.json").write_text("{not json")
    assert main(["report", str(tmp_path)]) == 2
