"""Latency on this machine (LiteRT, ONNX Runtime, the LUT C engine) and on a phone over adb.

Host profile (:func:`profile_artifact`): for each output frame size and thread count, warm-up
runs, then ``repeats`` timed runs; the JSON holds the median and spread (p10, p90, min,
std), the MACs of one frame, parameters, model bytes, the process's peak RSS, and the ratio
of achieved MAC/s to this machine's peak. For a ``.tflite`` the peak is measured on the same
runtime in the artifact's arithmetic (fp32 or int8): compute-bound one-convolution graphs
(:data:`PEAK_GRAPHS`) run interleaved with the artifact, so both see the same load, and the
best single run counts; the artifact's median cannot honestly exceed it. ONNX uses a large
float32 NumPy matmul (:func:`measure_peak_macs`), or the artifact's own best run where that is
faster (``peak_source``), so no fraction exceeds 1 there either. A ``.lut`` has no MACs: no
peak and no fraction.

For a ``.tflite`` the JSON also holds ``"xnnpack"``: the partitions LiteRT's default XNNPACK
delegate forms and the ops it leaves on the builtin kernels
(:func:`edgesr.converters.partitions.xnnpack_partitions`), since a split graph is slow.

Sizes name the *output* frame (``720p`` = 1280 x 720); the model sees ``size / scale``.

Phone profile: :func:`adb_commands` builds the ``adb push / shell / pull`` commands for
TFLite's ``benchmark_model`` with matching flags; :func:`parse_benchmark_output` turns its
log (``Inference timings in us: ...``, memory footprint, the ``--enable_op_profiling`` tables)
into the same JSON keys, and :func:`op_profile_table` the per-op tables into which op types
dominate an inference.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

from edgesr.app.artifacts import open_artifact
from edgesr.converters.partitions import xnnpack_partitions
from edgesr.converters.runtime import LiteRTModel
from edgesr.core.atomic import atomic_path
from edgesr.core.data import embedded_image, to_luma
from edgesr.core.errors import EdgesrError
from edgesr.core.thirdparty import block_triton_after_tensorflow
from edgesr.quantization.integer_ref import quantize_input, read_model

SIZES = {"360p": (360, 640), "540p": (540, 960), "720p": (720, 1280), "1080p": (1080, 1920)}


def parse_size(text: str) -> tuple[int, int]:
    """``"720p"`` or ``"HxW"`` -> (H, W) of the output frame. Raises EdgesrError otherwise."""
    if text in SIZES:
        return SIZES[text]
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise EdgesrError(f"size {text!r}: expected one of {', '.join(SIZES)} or HxW") from None
    if h < 1 or w < 1:
        raise EdgesrError(f"size {text!r}: must be positive")
    return h, w


def measure_peak_macs(n: int = 1024, repeats: int = 5) -> float:
    """This machine's float32 MAC/s peak: best of ``repeats`` ``n x n @ n x n`` NumPy matmuls."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b  # warm-up (BLAS threads, caches)
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return n**3 / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _stats(times_s: list[float]) -> dict:
    ms = np.asarray(times_s) * 1e3
    return {"median_ms": float(np.median(ms)), "p10_ms": float(np.percentile(ms, 10)), "p90_ms": float(np.percentile(ms, 90)),
            "min_ms": float(ms.min()), "std_ms": float(ms.std()), "runs": len(ms)}


