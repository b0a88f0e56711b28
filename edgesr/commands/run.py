"""``edgesr run``: the main job (see :mod:`edgesr.app.pipeline`)."""

from __future__ import annotations

from pathlib import Path

from edgesr.app.pipeline import DEFAULT_MODEL, DEFAULT_STEPS, run_pipeline
from edgesr.app.validation import failure_message


def add_arguments(p) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"registry name (default {DEFAULT_MODEL}; see `edgesr list`)")
    p.add_argument("--scale", type=int, default=2, help="upscaling factor (default 2)")
    p.add_argument("--data", help="folder of HR training images (default: the embedded photographs)")
    p.add_argument("--data-root", help="folder holding the benchmark sets (Set5/HR, ...)")
    p.add_argument("--sets", help="comma-separated evaluation sets (default: Set5,Set14 with --data-root, else the embedded photos)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"training steps (default {DEFAULT_STEPS})")
    p.add_argument("--batch", type=int, default=16, help="training patches per step")
    p.add_argument("--qat-steps", type=int, default=200, help="quantization-aware fine-tuning steps (0 = PTQ only)")
    p.add_argument("--observer", default="minmax", choices=("minmax", "percentile", "mse"), help="int8 calibration observer")
    p.add_argument("--formats", default=None,
                   help="export formats (default tflite,coreml,onnx, plus executorch when it is installed)")
    p.add_argument("--precisions", default="fp32,fp16,int8", help="export precisions")
    p.add_argument("--lut-finetune-steps", type=int, default=300, help="LUT models: fine-tuning steps of the baked LUT")
    p.add_argument("--out", help="run folder (default runs/<model>_x<scale>_<time>); reuse it to resume")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    """CLI entry: run the pipeline; exit 1 when an artifact fails validation."""
    report = run_pipeline(
        model=args.model, scale=args.scale, data=args.data, data_root=args.data_root,
        sets=args.sets.split(",") if args.sets else None, steps=args.steps, batch=args.batch,
        qat_steps=args.qat_steps, observer=args.observer, formats=args.formats.split(",") if args.formats else None,
        precisions=args.precisions.split(","), lut_finetune_steps=args.lut_finetune_steps, out=args.out,
        device=args.device, seed=args.seed, progress=not args.no_progress)
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


