"""``edgesr quantize CKPT [--calib DIR] [--recipe default|ptq|minmax|none] [--qat-steps N] [--observer minmax|percentile|mse] [-o PATH]``.

By default the int8 recipe ``edgesr run`` applies (:data:`edgesr.app.pipeline.DEFAULT_RECIPE`:
CLE, range search, AdaRound, bias correction, then 1000 steps of LSQ QAT at lr 1e-3, each stage kept where it
helps on held-out photos); ``--recipe none`` calibrates with ``--observer`` and runs
``--qat-steps`` of plain QAT instead. The output checkpoint carries the activation ranges (and
the weights the recipe or QAT left): ``edgesr export`` of it builds the int8 TFLite and Core ML
W8A8 models on exactly those ranges.
"""

from __future__ import annotations

import argparse

from edgesr.commands._args import (
    add_out_argument,
    add_progress_argument,
    existing_dir,
    existing_file,
    nonnegative_int,
    output_file,
    percentile,
    positive_int,
    show_progress,
)
from edgesr.app.pipeline import DEFAULT_RECIPE, RunConfig
from edgesr.core.errors import EdgesrError
from edgesr.quantization.api import quantize_checkpoint
from edgesr.quantization.recipe import RECIPES

NO_RECIPE = "none"
"""``--recipe none``: ``--observer`` calibration, then ``--qat-steps`` of plain QAT."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=existing_file, help="edgesr checkpoint (train or deploy form)")
    p.add_argument("--calib", type=existing_dir, default=None, metavar="DIR",
                   help="folder of real photos for calibration / QAT (default: the embedded training photographs)")
    p.add_argument("--recipe", default=DEFAULT_RECIPE, choices=[*RECIPES, NO_RECIPE],
                   help=f"int8 recipe (default {DEFAULT_RECIPE!r}, as edgesr run: CLE, range search, AdaRound, bias "
                        "correction, then --qat-steps of LSQ QAT, each stage kept where it helps on held-out photos; "
                        "'ptq': the same without QAT; 'minmax': min/max ranges only; 'none': --observer calibration, "
                        "then --qat-steps of plain QAT)")
    p.add_argument("--qat-steps", type=nonnegative_int, default=None,
                   help=f"QAT steps: LSQ inside --recipe default (default {RunConfig.qat_steps}, as edgesr run), plain "
                        "QAT with --recipe none (default 0)")
    p.add_argument("--observer", default=None, choices=["minmax", "percentile", "mse"],
                   help="activation range observer of --recipe none (default minmax)")
    p.add_argument("--percentile", type=percentile, default=None,
                   help="percentile in (50, 100] for --observer percentile (default 99.99)")
    add_out_argument(p, "quantized checkpoint (.pt; default CKPT_int8.pt)", type=output_file(".pt", ".pth"), metavar="PATH")
    p.add_argument("--data-root", type=existing_dir, default=None, help="root of the benchmark sets for the PSNR report")
    p.add_argument("--sets", default=None, help="comma-separated evaluation sets (default: embedded photographs)")
    p.add_argument("--patches", type=positive_int, default=64, help="number of calibration patches (default 64)")
    p.add_argument("--patch-size", type=positive_int, default=64, help="calibration patch side in LR pixels (default 64)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    add_progress_argument(p)


def run(args: argparse.Namespace) -> int:
    recipe = None if args.recipe == NO_RECIPE else args.recipe
    if recipe is not None and args.observer is not None:
        raise EdgesrError(f"--observer applies to --recipe none (--recipe {recipe} chooses its own ranges)")
    if args.qat_steps and recipe is not None and "lsq_qat" not in RECIPES[recipe]:
        raise EdgesrError(f"--qat-steps {args.qat_steps}: --recipe {recipe} runs no QAT (use --recipe default or none)")
    if args.qat_steps is None:
        qat_steps = RunConfig.qat_steps if recipe is not None and "lsq_qat" in RECIPES[recipe] else 0
    else:
        qat_steps = args.qat_steps
    observer = args.observer or "minmax"
    observer_kw = {}
    if args.percentile is not None:
        if observer != "percentile":
            raise EdgesrError("--percentile needs --observer percentile")
        observer_kw["percentile"] = args.percentile
    report = quantize_checkpoint(
        args.checkpoint, args.calib, observer, qat_steps, args.out,
        data_root=args.data_root, sets=args.sets.split(",") if args.sets else None,
        patch=args.patch_size, count=args.patches, seed=args.seed, observer_kw=observer_kw, progress=show_progress(args),
        recipe=recipe,
    )
    how = (f"recipe {recipe}" if recipe else f"{report['observer']} ranges") + f", {report['qat_steps']} QAT steps"
    print(f"wrote {report['out']} ({how}, {len(report['activation_ranges'])} activation ranges)")
    if report.get("recipe"):
        print(f"recipe {report['recipe']['name']}: kept {', '.join(report['recipe']['techniques'])}")
        wide = report["recipe"].get("w8a16")
        if wide:
            print(f"weights for w8a16 and Core ML W8: {wide['weights']} (of {', '.join(wide['val_psnr_db'])})")
    for name, s in report["eval"].items():
        print(f"{name}: float {s['float']['psnr_y']:.3f} dB, int8 simulation {s['int8_sim']['psnr_y']:.3f} dB, "
              f"PSNR drop {s['psnr_drop_db']:.3f} dB")
    print(f"export this model (its ranges, no recalibration): edgesr export {report['out']} --precisions int8")
    return 0