def _photo(h: int, w: int, c: int) -> np.ndarray:
    """A real photograph (astronaut) reflected to (h, w), as float32 (1, c, h, w) in [0, 1]."""

    img = embedded_image("astronaut")
    base = to_luma(img)[..., None] if c == 1 else img.astype(np.float32) / 255
    reps = (-(-h // base.shape[0]), -(-w // base.shape[1]), 1)
    tiled = np.tile(np.concatenate([base, base[::-1]], 0), reps)[:h, :w]
    return np.ascontiguousarray(tiled.transpose(2, 0, 1)[None], dtype=np.float32)


# --------------------------------------------------------------------------- XNNPACK peak

#: The compute-bound graphs whose best MAC/s is the peak: ``{kind: (kernel size, channels)}``.
PEAK_GRAPHS = {"gemm_1x1": (1, 128), "conv_3x3": (3, 64)}


def peak_cache_dir() -> Path:
    """Where the peak graphs are kept (``$EDGESR_CACHE/peak``, default ``~/.cache/edgesr/peak``)."""
    return Path(os.environ.get("EDGESR_CACHE", Path.home() / ".cache" / "edgesr")) / "peak"


def peak_graph(kind: str, arithmetic: str, cache: Path | None = None) -> tuple[Path, int]:
    """``(path, MACs per input pixel)`` of a one-convolution ``.tflite`` (:data:`PEAK_GRAPHS`),
    float32 or full-integer int8 (``arithmetic`` ``"fp32"`` | ``"int8"``), converted once with
    TensorFlow and cached. Raises EdgesrError for an unknown kind or arithmetic."""
    if kind not in PEAK_GRAPHS or arithmetic not in ("fp32", "int8"):
        raise EdgesrError(f"peak graph {kind!r}/{arithmetic!r}: expected one of {', '.join(PEAK_GRAPHS)} and fp32|int8")
    k, c = PEAK_GRAPHS[kind]
    path = (cache or peak_cache_dir()) / f"{kind}_c{c}_{arithmetic}.tflite"
    if not path.exists():
        block_triton_after_tensorflow()
        import keras
        import tensorflow as tf

        inp = keras.Input((None, None, c), batch_size=1)
        layer = keras.layers.Conv2D(c, k, padding="same")
        model = keras.Model(inp, layer(inp))
        rng = np.random.default_rng(1)
        layer.set_weights([rng.standard_normal((k, k, c, c)).astype(np.float32) * 0.05, np.zeros(c, np.float32)])
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        if arithmetic == "int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([rng.uniform(0, 1, (1, 16, 16, c)).astype(np.float32)] for _ in range(4))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = conv.inference_output_type = tf.int8
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(conv.convert())
    return path, k * k * c * c


def graph_arithmetic(path: Path) -> str:
    """``"int8"`` when a ``.tflite`` graph computes on int8 activations, else ``"fp32"`` (fp16
    weights are dequantized to float32 on XNNPACK's CPU path)."""
    tensors, _, _, _ = read_model(path)
    return "int8" if any(t.dtype is np.int8 and t.data is None for t in tensors) else "fp32"


class _PeakProbe:
    """The peak graphs of one arithmetic on LiteRT + XNNPACK at one input size and thread count.

    :meth:`best_macs_per_s` also takes the best single runs of the artifacts timed beside it
    (``observed``): the peak is the highest MAC/s seen in the run, so no median can exceed it.
    """

    def __init__(self, arithmetic: str, h: int, w: int, threads: int):
        self.cases = []
        for kind in PEAK_GRAPHS:
            path, macs_px = peak_graph(kind, arithmetic)
            model = LiteRTModel(path, "xnnpack", threads)
            tin = read_model(path)[0][model.input_details()["index"]]
            q = quantize_input(np.full((1, h, w, PEAK_GRAPHS[kind][1]), 0.5, np.float32), tin)
            model.run(q)  # allocate, delegate, warm up
            self.cases.append((model, q, macs_px * h * w, []))
        self.source = None

    def once(self) -> None:
        for model, q, _, times in self.cases:
            times.append(_timed(lambda model=model, q=q: model.run(q)))

    def best_macs_per_s(self, observed: dict[str, float] | None = None) -> float:
        """Best MAC/s of the peak graphs, or of an ``observed`` ``{name: MAC/s}`` when higher
        (:attr:`source` names which)."""
        rates = {kind: macs / min(times) for kind, (_, _, macs, times) in zip(PEAK_GRAPHS, self.cases)}
        rates.update(observed or {})
        self.source = max(rates, key=rates.get)
        return rates[self.source]


# --------------------------------------------------------------------------- graph facts


def tflite_facts(path: Path, h: int, w: int) -> dict:
    """MACs of one (h, w) input, parameters and op histogram of a ``.tflite`` graph."""

    tensors, ops, inputs, _ = read_model(path)
    macs, hist, params = 0, {}, 0
    for op in ops:
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "FULLY_CONNECTED", "TRANSPOSE_CONV"):
            params += sum(int(np.prod(tensors[i].shape)) for i in op.inputs[1:] if i >= 0)
        hist[op.name] = hist.get(op.name, 0) + 1
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            wt = tensors[op.inputs[1]].shape  # OHWI or 1HW(C*M); fp16 graphs feed it from a DEQUANTIZE (no data)
            s = op.options.get("stride_h", 1) * op.options.get("stride_w", 1)
            per_px = wt[0] * wt[1] * wt[2] * wt[3] if op.name == "CONV_2D" else wt[1] * wt[2] * wt[3]
            macs += per_px * (h * w) // s  # SR graphs keep the input resolution until depth-to-space
    return {"macs": int(macs), "params": int(params), "ops": hist}


def onnx_facts(path: Path, h: int, w: int) -> dict:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    macs, hist = 0, {}
    for node in model.graph.node:
        hist[node.op_type] = hist.get(node.op_type, 0) + 1
        if node.op_type == "Conv" and node.input[1] in inits:
            o, i, kh, kw = inits[node.input[1]].shape
            strides = next((list(a.ints) for a in node.attribute if a.name == "strides"), [1, 1])
            macs += o * i * kh * kw * h * w // (strides[0] * strides[1])
    return {"macs": int(macs), "params": int(sum(v.size for v in inits.values() if v.ndim >= 1)), "ops": hist}


# --------------------------------------------------------------------------- runners


def _runner(path: Path, threads: int):
    """``(contract, fn(x NCHW float32) -> output, runtime name)`` for one thread count, on the
    Upscaler :func:`edgesr.app.artifacts.open_artifact` returns (TFLite and ONNX timed on the
    runtime's own call, without the Upscaler's per-image loop)."""
    suffix = path.suffix
    if suffix not in (".tflite", ".onnx", ".lut"):
        raise EdgesrError(f"{path}: profile supports .tflite, .onnx and .lut (Core ML latency needs a Mac)")
    up = open_artifact(path, kernels="xnnpack", num_threads=threads, engine="c")
    if suffix == ".tflite":
        tensors, _, ins, _ = read_model(path)
        tin = tensors[ins[0]]

        def run(x):
            return up.run_quantized(quantize_input(x.transpose(0, 2, 3, 1), tin))

        return up.contract, run, "ai-edge-litert (default kernels, XNNPACK)"
    if suffix == ".onnx":
        import onnxruntime as ort

        return up.contract, lambda x: up.session.run(None, {up.input_name: x})[0], f"onnxruntime {ort.__version__}"
    return up.contract, up, "LUT C engine"


def profile_artifact(path: str | os.PathLike, sizes=("360p",), threads=(1,), repeats: int = 10, warmup: int = 2,
                     peak_macs: float | None = None, progress=None) -> dict:
    """Time the artifact on real-photo frames; returns the profile JSON (module doc).

    Raises:
        EdgesrError: missing artifact, an unsupported kind, or bad sizes/threads/repeats.
    """
    path = Path(path)
    if not path.exists():
        raise EdgesrError(f"{path}: no such artifact")
    if repeats < 1 or warmup < 0 or any(int(t) < 1 for t in threads):
        raise EdgesrError(f"repeats must be >= 1, warm-up >= 0, threads >= 1 (got {repeats}, {warmup}, {list(threads)})")
    tflite = path.suffix == ".tflite"
    arithmetic = graph_arithmetic(path) if tflite else "fp32"
    lut = path.suffix == ".lut"  # a lookup table has no MACs: no peak to compare with
    fixed_peak = peak_macs if peak_macs is not None or tflite or lut else measure_peak_macs()
    results, facts_out, runtime = [], None, None
    for t in threads:
        contract, run, runtime = _runner(path, int(t))
        s = contract.scale
        for size in sizes:
            oh, ow = parse_size(size)
            h, w = max(oh // s, 1), max(ow // s, 1)
            x = _photo(h, w, contract.channels)
            facts = tflite_facts(path, h, w) if tflite else onnx_facts(path, h, w) if path.suffix == ".onnx" else {"macs": None, "params": None, "ops": {}}
            facts_out = facts_out or facts
            probe = _PeakProbe(arithmetic, h, w, int(t)) if tflite and fixed_peak is None else None
            for _ in range(warmup):
                run(x)
            times = []
            for _ in range(repeats):  # the peak graphs interleaved with the artifact: same load for both
                times.append(_timed(lambda: run(x)))
                if probe:
                    probe.once()
            st = _stats(times)
            best_run = {"the artifact's best run": facts["macs"] / min(times)} if facts["macs"] else {}
            if probe is not None:
                peak, source = probe.best_macs_per_s(best_run), probe.source
            elif peak_macs is None and best_run and fixed_peak is not None and best_run["the artifact's best run"] > fixed_peak:
                peak, source = best_run["the artifact's best run"], "the artifact's best run"  # NumPy's matmul beaten
            else:
                peak, source = fixed_peak, "fixed" if peak_macs is not None else "numpy matmul"
            achieved = facts["macs"] / (st["median_ms"] / 1e3) if facts["macs"] else None
            results.append({"size": size, "input_hw": [h, w], "output_hw": [h * s, w * s], "threads": int(t), **st,
                            "macs": facts["macs"], "achieved_macs_per_s": achieved, "peak_macs_per_s": peak,
                            "peak_source": source if peak is not None else None,
                            "fraction_of_peak": achieved / peak if achieved else None})
            if progress:
                progress(results[-1])
    _peak_monotone_in_threads(results)
    how = ("none: a lookup table has no MACs" if lut and peak_macs is None else
           "float32 1024^3 NumPy matmul, best of 5, or the artifact's own best run when faster (peak_source)"
           if fixed_peak is not None and peak_macs is None else
           "given by the caller" if fixed_peak is not None else
           f"LiteRT + XNNPACK {arithmetic} 1x1 (128 -> 128, a GEMM) and 3x3 (64 -> 64) convolutions on the same input "
           "and at most the row's threads, best single run, interleaved with the artifact's runs (or the artifact's "
           "own best run when faster: peak_source)")
    return {"artifact": str(path), "format": path.suffix.lstrip("."), "bytes": _bytes(path), "runtime": runtime,
            "params": facts_out["params"], "ops": facts_out["ops"],
            "xnnpack": xnnpack_partitions(path) if tflite else None,
            "machine": {"peak_macs_per_s": max((r["peak_macs_per_s"] for r in results if r["peak_macs_per_s"] is not None), default=fixed_peak),
                        "peak_arithmetic": arithmetic, "peak_measured_by": how,
                        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "results": results}


def _peak_monotone_in_threads(results: list[dict]) -> None:
    """A row's peak is at least the peak measured with fewer threads at the same size (t threads
    can do what fewer do); fraction_of_peak is recomputed against it."""
    for r in results:
        if r["peak_macs_per_s"] is None:  # a lookup table: no peak
            continue
        best = max(o["peak_macs_per_s"] for o in results if o["size"] == r["size"] and o["threads"] <= r["threads"]
                   and o["peak_macs_per_s"] is not None)
        r["peak_macs_per_s"] = best
        if r["achieved_macs_per_s"]:
            r["fraction_of_peak"] = r["achieved_macs_per_s"] / best


def _bytes(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


# --------------------------------------------------------------------------- phone (adb)

DEVICE_DIR = "/data/local/tmp/edgesr"
DELEGATE_FLAGS = {
    "cpu": {"use_xnnpack": "false", "use_gpu": "false", "use_nnapi": "false"},
    "xnnpack": {"use_xnnpack": "true", "use_gpu": "false", "use_nnapi": "false"},
    "gpu": {"use_gpu": "true", "use_nnapi": "false", "use_xnnpack": "false"},
    "nnapi": {"use_nnapi": "true", "use_gpu": "false", "use_xnnpack": "false"},
}


def adb_commands(artifact: str | os.PathLike, benchmark_binary: str | os.PathLike, delegate: str = "xnnpack",
                 serial: str | None = None, threads: int = 1, warmup: int = 5, runs: int = 50,
                 input_shape: tuple[int, ...] | None = None, input_name: str | None = None,
                 local_out: str | os.PathLike = "benchmark_output.txt", op_profile: bool = False) -> list[list[str]]:
    """The argv lists that push ``benchmark_model`` and the model, run it, and pull its log.

    ``input_shape`` (NHWC) is passed as ``--input_layer_shape`` for dynamic-shape graphs (with
    ``--input_layer``); ``op_profile`` adds ``--enable_op_profiling=true`` (per-op tables in the
    log, :func:`parse_op_tables`; the profiler's own overhead is then in the timings). Raises
    EdgesrError for an unknown delegate or bad counts.
    """
    if delegate not in DELEGATE_FLAGS:
        raise EdgesrError(f"unknown delegate {delegate!r}; expected one of {', '.join(DELEGATE_FLAGS)}")
    if threads < 1 or runs < 1 or warmup < 0:
        raise EdgesrError(f"threads and runs must be >= 1 and warm-up >= 0 (got {threads}, {runs}, {warmup})")
    adb = ["adb"] + (["-s", serial] if serial else [])
    model = f"{DEVICE_DIR}/{Path(artifact).name}"
    binary = f"{DEVICE_DIR}/benchmark_model"
    log = f"{DEVICE_DIR}/benchmark_output.txt"
    flags = [f"--graph={model}", f"--num_threads={threads}", f"--warmup_runs={warmup}", f"--num_runs={runs}"]
    flags += ["--enable_op_profiling=true"] if op_profile else []
    flags += [f"--{k}={v}" for k, v in DELEGATE_FLAGS[delegate].items()]
    if input_shape is not None:
        if input_name:
            flags.append(f"--input_layer={input_name}")
        flags.append("--input_layer_shape=" + ",".join(str(int(v)) for v in input_shape))
    return [
        adb + ["shell", "mkdir", "-p", DEVICE_DIR],
        adb + ["push", str(benchmark_binary), binary],
        adb + ["shell", "chmod", "755", binary],
        adb + ["push", str(artifact), model],
        adb + ["shell", " ".join([binary, *flags]) + f" > {log} 2>&1"],
        adb + ["pull", log, str(local_out)],
    ]


def parse_benchmark_output(text: str) -> dict:
    """Parse ``benchmark_model``'s log (tensorflow/lite/tools/benchmark; both per-op table layouts,
    the older one with a ``[start]`` column and the tsl/LiteRT one, see :func:`parse_op_tables`).

    Returns ``{"init_ms", "first_inference_ms", "warmup_avg_ms", "inference_avg_ms",
    "inference": {count, min_ms, max_ms, avg_ms, std_ms, median_ms?}, "memory_mb": {init,
    overall, peak}, "ops": [Run Order row], "ops_by_type": [TFLite's summary-by-type row],
    "op_profile": {...} (:func:`op_profile_table`) or None, "delegate_log": [...]}``; keys
    absent from the log are None (``ops`` empty without ``--enable_op_profiling=true``).
    Times in milliseconds. Raises EdgesrError if the log has no timing line at all.
    """
    import re

    out: dict = {"init_ms": None, "first_inference_ms": None, "warmup_avg_ms": None, "inference_avg_ms": None,
                 "inference": None, "memory_mb": {"init": None, "overall": None, "peak": None}, "ops": [], "ops_by_type": [],
                 "op_profile": None, "delegate_log": []}
    m = re.search(r"Inference timings in us: Init: ([\d.]+), First inference: ([\d.]+), Warmup \(avg\): ([\d.e+]+), Inference \(avg\): ([\d.e+]+)", text)
    if m is None:
        raise EdgesrError("benchmark_model output has no 'Inference timings in us' line (did the run fail?)")
    out["init_ms"], out["first_inference_ms"], out["warmup_avg_ms"], out["inference_avg_ms"] = (float(v) / 1e3 for v in m.groups())
    counts = re.findall(r"^(?:INFO: )?count=(\d+) first=(\d+) curr=(\d+) min=(\d+) max=(\d+) avg=([\d.e+]+) std=(\d+)"
                        r"(?: p5=(\d+) median=(\d+) p95=(\d+))?", text, re.MULTILINE)
    if counts:  # warm-up line first, then the steady-state run (profile summaries say 'Timings')
        c = counts[-1]
        out["inference"] = {"count": int(c[0]), "min_ms": int(c[3]) / 1e3, "max_ms": int(c[4]) / 1e3, "avg_ms": float(c[5]) / 1e3,
                            "std_ms": int(c[6]) / 1e3, "median_ms": int(c[8]) / 1e3 if c[8] else None}
    mm = re.search(r"Memory footprint delta from the start of the tool \(MB\): init=([\d.]+) overall=([\d.]+)", text)
    if mm:
        out["memory_mb"]["init"], out["memory_mb"]["overall"] = float(mm.group(1)), float(mm.group(2))
    mp = re.search(r"peak memory footprint \(MB\)[^:]*: ([\d.]+)", text, re.IGNORECASE)
    ml = re.search(r"^(?:INFO: )?Peak memory footprint \(MB\): init=([\d.]+) overall=([\d.]+)", text, re.MULTILINE)  # older tools
    if mp:
        out["memory_mb"]["peak"] = float(mp.group(1))
    elif ml:
        out["memory_mb"]["peak"] = float(ml.group(2))
    out["delegate_log"] = [ln.split("INFO: ", 1)[-1].strip() for ln in text.splitlines() if "delegate" in ln.lower() and "INFO" in ln]
    tables = parse_op_tables(text)
    regular = [t for t in tables if t["section"] == "regular" and t["subgraph"] == 0]
    out["ops"] = next((t["rows"] for t in regular if t["title"] == "Run Order"), [])
    out["ops_by_type"] = next((t["rows"] for t in regular if t["title"] == "Summary by node type"), [])
    if out["ops"]:
        out["op_profile"] = op_profile_table(out["ops"])
    return out


#: benchmark_model's column headers -> JSON keys (StatsCalculator::HeaderString and GetStatsByNodeType).
OP_COLUMNS = {"[node type]": "node_type", "[Node type]": "node_type", "[start]": "start_ms", "[first]": "first_ms",
              "[avg ms]": "avg_ms", "[%]": "percent", "[avg %]": "percent", "[cdf%]": "cdf_percent", "[cdf %]": "cdf_percent",
              "[mem KB]": "mem_kb", "[times called]": "times_called", "[count]": "count", "[Name]": "name"}


def parse_op_tables(text: str) -> list[dict]:
    """Every per-op table of a ``benchmark_model --enable_op_profiling=true`` log.

    Format (TFLite's ``StatsCalculator``: tensorflow/core/util/stats_calculator.cc, later
    tensorflow/tsl and xla/tsl/util/stats_calculator.cc, driven by tensorflow/lite/profiling/profile_summarizer.cc
    and the benchmark's profiling_listener.cc): a section line ``Profiling Info for Benchmark
    Initialization:`` or ``Operator-wise Profiling Info for Regular Benchmark Runs:`` (with or
    without ``INFO: ``), optionally ``Primary graph profile:`` / ``Subgraph (index: N) profile:`` /
    ``Delegate internal:``, then tables titled ``=== Run Order ===``, ``=== Top by Computation
    Time ===`` and ``=== Summary by node type ===``: a bracketed header row and data rows, every
    cell after a tab, right-aligned, 3 decimals, percentages with ``%``. The header row decides
    the columns, so both layouts parse: the older tensorflow/core one (a ``[start]`` column,
    node type width 24) and the tsl one (no ``[start]``, width 40).

    Returns ``[{"section": "init" | "regular", "subgraph": int | "delegate_internal", "title",
    "rows": [{column key (:data:`OP_COLUMNS`): value}]}]``: ``*_ms`` and percentages float
    (``avg_ms`` is per call: a row called ``times_called`` times per inference costs
    ``avg_ms * times_called``; in the summary by node type, ``avg_ms`` is per inference),
    counts int, ``name`` str. Unknown header cells are kept under their bracketed text.
    """
    tables, section, subgraph, title, keys = [], None, 0, None, None
    for line in text.splitlines():
        bare = line.split("INFO: ", 1)[1] if line.startswith("INFO: ") else line
        if bare.startswith("Profiling Info for Benchmark Initialization:"):
            section, subgraph, title = "init", 0, None
        elif bare.startswith("Operator-wise Profiling Info for Regular Benchmark Runs:"):
            section, subgraph, title = "regular", 0, None
        elif section is None:
            continue
        elif bare.startswith("Primary graph "):
            subgraph = 0
        elif bare.startswith("Subgraph (index: ") and bare.rstrip().endswith(":"):
            subgraph = int(bare.split("index: ", 1)[1].split(")", 1)[0])
        elif bare.startswith("Delegate internal:"):
            subgraph = "delegate_internal"
        elif bare.startswith("=============================="):
            title = bare.strip("= ").strip()
            keys = None
        elif title and line.startswith("\t"):
            cells = [c.strip() for c in line.split("\t")[1:]]
            if keys is None:
                keys = [OP_COLUMNS.get(c, c) for c in cells]
                tables.append({"section": section, "subgraph": subgraph, "title": title, "rows": []})
                continue
            row = {}
            for k, v in zip(keys, cells):
                if k in ("node_type", "name") or k.startswith("["):
                    row[k] = v
                elif k in ("times_called", "count"):
                    row[k] = int(v)
                else:
                    row[k] = float(v.rstrip("%"))
            tables[-1]["rows"].append(row)
        elif not line.strip():
            title, keys = (None, None) if keys is not None else (title, keys)
    return tables


def op_profile_table(ops: list[dict]) -> dict:
    """Which ops dominate one inference: the Run Order rows (:func:`parse_op_tables`) grouped by
    op type.

    Each row's time per inference is ``avg_ms * times_called`` (XNNPACK numbers its operators
    from 0 in every delegate partition, so equal names in several partitions are one row called
    several times). Where the delegate reports its own operators (rows named ``Delegate/...``,
    TFLite >= 2.9.1), rows of the delegate kernel itself (node type ending in ``Delegate``, e.g.
    ``TfLiteXNNPackDelegate``) would count the same time twice and are left out (listed under
    ``"excluded"``).

    Returns ``{"rows": [{"op_type", "count" (executions per inference), "ms" (per inference),
    "percent" (of ``total_ms``), "where" ("delegate" | "builtin")}], "total_ms", "excluded"}``,
    rows sorted by time, largest first.
    """
    delegated = any(o["name"].startswith("Delegate/") for o in ops)
    excluded = [o["name"] for o in ops if delegated and o["node_type"].endswith("Delegate")]
    groups: dict[str, dict] = {}
    for o in ops:
        if o["name"] in excluded:
            continue
        g = groups.setdefault(o["node_type"], {"op_type": o["node_type"], "count": 0, "ms": 0.0,
                                               "where": "delegate" if o["name"].startswith("Delegate/") else "builtin"})
        g["count"] += o["times_called"]
        g["ms"] += o["avg_ms"] * o["times_called"]
    total = sum(g["ms"] for g in groups.values())
    rows = sorted(groups.values(), key=lambda g: -g["ms"])
    for g in rows:
        g["ms"] = round(g["ms"], 6)
        g["percent"] = 100.0 * g["ms"] / total if total else None
    return {"rows": rows, "total_ms": round(total, 6), "excluded": excluded}


def op_profile_lines(table: dict) -> list[str]:
    """``table`` (:func:`op_profile_table`) as aligned text lines for a terminal."""
    out = [f"{'op type':<36} {'count':>5} {'ms':>9} {'%':>7}  where"]
    for r in table["rows"]:
        out.append(f"{r['op_type']:<36} {r['count']:>5} {r['ms']:>9.3f} {r['percent']:>6.2f}%  {r['where']}")
    out.append(f"{'total':<36} {'':>5} {table['total_ms']:>9.3f} {100:>6.2f}%")
    return out


def _runner_scale(path: Path, tin) -> int:
    """The artifact's upscaling factor (its embedded contract, else a 4 x 4 LiteRT probe)."""

    return open_artifact(path, kernels="xnnpack", num_threads=1).contract.scale
