"""`edgesr profile`: host timings with MACs vs measured peak; adb commands; benchmark_model log parser."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from test_integer_ref_models import int8_model

from edgesr.app.profiling import (
    adb_commands,
    parse_benchmark_output,
    parse_size,
    profile_artifact,
    tflite_facts,
)
from edgesr.cli import main
from edgesr.core.errors import EdgesrError

LOG = Path(__file__).parent / "data" / "benchmark_model_sesr_m3_x2_int8_cpu.txt"


def test_parser_on_recorded_benchmark_model_output():
    r = parse_benchmark_output(LOG.read_text())
    assert r["init_ms"] == pytest.approx(3.051) and r["first_inference_ms"] == pytest.approx(15.873)
    assert r["warmup_avg_ms"] == pytest.approx(13.8946) and r["inference_avg_ms"] == pytest.approx(13.5128)
    assert r["inference"] == {"count": 74, "min_ms": 12.744, "max_ms": 14.96, "avg_ms": pytest.approx(13.5128),
                              "std_ms": 0.401, "median_ms": 13.455}
    assert r["memory_mb"] == {"init": 4.875, "overall": 9.5, "peak": 13.6875}
    assert len(r["ops"]) == 11  # the regular runs' table, not the initialization one
    assert r["ops"][0] == {"node_type": "CONV_2D", "start_ms": 0.0, "first_ms": 2.911, "avg_ms": 2.874, "percent": 22.418,
                           "mem_kb": 0.0, "times_called": 1, "name": "sesr/first/Conv2D:0"}
    assert [o["node_type"] for o in r["ops_by_type"]] == ["CONV_2D", "PRELU", "ADD", "DEPTH_TO_SPACE"]
    assert sum(o["avg_ms"] for o in r["ops"]) == pytest.approx(sum(o["avg_ms"] for o in r["ops_by_type"]), abs=1e-3)


def test_parser_rejects_a_failed_run():
    with pytest.raises(EdgesrError, match="Inference timings"):
        parse_benchmark_output("ERROR: Failed to allocate tensors\nBenchmarking failed.\n")


def test_adb_dry_run_prints_matching_flags(capsys):
    path = int8_model("sesr_like")
    capsys.readouterr()  # drop the converter's log
    assert main(["profile", str(path), "--adb", "--serial", "R5CT1", "--delegate", "gpu", "--benchmark-binary",
                 "/opt/android_aarch64_benchmark_model", "--threads", "2", "--repeats", "30", "--sizes", "360p", "--dry-run"]) == 0
    lines = [shlex.split(s) for s in capsys.readouterr().out.strip().splitlines()]
    assert all(c[:3] == ["adb", "-s", "R5CT1"] for c in lines)
    assert lines[1][3:] == ["push", "/opt/android_aarch64_benchmark_model", "/data/local/tmp/edgesr/benchmark_model"]
    run = lines[4][4]
    for flag in ("--graph=/data/local/tmp/edgesr/sesr_like.tflite", "--num_threads=2", "--use_gpu=true", "--use_nnapi=false",
                 "--use_xnnpack=false", "--enable_op_profiling=true", "--warmup_runs=2", "--num_runs=30",
                 "--input_layer_shape=1,180,320,1"):
        assert flag in run.split()
    assert lines[5][3] == "pull"
    with pytest.raises(EdgesrError, match="unknown delegate"):
        adb_commands(path, "bm", delegate="hexagon")
    # every size and thread count runs: the setup (mkdir, push binary, chmod, push model) once,
    # then one benchmark run and pull per (size, threads)
    assert main(["profile", str(path), "--adb", "--benchmark-binary", "bm", "--threads", "1,2",
                 "--sizes", "360p,720p", "--dry-run"]) == 0
    lines = [shlex.split(s) for s in capsys.readouterr().out.strip().splitlines()]
    runs = [c[-1] for c in lines if c[1] == "shell" and "--graph=" in c[-1]]
    assert len(lines) == 4 + 2 * 4 and len(runs) == 4
    assert [(f for f in r.split() if f.startswith("--num_threads")).__next__() for r in runs] == ["--num_threads=1", "--num_threads=2"] * 2
    assert ["--input_layer_shape=1,180,320,1" in r for r in runs] == [True, True, False, False]
    assert all("--input_layer_shape=1,360,640,1" in r for r in runs[2:])
    pulls = [c[-1] for c in lines if c[1] == "pull"]
    assert len(set(pulls)) == 4 and pulls[0].endswith("_360p_t1.log")


def test_host_profile_counts_macs_and_compares_with_peak(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESR_CACHE", str(tmp_path / "cache"))
    path = int8_model("sesr_like")
    # convs per input pixel: 5x5x1x8 + 2 * 3x3x8x8 + depthwise 3x3x8 + 3x3x16x4 = 2000 MACs
    assert tflite_facts(path, 32, 48)["macs"] == 2000 * 32 * 48
    res = profile_artifact(path, sizes=("64x96",), threads=(1, 2), repeats=3, warmup=1)
    assert [r["threads"] for r in res["results"]] == [1, 2]
    r = res["results"][0]
    assert r["input_hw"] == [32, 48] and r["output_hw"] == [64, 96] and r["macs"] == 2000 * 32 * 48
    assert 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"]
    # the peak: XNNPACK's own int8 convolutions, interleaved with the artifact, best run; 2 threads >= 1 thread
    assert res["machine"]["peak_arithmetic"] == "int8" and "interleaved" in res["machine"]["peak_measured_by"]
    assert 0 < r["fraction_of_peak"] < 1 and r["peak_macs_per_s"] > 1e9
    assert res["results"][1]["peak_macs_per_s"] >= r["peak_macs_per_s"]
    assert all(row["peak_source"] in ("gemm_1x1", "conv_3x3", "the artifact's best run") for row in res["results"])
    assert res["bytes"] == path.stat().st_size and res["params"] > 0 and res["peak_rss_mb"] > 0
    assert res["xnnpack"]["ops_outside"] == ["PRELU"] and res["xnnpack"]["partitions"] == 2  # int8 PRELU splits it
    out = tmp_path / "p.json"
    assert main(["profile", str(path), "--sizes", "16x16", "--repeats", "2", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["results"][0]["size"] == "16x16"


def test_cli_parse_and_bad_input(tmp_path, capsys):
    assert main(["profile", "--parse", str(LOG)]) == 0
    assert json.loads(capsys.readouterr().out)["inference"]["count"] == 74
    assert main(["profile", str(tmp_path / "none.tflite")]) == 2
    with pytest.raises(EdgesrError, match="size"):
        parse_size("720i")


def test_profile_onnx_and_lut(tmp_path):
    from edgesr.converters.export import export_onnx
    from test_golden import _random_lut
    from test_integer_ref_models import zoo_int8

    _, module = zoo_int8("sesr_m3")
    onnx_path = Path(export_onnx(module, tmp_path / "m.onnx")["path"])
    res = profile_artifact(onnx_path, sizes=("32x48",), threads=(1,), repeats=2, warmup=1, peak_macs=1e10)
    # SESR-M3 deploy: 5x5x1x16 + 3 * 3x3x16x16 + 5x5x16x4 = 400 + 6912 + 1600 MACs per LR pixel
    assert res["results"][0]["macs"] == 8912 * 16 * 24 and res["runtime"].startswith("onnxruntime")
    lut = profile_artifact(_random_lut(tmp_path / "r.lut"), sizes=("32x32",), repeats=2, warmup=1, peak_macs=1e10)
    assert lut["runtime"] == "LUT C engine" and lut["results"][0]["median_ms"] > 0 and lut["results"][0]["macs"] is None
