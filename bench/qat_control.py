"""How much of what QAT recovers is quantization, and how much is further training.

    python bench/qat_control.py RUN_DIR [RUN_DIR ...] [--data-root ../shared/data] [--sets Set5]
        [--doc docs/qat_control.md]

The recipe's LSQ QAT (:func:`edgesr.quantization.recipe.run_recipe`, ``RecipeConfig`` defaults)
fits the int8 simulation to HR photos, so on a briefly trained model it also goes on training
it: the int8 drop it reaches, measured against the float model it started from, mixes the two.
For each ``RUN_DIR`` (an ``edgesr run`` folder or a ``bench/zoo.py`` row folder, read from
``checkpoints/last.pt`` or ``checkpoints/deploy.pt``), on the data ``edgesr quantize --calib
T91/HR`` uses (:func:`edgesr.quantization.api.recipe_data`, seed 0) and after the recipe's
post-training stages (recipe ``ptq``):

* ``ptq``: the int8 simulation after those stages;
* ``qat``: the recipe's LSQ QAT (L1 to the HR patches, keep-best on the held-out photos);
* ``qat, distilled``: the same QAT towards the float model's output (``qat(teacher=...)``), which
  can only remove quantization error;
* ``float fine-tuned``: the float model trained the same way (Adam at the recipe's QAT learning
  rate, cosine decay, the same steps, batches and patches, keep-best on the same photos): what
  the extra training alone is worth.

PSNR is Y, BT.601, border crop = scale, through the one evaluation path; the int8 rows are the
int8 simulation (:func:`edgesr.quantization.fake_quant_module`), which LiteRT reproduces within
an LSB per tensor. Writes ``DOC`` (markdown) and ``DOC`` with ``.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgesr.core.checkpoint import load_checkpoint  # noqa: E402
from edgesr.core.data import SHARED_DATA, load_folder, resolve_eval_sets  # noqa: E402
from edgesr.core.errors import EdgesrError  # noqa: E402
from edgesr.core.evaluate import TorchUpscaler, evaluate_sets  # noqa: E402
from edgesr.quantization import fake_quant_module, qat  # noqa: E402
from edgesr.quantization.api import recipe_data  # noqa: E402
from edgesr.quantization.qat import degrade, sim_psnr  # noqa: E402
from edgesr.quantization.recipe import RecipeConfig, run_recipe  # noqa: E402


def float_fine_tune(module, hr, val, cfg: RecipeConfig):
    """``module`` trained in float as the recipe's QAT trains its int8 simulation (L1 to ``hr``,
    Adam at ``cfg.qat_lr``, cosine over ``cfg.qat_steps``, batches of ``cfg.qat_batch`` drawn
    with ``cfg.seed``), the best on ``val`` every ``cfg.qat_eval_every`` steps kept."""
    model = copy.deepcopy(module).float()
    lr_patches, val_lr = degrade(hr, model.contract.scale), degrade(val, model.contract.scale)
    opt = torch.optim.Adam(model.parameters(), cfg.qat_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.qat_steps)
    rng = np.random.default_rng(cfg.seed)
    best = (sim_psnr(model.eval(), val_lr, val), copy.deepcopy(model.state_dict()))
    model.train()
    for step in range(cfg.qat_steps):
        idx = torch.from_numpy(rng.choice(hr.shape[0], size=min(cfg.qat_batch, hr.shape[0]), replace=False))
        loss = torch.nn.functional.l1_loss(model(lr_patches[idx]), hr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % cfg.qat_eval_every == 0 or step + 1 == cfg.qat_steps:
            score = sim_psnr(model.eval(), val_lr, val)
            model.train()
            if score > best[0]:
                best = (score, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[1])
    return model.eval()


def control(run_dir: Path, images, sets, cfg: RecipeConfig) -> dict:
    """One run folder's rows (see the module docstring)."""
    ckpt = run_dir / "checkpoints" / "last.pt"
    ckpt = ckpt if ckpt.exists() else run_dir / "checkpoints" / "deploy.pt"
    deploy, _ = load_checkpoint(ckpt, deploy=True)
    deploy.eval()
    calib, hr, val = recipe_data(images, deploy.contract)

    def psnr(module) -> dict:
        return {k: v["psnr_y"] for k, v in evaluate_sets(TorchUpscaler(module.eval()), sets).items()}

    seconds = {}
    t0 = time.perf_counter()
    ptq = run_recipe(deploy, calib, hr, val, recipe="ptq", config=cfg)
    seconds["ptq"] = time.perf_counter() - t0
    rows = {"float": psnr(deploy), "ptq": psnr(fake_quant_module(ptq.module, ptq.ranges))}
    for name, teacher in (("qat", None), ("qat, distilled", deploy)):
        t0 = time.perf_counter()
        tuned, ranges = qat(ptq.module, hr, cfg.qat_steps, ranges=ptq.ranges, range_mode="lsq", lr=cfg.qat_lr,
                            range_lr=cfg.qat_range_lr, batch_size=cfg.qat_batch, seed=cfg.seed, val=val,
                            eval_every=cfg.qat_eval_every, cosine=True, teacher=teacher)
        seconds[name] = time.perf_counter() - t0
        rows[name] = psnr(fake_quant_module(tuned, ranges))
    t0 = time.perf_counter()
    rows["float fine-tuned"] = psnr(float_fine_tune(deploy, hr, val, cfg))
    seconds["float fine-tuned"] = time.perf_counter() - t0
    name = getattr(deploy, "registry_name", "") or run_dir.name
    return {"run_dir": str(run_dir), "model": name, "scale": deploy.contract.scale, "ptq_techniques": ptq.techniques(),
            "psnr": rows, "seconds": {k: round(v, 1) for k, v in seconds.items()}}


