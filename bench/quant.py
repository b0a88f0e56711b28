"""Int8 benchmark: what each post-training technique and the default recipe do to every zoo model.

    python bench/quant.py [--minutes-per-model M] [--models a,b@MIN] [--qat-steps N] [--out DIR]

For every zoo model at x2: train it on T91 for ``M`` minutes of CPU (``NAME@MIN``: ``MIN``
minutes for that entry, its own row: the zoo lists SplitSR-S and eSR-CNN again with longer
training, since at ``M`` they score below bicubic) (:func:`edgesr.core.train.train`,
the zoo benchmark's recipe: L1, Adam 5e-4, batch 16, LR patch 32; steps from a timed probe),
then quantize its deploy form with each technique of :mod:`edgesr.quantization.recipe` added in
turn and score the int8 simulation (which predicts LiteRT's int8 output to an LSB) on Set5 x2
through the one evaluation path: float PSNR, the drop after plain min/max calibration, after each
technique, after the default recipe (with its keep-best LSQ QAT), and the seconds each takes.
It also times a QAT step against a float training step on the same pixels, and scores the
recipe's result as a w8a16 TFLite model (int8 weights, int16 activations at the same ranges;
exported with :func:`edgesr.converters.export.export_tflite` and run on LiteRT, the one
evaluation path): the ``w8a16`` column; and the min/max start and the recipe's result as Core ML
W8A8 programs (:func:`edgesr.converters.export.export_coreml`, run by edgesr's MIL interpreter).

Results accumulate in ``OUT/results.json`` (a rerun skips finished entries); ``docs/quant.md``
is written from them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
# bench/ off the path: bench/executorch.py would shadow the executorch package that coremltools imports
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from edgesr.app.artifacts import open_artifact  # noqa: E402
from edgesr.converters.export import export_coreml, export_tflite  # noqa: E402
from edgesr.core.checkpoint import load_checkpoint  # noqa: E402
from edgesr.core.errors import EdgesrError  # noqa: E402
from edgesr.core.data import SHARED_DATA, PatchDataset, benchmark_set, eval_pairs, load_folder  # noqa: E402
from edgesr.core.evaluate import TorchUpscaler, calibration_patches, evaluate  # noqa: E402
from edgesr.core.importers import import_esr  # noqa: E402
from edgesr.core.models import create  # noqa: E402
from edgesr.core.train import TrainConfig, make_lr_batch, train  # noqa: E402
from edgesr.quantization import fake_quant_module  # noqa: E402
from edgesr.quantization.api import QuantizedCheckpoint  # noqa: E402
from edgesr.quantization.qat import hr_patches, qat_optimizer, whole_images  # noqa: E402
from edgesr.quantization import calibrate  # noqa: E402
from edgesr.quantization.recipe import RecipeConfig, choose_w8a16_weights, run_recipe, split_photos  # noqa: E402

#: Zoo entries at x2: (label, registry name).
ZOO = [
    ("SESR-M5", "sesr_m5"),
    ("eSR-MAX K7 C13", "eSR-MAX_s2_K7_C13"),
    ("eSR-TM K7 C16", "eSR-TM_s2_K7_C16"),
    ("eSR-TR K7 C13", "eSR-TR_s2_K7_C13"),
    ("eSR-CNN C8 D3 S9", "eSR-CNN_s2_C8_D3_S9"),
    ("SplitSR-S", "splitsr_s"),
    ("PKN", "pkn"),
    ("PKN fixed kernel", "pkn_fixed"),
    ("eSR-MAX K7 C13, authors' weights", "authors:eSR-MAX_s2_K7_C13"),
    ("SplitSR-S, 12 min", "splitsr_s@12"),
    ("eSR-CNN C8 D3 S9, 6 min", "eSR-CNN_s2_C8_D3_S9@6"),
]
PEER_WEIGHTS = SHARED_DATA.parent / "peer_weights" / "esr"
"""The eSR authors' published ``.model`` files (``authors:ID`` rows import ``ID.model`` from here)."""

AIMET_SESR_M5 = "AIMET model zoo, SESR-M5 x2 w8a8: 0.07 dB below fp32 (Qualcomm AI Hub / aimet-model-zoo)"


