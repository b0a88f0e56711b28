"""`edgesr report`: Pareto page, error map and emulation matrix for a run folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_integer_ref_models import zoo_int8

from edgesr.app.reporting import _pareto, emulation_matrix
from edgesr.cli import main
from edgesr.core.checkpoint import save_checkpoint
from edgesr.core.data import embedded_image
from edgesr.core.errors import EdgesrError


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder whose evaluation set is a folder of one photograph (a 120 x 160 crop of
    scikit-image's 'coffee', not the report's old fixed 'chelsea'), named in run.json as
    ``edgesr run --sets FOLDER`` records it; int8 and fp32 TFLite, a lookup table, a Core ML
    package (not timed here), an ONNX file that has gone."""
    from edgesr.converters.export import export_tflite
    from test_golden import _random_lut

    from edgesr.core.imageio import write_image

    path, module = zoo_int8("sesr_m3")
    d = tmp_path_factory.mktemp("run")
    save_checkpoint(d / "checkpoints" / "deploy.pt", module, form="deploy")
    (d / "artifacts").mkdir()
    (d / "artifacts" / path.name).write_bytes(path.read_bytes())
    fp32 = export_tflite(module, d / "artifacts" / "sesr_m3_x2_fp32.tflite", "fp32")
    lut = _random_lut(d / "artifacts" / "srlut_x2.lut")
    (d / "artifacts" / "sesr_m3_x2_fp16.mlpackage").mkdir()  # present, but Core ML runs only on a Mac
    photos = d / "myset"
    photos.mkdir()
    write_image(photos / "coffee_crop.png", embedded_image("coffee")[100:220, 200:360])
    (d / "run.json").write_text(json.dumps({"model": "sesr_m3", "scale": 2, "data_root": None, "sets": [str(photos)]}))
    report = {"model": "sesr_m3", "scale": 2, "params": 0, "params_deploy": 0, "macs_per_frame_720p": 0,
              "eval": {"myset": {"psnr_y": 30.0, "ssim_y": 0.9}}, "bicubic": {"myset": {"psnr_y": 29.0, "ssim_y": 0.85}},
              "artifacts": [
                  {"format": "tflite", "precision": "int8", "path": f"artifacts/{path.name}", "bytes": path.stat().st_size,
                   "validation": {"eval": {"myset": {"psnr_y": 29.96, "ssim_y": 0.88}}}},
                  {"format": "tflite", "precision": "fp32", "path": "artifacts/sesr_m3_x2_fp32.tflite", "bytes": fp32["bytes"],
                   "validation": {"eval": {"myset": {"psnr_y": 30.0, "ssim_y": 0.9}}}},
                  {"format": "lut", "precision": "int8", "path": "artifacts/srlut_x2.lut", "bytes": lut.stat().st_size,
                   "validation": {"eval": {"myset": {"psnr_y": 28.0, "ssim_y": 0.8}}}},
                  {"format": "coreml", "precision": "fp16", "path": "artifacts/sesr_m3_x2_fp16.mlpackage", "bytes": 1,
                   "validation": {"eval": {}}},
                  {"format": "onnx", "precision": "fp32", "path": "artifacts/gone.onnx", "bytes": 1, "validation": {"eval": {}}}]}
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
    rows = {(a["format"], a["precision"]): a for a in out["artifacts"]}
    assert rows["tflite", "int8"]["latency_ms"] > 0 and rows["tflite", "fp32"]["latency_ms"] > 0
    assert rows["coreml", "fp16"]["latency_ms"] is None and "Mac" in rows["coreml", "fp16"]["note"]
    assert rows["onnx", "fp32"]["latency_ms"] is None and rows["onnx", "fp32"]["note"] == "artifact missing"
    # the peak edgesr profile measures (XNNPACK's own convolutions, or the artifact's best run), never NumPy's
    for key in (("tflite", "int8"), ("tflite", "fp32")):
        r = rows[key]
        assert 0 < r["fraction_of_peak"] <= 1 and r["gmacs_per_frame"] > 0
        assert r["peak_source"] in ("gemm_1x1", "conv_3x3", "the artifact's best run")
    # a lookup table has latency but no MACs: no GMAC and no fraction-of-peak entry
    lut = rows["lut", "int8"]
    assert lut["latency_ms"] > 0 and lut["gmacs_per_frame"] is None and lut["fraction_of_peak"] is None
    # the error map's photograph is the run's own evaluation set, and the error is signed
    e = out["error_map"]
    assert e["image"] == "myset/coffee_crop" and e["set"] == "myset" and e["shape_hw"] == [120, 160]
    assert e["max_abs"] >= 1 and e["vmax"] == max(e["max_abs"], 1) and -e["max_abs"] <= e["mean"] <= e["max_abs"]
    assert out["set"] == "myset" and out["float_psnr_y"] == 30.0 and out["bicubic_psnr_y"] == 29.0
    assert set(out["emulation"]) == {"cpu_reference", "xnnpack", "gpu_fp16", "npu_int8"}
    md = (run_dir / "deployment_report.md").read_text()
    assert "Pareto" in md and "Emulation matrix" in md and "Core ML needs a Mac" in md and "max abs err vs float" in md
    assert "myset/coffee_crop" in md and "lookup table: no MACs" in md
    lut_line = next(ln for ln in md.splitlines() if ln.startswith("| lut "))
    assert lut_line.split("|")[7:10] == [" - ", " - ", " - "]  # GMAC/frame, GMAC/s, fraction of peak
    assert (run_dir / "deployment_report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the evaluation folder has moved since the run: the recorded scores stand, the pictures
    # fall back to scikit-image's validation photographs, with a warning
    from edgesr.app.reporting import render_report

    record = (run_dir / "run.json").read_text()
    (run_dir / "run.json").write_text(json.dumps({"data_root": None, "sets": [str(run_dir / "moved")]}))
    try:
        with pytest.warns(UserWarning, match="moved"):
            moved = render_report(run_dir, size="16x16", repeats=1)
    finally:
        (run_dir / "run.json").write_text(record)
    assert moved["set"] == "myset" and moved["float_psnr_y"] == 30.0 and moved["error_map"]["image"] == "embedded/chelsea"


def test_report_page_of_a_lookup_table_run(tmp_path, run_dir):
    """A LUT run has no deploy.pt (no collapse stage) and no TFLite file: the trained network is
    the reference, the table gets the error map, and nothing speaks of GMACs."""
    from test_golden import _random_lut

    from edgesr.core.models import create

    d = tmp_path / "lutrun"
    (d / "checkpoints").mkdir(parents=True)
    save_checkpoint(d / "checkpoints" / "last.pt", create("srlut_s", scale=2), form="train")
    lut = _random_lut(d / "srlut_s_x2.lut")
    (d / "run.json").write_text((run_dir / "run.json").read_text())
    (d / "report.json").write_text(json.dumps({
        "model": "srlut_s", "scale": 2, "eval": {"myset": {"psnr_y": 30.0, "ssim_y": 0.9}},
        "bicubic": {"myset": {"psnr_y": 29.0, "ssim_y": 0.85}},
        "artifacts": [{"format": "lut", "precision": "int8", "stage": "finetuned", "path": lut.name,
                       "bytes": lut.stat().st_size, "validation": {"eval": {"myset": {"psnr_y": 29.7, "ssim_y": 0.88}}}}]}))
    from edgesr.app.reporting import render_report

    out = render_report(d, size="32x32", repeats=1)
    assert out["error_map"]["artifact"] == "srlut_s_x2.lut" and out["error_map"]["image"] == "myset/coffee_crop"
    assert out["emulation"] == {} and out["artifacts"][0]["gmacs_per_frame"] is None
    line = next(ln for ln in (d / "deployment_report.md").read_text().splitlines() if ln.startswith("| lut (finetuned) | int8 |"))
    assert line.split("|")[7:10] == [" - ", " - ", " - "]  # GMAC/frame, GMAC/s, fraction of peak


def _rows(latencies, drops, ref=32.0):
    return [{"format": "tflite", "precision": p, "latency_ms": t, "psnr_y": ref + d}
            for p, t, d in zip(("fp32", "fp16", "int8", "w8a16"), latencies, drops)]


def test_quality_plot_scales_and_labels():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgesr.app.reporting import (
        LOG_LATENCY_RATIO,
        MIN_SPAN_DB,
        quality_latency_plot,
    )

    fig, (a, b, c) = plt.subplots(1, 3)
    # latencies over two decades (a LUT at 0.6 ms, a network at 95 ms): log axis
    ra = quality_latency_plot(a, _rows([0.6, 95.0, 40.0], [-0.9, 0.0, -0.04]), 32.0, 31.0, "ms", "Set5")
    assert ra["xscale"] == "log" and a.get_xscale() == "log" and 95.0 / 0.6 > LOG_LATENCY_RATIO
    # within a decade: linear; a 0.01 dB spread is drawn on at least MIN_SPAN_DB, from bicubic's floor to 0
    rb = quality_latency_plot(b, _rows([100.0, 60.0, 130.0], [0.0, -0.001, -0.01]), 32.0, 31.8, "ms", "Set5")
    lo, hi = rb["ylim"]
    assert rb["xscale"] == "linear" and hi - lo >= MIN_SPAN_DB and lo < -0.2 < 0.0 < hi
    # no float reference: relative to the best artifact, and still the minimum span
    rc = quality_latency_plot(c, _rows([10.0, 12.0], [0.0, -0.002]), None, None, "ms", "embedded")
    assert rc["ylim"][1] - rc["ylim"][0] >= MIN_SPAN_DB and "best artifact" in c.get_ylabel()
    # names live in the legend, one entry per artifact (nothing written on the points to overlap)
    for ax, n in ((a, 3), (b, 3), (c, 2)):
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert not ax.texts and sum(lbl.startswith("tflite ") for lbl in labels) == n
    assert any(lbl.startswith("bicubic (-0.20 dB)") for lbl in [t.get_text() for t in b.get_legend().get_texts()])
    plt.close(fig)


def test_error_map_is_signed_with_a_colour_bar():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgesr.app.reporting import ZOOM_PX, error_map_panels

    err = np.zeros((100, 120))
    err[60:70, 80:90] = -3.0  # int8 darker than float in one patch
    err[5, 5] = 1.0
    fig, (a, b) = plt.subplots(1, 2)
    info = error_map_panels(fig, a, b, err, "t")
    im = a.get_images()[0]
    # whole 8-bit levels: one colour per level from -3 to 3, centred on 0 (white), a tick per level
    assert im.get_cmap().name.startswith("RdBu_r") and im.get_cmap().N == 7 and info["vmax"] == 3.0
    assert list(im.norm.boundaries) == [-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5]
    y, x, side = info["window"]
    assert side == ZOOM_PX and y <= 60 and y + side >= 70 and x <= 80 and x + side >= 90  # the worst patch, magnified
    bar = fig.axes[-1]
    assert "int8 - float" in bar.get_ylabel() and "8-bit" in bar.get_ylabel()
    assert [float(t) for t in bar.get_yticks()] == [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    plt.close(fig)
    fig, (a, b) = plt.subplots(1, 2)  # fractional errors: a continuous, symmetric scale
    error_map_panels(fig, a, b, err * 0.3, "t")
    assert a.get_images()[0].get_clim() == (-1.0, 1.0)  # never narrower than one level
    plt.close(fig)


def test_evaluation_images_follow_the_run(tmp_path, shared_data):
    from edgesr.app.reporting import evaluation_images
    from edgesr.core.data import benchmark_set

    (tmp_path / "run.json").write_text(json.dumps({"data_root": str(shared_data), "sets": ["Set14", "Set5"]}))
    name, images = evaluation_images(tmp_path, {"eval": {"Set14": {}, "Set5": {}}})
    first = benchmark_set(shared_data, "Set14")[0]
    assert name == "Set14" and images[0][0] == first[0] and np.array_equal(images[0][1], first[1])
    (tmp_path / "run.json").write_text(json.dumps({"data_root": str(shared_data), "sets": None}))  # run's default sets
    assert evaluation_images(tmp_path, {"eval": {"Set5": {}, "Set14": {}}})[0] == "Set5"


def test_run_report_crops_come_from_the_chosen_set(run_dir, tmp_path):
    """edgesr run's report.png: crops of the run's first evaluation set (read from run.json when
    the caller does not pass the sets), not a fixed built-in photograph."""
    from edgesr.app.run_report import write_report
    from edgesr.core.checkpoint import load_checkpoint

    report = json.loads((run_dir / "report.json").read_text())
    report.update(params=13_700, params_deploy=13_700, macs_per_frame_720p=3_115_000_000)
    for a in report["artifacts"]:
        a["validation"] = {**a["validation"], "passed": True}
    arts = [{**a, "path": str(run_dir / a["path"])} for a in report["artifacts"][:2]]
    report["artifacts"] = report["artifacts"][:2]
    module, _ = load_checkpoint(run_dir / "checkpoints" / "deploy.pt", deploy=True)
    (tmp_path / "run.json").write_text((run_dir / "run.json").read_text())
    write_report(tmp_path, report, module, arts)
    md = (tmp_path / "report.md").read_text()
    assert "![crops of myset/coffee_crop: bicubic, float, int8, HR](report.png)" in md and "3.115 GMACs" in md
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lut_runs_state_no_gmacs():
    from edgesr.app.run_report import complexity_line

    report = {"params": 1000, "params_deploy": 1000, "macs_per_frame_720p": 3_115_000_000}
    lut = complexity_line(report, [{"format": "lut", "precision": "int8"}])
    net = complexity_line(report, [{"format": "tflite", "precision": "int8"}, {"format": "onnx", "precision": "fp32"}])
    assert "GMAC" not in lut and "lookup tables" in lut
    assert "3.115 GMACs per 1280x720" in net


def test_report_errors(tmp_path):
    with pytest.raises(EdgesrError, match="no report.json"):
        from edgesr.app.reporting import render_report

        render_report(tmp_path)
    (tmp_path / "report.json").write_text("{not json")
    assert main(["report", str(tmp_path)]) == 2
