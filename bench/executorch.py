"""ExecuTorch XNNPACK int8 vs TFLite int8 on the model zoo at x2: accuracy drop and latency.

    python bench/executorch.py [--steps N] [--models a,b] [--out DIR] [--doc docs/executorch.md]

For every zoo model (``bench/zoo.py``'s list, plus SESR-M3) at x2: train on T91 for ``--steps``
optimizer steps (:func:`edgesr.core.train.train`, L1, Adam, batch 16, LR patch 32: a short CPU
budget, the same for every model), collapse to the deploy form, then export

* TFLite int8 (:func:`edgesr.converters.export.export_tflite`: edgesr's min/max ranges
  calibrated on the patches, no QAT),
* ExecuTorch fp32 and int8 (:func:`edgesr.converters.export.export_executorch`: XNNPACK,
  PT2E int8 with the XNNPACK quantizer's histogram observers calibrated on the same patches),

all from the same 32 real T91 patches (48 x 48, seed 1). Each artifact is validated by
:func:`edgesr.app.validation.validate_artifact` against the float model on Set5 (the one
evaluation path: BT.601 Y, border crop 2); the int8 drop is the float model's Set5 PSNR minus
the artifact's. Latency: the two int8 programs on a 320 x 180 luma input (640 x 360 out),
2 threads each (LiteRT ``num_threads``, ExecuTorch's threadpool reset to 2), measured in
the same process and interleaved (TFLite, ExecuTorch, TFLite, ...) so a load change on the
machine hits both; the median of ``--repeats`` runs each after one warm-up. A model whose
export fails gets the exporter's one-line reason in the table.

Results accumulate in ``OUT/results.json`` (a rerun skips finished models); the Markdown
table goes to ``--doc`` (between its ``bench/executorch.py`` begin/end markers when the page
has them, so the hand-written parts stay).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# this file is named like the package it benchmarks: keep bench/ off the import path so
# ``import executorch`` finds ExecuTorch, and load bench/zoo.py's model list by file path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))


def _zoo_list():
    import importlib.util

    spec = importlib.util.spec_from_file_location("edgesr_bench_zoo", ROOT / "bench" / "zoo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ZOO


from edgesr.app.validation import reference_run, validate_artifact  # noqa: E402
from edgesr.converters.export import export_executorch, export_tflite  # noqa: E402
from edgesr.converters.lint import lint  # noqa: E402
from edgesr.core.checkpoint import load_checkpoint  # noqa: E402
from edgesr.core.data import SHARED_DATA, benchmark_set, load_folder  # noqa: E402
from edgesr.core.errors import EdgesrError  # noqa: E402
from edgesr.core.evaluate import calibration_patches  # noqa: E402
from edgesr.core.train import TrainConfig, train  # noqa: E402

SCALE = 2
MODELS = sorted([("SESR-M3", "sesr_m3")] + [(label, fn(SCALE)) for label, fn in _zoo_list() if fn(SCALE) != "bicubic"],
                key=lambda m: m[1] == "splitsr")  # the paper's SplitSR (the heaviest on a CPU) last


def _reason(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:160]


def interleaved_latency_ms(upscalers: dict, x: np.ndarray, repeats: int) -> dict:
    """Median wall time (ms) of each Upscaler on ``x``, runs interleaved across them."""
    for up in upscalers.values():
        up(x)  # allocate and warm up
    times = {k: [] for k in upscalers}
    for _ in range(repeats):
        for k, up in upscalers.items():
            t0 = time.perf_counter()
            up(x)
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def run_model(label: str, name: str, args, calib, set5, run_dir: Path) -> dict:
    from edgesr.app.artifacts import load_upscaler

    cfg = TrainConfig(model=name, scale=SCALE, data=str(args.data_root / "T91" / "HR"), out=str(run_dir),
                      steps=args.steps, batch=16, lr_patch=32, seed=0, val_every=0, checkpoint_every=10**9,
                      device="cpu", resume=True, progress=False)
    t0 = time.perf_counter()
    model, _ = load_checkpoint(train(cfg), deploy=True)
    row = {"label": label, "model": name, "scale": SCALE, "steps": args.steps, "train_s": time.perf_counter() - t0}
    ref = reference_run(model, {"Set5": set5})
    row["float_set5_psnr"] = ref.eval["Set5"]["psnr_y"]
    arts = {}
    for key, export in (("tflite_int8", lambda p: export_tflite(model, p, "int8", calib, "int8")),
                        ("executorch_fp32", lambda p: export_executorch(model, p, "fp32")),
                        ("executorch_int8", lambda p: export_executorch(model, p, "int8", calib))):
        path = run_dir / f"{name}_x{SCALE}_{key}{'.tflite' if key.startswith('tflite') else '.pte'}"
        try:
            t0 = time.perf_counter()
            art = export(path)
            export_s = time.perf_counter() - t0
            v = validate_artifact(art["path"], ref, ref.sets, _precision(key))
            row[key] = {"bytes": art["bytes"], "export_s": export_s, "max_abs_err": v["max_abs_err"],
                        "set5_psnr": v["eval"]["Set5"]["psnr_y"], "drop_db": row["float_set5_psnr"] - v["eval"]["Set5"]["psnr_y"],
                        "passed": v["passed"]}
            if key.startswith("executorch"):
                row[key]["lint"] = [f"{f.severity}: {f.message}" for f in lint(art["path"], "executorch-xnnpack")]
            arts[key] = art["path"]
        except EdgesrError as exc:
            row[key] = {"error": _reason(exc)}
    if "tflite_int8" in arts and "executorch_int8" in arts:
        ups = {"tflite_int8": load_upscaler(arts["tflite_int8"], num_threads=args.threads),
               "executorch_int8": load_upscaler(arts["executorch_int8"], num_threads=args.threads)}
        x = np.random.default_rng(0).random((1, 1, 180, 320), dtype=np.float32)
        row["latency_ms"] = interleaved_latency_ms(ups, x, args.repeats)
    return row


def export_check(label: str, name: str, calib, image, run_dir: Path) -> dict:
    """``--export-only``: untrained x2 weights exported to ExecuTorch fp32 and int8 (no training,
    no TFLite): does it lower, what stays outside the delegate, and the fp32 program's max abs
    error vs PyTorch on one real photograph crop (``image``: uint8 HR, the model's input space)."""
    from edgesr.app.artifacts import load_upscaler
    from edgesr.converters.export import deploy_module
    from edgesr.core.evaluate import model_input
    from edgesr.core.imresize import make_lr
    from edgesr.core.models import create

    torch_module = deploy_module(create(name, scale=SCALE))
    x = model_input(make_lr(image, SCALE), torch_module.contract)
    row = {"label": label, "model": name, "scale": SCALE, "export_only": True}
    run_dir.mkdir(parents=True, exist_ok=True)
    for prec in ("fp32", "int8"):
        key = f"executorch_{prec}"
        try:
            t0 = time.perf_counter()
            art = export_executorch(torch_module, run_dir / f"{name}_x{SCALE}_{prec}.pte", prec, calib)
            row[key] = {"bytes": art["bytes"], "export_s": time.perf_counter() - t0,
                        "lint": [f"{f.severity}: {f.message}" for f in lint(art["path"], "executorch-xnnpack")]}
            if prec == "fp32":
                import torch

                with torch.no_grad():
                    ref = torch_module(torch.from_numpy(x)).numpy()
                row[key]["max_abs_err"] = float(np.abs(load_upscaler(art["path"])(x) - ref).max())
        except EdgesrError as exc:
            row[key] = {"error": _reason(exc)}
    return row


def _precision(key: str) -> str:
    """The precision of an artifact key (``executorch_int8`` -> ``int8``)."""
    return key.rsplit("_", 1)[1]


BEGIN, END = "<!-- bench/executorch.py: begin -->", "<!-- bench/executorch.py: end -->"


def _fmt(v, spec=".2f", none="-"):
    return none if v is None else format(v, spec)


def write_doc(rows: list[dict], args, path: Path) -> None:
    lines = [
        "## ExecuTorch (XNNPACK) int8 vs TFLite int8 on the zoo",
        "",
        "Generated by `" + args.command + "` (bench/executorch.py; the module docstring says exactly what "
        "runs). Every zoo model at x2, trained on T91 for "
        f"{args.steps} steps on the CPU (a short budget, the same for every model: absolute PSNRs are "
        "below the published ones; the int8 *drops* are what this table compares). int8 drop = Set5 PSNR (Y) "
        "of the float PyTorch model minus the artifact's, through the one evaluation path. Both int8 "
        "paths are post-training and calibrated on the same 32 real T91 patches: TFLite with edgesr's "
        "min/max ranges, ExecuTorch with PT2E (torchao's XNNPACK quantizer, histogram observers). "
        "Latency: 320x180 luma in, 2 threads each, same process, interleaved, median of "
        f"{args.repeats} runs.",
        "",
        f"Machine: {platform.machine()} CPU, 2 cores shared with other jobs while this ran (load "
        "average above the core count): read the latencies as ratios within one row, not as absolute "
        "phone numbers.",
        "",
        "| model | float Set5 | TFLite int8 drop (dB) | ExecuTorch int8 drop (dB) | ExecuTorch fp32 max abs err | "
        "TFLite int8 ms | ExecuTorch int8 ms | ET/TFLite | .pte int8 bytes | outside the delegate |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes, checks = [], [r for r in rows if r.get("export_only")]
    rows = [r for r in rows if not r.get("export_only")]
    for r in rows:
        t, e32, e8 = r.get("tflite_int8", {}), r.get("executorch_fp32", {}), r.get("executorch_int8", {})
        lat = r.get("latency_ms", {})
        ratio = lat["executorch_int8"] / lat["tflite_int8"] if lat else None
        outside = "; ".join(m for m in e8.get("lint", []) if not m.startswith("info")) or (
            "nothing (shape ops only)" if "lint" in e8 else "-")
        lines.append(f"| {r['label']} | {_fmt(r['float_set5_psnr'])} | {_fmt(t.get('drop_db'), '.3f', t.get('error') and 'fails')} | "
                     f"{_fmt(e8.get('drop_db'), '.3f', e8.get('error') and 'fails')} | {_fmt(e32.get('max_abs_err'), '.1e', e32.get('error') and 'fails')} | "
                     f"{_fmt(lat.get('tflite_int8'), '.1f')} | {_fmt(lat.get('executorch_int8'), '.1f')} | {_fmt(ratio)} | "
                     f"{e8.get('bytes', '-')} | {outside} |")
        for key in ("tflite_int8", "executorch_fp32", "executorch_int8"):
            if "error" in r.get(key, {}):
                notes.append(f"- {r['label']}, {key}: {r[key]['error']}")
    if checks:
        lines += ["", "Export check (``--export-only``: untrained weights, no training, no TFLite; fp32 max abs "
                  "error vs PyTorch on one real photograph):", "",
                  "| model | .pte fp32 | fp32 max abs err | .pte int8 | outside the delegate (int8) |", "|---|---|---|---|---|"]
        for r in checks:
            e32, e8 = r.get("executorch_fp32", {}), r.get("executorch_int8", {})
            outside = "; ".join(m for m in e8.get("lint", []) if not m.startswith("info")) or (
                "nothing (shape ops only)" if "lint" in e8 else "-")
            lines.append(f"| {r['label']} | {'fails' if 'error' in e32 else str(e32.get('bytes')) + ' B'} | "
                         f"{_fmt(e32.get('max_abs_err'), '.1e')} | {'fails' if 'error' in e8 else str(e8.get('bytes')) + ' B'} | {outside} |")
            for key in ("executorch_fp32", "executorch_int8"):
                if "error" in r.get(key, {}):
                    notes.append(f"- {r['label']}, {key}: {r[key]['error']}")
    if notes:
        lines += ["", "Exports that failed, with the exporter's reason:", "", *notes]
    table = "\n".join([BEGIN, *lines, END])
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if BEGIN in text and END in text:  # keep the hand-written parts of the page
        text = text[: text.index(BEGIN)] + table + text[text.index(END) + len(END):]
    else:
        text = table + "\n"
    path.write_text(text, encoding="utf-8")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=300, help="training steps per model (default 300)")
    p.add_argument("--models", default=None, help="comma list of registry names (default: the zoo at x2)")
    p.add_argument("--data-root", type=Path, default=Path(SHARED_DATA))
    p.add_argument("--out", type=Path, default=Path("runs/bench_executorch"))
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "executorch.md")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--export-only", action="store_true",
                   help="no training, no TFLite: check that each model's untrained weights export to ExecuTorch")
    args = p.parse_args(argv)
    args.command = "python bench/executorch.py " + " ".join(argv if argv is not None else sys.argv[1:])
    models = MODELS if args.models is None else [(n, n) for n in args.models.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    train_imgs = load_folder(args.data_root / "T91" / "HR")
    set5 = benchmark_set(args.data_root, "Set5")
    for label, name in models:
        if name in results:
            continue
        print(f"[bench] {label} ({name}) x{SCALE}", flush=True)
        from edgesr.core.models import create

        calib = calibration_patches(train_imgs, create(name, scale=SCALE).contract, patch=48, count=32, seed=1)
        if args.export_only:
            results[name] = export_check(label, name, calib, set5[0][1], args.out / f"{name}_x{SCALE}")
        else:
            results[name] = run_model(label, name, args, calib, set5, args.out / f"{name}_x{SCALE}")
        results_path.write_text(json.dumps(results, indent=2, default=float) + "\n")
        print(json.dumps(results[name], default=float)[:600], flush=True)
        write_doc([results[n] for _, n in models if n in results], args, args.doc)  # after each model
    write_doc([results[n] for _, n in models if n in results], args, args.doc)
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