def write_markdown(records: list[dict], cfg: RecipeConfig, command: str, path: Path) -> None:
    set_names = list(records[0]["psnr"]["float"])
    lines = [
        "# QAT: quantization recovered, or further training?",
        "",
        f"Generated by `{command}` (`bench/qat_control.py`; do not edit by hand). Recipe QAT settings: "
        f"{cfg.qat_steps} steps, batch {cfg.qat_batch}, lr {cfg.qat_lr:g} (ranges {cfg.qat_range_lr:g}), cosine, "
        f"keep-best every {cfg.qat_eval_every} steps on the held-out T91 photos; the float fine-tuning uses the same. "
        "Int8 rows are the int8 simulation; dB below each model's own float PSNR (negative: above it).",
        "",
    ]
    for s in set_names:
        lines += [
            f"## {s}",
            "",
            "| model | float dB | PTQ drop | QAT drop | distilled QAT drop | float fine-tuned gain | QAT below float fine-tuned |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in records:
            p = {k: v[s] for k, v in r["psnr"].items()}
            f = p["float"]
            lines.append(f"| {r['model']} x{r['scale']} (`{r['run_dir']}`) | {f:.3f} | {f - p['ptq']:.3f} | {f - p['qat']:.3f} | "
                         f"{f - p['qat, distilled']:.3f} | {p['float fine-tuned'] - f:.3f} | "
                         f"{p['float fine-tuned'] - p['qat']:.3f} |")
        lines.append("")
    lines += [
        "Reading: `QAT drop` is what the pipeline reports (the int8 model against the float model it was "
        "quantized from). `float fine-tuned gain` is what the same training does for the float model, and "
        "`QAT below float fine-tuned` the int8 cost against that equally trained float model; `distilled QAT` "
        "fits the float model's output instead of the photos, so it shows what QAT recovers of the "
        "quantization error alone.",
        "",
        "Seconds per stage (2-core CPU): " + "; ".join(
            f"{r['model']} x{r['scale']}: " + ", ".join(f"{k} {v:.0f}" for k, v in r["seconds"].items()) for r in records),
        "",
    ]
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dirs", type=Path, nargs="+")
    p.add_argument("--data-root", type=Path, default=SHARED_DATA)
    p.add_argument("--sets", default="Set5")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "qat_control.md")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    command = "python bench/qat_control.py " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        for d in args.run_dirs:
            if not (d / "checkpoints" / "last.pt").exists() and not (d / "checkpoints" / "deploy.pt").exists():
                raise EdgesrError(f"{d}: no checkpoints/last.pt or checkpoints/deploy.pt")
        torch.set_num_threads(args.threads)
        sets = resolve_eval_sets(str(args.data_root), args.sets.split(","))
        images = load_folder(args.data_root / "T91" / "HR")
        cfg = RecipeConfig()
        records = []
        for d in args.run_dirs:
            print(f"[qat_control] {d}", flush=True)
            records.append(control(d, images, sets, cfg))
            args.doc.with_suffix(".json").write_text(json.dumps({"command": command, "records": records}, indent=1))
        write_markdown(records, cfg, command, args.doc)
        print(args.doc.read_text())
        return 0
    except EdgesrError as exc:
        print(f"qat_control: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
