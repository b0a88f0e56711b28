"""``edgesr export CKPT --formats tflite,coreml,onnx,executorch --precisions fp32,fp16,int8 [-o DIR] [--calib DIR] [--input-size HxW]``.

Writes each artifact (atomically) into ``-o/--out`` (default: the checkpoint's folder), its
contract and provenance embedded in the file (``--sidecar``: also as ``PATH.json``), and
prints one line per artifact. TFLite int8, TFLite w8a16 and Core ML w8a8 take their activation ranges from a
quantized checkpoint (``edgesr quantize`` output: the ranges that calibration or QAT produced;
nothing is recalibrated, ``--calib`` is not used); a float checkpoint is calibrated on real
image patches: ``--calib DIR`` (a folder of HR photographs) or the embedded training photographs.

``--input-size HxW`` (LR pixels, height x width) fixes the input shape: TFLite ``[1, H, W, C]``,
ONNX static dims, Core ML a fixed shape; ``--input-size 360x640,720x1280`` gives Core ML
enumerated shapes (with ``--formats coreml``). ExecuTorch programs stay dynamic.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgesr.commands._args import (
    add_out_argument,
    add_progress_argument,
    csv_choice,
    existing_dir,
    existing_file,
    input_sizes,
    positive_int,
    show_progress,
)
from edgesr.converters.export import (
    FORMAT_PRECISIONS,
    RANGED_PRECISIONS,
    FORMATS,
    check_input_sizes,
    default_formats,
    deploy_module,
    export,
    load_model,
    plan,
    writable_dir,
)
from edgesr.core.evaluate import calibration_patches
from edgesr.quantization.api import QuantizedCheckpoint

#: every precision name --precisions accepts: the formats' own, and int8 (Core ML: w8 and w8a8)
PRECISIONS = tuple(dict.fromkeys(["fp32", "fp16", "int8", *(p for ps in FORMAT_PRECISIONS.values() for p in ps)]))


def add_arguments(p) -> None:
    p.add_argument("checkpoint", type=existing_file, help="edgesr checkpoint (train or deploy form)")
    p.add_argument("--formats", type=csv_choice(FORMATS), default=None,
                   help=f"comma list of {', '.join(FORMATS)} (default: tflite, coreml, onnx, and executorch "
                        "when the edgesr[executorch] extra is installed)")
    p.add_argument("--precisions", type=csv_choice(PRECISIONS), default="fp32,fp16,int8",
                   help="comma list: fp32, fp16, int8 (TFLite full integer; Core ML w8 and w8a8), w8a16 (TFLite int8 "
                        "weights, int16 activations, float I/O), w8, w8a8")
    add_out_argument(p, "output folder (default: the checkpoint's folder)", metavar="DIR")
    p.add_argument("--calib", type=existing_dir, default=None,
                   help="folder of HR photographs for int8 calibration of a float checkpoint (default: embedded "
                        "photos; a quantized checkpoint uses its own ranges)")
    p.add_argument("--calib-patches", type=positive_int, default=32, help="number of calibration patches (default 32)")
    p.add_argument("--input-size", type=input_sizes, default=None, metavar="HxW[,HxW...]",
                   help="fixed LR input size, height x width in pixels (e.g. 360x640 for a 640x360 landscape frame), "
                        "for the GPU delegate, NNAPI and the Neural Engine: TFLite [1,H,W,C], ONNX static dims, "
                        "Core ML fixed; several sizes (360x640,720x1280) give Core ML enumerated shapes. Default: "
                        "dynamic H x W. Photos of other sizes run in tiles of this size")
    p.add_argument("--io-dtype", choices=("int8", "uint8"), default="int8", help="int8 TFLite input/output dtype")
    p.add_argument("--sidecar", action="store_true",
                   help="also write each artifact's metadata to PATH.json (it is always embedded in the file)")
    p.add_argument("--json", action="store_true", help="print the artifact list as JSON")
    add_progress_argument(p)


def run(args) -> int:
    formats = default_formats(args.input_size) if args.formats is None else args.formats
    precisions = args.precisions
    pairs = plan(formats, precisions)  # validates the combinations before any slow work
    model = load_model(args.checkpoint)  # a quantized checkpoint carries its ranges
    check_input_sizes(deploy_module(model), formats, args.input_size)  # before the output folder is made
    out = writable_dir(Path(args.out) if args.out else Path(args.checkpoint).resolve().parent)
    calibration = None
    if isinstance(model, QuantizedCheckpoint) and args.calib is not None:
        print(f"note: {args.checkpoint} is quantized: its activation ranges are used, --calib is ignored", file=sys.stderr)
    if not isinstance(model, QuantizedCheckpoint) and any(p in RANGED_PRECISIONS for _, p in pairs):
        calibration = calibration_patches(args.calib, model.contract, count=args.calib_patches)
    results = export(model, out, formats, precisions, calibration=calibration, io_dtype=args.io_dtype,
                     source=str(args.checkpoint), progress=show_progress(args), sidecar=args.sidecar,
                     input_sizes=args.input_size)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['format']:<7} {r['precision']:<5} {r['bytes']:>9} B  {r['path']}")
    return 0
