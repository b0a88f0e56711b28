"""``edgesr export CKPT --formats tflite,coreml,onnx --precisions fp32,fp16,int8 [-o DIR] [--calib DIR]``.

Writes each artifact (atomically) into ``-o/--out`` (default: the checkpoint's folder), its
contract and provenance embedded in the file (``--sidecar``: also as ``PATH.json``), and
prints one line per artifact. int8 / w8a8 calibrate on real image patches: ``--calib DIR``
(a folder of HR photographs) or the embedded training photographs.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgesr.commands._args import (
    add_out_argument,
    add_progress_argument,
    csv_choice,
    existing_dir,
    existing_file,
    positive_int,
    show_progress,
)
from edgesr.converters.export import (
    FORMAT_PRECISIONS,
    FORMATS,
    deploy_module,
    export,
    plan,
    writable_dir,
)
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import calibration_patches

#: every precision name --precisions accepts: the formats' own, and int8 (Core ML: w8 and w8a8)
PRECISIONS = tuple(dict.fromkeys(["fp32", "fp16", "int8", *(p for ps in FORMAT_PRECISIONS.values() for p in ps)]))


def add_arguments(p) -> None:
    p.add_argument("checkpoint", type=existing_file, help="edgesr checkpoint (train or deploy form)")
    p.add_argument("--formats", type=csv_choice(FORMATS), default=",".join(FORMATS),
                   help=f"comma list of {', '.join(FORMATS)} (default: all)")
    p.add_argument("--precisions", type=csv_choice(PRECISIONS), default="fp32,fp16,int8",
                   help="comma list: fp32, fp16, int8 (TFLite full integer; Core ML w8 and w8a8), w8, w8a8")
    add_out_argument(p, "output folder (default: the checkpoint's folder)", metavar="DIR")
    p.add_argument("--calib", type=existing_dir, default=None,
                   help="folder of HR photographs for int8 calibration (default: embedded photos)")
    p.add_argument("--calib-patches", type=positive_int, default=32, help="number of calibration patches (default 32)")
    p.add_argument("--io-dtype", choices=("int8", "uint8"), default="int8", help="int8 TFLite input/output dtype")
    p.add_argument("--activation-ranges", type=existing_file, default=None,
                   help="JSON file {torch.fx node name: [min, max]} (from quantization) for the int8 TFLite model")
    p.add_argument("--sidecar", action="store_true",
                   help="also write each artifact's metadata to PATH.json (it is always embedded in the file)")
    p.add_argument("--json", action="store_true", help="print the artifact list as JSON")
    add_progress_argument(p)


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
    formats, precisions = args.formats, args.precisions
    pairs = plan(formats, precisions)  # validates the combinations before any slow work
    ranges = _load_ranges(args.activation_ranges)
    module = deploy_module(args.checkpoint)
    out = writable_dir(Path(args.out) if args.out else Path(args.checkpoint).resolve().parent)
    calibration = None
    if any(p in ("int8", "w8a8") for _, p in pairs):
        calibration = calibration_patches(args.calib, module.contract, count=args.calib_patches)
    results = export(module, out, formats, precisions, calibration=calibration,
                     activation_ranges=ranges, io_dtype=args.io_dtype,
                     source=str(args.checkpoint), progress=show_progress(args), sidecar=args.sidecar)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['format']:<7} {r['precision']:<5} {r['bytes']:>9} B  {r['path']}")
    return 0
