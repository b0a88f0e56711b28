"""`edgesr profile`: host timings with MACs vs measured peak; adb commands; benchmark_model log parser."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
from pathlib import Path

import pytest
from test_integer_ref_models import int8_model

from edgesr.app.profiling import (
    adb_commands,
    op_profile_lines,
    op_profile_table,
    parse_benchmark_output,
    parse_op_tables,
    parse_size,
    profile_artifact,
    tflite_facts,
)
from edgesr.cli import main
from edgesr.core.errors import EdgesrError

DATA = Path(__file__).parent / "data"
LOG = DATA / "benchmark_model_sesr_m3_x2_int8_cpu.txt"  # the older layout ([start] column), builtin kernels
XNN_LOG = DATA / "benchmark_model_sesr_m5_x2_int8_xnnpack.txt"  # tsl / LiteRT layout, XNNPACK's own operators


def test_recorded_logs_are_what_this_script_writes():
    """The logs are synthesized by a transcription of TFLite's formatting code (no phone here):
    the committed files are exactly that script's output."""
    spec = importlib.util.spec_from_file_location("make_logs", DATA / "make_benchmark_model_logs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, make in mod.LOGS.items():
        assert (DATA / name).read_text() == make(), name


def test_parser_on_recorded_benchmark_model_output():
    r = parse_benchmark_output(LOG.read_text())
    assert r["init_ms"] == pytest.approx(3.051) and r["first_inference_ms"] == pytest.approx(14.956)
    assert r["warmup_avg_ms"] == pytest.approx(12.9561) and r["inference_avg_ms"] == pytest.approx(12.8856)
    assert r["inference"] == {"count": 74, "min_ms": 12.69, "max_ms": 13.11, "avg_ms": pytest.approx(12.8856),
                              "std_ms": 0.094, "median_ms": None}
    assert r["memory_mb"] == {"init": None, "overall": None, "peak": 13.6875}  # the older tool's peak line
    assert len(r["ops"]) == 11  # the regular runs' table, not the initialization one
    assert r["ops"][0] == {"node_type": "CONV_2D", "start_ms": 0.0, "first_ms": 2.82, "avg_ms": 2.877, "percent": 22.424,
                           "cdf_percent": 22.424, "mem_kb": 0.0, "times_called": 1, "name": "[sesr/first/Conv2D]:0"}
    assert [o["node_type"] for o in r["ops_by_type"]] == ["CONV_2D", "PRELU", "ADD", "DEPTH_TO_SPACE"]
    assert sum(o["avg_ms"] for o in r["ops"]) == pytest.approx(sum(o["avg_ms"] for o in r["ops_by_type"]), abs=1e-2)
    assert r["ops"][-1]["cdf_percent"] == 100.0


def _agrees_with_tflites_summary(r):
    """edgesr's op table (from the Run Order rows) against TFLite's own summary by node type."""
    ours = {row["op_type"]: row for row in r["op_profile"]["rows"]}
    theirs = {row["node_type"]: row for row in r["ops_by_type"]}
    assert set(ours) == set(theirs)
    for t, row in theirs.items():
        assert ours[t]["count"] == row["times_called"]
        assert ours[t]["ms"] == pytest.approx(row["avg_ms"], abs=0.005 * ours[t]["count"])  # 3-decimal rounding per row
        assert ours[t]["percent"] == pytest.approx(row["percent"], abs=0.1)
    assert sum(row["percent"] for row in ours.values()) == pytest.approx(100.0)


def test_op_profile_of_the_xnnpack_log():
    r = parse_benchmark_output(XNN_LOG.read_text())
    assert r["inference"]["count"] == 50 and r["memory_mb"]["peak"] == pytest.approx(19.1172)
    assert "partially executed by the delegate w/ 6 delegate kernels" in r["delegate_log"][-1]
    # XNNPACK numbers its operators per partition: the 5x5 and four 3x3 convs that open the
    # first five partitions share one name and one row, called 5 times per inference
    first = r["ops"][0]
    assert "start_ms" not in first and first["name"] == "Delegate/Convolution (NHWC, QC8) IGEMM:0" and first["times_called"] == 5
    table = r["op_profile"]
    assert [(row["op_type"], row["count"], row["where"]) for row in table["rows"]] == [
        ("Convolution (NHWC, QC8) IGEMM", 7, "delegate"), ("PRELU", 5, "builtin"), ("Add (ND, QS8)", 2, "delegate"),
        ("Depth To Space (NHWC, X8)", 1, "delegate")]
    assert table["excluded"] == [] and table["total_ms"] < r["inference"]["avg_ms"]  # the timer also sees the interpreter
    _agrees_with_tflites_summary(r)
    _agrees_with_tflites_summary(parse_benchmark_output(LOG.read_text()))
    lines = op_profile_lines(table)
    assert lines[1].split()[0] == "Convolution" and lines[2].split()[0] == "PRELU" and lines[-1].startswith("total")


def test_op_profile_leaves_out_a_delegate_kernel_that_reports_its_operators():
    """Where a delegate's own node row (TfLiteXNNPackDelegate) sits beside its operators'
    ``Delegate/...`` rows, counting both would count its time twice."""
    text = XNN_LOG.read_text()
    run_order = text[text.index("INFO: Operator-wise Profiling Info"):].split("\n\n", 1)[0]
    row = "\t" + "TfLiteXNNPackDelegate".rjust(40) + "\t    8.900\t    1.500\t 10.000%\t100.000%\t     0.000\t        6\t[x]:15"
    tables = parse_op_tables(run_order + "\n" + row + "\n\n")
    ops = next(t["rows"] for t in tables if t["section"] == "regular" and t["title"] == "Run Order")
    table = op_profile_table(ops)
    assert table["excluded"] == ["[x]:15"] and "TfLiteXNNPackDelegate" not in [r["op_type"] for r in table["rows"]]
    # without the delegate's own operators (an opaque delegate), its node is the op that ran
    opaque = [o for o in ops if not o["name"].startswith("Delegate/")]
    assert "TfLiteXNNPackDelegate" in [r["op_type"] for r in op_profile_table(opaque)["rows"]]


def test_parser_rejects_a_failed_run():
    with pytest.raises(EdgesrError, match="Inference timings"):
        parse_benchmark_output("ERROR: Failed to allocate tensors\nBenchmarking failed.\n")


def test_adb_dry_run_prints_matching_flags(capsys):
    path = int8_model("sesr_like")
    capsys.readouterr()  # drop the converter's log
    assert main(["profile", str(path), "--adb", "--serial", "R5CT1", "--delegate", "gpu", "--benchmark-binary",
                 "/opt/android_aarch64_benchmark_model", "--threads", "2", "--repeats", "30", "--sizes", "360p", "--dry-run",
                 "--op-profile"]) == 0
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
    assert not any("--enable_op_profiling" in r for r in runs)  # only with --op-profile (its overhead is in the timings)
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


FAKE_ADB = """#!{python}
import shutil, sys
from pathlib import Path

args = sys.argv[1:]
if args[:1] == ["-s"]:
    args = args[2:]
with open({calls!r}, "a") as f:
    f.write("\\t".join(args) + "\\n")
state = Path({calls!r} + ".last_run")
if args[0] == "shell" and "benchmark_model --graph=" in args[-1]:
    state.write_text(args[-1])
elif args[0] == "pull":  # the recorded log; without --enable_op_profiling, the log without its op tables
    text = Path({log!r}).read_text()
    if "--enable_op_profiling=true" not in state.read_text():
        text = text.split("INFO: Profiling Info for Benchmark Initialization:")[0]
    Path(args[2]).write_text(text)
elif args[0] not in ("shell", "push"):
    sys.exit("fake adb: unexpected " + " ".join(args))
"""


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    """An ``adb`` on PATH that records its calls and answers ``pull`` with the recorded XNNPACK log."""
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "adb_calls.txt"
    adb = bin_dir / "adb"
    adb.write_text(FAKE_ADB.format(python=sys.executable, calls=str(calls), log=str(XNN_LOG)))
    adb.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_adb_op_profile_through_a_fake_adb(tmp_path, fake_adb, capsys):
    path = int8_model("sesr_like")
    capsys.readouterr()
    out = tmp_path / "phone.json"
    assert main(["profile", str(path), "--adb", "--serial", "R5CT1", "--benchmark-binary", "bm", "--sizes", "360p,720p",
                 "--threads", "1,2", "--op-profile", "-o", str(out)]) == 0
    calls = [c.split("\t") for c in fake_adb.read_text().splitlines()]
    runs = [c[-1] for c in calls if c[0] == "shell" and "--graph=" in c[-1]]
    assert len(calls) == 4 + 2 * 4 and len(runs) == 4 and all("--enable_op_profiling=true" in r for r in runs)
    result = json.loads(out.read_text())
    assert [(r["size"], r["threads"]) for r in result["runs"]] == [("360p", 1), ("360p", 2), ("720p", 1), ("720p", 2)]
    assert all(r["op_profile"]["rows"][0]["op_type"] == "Convolution (NHWC, QC8) IGEMM" for r in result["runs"])
    assert all(Path(r["log"]).is_file() for r in result["runs"])
    printed = capsys.readouterr().out
    assert printed.count("ms per inference") == 4 and "PRELU" in printed and "builtin" in printed
    # without --op-profile: no profiling flag, no op tables in the log, no op_profile
    assert main(["profile", str(path), "--adb", "--benchmark-binary", "bm", "-o", str(tmp_path / "plain.json")]) == 0
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert plain["op_profile"] is None and plain["inference"]["count"] == 50
    assert "--enable_op_profiling" not in fake_adb.read_text().splitlines()[-2]
    # --op-profile on the host has nothing to profile ops with: refused before any work
    assert main(["profile", str(path), "--op-profile"]) == 2


def test_cli_parse_and_bad_input(tmp_path, capsys):
    assert main(["profile", "--parse", str(LOG)]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["inference"]["count"] == 74 and parsed["op_profile"]["rows"][0]["op_type"] == "CONV_2D"
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
    # measured peaks: none for a lookup table (no MACs); for ONNX, NumPy's matmul or the
    # artifact's own best run, whichever is faster, so the fraction cannot exceed 1
    lut = profile_artifact(tmp_path / "r.lut", sizes=("32x32",), repeats=2, warmup=1)
    r = lut["results"][0]
    assert r["peak_macs_per_s"] is None and r["fraction_of_peak"] is None and r["peak_source"] is None
    assert lut["machine"]["peak_measured_by"].startswith("none")
    r = profile_artifact(onnx_path, sizes=("32x48",), threads=(1,), repeats=3, warmup=1)["results"][0]
    assert 0 < r["fraction_of_peak"] <= 1 and r["peak_source"] in ("numpy matmul", "the artifact's best run")