def seconds_per_step(step, warmup: int = 2, runs: int = 8) -> float:
    """Median wall time of ``step()`` over ``runs`` calls after ``warmup`` calls."""
    times = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _train_step(module, lr_batch, hr_batch, opt):
    def step():
        loss = F.l1_loss(module(lr_batch), hr_batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def qat_cost(name: str, ranges, deploy, images, batch: int = 8, lr_patch: int = 32, rounds: int = 20) -> dict:
    """Seconds per step on the same pixels (``batch`` LR patches of ``lr_patch`` px): the float
    training step of the train-form model, of the deploy form, and the QAT steps (EMA ranges,
    LSQ), each with the optimizer its trainer uses. The steps are interleaved (one of each per
    round, ``rounds`` rounds after 2 warm-up rounds) and each keeps its median, so a machine
    whose speed drifts slows them all alike and the ratios hold."""
    scale = deploy.scale
    hr = torch.from_numpy(calibration_patches(images, deploy.contract, lr_patch * scale, batch, seed=3))
    lr = make_lr_batch(hr, scale)
    name = deploy.registry_name if name.startswith("authors:") else name
    train_form = create(name, scale=scale).train()
    dep = create(name, scale=scale)
    dep = (dep.collapse() if hasattr(dep, "collapse") else dep).train()
    steps = {"float_train_form_s": _train_step(train_form, lr, hr, torch.optim.Adam(train_form.parameters(), 1e-4)),
             "float_deploy_s": _train_step(dep, lr, hr, torch.optim.Adam(dep.parameters(), 1e-4))}
    for mode in ("ema", "lsq"):
        sim = fake_quant_module(deploy, ranges, range_mode=mode).train()
        steps[f"qat_{mode}_s"] = _train_step(sim, lr, hr, qat_optimizer(sim, 1e-4, 1e-3))
    times = {k: [] for k in steps}
    for i in range(2 + rounds):
        for k, step in steps.items():
            t0 = time.perf_counter()
            step()
            if i >= 2:
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def sensitivity(deploy, ranges, set5, float_psnr) -> dict:
    """Set5 drop (dB) with int8 weights and only one activation tensor int8 (each in turn), and
    with int8 weights alone: which tensor costs what (min/max ranges)."""
    sim = fake_quant_module(deploy, ranges).eval()
    out = {}
    try:
        for only in [*sim.quantizers, None]:
            for name, q in sim.quantizers.items():
                q.__dict__.pop("forward", None)
                if name != only:
                    q.forward = lambda x, observe=True: x  # this tensor stays float
            out[only or "weights only"] = float_psnr - evaluate(TorchUpscaler(sim), set5)["psnr_y"]
    finally:
        for q in sim.quantizers.values():
            q.__dict__.pop("forward", None)
    return out


def export_drop(module, ranges, minmax, set5, float_psnr: float, path: Path, precision: str) -> float | None:
    """Set5 drop (dB) of an export of ``(module, ranges)`` with ``minmax`` (the module's min/max
    ranges, what :func:`edgesr.quantization.api.quantize_module` records and the w8a16 export uses),
    scored through the one evaluation path, or None when the model does not convert.

    ``precision``: ``"w8a16"`` (a ``.tflite`` path; TFLite 16x8 on LiteRT's default interpreter) or
    ``"w8a8"`` (a ``.mlpackage`` path; Core ML with TFLite's ranges and per-channel int8 weights, run
    by edgesr's MIL interpreter since Core ML cannot predict on Linux).
    """
    export = export_tflite if precision == "w8a16" else export_coreml
    if path.is_dir():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        export(QuantizedCheckpoint(module, ranges, None, {"observer": "recipe"}, minmax), path, precision)
    except EdgesrError as exc:
        print(f"  {precision} export failed:", exc, flush=True)
        return None
    return float_psnr - evaluate(open_artifact(path), set5)["psnr_y"]


def _entry_dir(out_dir: Path, key: str) -> Path:
    """Where ``key``'s trained checkpoint and ``steps.json`` live under ``out_dir``."""
    return out_dir / f"{key.replace(':', '_')}_x2"


def train_model(name: str, minutes: float, data: Path, out_dir: Path, key: str | None = None,
                checkpoints_from: Path | None = None) -> tuple[Path, int]:
    """Train ``name`` x2 on ``data`` for about ``minutes`` (steps from a timed probe); cached under ``key``.
    ``checkpoints_from``: another run's ``--out``; its trained checkpoint of ``key``, if any, is used instead
    (recorded in ``steps.json``, which points at it; the doc names the run that trained it)."""
    run_dir = _entry_dir(out_dir, key or name)
    done = run_dir / "steps.json"
    other = _entry_dir(checkpoints_from, key or name) / "steps.json" if checkpoints_from else None
    if not done.exists() and other is not None and other.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        done.write_text(other.read_text())
    if done.exists():
        record = json.loads(done.read_text())
        return Path(record["ckpt"]), record["steps"]
    if name.startswith("authors:"):  # published weights: imported, not trained
        ckpt = import_esr(PEER_WEIGHTS / f"{name.split(':', 1)[1]}.model", run_dir / "authors.pt")
        done.write_text(json.dumps({"ckpt": str(ckpt), "steps": "authors'"}))
        return ckpt, "authors'"
    model = create(name, scale=2).train()
    ds = PatchDataset(load_folder(data)[:8], 64, color=model.contract.color)
    rng = np.random.default_rng(0)
    opt = torch.optim.Adam(model.parameters(), 1e-4)

    def probe():
        hr = ds.sample(16, rng)
        _train_step(model, make_lr_batch(hr, 2), hr, opt)()

    steps = max(1, int(minutes * 60 / seconds_per_step(probe, 1, 3)))
    cfg = TrainConfig(model=name, scale=2, data=str(data), out=str(run_dir), steps=steps, batch=16, lr_patch=32,
                      lr=5e-4, seed=0, val_every=0, checkpoint_every=10**9, device="cpu", resume=False, progress=False)
    ckpt = train(cfg)
    done.write_text(json.dumps({"ckpt": str(ckpt), "steps": steps}))
    return ckpt, steps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes-per-model", type=float, default=1.0)
    p.add_argument("--models", default=",".join(n for _, n in ZOO))
    p.add_argument("--qat-steps", type=int, default=RecipeConfig.qat_steps)
    p.add_argument("--data-root", type=Path, default=SHARED_DATA)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "quant")
    p.add_argument("--checkpoints-from", type=Path, default=None, metavar="DIR",
                   help="use the trained checkpoints of an earlier run's --out DIR instead of training (same keys)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-only", action="store_true")
    p.add_argument("--qat-cost-only", action="store_true",
                   help="re-time only the QAT step of rows already in results.json, then rewrite the doc")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "quant.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    t91 = args.data_root / "T91" / "HR"
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    set5 = eval_pairs(benchmark_set(args.data_root, "Set5"), 2)
    train_images = load_folder(t91)
    labels = dict((n, label) for label, n in ZOO)
    command = "python bench/quant.py " + " ".join(sys.argv[1:] if argv is None else argv)
    bicubic = evaluate(TorchUpscaler(create("bicubic", scale=2)), set5)["psnr_y"]
    for key in args.models.split(","):
        name, _, minutes = key.partition("@")
        minutes = float(minutes) if minutes else args.minutes_per_model
        ckpt, steps = train_model(name, minutes, t91, args.out, key, args.checkpoints_from)
        if key in results:
            results[key]["bicubic_psnr"] = bicubic
        if args.qat_cost_only and key in results:
            deploy, _ = load_checkpoint(ckpt, deploy=True)
            fit, _ = split_photos(train_images)
            start = calibrate(deploy, calibration_patches(fit, deploy.contract, 48, 64, seed=0))
            results[key]["qat_cost"] = qat_cost(name, start, deploy, train_images)
            results[key]["qat_cost_command"] = command
            results_path.write_text(json.dumps(results, indent=1))
            print(key, {k: round(v, 4) for k, v in results[key]["qat_cost"].items()}, flush=True)
            continue
        if args.train_only or args.qat_cost_only or key in results:
            continue
        deploy, _ = load_checkpoint(ckpt, deploy=True)
        row = {"label": labels.get(key, key), "model": name, "train_steps": steps, "command": command,
               "minutes": minutes, "bicubic_psnr": bicubic,
               "float_psnr": evaluate(TorchUpscaler(deploy), set5)["psnr_y"]}
        fit, held_out = split_photos(train_images)  # decisions on T91 photos QAT never sees
        calib = calibration_patches(fit, deploy.contract, 48, 64, seed=0)
        hr = hr_patches(fit, deploy.contract, 96, 256, seed=1)
        val = whole_images(held_out, deploy.contract)  # as edgesr quantize scores them

        def score(module, ranges):
            return row["float_psnr"] - evaluate(TorchUpscaler(fake_quant_module(module, ranges).eval()), set5)["psnr_y"]

        cfg = RecipeConfig(qat_steps=args.qat_steps)
        row["qat_lr"] = cfg.qat_lr
        res = run_recipe(deploy, calib, hr, val, config=cfg, score=score, ablation=True,
                         on_stage=lambda st: print(f"  {key} {st['technique']}: kept={st['kept']} "
                                                   f"Set5 drop {st['score']:.3f} dB, {st['seconds']:.0f} s", flush=True))
        row["stages"] = res.stages
        row["techniques"] = res.techniques()
        row["recipe_drop"] = score(res.module, res.ranges)
        minmax = calibrate(res.module, calib)
        w16, row["w8a16_weights"] = choose_w8a16_weights(deploy, res.module, val, calib, hr, config=cfg)  # as edgesr quantize does
        w16_minmax = minmax if w16 is res.module else calibrate(w16, calib)
        row["w8a16_drop"] = export_drop(w16, w16_minmax, w16_minmax, set5, row["float_psnr"],
                                        args.out / key / "w8a16.tflite", "w8a16")
        start = calibrate(deploy, calib)
        row["minmax_drop"] = res.stages[0]["score"]  # the recipe's min/max start: the same calibration
        row["coreml_w8a8_minmax_drop"] = export_drop(deploy, start, start, set5, row["float_psnr"],
                                                     args.out / key / "minmax_w8a8.mlpackage", "w8a8")
        row["coreml_w8a8_drop"] = export_drop(res.module, res.ranges, minmax, set5, row["float_psnr"],
                                              args.out / key / "recipe_w8a8.mlpackage", "w8a8")
        row["sensitivity"] = sensitivity(deploy, start, set5, row["float_psnr"])
        row["qat_cost"] = qat_cost(name, start, deploy, train_images)
        results[key] = row
        results_path.write_text(json.dumps(results, indent=1))
        print(key, "recipe drop", round(row["recipe_drop"], 3), row["techniques"], flush=True)
        write_doc(results, args.doc, args.out)
    if not args.train_only and results:
        results_path.write_text(json.dumps(results, indent=1))  # bicubic_psnr added to older rows
        write_doc(results, args.doc, args.out)
    return 0


