"""``edgesr run``: the main job (see :mod:`edgesr.app.pipeline`).

Every argument is checked before any work (an unknown ``--formats`` is refused at once, not
after training); the run folder is locked while the job runs, and a resumed run must have
the settings recorded in ``OUT/run.json`` unless ``--force``.
"""

from __future__ import annotations

from pathlib import Path

from edgesr.app.pipeline import DEFAULT_MODEL, DEFAULT_RECIPE, DEFAULT_STEPS, RunConfig, run_pipeline
from edgesr.app.validation import failure_message
from edgesr.commands._args import (
    add_out_argument,
    add_progress_argument,
    csv_choice,
    existing_dir,
    nonnegative_int,
    positive_int,
    scale,
    show_progress,
)
from edgesr.commands.export import PRECISIONS
from edgesr.converters.export import FORMATS, default_formats, plan
from edgesr.lut_baking.finetune import FINETUNE_STEPS
from edgesr.quantization.recipe import RECIPES


def add_arguments(p) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"registry name (default {DEFAULT_MODEL}; see `edgesr list`)")
    p.add_argument("--scale", type=scale, default=2, help="upscaling factor (default 2)")
    p.add_argument("--data", type=existing_dir, help="folder of HR training images (default: the embedded photographs)")
    p.add_argument("--data-root", type=existing_dir, help="folder holding the benchmark sets (Set5/HR, ...)")
    p.add_argument("--sets", help="comma-separated evaluation sets (default: Set5,Set14 with --data-root, else the embedded photos)")
    p.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS, help=f"training steps (default {DEFAULT_STEPS})")
    p.add_argument("--batch", type=positive_int, default=16, help="training patches per step")
    p.add_argument("--qat-steps", type=nonnegative_int, default=RunConfig.qat_steps,
                   help=f"quantization-aware fine-tuning steps (default {RunConfig.qat_steps}; 0 = PTQ only)")
    p.add_argument("--observer", default="minmax", choices=("minmax", "percentile", "mse"),
                   help="int8 calibration observer (with --recipe none)")
    p.add_argument("--recipe", default=DEFAULT_RECIPE or "none", choices=(*RECIPES, "none"),
                   help=f"int8 recipe (default {DEFAULT_RECIPE or 'none'}; 'none': the observer's ranges, then QAT; "
                        "docs/quant.md)")
    p.add_argument("--formats", type=csv_choice(FORMATS), default=None,
                   help=f"export formats, comma-separated from {', '.join(FORMATS)} (default: tflite, coreml, onnx, "
                        "and executorch when the edgesr[executorch] extra is installed)")
    p.add_argument("--precisions", type=csv_choice(PRECISIONS), default="fp32,fp16,int8",
                   help=f"export precisions, comma-separated from {', '.join(PRECISIONS)} (default fp32,fp16,int8)")
    p.add_argument("--lut-finetune-steps", type=nonnegative_int, default=FINETUNE_STEPS,
                   help=f"LUT models: fine-tuning steps of the baked LUT (default {FINETUNE_STEPS})")
    add_out_argument(p, "run folder (default runs/<model>_x<scale>_<time>); reuse it to resume")
    p.add_argument("--force", action="store_true",
                   help="resume in OUT even though its run.json records other settings (steps, seed, data, ...)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seed", type=nonnegative_int, default=0)
    add_progress_argument(p)


def run(args) -> int:
    """CLI entry: run the pipeline; exit 1 when an artifact fails validation."""
    formats = default_formats() if args.formats is None else args.formats
    plan(formats, args.precisions)  # a precision no requested format has: refused before any work
    report = run_pipeline(RunConfig(
        model=args.model, scale=args.scale, data=args.data, data_root=args.data_root,
        sets=tuple(args.sets.split(",")) if args.sets else None, steps=args.steps, batch=args.batch,
        qat_steps=args.qat_steps, observer=args.observer, recipe=None if args.recipe == "none" else args.recipe,
        formats=tuple(formats), precisions=tuple(args.precisions), lut_finetune_steps=args.lut_finetune_steps,
        out=args.out, device=args.device, seed=args.seed, progress=show_progress(args), force=args.force))
    failed = [a for a in report["artifacts"] if a["validation"].get("passed") is False]
    out = Path(report["out"])
    print(f"\nreport: {out / 'report.md'}")
    for a in report["artifacts"]:
        v = a["validation"]
        status = "skipped: " + v["skipped"] if v.get("skipped") else ("ok" if v.get("passed") else "FAILED")
        print(f"  {a['format']:<7} {a['precision']:<5} {a['bytes']:>9,} B  {status}")
    if failed:
        for a in failed:
            print(f"edgesr: {failure_message(a['validation'])}")
        return 1
    return 0
