"""``edgesr export CKPT --formats tflite,coreml,onnx,executorch --precisions fp32,fp16,int8 [--out DIR] [--calib DIR]``.

Writes each artifact (atomically) with its sidecar ``PATH.json`` into ``--out`` (default: the
checkpoint's folder) and prints one line per artifact. int8 / w8a8 calibrate on real image
patches: ``--calib DIR`` (a folder of HR photographs) or the embedded training photographs.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgesr.converters.export import (
    calibration_patches,
    default_formats,
    deploy_module,
    export,
    plan,
    writable_dir,
)
from edgesr.core.errors import EdgesrError


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_arguments(p) -> None:
    p.add_argument("checkpoint", help="edgesr checkpoint (train or deploy form)")
    p.add_argument("--formats", default=None,
                   help="comma list of tflite, coreml, onnx, executorch (default: all; executorch when installed)")
    p.add_argument("--precisions", default="fp32,fp16,int8",
                   help="comma list: fp32, fp16, int8 (TFLite full integer; Core ML w8 and w8a8), w8, w8a8")
    p.add_argument("--out", default=None, help="output folder (default: the checkpoint's folder)")
    p.add_argument("--calib", default=None, help="folder of HR photographs for int8 calibration (default: embedded photos)")
    p.add_argument("--calib-patches", type=int, default=32, help="number of calibration patches (default 32)")
    p.add_argument("--io-dtype", choices=("int8", "uint8"), default="int8", help="int8 TFLite input/output dtype")
    p.add_argument("--activation-ranges", default=None,
                   help="JSON file {torch.fx node name: [min, max]} (from quantization) for the int8 TFLite model")
    p.add_argument("--json", action="store_true", help="print the artifact list as JSON")


def _load_ranges(path: str | None) -> dict | None:
    if path is None:
        return None
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        return {str(k): (float(v[0]), float(v[1])) for k, v in raw.items()}
    except FileNotFoundError:
        raise EdgesrError(f"{path}: no such activation-ranges file") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise EdgesrError(f"{path}: not a JSON object of node name -> [min, max] ({type(exc).__name__})") from None


def run(args) -> int:
    import sys


    formats = default_formats() if args.formats is None else _csv(args.formats)
    precisions = _csv(args.precisions)
    pairs = plan(formats, precisions)  # validates names before any slow work
    module = deploy_module(args.checkpoint)
    out = writable_dir(Path(args.out) if args.out else Path(args.checkpoint).resolve().parent)
    if args.calib_patches < 1:
        raise EdgesrError(f"--calib-patches must be at least 1, got {args.calib_patches}")
    calibration = None
    if any(p in ("int8", "w8a8") for _, p in pairs):
        calibration = calibration_patches(module.contract, args.calib, count=args.calib_patches)
    results = export(module, out, formats, precisions, calibration=calibration,
                     activation_ranges=_load_ranges(args.activation_ranges), io_dtype=args.io_dtype,
                     source=str(args.checkpoint), progress=sys.stderr.isatty())
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['format']:<7} {r['precision']:<5} {r['bytes']:>9} B  {r['path']}")
    return 0