STAGE_TITLES = {"minmax": "min/max", "cle": "+ CLE", "range_search": "+ range search", "adaround": "+ AdaRound",
                "bias_correction": "+ bias corr.", "lsq_qat": "+ LSQ QAT"}


def _fmt_stage(st: dict) -> str:
    drop = f"{st['score']:.3f}" if "score" in st else "—"
    return drop if st["kept"] else f"({drop})"


def trained_by(results: dict, out: Path | None) -> dict:
    """``{key: (training run's --out, its results row)}`` for entries whose checkpoint another run of
    this bench trained (``--checkpoints-from``; read from ``OUT/KEY_x2/steps.json``)."""
    found, origin_rows = {}, {}
    for key in results if out is not None else ():
        done = _entry_dir(out, key) / "steps.json"
        if not done.exists():
            continue
        ckpt = Path(json.loads(done.read_text())["ckpt"])
        origin = next((d.parent for d in ckpt.parents if d.name == _entry_dir(out, key).name), None)
        if origin is not None and origin.resolve() != out.resolve() and (origin / "results.json").exists():
            if origin not in origin_rows:
                origin_rows[origin] = json.loads((origin / "results.json").read_text())
            found[key] = (origin, origin_rows[origin].get(key, {}))
    return found


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def write_doc(results: dict, path: Path, out: Path | None = None) -> None:
    """``docs/quant.md`` from the accumulated results (one row per model) of the run in ``out``."""
    rows = list(results.values())
    cmds = sorted({r["command"] for r in rows} | {r["qat_cost_command"] for r in rows if "qat_cost_command" in r})
    reused = trained_by(results, out)
    origins = sorted({(_rel(o), r.get("command", "?")) for o, r in reused.values()})
    minutes = next((r.get("minutes") for k, (_, r) in reused.items() if "@" not in k), None) or (
        next((r.get("minutes") for k, r in results.items() if "@" not in k), None))
    lines = [
        "# Int8: what each technique does, per model",
        "",
        f"Generated by `{'`, `'.join(cmds)}` (`bench/quant.py`; do not edit by hand; results in "
        f"`{_rel(out / 'results.json') if out is not None else 'OUT/results.json'}`)"
        + ("; the trained checkpoints of " + ("every entry" if len(reused) == len(results) else ", ".join(sorted(reused)))
           + " come from " + "; ".join(f"`{o}`, trained by `{c}`" for o, c in origins) if reused else "") + ".",
        "",
        "Every zoo model at x2, trained on T91 for about "
        f"{minutes or '?'} min of CPU each (a loaded 2-core machine shared with other jobs: "
        "the steps column says how far each got, far from the papers' budgets, so the float PSNRs are low and the "
        "drops are those of these short-trained weights). Drops are Set5 PSNR (Y, BT.601, border crop 2, the one "
        "evaluation path) of the float deploy model minus that of its int8 simulation, which predicts LiteRT's int8 "
        "output (`fake_quant_module`: TFLite's quantization points, per-channel int8 weights, nudged int8 "
        "activations, constant operands at the int8 values TFLite stores; within one LSB per tensor, and exactly on 99% of a ReLU SESR's output pixels, "
        "`tests/test_quantization_tflite.py`: the integer kernels round twice where it rounds once). Each technique column adds that technique to the ones kept before it; a value in "
        "parentheses is the drop the technique gave when the recipe did **not** keep it (`recipe.py` keeps a stage "
        "only if it raises the int8 PSNR on every 8th T91 photo, scored whole with Set5's border crop, photos "
        "that calibration and QAT never see, both pooled and on more than half of the photos one by one; Set5 "
        "never decides anything). The last LSQ "
        f"column is the default recipe's result ({rows[0]['stages'][-1]['details'].get('steps', '?') if rows else '?'} "
        f"LSQ QAT steps, batch 8 HR patches of 96 px, weights lr {format(rows[0].get('qat_lr', 1e-4), 'g') if rows else '?'}, "
        "ranges lr 1e-3, cosine, keep-best on the "
        "held-out photos).",
        "",
        "",
        "`vs bicubic`: the float model's Set5 PSNR minus MATLAB bicubic's"
        + (f" ({rows[0]['bicubic_psnr']:.2f} dB)" if rows and "bicubic_psnr" in rows[0] else "")
        + "; a model below bicubic has not learned super-resolution yet, and its int8 drop says little about "
        "a trained one (SplitSR-S and eSR-CNN are listed twice for this reason: after the common budget and "
        "after longer training).",
        "",
        "| model | train steps | float Set5 | vs bicubic | " + " | ".join(STAGE_TITLES.values()) + " | kept |",
        "|---|---|---|---|" + "---|" * len(STAGE_TITLES) + "---|",
    ]
    for r in rows:
        st = {s["technique"]: s for s in r["stages"]}
        cells = [_fmt_stage(st[k]) if k in st else "—" for k in STAGE_TITLES]
        vs = f"{r['float_psnr'] - r['bicubic_psnr']:+.2f}" if "bicubic_psnr" in r else "—"
        lines.append(f"| {r['label']} (`{r['model']}`) | {r['train_steps']} | {r['float_psnr']:.2f} | {vs} | "
                     + " | ".join(cells) + f" | {', '.join(r['techniques'][1:]) or 'none'} |")
    missing = [label for label, name in ZOO if name not in results]
    if missing:
        lines += ["", f"Not measured in this run (out of time on the shared CPU): {', '.join(missing)}."]
    below = [r["label"] for r in rows if r["recipe_drop"] < 0]
    if below:
        lines += ["", f"A negative drop ({', '.join(below)}) means the int8 model scores above the float model it "
                  "started from: on these short-trained weights the rounding can happen to help, and QAT, where kept, "
                  "also trains."]
    lines += ["", "Final drop of the default recipe (dB, Set5 x2): "
              + ", ".join(f"{r['label']} **{r['recipe_drop']:.3f}**" for r in rows) + ".", "",
              f"For comparison: {AIMET_SESR_M5}. Targets: SESR-M5 <= 0.05 dB, every zoo model <= 0.2 dB: "
              + ", ".join(f"{r['label']} {'meets' if r['recipe_drop'] <= (0.05 if r['model'] == 'sesr_m5' else 0.2) else 'misses'}"
                          for r in rows) + ".", "",
              "## Core ML W8A8 and w8a16", "",
              "Set5 drop (dB) of the min/max start and of the default recipe's result as the int8 simulation, as a "
              "Core ML W8A8 program (the same ranges and per-channel int8 weights as TFLite, quantize/dequantize "
              "pairs at TFLite's nudged scales after every int8 tensor but the input, which a Core ML program keeps "
              "in float16; run by edgesr's MIL interpreter, since Core ML cannot predict on "
              "Linux) and as a w8a16 TFLite export (TFLite's 16x8 quantization: int8 weights, int16 activations at "
              "the min/max ranges, PRELU and DEPTH_TO_SPACE in float; run on LiteRT) of the weights `edgesr quantize` "
              "records for w8a16 (`choose_w8a16_weights`): the recipe's, or the float model's own (marked *float "
              "weights*: QAT fits the weights to int8 activations, which w8a16 does not have), or the float model's "
              "rounded by AdaRound for float activations (marked *AdaRound w8a16*), or the best of these fine-tuned "
              "for the recipe's QAT steps through int8 weights and float activations (marked *QAT w8a16*), "
              "whichever scores higher with int8 weights and float activations on the held-out photos.",
              "", "| model | int8 min/max | Core ML W8A8 min/max | int8 (recipe) | Core ML W8A8 (recipe) | w8a16 |",
              "|---|---|---|---|---|---|"]

    def cell(r, key, failed):
        v = r.get(key, "absent")
        return "— (older result: rerun this model)" if v == "absent" else f"— ({failed})" if v is None else f"{v:.3f}"

    for r in rows:
        lines.append(f"| {r['label']} | {cell(r, 'minmax_drop', 'not measured')} | "
                     f"{cell(r, 'coreml_w8a8_minmax_drop', 'no Core ML conversion')} | {r['recipe_drop']:.3f} | "
                     f"{cell(r, 'coreml_w8a8_drop', 'no Core ML conversion')} | {cell(r, 'w8a16_drop', 'no 16x8 conversion')}"
                     + {"float": " *float weights*", "adaround_w8a16": " *AdaRound w8a16*", "qat_w8a16": " *QAT w8a16*"}.get(
                         r.get("w8a16_weights", {}).get("weights"), "") + " |")
    lines += ["",
              "## Time each technique takes (s, CPU, same loaded machine)", "",
              "| model | " + " | ".join(STAGE_TITLES.values()) + " |", "|---|" + "---|" * len(STAGE_TITLES)]
    for r in rows:
        st = {s["technique"]: s for s in r["stages"]}
        lines.append(f"| {r['label']} | " + " | ".join(f"{st[k]['seconds']:.1f}" if k in st else "—" for k in STAGE_TITLES) + " |")
    lines += ["", "## Cost of a QAT step", "",
              "Seconds per optimizer step on the same pixels (8 LR patches of 32 px, L1, Adam), median of 20, the "
              "four steps interleaved in one process after 2 warm-up rounds (so the ratios hold even on a loaded "
              "machine): the float training step of the train-form model (what `edgesr train` runs), of the deploy "
              "form, and QAT through the int8 simulation with EMA ranges and with LSQ (the fused fake-quant).", "",
              "| model | float train form (s) | float deploy (s) | QAT EMA (s) | QAT LSQ (s) | LSQ / float train form | LSQ / float deploy |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["qat_cost"]
        lines.append(f"| {r['label']} | {c['float_train_form_s']:.4f} | {c['float_deploy_s']:.4f} | {c['qat_ema_s']:.4f} | "
                     f"{c['qat_lsq_s']:.4f} | {c['qat_lsq_s'] / c['float_train_form_s']:.2f}x | {c['qat_lsq_s'] / c['float_deploy_s']:.2f}x |")
    lines += ["", "## Where the int8 error comes from", "",
              "Set5 drop (dB) with the weights int8 and only one activation tensor int8 (min/max range), the others "
              "float; `weights only`: no activation quantized. Node names are the traced deploy graph's.", ""]
    for r in rows:
        sens = r.get("sensitivity", {})
        worst = sorted(((v, k) for k, v in sens.items() if k != "weights only"), reverse=True)[:5]
        lines.append(f"- {r['label']}: weights only {sens.get('weights only', float('nan')):.3f}; worst tensors "
                     + ", ".join(f"`{k}` {v:.3f}" for v, k in worst))
    lines += ["", "## Reading the results", "",
              "- **Per-channel weights leave CLE little to do.** CLE (Nagel et al. 2019) equalizes per-channel weight "
              "ranges for per-*tensor* weight quantization; TFLite's int8 conv weights are already per-channel, so CLE "
              "only moves the activation ranges between the pairs it may touch, and every residual add, slice, concat, "
              "depth-to-space and tanh in these models ends a pair (list below).",
              "- **Validation scores whole photos.** The recipe's keep/skip decisions and QAT's keep-best score the "
              "held-out T91 photos whole, border crop 2 as on Set5 (`quantization.qat.whole_images`; 12 photos, about "
              "0.56 M HR pixels, as many as the 32 random 128 px crops used before). Random crops sample the photos "
              "unevenly, while the decisions are often a few thousandths of a dB (docs/recipe_stages.md, `python "
              "bench/recipe_stages.py RUN_DIR` on the headline job's folder). Crops also needed a border of a sixth of the side cropped: near a patch edge "
              "the convolutions see zero padding that no whole-image benchmark has.",
              "- **The output keeps the display's grid.** The tensors that end in the output clamp (e.g. SESR's last "
              "ADD, eSR-MAX's conv) take the clamp's range [0, 1] exactly and are neither searched nor learned "
              "(`calibrate`, `graph.clip_limits`): their int8 grid (scale 1/255, zero point -128) is then the "
              "8-bit grid the output is shown on, and their rounding costs nothing the float model's display does "
              "not. LSQ QAT used to learn this range too, and on T91 patches it narrowed the headline SESR-M5's below 1, "
              "which clipped Set5's bright pixels.",
              "- **eSR: the head's int8 graph, then the weights.** Trained eSR-TM/TR/CNN learn softmax logits of "
              "about +-10 while their values stay near [0, 1]; in the trained model's one head conv both are one int8 "
              "tensor, and the values got the logits' step. The deploy form (`ESRDeploy`) splits the head conv per "
              "channel group (value, query, key: each its own int8 scale) and computes the sum over C of value x "
              "softmax as one BATCH_MATMUL (`edgesr.core.ops.channel_dot`: the C products accumulate in int32 and are "
              "rounded once, where MUL then SUM rounded every product to the MUL's scale). docs/esr_head.md "
              "(`python bench/esr_head.py --trained runs/quant`) compares the three graphs on these models; PKN's "
              "kernel-weighted sums use the same op. For the authors' eSR-MAX the sensitivity row's `weights only` is "
              "nearly the whole drop: each output channel's int8 scale is set by its largest tap, mostly the kernel "
              "centre (the authors' initialisation puts 1 there), so the other taps get a coarse grid; AdaRound "
              "(each tap's rounding chosen for the layer output) recovers most of it. eSR-CNN stays weight-bound "
              "the same way (its first 5x5 conv has three outputs with centre taps near 1); splitting the centre "
              "tap into its own 1x1 conv is exact in float but adds two int8 partial sums and was worse in trials "
              "on eSR-MAX and eSR-CNN (not in this table); LSQ QAT moves the weights onto the grid.",
              _longer_paragraph(results),
              "- **The int8 input is a floor.** The models read Y (BT.601) computed in float from the RGB photo; "
              "TFLite's int8 input tensor rounds it to 1/255 steps, which costs the `x` entry of the sensitivity rows "
              "whatever the other techniques do (Core ML W8A8 keeps its input float: below).",
              _stage_paragraph(rows),
              _pkn_paragraph(results),
              _coreml_paragraph(rows),
              _w8a16_paragraph(rows),
              ]
    lines += ["", "## Which pairs CLE can equalize", ""]
    for r in rows:
        cle = next((s for s in r["stages"] if s["technique"] == "cle"), None)
        if cle and isinstance(cle["details"], dict):
            pairs = cle["details"].get("pairs", [])
            lines.append(f"- {r['label']}: {len(pairs)} pair(s)"
                         + (f" ({', '.join(f'{a}->{b} via {act}' for a, b, act in pairs)})" if pairs else "")
                         + f"; {len(cle['details'].get('skipped', {}))} conv(s) skipped (residual adds, slices, concats, "
                         "depth-to-space, tanh)")
    path.write_text("\n".join(lines) + "\n")


def _stage_effects(row: dict):
    """``(technique, kept, Set5 drop change vs the last kept stage, "k/n" held-out photos raised)`` per stage."""
    last = None
    for st in row["stages"]:
        if "score" in st and last is not None:
            yield st["technique"], st["kept"], st["score"] - last, st.get("val_images_better", "?")
        if st["kept"] and "score" in st:
            last = st["score"]


def _stage_paragraph(rows: list) -> str:
    kept = [(r["label"], t, d, b) for r in rows for t, k, d, b in _stage_effects(r) if k]
    helped = [e for e in kept if e[2] < -0.01]
    hurt = [e for e in kept if e[2] > 0.01]
    least = min((int(b.split("/")[0]) for *_, b in helped if "/" in b), default=None)
    return ("- **A stage must help most photos.** The recipe keeps a stage only if it raises the held-out photos' "
            "pooled PSNR and more than half of them one by one (`ValScore.beats`; `report.json` and results.json "
            "record `val_images_better`): the rule came from an earlier headline SESR-M5 job, where LSQ QAT raised "
            "the pooled PSNR of the 12 photos while lowering 7 of them and cost Set5 0.006 dB. In this run "
            + (f"every kept stage that lowered a Set5 drop by more than 0.01 dB raised at least {least} of the 12 photos"
               if least is not None else "no kept stage lowered a Set5 drop by more than 0.01 dB")
            + ", and " + (f"{len(hurt)} kept stage(s) raised one by more than 0.01 dB ("
                          + "; ".join(f"{t} on {lab}, {d:+.3f} dB, {b}" for lab, t, d, b in hurt) + ")"
                          if hurt else "no kept stage raised one by more than 0.01 dB")
            + ". Drops differing by less than about 0.01 dB between columns are within what the choice of "
            "calibration crops moves min/max calibration by.")


def _longer_paragraph(results: dict) -> str:
    longer = [(k, r) for k, r in results.items() if "@" in k and k.split("@")[0] in results]
    if not longer:
        return "- **Trained longer.** No `NAME@MIN` row in this run."
    parts = []
    for k, r in longer:
        base = results[k.split("@")[0]]
        ratio = (f"{r['train_steps'] / base['train_steps']:.1f}x the steps"
                 if isinstance(r["train_steps"], int) and isinstance(base["train_steps"], int) else "longer")
        vs = f", {r['float_psnr'] - r['bicubic_psnr']:+.2f} dB vs bicubic" if "bicubic_psnr" in r else ""
        parts.append(f"{r['label']} ({ratio} of the common budget{vs}): min/max {r['minmax_drop']:.3f} dB, "
                     f"default recipe {r['recipe_drop']:.3f} dB")
    cnn = [r.get("sensitivity", {}) for k, r in results.items() if r["model"].startswith("eSR-CNN")]
    gaps = [v - sens["weights only"] for sens in cnn if "weights only" in sens
            for t, v in sens.items() if t.startswith("trunk")]
    return ("- **Trained longer.** " + "; ".join(parts) + ". SplitSR-S's standard-block group quantizes its "
            "residual stream per tensor after every block: the sensitivity rows' worst tensors are those ADDs; "
            "a per-channel equalization of that stream (one positive scale per stream channel, moved into every "
            "conv that writes or reads it) was tried on an earlier run and dropped: the stream's channels already "
            "span similar ranges. eSR-CNN's drop is its int8 activations"
            + (f": its sensitivity rows put each of its four trunk tensors (8 channels, conv and tanh) "
               f"{min(gaps):.2f}-{max(gaps):.2f} dB above the int8 weights alone" if gaps else "")
            + ". The QAT, which fits HR photos, also trains: docs/qat_control.md (`python bench/qat_control.py "
            "RUN_DIR ...`) separates its quantization repair from that training on the zoo's models.")


def _pkn_paragraph(results: dict) -> str:
    r = results.get("pkn")
    kept = f"The recipe kept {', '.join(r['techniques'][1:]) or 'none'} ({r['recipe_drop']:.3f} dB). " if r else ""
    return ("- **PKN.** " + kept + "Its int8 output is unusually sensitive to the exact int8 grids: on an earlier "
            "run the range search lowered the output error on its calibration patches and raised the Set5 drop "
            "(0.218 -> 0.242 dB), and the held-out photos rejected it. An earlier version of this table had its Core "
            "ML W8A8 program at 0.132 dB against a simulated int8 0.231, because edgesr's Core ML export made PKN's "
            "constant sub-pixel offsets (the kernel geometry) int8 on a symmetric grid of its own, a different "
            "function, while the simulation kept them float where LiteRT holds them in int8 (a LiteRT export of "
            "those ranges: 0.218 dB). Both now use the int8 values TFLite stores for them "
            "(`quantize_constant_operands`; `tests/test_quantization_tflite.py -k pkn_constant` reads them back "
            "from a LiteRT model).")


def _coreml_paragraph(rows: list) -> str:
    pairs = [(r["label"], r["recipe_drop"] - r["coreml_w8a8_drop"]) for r in rows
             if isinstance(r.get("coreml_w8a8_drop"), float)]
    if not pairs:
        return "- **Core ML W8A8 keeps its input in float16.** No Core ML W8A8 result in this run."
    better = [d for _, d in pairs if d >= 0]
    worse = [f"{lab}, {-d:.3f} dB" for lab, d in pairs if d < 0]
    return ("- **Core ML W8A8 keeps its input in float16.** A Core ML program receives float32, so the W8A8 program "
            "quantizes every int8 tensor of TFLite's but the input; after the recipe its drop is "
            + (f"{min(better):.3f}-{max(better):.3f} dB below the int8 simulation's on {len(better)} of {len(pairs)} rows"
               if better else "never below the int8 simulation's")
            + (f", above it on {'; '.join(worse)} (float16 scales and arithmetic cost more than the input gains)"
               if worse else "") + ".")


def _w8a16_paragraph(rows: list) -> str:
    names = {"recipe": "the recipe's", "float": "the float model's", "adaround_w8a16": "AdaRound w8a16",
             "qat_w8a16": "QAT w8a16"}
    chosen: dict[str, list] = {}
    for r in rows:
        chosen.setdefault(r.get("w8a16_weights", {}).get("weights", "recipe"), []).append(r["label"])
    drops = [(r["w8a16_drop"], r["label"]) for r in rows if isinstance(r.get("w8a16_drop"), float)]
    within = [d for d, _ in drops if d <= 0.02]
    text = ("- **w8a16 weights: fitted to float activations.** AdaRound run with float activations "
            "(`adaround(..., activations=False)`) rounds each conv's weights for the w8a16 model itself, and QAT "
            "through int8 weights and float activations (`qat(..., activations=False)`, the recipe's QAT steps, "
            "keep-best) then fine-tunes the best candidate. Chosen: "
            + "; ".join(f"{names.get(k, k)} for {len(v)} row(s)" + (f" ({', '.join(v)})" if len(v) <= 3 else "")
                        for k, v in sorted(chosen.items(), key=lambda kv: -len(kv[1]))) + ".")
    if drops:
        hi, lo = max(drops), min(drops)
        text += (f" {len(within)} of {len(drops)} w8a16 drops are within 0.02 dB (the largest {hi[0]:.3f} dB, {hi[1]})"
                 + (f"; a negative drop means that QAT, which also trains, took these short-trained models past their "
                    f"float start ({lo[1]}: {lo[0]:.3f} dB)" if lo[0] < 0 else "") + ".")
    return text


if __name__ == "__main__":
    raise SystemExit(main())
