"""Model-zoo benchmark: train every zoo model at x2 and x4 on T91 for the same budget, score
it on Set5/Set14/B100/Urban100 through the one evaluation path, profile TFLite fp32/int8
latency, and write ``docs/zoo.md`` plus a Pareto plot.

    python bench/zoo.py [--minutes-per-model M] [--device cpu|cuda] [--models a,b] [--scales 2,4]

Training is :func:`edgesr.core.train.train` (L1, Adam, cosine schedule, batch 16, LR patch 32):
the number of steps is set from a timed probe of three training steps so that every model
gets ``M`` minutes of optimizer steps. Evaluation loads the final checkpoint in its deploy
form. TFLite: :func:`edgesr.converters.tflite.convert` (fp32; int8 calibrated on 32 real T91
patches) run by LiteRT with 2 threads on a 640x360 input (median of repeated runs); the
int8 drop is Set5 PSNR of the int8 model minus that of the PyTorch float model. A model the
converter cannot export gets the converter's one-line reason in the table. On CPU, models
above ``--heavy-gmacs`` per 720p frame are scored on Set5/Set14 only and not profiled.

Results accumulate in ``OUT/results.json`` (a rerun skips finished entries).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgesr.core.data import (  # noqa: E402
    BENCHMARK_SETS,
    SHARED_DATA,
    PatchDataset,
    benchmark_set,
    eval_pairs,
    load_folder,
)
from edgesr.core.errors import EdgesrError  # noqa: E402

#: Zoo entries: (label, registry name per scale). eSR uses the authors' per-scale ids.
ZOO = [
    ("eSR-MAX K7 C13", lambda s: f"eSR-MAX_s{s}_K7_C13"),
    ("eSR-TM K7 C16", lambda s: f"eSR-TM_s{s}_K7_C16"),
    ("eSR-TR K7 C13", lambda s: f"eSR-TR_s{s}_K7_C13"),
    ("eSR-CNN C8 D3 S9", lambda s: f"eSR-CNN_s{s}_C8_D3_S9"),
    ("SplitSR-S", lambda s: "splitsr_s"),
    ("SplitSR (paper)", lambda s: "splitsr"),
    ("PKN", lambda s: "pkn"),
    ("PKN fixed kernel", lambda s: "pkn_fixed"),
    ("SESR-M5 (reference)", lambda s: "sesr_m5"),
    ("Bicubic (no weights)", lambda s: "bicubic"),
]

#: Authors' published PSNR (Y) for configurations whose numbers we hold: (registry name, scale) -> {set: dB}.
PUBLISHED = {("eSR-MAX_s2_K7_C13", 2): {"Set5": 34.94, "Set14": 31.17, "B100": 30.40, "Urban100": 27.70}}


MODEL_NOTES = [
    "- **eSR** (`edgesr/models/esr.py`; Navarrete Michelini et al., WACV 2022): one K x K conv to s*s*C "
    "(x2 for TM, x3 for TR) channels, depth-to-space, then a per-pixel max (MAX) or softmax-weighted sum "
    "(TM, TR, CNN) over the C channels. Full-range luma in and out (`luma_full`), clipped.",
    "- **SplitSR** (`edgesr/models/splitsr.py`; Liu et al., IMWUT 2021): alpha = 0.25 split convolutions with "
    "channel rotation and block residuals, residual groups, standard residual blocks from the hybrid index on, "
    "conv + depth-to-space upsampling; BatchNorm folded by `collapse()`. Paper configuration C=64, 6x6 blocks, "
    "hybrid index 3; SplitSR-S: C=32, 2x4 blocks, hybrid index 1.",
    "- **PKN** (`edgesr/models/pkn.py`; Wronski, arXiv 2112.09318): a 4-layer 16-wide CNN at LR predicts per-pixel "
    "parameters of an anisotropic Gaussian kernel (Cholesky factor of its precision: orientation and two scales) "
    "and a detail gain; the kernel regresses each HR pixel from a 5x5 LR footprint (weights sum to 1). "
    "`pkn_fixed` is the same kernel with one fitted global parameter set (what the network adds is the "
    "difference between the two rows). MACs include the declared kernel-regression multiply-adds.",
    "- **SESR-M5** is the existing reference (`edgesr/models/sesr.py`), trained with the same budget.",
]


def probe_seconds_per_step(name: str, scale: int, images, device: str, batch: int, lr_patch: int) -> float:
    """Wall time of one training step (median of 3 after a warm-up), the trainer's recipe."""
    import torch.nn.functional as F

    from edgesr.core.models import create
    from edgesr.core.train import make_lr_batch

    model = create(name, scale=scale).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    ds = PatchDataset(images[:8], lr_patch * scale, color=model.contract.color)
    rng = np.random.default_rng(0)
    times = []
    for i in range(4):
        t0 = time.perf_counter()
        hr = ds.sample(batch, rng).to(device)
        loss = F.l1_loss(model(make_lr_batch(hr, scale)), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def latency_ms(path: Path, contract, threads: int, budget_s: float = 4.0) -> float:
    """Median LiteRT latency (ms) of a 640x360 input, ``threads`` threads, >= 3 runs."""
    from edgesr.converters.runtime import TFLiteUpscaler

    up = TFLiteUpscaler(path, contract, num_threads=threads)
    x = np.random.default_rng(0).random((1, 1, 360, 640), dtype=np.float32)
    up(x)  # allocate and warm up
    times, t_start = [], time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - t_start < budget_s and len(times) < 20):
        t0 = time.perf_counter()
        up(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run_entry(label, name, scale, args, train_images, pairs, out_dir) -> dict:
    from edgesr.core.checkpoint import load_checkpoint
    from edgesr.core.complexity import model_info
    from edgesr.core.evaluate import TorchUpscaler, evaluate
    from edgesr.core.models import create
    from edgesr.core.train import TrainConfig, train

    info = model_info(create(name, scale=scale))
    row = {"label": label, "model": name, "scale": scale, "params": info["params"],
           "params_deploy": info["params_deploy"], "gmacs_720p": info["macs_per_frame_720p"] / 1e9,
           "budget_min": args.minutes_per_model, "device": args.device, "command": args.command}
    run_dir = out_dir / f"{name}_x{scale}"
    if not any(p.requires_grad for p in create(name, scale=scale).parameters()):  # bicubic: nothing to train
        up = TorchUpscaler(create(name, scale=scale))
        row.update(steps=0, train_s=0.0, heavy=False, tflite="not exported (not a network)")
        row["sets"] = {k: {m: v for m, v in evaluate(up, p).items() if m != "images"} for k, p in pairs.items()}
        return row
    budget = args.minutes_per_model * 60.0
    step_s = probe_seconds_per_step(name, scale, train_images, args.device, args.batch, args.lr_patch)
    steps = max(1, int(budget / step_s))
    cfg = TrainConfig(model=name, scale=scale, data=str(args.data_root / "T91" / "HR"), out=str(run_dir), steps=steps,
                      batch=args.batch, lr_patch=args.lr_patch, lr=args.lr, seed=0, val_every=0,
                      checkpoint_every=10**9, device=args.device, resume=False, progress=False)
    t0 = time.perf_counter()
    ckpt = train(cfg)
    row.update(steps=steps, train_s=time.perf_counter() - t0)
    model, _ = load_checkpoint(ckpt, deploy=True)
    heavy = args.device == "cpu" and row["gmacs_720p"] > args.heavy_gmacs
    row["heavy"] = heavy
    up = TorchUpscaler(model, device=args.device)
    row["sets"] = {}
    for set_name, set_pairs in pairs.items():
        if heavy and set_name not in ("Set5", "Set14"):
            continue
        res = evaluate(up, set_pairs)
        row["sets"][set_name] = {"psnr_y": res["psnr_y"], "ssim_y": res["ssim_y"]}
    if args.no_tflite or heavy:
        row["tflite"] = "skipped (heavy on CPU)" if heavy else "skipped (--no-tflite)"
        return row
    row["tflite"] = profile_tflite(model, row, args, train_images, pairs, run_dir, ckpt)
    return row


def recipe_int8_psnr(ckpt: Path, args, run_dir: Path, set5) -> float:
    """Set5 PSNR of the int8 TFLite model after ``edgesr quantize --recipe default --qat-steps N``
    on T91 (the default recipe, with N steps of LSQ QAT: what ``edgesr run`` ships), exported at
    the quantized checkpoint's own ranges."""
    from edgesr.converters.export import export_tflite
    from edgesr.converters.runtime import TFLiteUpscaler
    from edgesr.quantization.api import quantize_checkpoint, read_quantized

    from edgesr.core.evaluate import evaluate

    q = quantize_checkpoint(ckpt, args.data_root / "T91" / "HR", "minmax", args.qat_steps, run_dir / "int8_recipe.pt",
                            data_root=str(args.data_root), sets=["Set5"], recipe="default", w8a16=False)
    quantized = read_quantized(q["out"])  # as `edgesr export int8_recipe.pt` reads it: its own ranges
    path = export_tflite(quantized, run_dir / "model_int8_recipe.tflite", "int8")["path"]
    return evaluate(TFLiteUpscaler(path, quantized.module.contract, num_threads=args.threads), set5)["psnr_y"]


def profile_tflite(model, row: dict, args, train_images, pairs, run_dir: Path, ckpt: Path | None = None) -> dict | str:
    """fp32 and int8 TFLite of a deploy model: latency, the int8 Set5 drop vs ``row``'s float PSNR
    (post-training min/max calibration), and with ``args.qat_steps`` and ``ckpt`` the drop after
    the default recipe (:func:`recipe_int8_psnr`)."""
    from edgesr.core.evaluate import evaluate

    model = model.cpu().eval()
    try:
        from edgesr.converters import tflite
        from edgesr.converters.runtime import TFLiteUpscaler
    except ImportError as exc:
        return f"converters unavailable ({exc})"
    out = {}
    from edgesr.core.evaluate import calibration_patches

    calib = calibration_patches(train_images, model.contract, patch=48, count=32, seed=1)
    for prec in ("fp32", "int8"):
        try:
            data = tflite.convert(model, 1, prec, calibration=calib if prec == "int8" else None)
            path = tflite.save(data, run_dir / f"model_{prec}.tflite")
            entry = {"latency_ms": latency_ms(path, model.contract, args.threads)}
            if prec == "int8" and "Set5" in pairs:
                res = evaluate(TFLiteUpscaler(path, model.contract, num_threads=args.threads), pairs["Set5"])
                entry["set5_psnr_drop"] = row["sets"]["Set5"]["psnr_y"] - res["psnr_y"]
                if getattr(args, "qat_steps", 0) > 0 and ckpt is not None and row.get("gmacs_720p", 0.0) > args.recipe_max_gmacs:
                    entry["recipe"] = (f"recipe not run: {row.get('gmacs_720p', 0.0):.0f} GMACs per 720p frame, above "
                                       f"--recipe-max-gmacs {args.recipe_max_gmacs:g} (AdaRound and QAT take hours on CPU)")
                elif getattr(args, "qat_steps", 0) > 0 and ckpt is not None:
                    entry["qat_steps"] = args.qat_steps
                    try:
                        entry["set5_psnr_drop_recipe"] = (row["sets"]["Set5"]["psnr_y"]
                                                          - recipe_int8_psnr(ckpt, args, run_dir, pairs["Set5"]))
                    except (EdgesrError, RuntimeError, ValueError) as exc:
                        entry["recipe"] = f"int8 recipe failed: {str(exc).splitlines()[0][:140]}"
            out[prec] = entry
        except (EdgesrError, RuntimeError, ValueError) as exc:
            out[prec] = f"export failed: {str(exc).splitlines()[0][:140]}"
    return out


def reprofile(results: dict, args, train_images, pairs_of, scales, wanted) -> None:
    """Redo the TFLite stage of stored entries from their checkpoints (after a converter change)."""
    from edgesr.core.checkpoint import load_checkpoint

    for key, row in results.items():
        if row["scale"] not in scales or row.get("heavy") or not row.get("steps"):
            continue
        if wanted is not None and row["label"] not in wanted and row["model"] not in wanted:
            continue
        run_dir = args.out / f"{row['model']}_x{row['scale']}"
        print(f"[zoo] re-profile {row['label']} x{row['scale']}", flush=True)
        model, _ = load_checkpoint(run_dir / "checkpoints" / "last.pt", deploy=True)
        row["tflite"] = profile_tflite(model, row, args, train_images, pairs_of(row["scale"]), run_dir,
                                       run_dir / "checkpoints" / "last.pt")
        row["reprofiled"] = True
        row["reprofile_command"] = args.command
        (args.out / "results.json").write_text(json.dumps(results, indent=1))


def steps_range(rows: list[dict]) -> str:
    steps = [r["steps"] for r in rows if r.get("steps")]
    return f"{min(steps)}-{max(steps)}" if steps else "no"


def _fmt(v, spec=".2f", none="—"):
    return none if v is None else format(v, spec)


def _rel(path: Path) -> str:
    """``path`` relative to the repository root when inside it (for the generated doc)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def write_markdown(rows: list[dict], imported: dict | None, args, path: Path, plot_name: str | None) -> None:
    sets = [s for s in BENCHMARK_SETS if any(s in r["sets"] for r in rows)]
    trained = [r for r in rows if r.get("steps")]
    commands = list(dict.fromkeys([r.get("command", args.command) for r in trained]
                                  + [r["reprofile_command"] for r in trained if r.get("reprofile_command")]))
    budgets = " / ".join(f"{b:g}" for b in sorted({r.get("budget_min", args.minutes_per_model) for r in trained}))
    devices = " / ".join(sorted({r.get("device", args.device) for r in trained}))
    bicubic = {r["scale"]: r["sets"]["Set5"]["psnr_y"] for r in rows if r["model"] == "bicubic" and "Set5" in r["sets"]}
    below = sum(1 for r in trained if "Set5" in r["sets"] and r["sets"]["Set5"]["psnr_y"] < bicubic.get(r["scale"], -1))
    lines = [
        "# Model zoo benchmark",
        "",
        "Generated by " + ", then ".join(f"`{c}`" for c in commands) + " (do not edit by hand; results accumulate "
        f"in `{_rel(args.out)}/results.json`, each row recording the command that trained it and, if re-measured, the one "
        "that re-profiled it).",
        "",
        f"Budget: **{budgets} min of training per model and scale** on `{devices}` "
        f"({torch.get_num_threads()} threads; batch {args.batch}, LR patch {args.lr_patch}, Adam lr {args.lr:g}, L1, "
        f"T91), the same for every model: {steps_range(rows)} optimizer steps per model here (steps column), "
        "from a timed probe. That is far from the papers' training (hundreds of thousands of steps), so our PSNR "
        f"is below theirs ({below} of {len(trained)} trained rows score below bicubic on Set5); compare models with "
        "each other only at equal budget, and read the authors' imported weights below for what eSR reaches trained.",
        "",
        "PSNR/SSIM on Y (BT.601) with MATLAB-bicubic LR and a border crop of `scale` pixels, through "
        "`edgesr.core.evaluate` (the one evaluation path). MACs per 1280x720 output frame (deploy form, convs plus "
        "declared extra multiply-adds). Latency: LiteRT, 2 threads, 640x360 input, median (a 2-core machine: "
        "when other jobs share it, repeated runs differ by up to 2-3x, so only large gaps mean anything); int8 drop: Set5 PSNR "
        "of the PyTorch float model minus the int8 TFLite model, after post-training min/max calibration (PTQ) and, "
        "where measured, after the default int8 recipe with `--qat-steps` steps of LSQ QAT (`edgesr quantize "
        "--recipe default`, what `edgesr run` ships; its int8 output is compared with the float model before the "
        "recipe; docs/quant.md breaks it down by technique). `—`: not measured (see notes; rows measured before the "
        "recipe, whose QAT column was plain QAT from min/max, are not shown).",
        "",
        "| model | scale | steps | params | MACs/720p (G) | " + " | ".join(f"{s} PSNR/SSIM" for s in sets)
        + " | published (PSNR) | int8 drop PTQ (dB) | int8 drop, recipe (dB) | fp32 ms | int8 ms |",
        "|---|---|---|---|---|" + "---|" * len(sets) + "---|---|---|---|---|",
    ]
    notes = []
    for r in rows:
        cells = []
        for s in sets:
            m = r["sets"].get(s)
            cells.append(f"{m['psnr_y']:.2f} / {m['ssim_y']:.4f}" if m else "—")
        pub = PUBLISHED.get((r["model"], r["scale"]))
        pub_s = ", ".join(f"{k} {v:.2f}" for k, v in pub.items()) if pub else "—"
        tfl = r.get("tflite")
        fp32 = int8 = drop = drop_recipe = None
        if isinstance(tfl, dict):
            if isinstance(tfl.get("fp32"), dict):
                fp32 = tfl["fp32"]["latency_ms"]
            if isinstance(tfl.get("int8"), dict):
                int8, drop = tfl["int8"]["latency_ms"], tfl["int8"].get("set5_psnr_drop")
                drop_recipe = tfl["int8"].get("set5_psnr_drop_recipe")
                if "recipe" in tfl["int8"]:  # why the recipe column is empty
                    notes.append(f"- {r['label']} x{r['scale']}: {tfl['int8']['recipe']}")
            failed = {prec: v for prec, v in tfl.items() if isinstance(v, str)}
            for reason in dict.fromkeys(failed.values()):
                precs = " and ".join(p for p, v in failed.items() if v == reason)
                notes.append(f"- {r['label']} x{r['scale']}, TFLite {precs}: {reason}")
        elif isinstance(tfl, str):
            notes.append(f"- {r['label']} x{r['scale']}: TFLite {tfl}")
        if r.get("heavy"):
            notes.append(f"- {r['label']} x{r['scale']}: {r['gmacs_720p']:.0f} GMACs/720p; on CPU scored on Set5/Set14 only.")
        lines.append(f"| {r['label']} (`{r['model']}`) | x{r['scale']} | {r['steps']} | {r['params']:,} | "
                     f"{r['gmacs_720p']:.2f} | " + " | ".join(cells)
                     + f" | {pub_s} | {_fmt(drop, '.3f')} | {_fmt(drop_recipe, '.3f')} | {_fmt(fp32, '.1f')} | {_fmt(int8, '.1f')} |")
    negative = [f"{r['label']} x{r['scale']}" for r in rows if isinstance(r.get("tflite"), dict)
                and isinstance(r["tflite"].get("int8"), dict) and r["tflite"]["int8"].get("set5_psnr_drop_recipe", 0.0) < 0]
    if negative:
        notes.insert(0, f"- A negative recipe drop ({', '.join(negative)}): the int8 model scores above the float model "
                        "it was quantized from. The recipe's QAT fits the HR photos, so on these briefly trained models "
                        "it is also further training, not only quantization repair; `python bench/qat_control.py "
                        "RUN_DIR` (docs/qat_control.md) puts the float model fine-tuned the same way beside it.")
    if any(r.get("reprofiled") for r in rows):
        notes.insert(0, "- The TFLite columns of " + ", ".join(sorted({f"{r['label']} x{r['scale']}" for r in rows if r.get("reprofiled")}))
                     + " were re-measured from the same checkpoints with `--reprofile` (the commands above; each "
                       "row of results.json records the one that re-profiled it).")
    if notes:
        lines += ["", "Notes:", ""] + sorted(set(notes), key=notes.index)
    lines += ["", "## The models", ""] + MODEL_NOTES
    if imported:
        lines += ["", "## The authors' published weights, imported", "",
                  f"`edgesr.core.importers.import_esr` on `{imported['file']}` (`edgesr import-weights esr FILE --out CKPT`), "
                  "scored by the standard protocol above (the authors feed full-range luma; the contract says "
                  "`luma_full` and the evaluation converts). The authors' own evaluation differs slightly (their "
                  "fixed bicubic model also scores ~0.07 dB lower on Set5 x2 under this protocol than they publish).",
                  "", "| set | measured PSNR / SSIM | published PSNR | difference (dB) |", "|---|---|---|---|"]
        for s, m in imported["sets"].items():
            pub = PUBLISHED[(imported["model"], 2)].get(s)
            lines.append(f"| {s} | {m['psnr_y']:.2f} / {m['ssim_y']:.4f} | {_fmt(pub)} | "
                         f"{_fmt(None if pub is None else m['psnr_y'] - pub, '+.2f')} |")
        int8 = imported.get("tflite", {}).get("int8") if isinstance(imported.get("tflite"), dict) else None
        if isinstance(int8, dict) and "set5_psnr_drop" in int8:
            lines += ["", f"Its int8 TFLite export (the same converter and calibration as the table) loses "
                          f"**{int8['set5_psnr_drop']:.2f} dB** on Set5 (fp32 {imported['tflite']['fp32']['latency_ms']:.1f} ms, "
                          f"int8 {int8['latency_ms']:.1f} ms); "
                          + (f"after the default recipe on T91 (`edgesr quantize --recipe default --qat-steps "
                             f"{int8['qat_steps']}`) it loses {int8['set5_psnr_drop_recipe']:.2f} dB."
                             if "set5_psnr_drop_recipe" in int8 else
                             "the authors' fp32 weights were not trained for int8; `edgesr quantize --qat-steps N` "
                             "fine-tunes them for it.")]
    if plot_name:
        lines += ["", f"![Pareto: PSNR vs MACs and latency]({plot_name})"]
    path.write_text("\n".join(lines) + "\n")


def _frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Pareto frontier (lower cost, higher PSNR) of (cost, psnr) points, sorted by cost."""
    best, out = -math.inf, []
    for c, p in sorted(points, key=lambda cp: (cp[0], -cp[1])):
        if p > best:
            out.append((c, p))
            best = p
    return out


def write_plot(rows: list[dict], path: Path) -> None:
    """Set5 PSNR vs MACs/720p (log) and vs TFLite fp32 latency, x2 blue, x4 red, Pareto fronts as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for scale, color in ((2, "tab:blue"), (3, "tab:green"), (4, "tab:red")):
        sel = [r for r in rows if r["scale"] == scale and "Set5" in r["sets"]]
        if not sel:
            continue
        for ax, cost_of in ((axes[0], lambda r: r["gmacs_720p"]), (axes[1], _fp32_latency)):
            pts = [(cost_of(r), r["sets"]["Set5"]["psnr_y"], r["label"]) for r in sel if cost_of(r) is not None]
            if not pts:
                continue
            ax.scatter([c for c, _, _ in pts], [p for _, p, _ in pts], color=color, label=f"x{scale}")
            for c, p, label in pts:
                ax.annotate(label, (c, p), fontsize=7, xytext=(3, 3), textcoords="offset points")
            front = _frontier([(c, p) for c, p, _ in pts])
            ax.plot([c for c, _ in front], [p for _, p in front], color=color, linewidth=1, alpha=0.6)
    axes[0].set_xscale("log")
    axes[0].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax, xlabel in ((axes[0], "GMACs per 1280x720 output frame (log)"), (axes[1], "TFLite fp32 latency, 640x360 input, 2 threads (ms)")):
        ax.set(xlabel=xlabel, ylabel="Set5 PSNR-Y (dB)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    axes[0].set_title("PSNR vs compute (lines: Pareto fronts)")
    axes[1].set_title("PSNR vs latency (exported models only)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _fp32_latency(r: dict) -> float | None:
    fp32 = r["tflite"].get("fp32") if isinstance(r.get("tflite"), dict) else None
    return fp32["latency_ms"] if isinstance(fp32, dict) else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes-per-model", type=float, default=1.0, help="training budget per model and scale (default 1)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--models", default=None, help="comma-separated labels or registry names (default: all)")
    p.add_argument("--scales", default="2,4")
    p.add_argument("--data-root", type=Path, default=SHARED_DATA)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "zoo")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "zoo.md")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr-patch", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--heavy-gmacs", type=float, default=100.0, help="on CPU, models above this are scored on Set5/Set14 only")
    p.add_argument("--recipe-max-gmacs", type=float, default=50.0,
                   help="with --qat-steps, run the int8 recipe only for models up to this many GMACs per 720p frame")
    p.add_argument("--sets", default=",".join(BENCHMARK_SETS), help="evaluation sets (default: all four)")
    p.add_argument("--no-tflite", action="store_true")
    p.add_argument("--reprofile", action="store_true", help="redo only the TFLite stage of stored entries")
    p.add_argument("--qat-steps", type=int, default=0,
                   help="also measure the int8 drop after the default recipe with this many LSQ QAT steps "
                        "(edgesr run uses 1000; default 0: PTQ only)")
    args = p.parse_args(argv)
    args.command = "python bench/zoo.py " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        torch.set_num_threads(args.threads)
        scales = [int(s) for s in args.scales.split(",")]
        wanted = None if args.models is None else set(args.models.split(","))
        args.out.mkdir(parents=True, exist_ok=True)
        store = args.out / "results.json"
        results = json.loads(store.read_text()) if store.exists() else {}
        train_images = load_folder(args.data_root / "T91" / "HR")
        if args.reprofile:
            reprofile(results, args, train_images, lambda sc: {"Set5": eval_pairs(benchmark_set(args.data_root, "Set5"), sc)},
                      scales, wanted)
        for scale in scales:
            pairs = {s: eval_pairs(benchmark_set(args.data_root, s), scale) for s in args.sets.split(",")}
            for label, name_of in ZOO:
                name = name_of(scale)
                if wanted is not None and label not in wanted and name not in wanted:
                    continue
                key = f"{name}@x{scale}"
                if key in results:
                    continue
                print(f"[zoo] {label} x{scale}", flush=True)
                results[key] = run_entry(label, name, scale, args, train_images, pairs, args.out)
                store.write_text(json.dumps(results, indent=1))
        imported = import_authors_sample(args)
        rows = [r for r in results.values() if r["scale"] in scales]
        args.doc.parent.mkdir(parents=True, exist_ok=True)
        plot = args.doc.with_name(args.doc.stem + "_pareto.png")
        write_plot(rows, plot)
        write_markdown(rows, imported, args, args.doc, plot.name)
        print(f"[zoo] wrote {args.doc} and {plot}")
        return 0
    except EdgesrError as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 2


def import_authors_sample(args) -> dict | None:
    """Import the authors' eSR-MAX sample (../shared/peer_weights) and score it, when present."""
    from edgesr.core.checkpoint import load_checkpoint
    from edgesr.core.data import resolve_eval_sets
    from edgesr.core.evaluate import TorchUpscaler, evaluate_sets
    from edgesr.core.importers import import_esr

    src = args.data_root.parent / "peer_weights" / "esr" / "eSR-MAX_s2_K7_C13.model"
    cache = args.out / "imported.json"
    if not src.is_file():
        return None
    result = json.loads(cache.read_text()) if cache.exists() else None
    ckpt = args.out / "eSR-MAX_s2_K7_C13_imported.pt"
    if result is None:
        model, _ = load_checkpoint(import_esr(src, ckpt))
        sets = evaluate_sets(TorchUpscaler(model), resolve_eval_sets(str(args.data_root), list(BENCHMARK_SETS)))
        result = {"file": src.name, "model": "eSR-MAX_s2_K7_C13", "sets": sets}
    if args.reprofile or "tflite" not in result:  # int8 TFLite of the authors' weights: the drop a user will see
        model, _ = load_checkpoint(ckpt, deploy=True)
        row = {"sets": {"Set5": result["sets"]["Set5"]}}
        pairs = {"Set5": eval_pairs(benchmark_set(args.data_root, "Set5"), 2)}
        result["tflite"] = profile_tflite(model, row, args, load_folder(args.data_root / "T91" / "HR"), pairs, args.out, ckpt)
    cache.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    sys.exit(main())
