"""Latency of every TFLite zoo export on LiteRT's default XNNPACK delegate, against a measured peak.

Writes ``docs/latency.md``, ``docs/latency.json`` and ``docs/latency.png``. Run from the
repository root:

    python bench/latency.py                          # the configuration stated in docs/latency.md
    python bench/latency.py --models sesr_m5 sesr_m5_relu --repeats 5   # a quick look

For each model (seeded random weights: latency does not depend on the values; int8 ranges are
calibrated on real photo patches so the graph is the one ``edgesr export`` writes) the fp32,
fp16, int8 and w8a16 (int16 activations; XNNPACK takes none of its int16 ops, so it runs on
LiteRT's builtin kernels and its fraction is of the int8 peak) TFLite exports at each scale (x2 -> 1280 x 720 and x4 -> 2560 x 1440; a
configuration that does not exist at a scale is listed as skipped) run on a 640 x 360
real-photo input at 1 and 2 threads. Timing is interleaved: each repeat runs every (precision, threads) case of the model
once, together with the peak microbenchmarks, so a load change on a shared machine hits all
cases alike; the table reports medians. Compare rows only within one run of this script.

Peak (:class:`edgesr.app.profiling._PeakProbe`, the one ``edgesr profile`` uses): the best
single-run MAC/s of XNNPACK itself on two compute-bound graphs, a 1x1 convolution
(a GEMM, 128 -> 128 channels) and a 3x3 convolution (64 -> 64), in fp32 and in int8, on a quarter
of the frame at the same thread count (or fewer threads, when those were faster), measured
interleaved with each model; when an export of the group ran faster in one run, that run is the
peak (named in the table), so the peak is the highest MAC/s observed. ``fraction_of_peak`` divides
a model's MAC/s by the peak of its arithmetic (fp16 exports compute in fp32 on XNNPACK's CPU
path) and thread count; a model can only approach it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from edgesr.converters.export import calibration_patches, deploy_module, export_tflite  # noqa: E402
from edgesr.converters.partitions import xnnpack_partitions  # noqa: E402
from edgesr.converters.runtime import LiteRTModel  # noqa: E402
from edgesr.quantization.integer_ref import quantize_input, read_model  # noqa: E402

from edgesr.app.profiling import _PeakProbe, _photo, tflite_facts  # noqa: E402
from edgesr.core.atomic import write_text_atomic  # noqa: E402
from edgesr.core.errors import EdgesrError  # noqa: E402
from edgesr.core.models import create  # noqa: E402

# Each graph family of the zoo that exports to TFLite, in its published configuration (SplitSR's
# full C=64 configuration is left out: ~0.3 TMAC per 720p frame, seconds per frame on one core).
MODELS = ("sesr_m5", "sesr_m5_relu", "sesr_m11_relu", "sesr_xl_relu", "esr_max_s2_k7_c13", "esr_tm_s2_k7_c16",
          "esr_tr_s2_k7_c13", "esr_cnn_s2_c8_d3_s9", "pkn", "pkn_fixed", "splitsr_s")
PRECISIONS = ("fp32", "fp16", "int8", "w8a16")


def cpu_description() -> dict:
    """CPU model, logical cores and the SIMD extensions XNNPACK can use (from /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), []
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                break
    isa = [f for f in ("sse4_2", "avx", "fma", "f16c", "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                       "avx512_bf16", "amx_int8") if f in flags]
    return {"model": model, "logical_cores": os.cpu_count(), "isa": isa, "machine": platform.machine()}


def export_model(name: str, out_dir: Path, scale: int = 2) -> dict:
    """``{precision: path}`` of the model's TFLite exports at ``scale`` (cached in ``out_dir``).

    Raises:
        EdgesrError: the registry has no such configuration at ``scale``.
    """
    torch.manual_seed(0)
    module = deploy_module(create(name, scale=scale))
    paths = {}
    for precision in PRECISIONS:
        path = out_dir / (f"{name}_{precision}.tflite" if scale == 2 else f"{name}_x{scale}_{precision}.tflite")
        if not path.exists():
            calib = calibration_patches(None, module.contract, patch=48, count=8) if precision in ("int8", "w8a16") else None
            export_tflite(module, path, precision, calib)
        paths[precision] = path
    return paths


class Case:
    """One (artifact, threads) on a LiteRT interpreter with its default XNNPACK delegate."""

    def __init__(self, path: Path, threads: int, h: int, w: int):
        tensors, _, ins, _ = read_model(path)
        self.tin = tensors[ins[0]]
        self.model = LiteRTModel(path, "xnnpack", threads)
        c = self.tin.shape[-1]
        x = _photo(h, w, 1)[:, :1] if c == 1 else np.repeat(_photo(h, w, 1), c, axis=1)[:, :c]
        self.q = quantize_input(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), self.tin)
        self.model.run(self.q)  # allocate, apply the delegate, warm up
        self.times: list[float] = []

    def once(self) -> None:
        t0 = time.perf_counter()
        self.model.run(self.q)
        self.times.append(time.perf_counter() - t0)

    def median_s(self) -> float:
        return float(np.median(self.times))


def bench_models(models: dict, h: int, w: int, threads: tuple, repeats: int) -> list[dict]:
    """Interleaved timing of the models' exports (``{(name, scale): {precision: path}}``) and the
    peak graphs: each repeat runs every case once. One row per (model, scale, precision, threads)."""
    cases = {(n, p, t): Case(path, t, h, w) for n, paths in models.items() for p, path in paths.items() for t in threads}
    ph, pw = max(h // 2, 1), max(w // 2, 1)  # the peak graphs on a quarter of the frame: 4x fewer MACs to wait for
    probes = {(a, t): _PeakProbe(a, ph, pw, t) for a in ("fp32", "int8") for t in threads}
    for _ in range(repeats):
        for item in (*cases.values(), *probes.values()):
            item.once()
    macs = {key: tflite_facts(models[key[0]][key[1]], h, w)["macs"] for key in cases}
    peak, source = {}, {}
    for (a, t), probe in probes.items():  # the highest MAC/s seen in the run, with at most t threads
        seen = {f"{n[0]} x{n[1]} {p} best run": macs[(n, p, u)] / min(c.times) for (n, p, u), c in cases.items()
                if ("int8" if p in ("int8", "w8a16") else "fp32") == a and u <= t}
        peak[(a, t)] = probe.best_macs_per_s(seen)
        source[(a, t)] = probe.source
    for a, t in list(peak):  # t threads can always do what fewer threads do
        peak[(a, t)], source[(a, t)] = max((peak[(b, u)], source[(b, u)]) for (b, u) in peak if b == a and u <= t)
    rows = []
    for ((name, scale), precision, t), case in cases.items():
        path = models[(name, scale)][precision]
        facts = tflite_facts(path, h, w)
        part = xnnpack_partitions(path)
        med = case.median_s()
        arith = "int8" if precision in ("int8", "w8a16") else "fp32"  # w8a16: integer MACs (int16 x int8)
        rate = facts["macs"] / med
        ms = np.asarray(case.times) * 1e3
        rows.append({"model": name, "scale": scale, "precision": precision, "threads": t, "median_ms": med * 1e3,
                     "p10_ms": float(np.percentile(ms, 10)), "p90_ms": float(np.percentile(ms, 90)), "runs": len(ms),
                     "gmacs_per_frame": facts["macs"] / 1e9, "gmac_per_s": rate / 1e9,
                     "peak_gmac_per_s": peak[(arith, t)] / 1e9, "fraction_of_peak": rate / peak[(arith, t)],
                     "peak_source": source[(arith, t)], "partitions": part["partitions"], "ops_outside": part["ops_outside"]})
        rows[-1]["bound"] = bound(rows[-1], first_conv_share(path))
    return rows


def _fmt_outside(ops: list[str]) -> str:
    if not ops:
        return "none"
    counts = {}
    for o in ops:
        counts[o] = counts.get(o, 0) + 1
    return ", ".join(f"{k} x{v}" if v > 1 else k for k, v in counts.items())


def first_conv_share(path: Path) -> float:
    """Share of the graph's conv MACs in convolutions that read a 1-channel tensor (the luma input):
    with one input channel a conv has no input-channel dimension to vectorize a dot product over."""
    tensors, ops, _, _ = read_model(path)
    one, total = 0, 0
    for op in ops:
        if op.name == "CONV_2D":
            w = tensors[op.inputs[1]].shape
            macs = int(np.prod(w))
            total += macs
            one += macs if w[-1] == 1 else 0
    return one / total if total else 0.0


def bound(row: dict, share: float) -> str:
    """What limits a row, by the rules stated in docs/latency.md."""
    if row["partitions"] > 1 or row["ops_outside"]:
        return "graph split: ops on builtin kernels"
    if row["fraction_of_peak"] >= 0.4:
        return "MACs (compute)"
    if share >= 0.5:
        return f"1-channel first conv ({share:.0%} of MACs)"
    return "memory / op overhead"


def write_markdown(rows: list[dict], meta: dict, path: Path) -> None:
    cpu = meta["cpu"]
    load = meta["load_average"]
    lines = [
        "# Latency on LiteRT's XNNPACK delegate (generated by `python bench/latency.py`)",
        "",
        (f"Input {meta['input_w']} x {meta['input_h']} (a real photograph, luma), "
         + ", ".join(f"x{s} -> {s * meta['input_w']} x {s * meta['input_h']}" for s in meta["scales"])
         + f"; LiteRT {meta['litert']} with its default XNNPACK delegate; "
         f"median of {meta['repeats']} runs per case, the cases of "
         f"{'all models' if meta['together'] else 'one model'} interleaved with the peak graphs."),
        "",
        (f"CPU: {cpu['model']} ({cpu['machine']}), {cpu['logical_cores']} logical cores visible; "
         f"ISA: {', '.join(cpu['isa'])}. **This machine was shared with other jobs during the run** (1-minute load "
         f"average {load[0]:.1f} at the start, {load[1]:.1f} at the end, on {cpu['logical_cores']} cores): absolute "
         "numbers are slow and noisy; compare rows measured interleaved (see above) and the fraction of peak "
         "(its peak measured in the same interleaving). On this x86 core int8 has VNNI dot products; phones' ARM "
         "cores with dot-product instructions rank fp32 and int8 their own way."),
        "",
        ("Peak: best single-run MAC/s, with at most the row's thread count, of XNNPACK on a 1x1 convolution "
         "(128 -> 128, a GEMM) and a 3x3 convolution (64 -> 64) on a quarter of the frame, or of any export of the "
         "same arithmetic in the run when one ran faster (then named under *peak set by*); fp32 for the fp32/fp16 "
         "exports (XNNPACK computes fp16-weight graphs in fp32 on x86), int8 for int8 and w8a16 (whose int16 ops "
         "XNNPACK does not take: they run on LiteRT's builtin kernels). A median never exceeds it."),
        "",
        ("Bound (a heuristic, in this order): *graph split* when XNNPACK leaves ops on LiteRT's builtin kernels; "
         "*MACs* when the fraction of peak is >= 0.4; *1-channel first conv* when convolutions reading one channel "
         "hold >= 50 % of the MACs; else *memory / op overhead* (few MACs per byte moved)."),
        "",
        "| model | scale | precision | threads | median ms | p10-p90 ms | GMAC/frame | GMAC/s | peak GMAC/s | fraction of peak | peak set by | XNNPACK partitions | ops outside | bound |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | x{r.get('scale', 2)} | {r['precision']} | {r['threads']} | {r['median_ms']:.1f} | "
                     f"{r['p10_ms']:.1f}-{r['p90_ms']:.1f} | {r['gmacs_per_frame']:.3f} | {r['gmac_per_s']:.1f} | "
                     f"{r['peak_gmac_per_s']:.1f} | {r['fraction_of_peak']:.2f} | {r['peak_source']} | {r['partitions']} | "
                     f"{_fmt_outside(r['ops_outside'])} | {r['bound']} |")
    if meta.get("skipped"):
        lines += ["", "Not in the registry at that scale (skipped): "
                  + "; ".join(f"{m} x{s} ({why})" for m, s, why in meta["skipped"]) + "."]
    lines += ["", "Command: `" + meta["command"] + "`", ""]
    write_text_atomic(path, "\n".join(lines))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys((r["model"], r.get("scale", 2)) for r in rows))
    fig, ax = plt.subplots(figsize=(11, 4.8))
    width = 0.13
    keys = [(p, t) for t in sorted({r["threads"] for r in rows}) for p in PRECISIONS]
    for k, (p, t) in enumerate(keys):
        vals = [next((r["median_ms"] for r in rows if (r["model"], r.get("scale", 2)) == m and r["precision"] == p
                      and r["threads"] == t), np.nan) for m in models]
        ax.bar(np.arange(len(models)) + (k - len(keys) / 2 + 0.5) * width, vals, width, label=f"{p}, {t} thread{'s' if t > 1 else ''}")
    ax.set_yscale("log")
    ax.set_ylabel("median latency (ms, log scale)")
    ax.set_xticks(np.arange(len(models)), [f"{m} x{s}" for m, s in models], rotation=25, ha="right")
    ax.legend(ncol=2, fontsize=8)
    ax.set_title("LiteRT + XNNPACK, 640x360 input (shared machine: compare rows measured interleaved)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    import importlib.metadata

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--size", default="360x640", help="input H x W")
    ap.add_argument("--scales", nargs="+", type=int, default=[2, 4], help="upscaling factors (each model at each)")
    ap.add_argument("--cache", default=str(ROOT / ".bench_cache" / "latency"))
    ap.add_argument("--out", default=str(ROOT / "docs"))
    ap.add_argument("--stem", default="latency", help="output names: OUT/STEM.md, .json, .png")
    ap.add_argument("--together", action="store_true",
                    help="interleave all models' cases in one group (compare across models), not one group per model")
    args = ap.parse_args(argv)
    h, w = (int(v) for v in args.size.split("x"))
    cache, out = Path(args.cache), Path(args.out)
    cache.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()[0]
    rows, skipped = [], []
    groups = [args.models] if args.together else [[m] for m in args.models]
    for group in groups:
        exports = {}
        for m in group:  # each model at every scale, interleaved in one group
            for s in args.scales:
                try:
                    exports[(m, s)] = export_model(m, cache, s)
                except (EdgesrError, ValueError) as exc:
                    skipped.append((m, s, str(exc).splitlines()[0]))
        if not exports:
            continue
        group_rows = bench_models(exports, h, w, tuple(args.threads), args.repeats)
        rows += group_rows
        print(", ".join(f"{r['model']} x{r['scale']} {r['precision']}/{r['threads']}t {r['median_ms']:.1f} ms"
                        for r in group_rows), flush=True)
    meta = {"cpu": cpu_description(), "litert": importlib.metadata.version("ai-edge-litert"), "input_h": h, "input_w": w,
            "load_average": [load_start, os.getloadavg()[0]], "together": args.together, "scales": args.scales,
            "skipped": skipped,
            "repeats": args.repeats, "command": "python bench/latency.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    write_text_atomic(out / f"{args.stem}.json", json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    write_markdown(rows, meta, out / f"{args.stem}.md")
    plot(rows, out / f"{args.stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
