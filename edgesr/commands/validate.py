"""``edgesr validate ARTIFACT --reference CKPT [--data-root DIR --sets Set5] [-o OUT.json]``.

Runs the artifact through its own runtime and the checkpoint's float deploy module through
the same evaluation path on whole real images (default: the embedded validation
photographs), prints max abs error, PSNR vs the reference and PSNR/SSIM vs HR per set
(:mod:`edgesr.app.validation`). Exit 0 within tolerance (or Core ML numbers skipped with a
reason and structure valid), 1 beyond tolerance (the message names the artifact and the
numbers), 2 for bad input.

``--reference integer`` needs no checkpoint: it runs an int8 ``.tflite`` with LiteRT in every
kernel family and with edgesr's NumPy integer reference on the LR images and reports
``{"integer_reference": {"mismatched_elements", "max_lsb_diff", "elements", "per_kernels"}}``
(exit 1 on any differing element). ``--integer-reference`` adds the same to a checkpoint
validation.

``--emulation`` adds the emulation matrix (:func:`edgesr.app.validation.emulation_matrix`:
``cpu_reference``, ``xnnpack``, ``gpu_fp16``, ``npu_int8``, each ``{psnr_y, ssim_y,
psnr_vs_reference_db, max_abs_err}`` or ``{skipped}``) to the summary and the JSON, on the
same images (``--emulation-crop PX``: centre crops of them). It is informative: it never
changes the exit status. Off by default (LiteRT's reference kernels and the NumPy integer
reference are slow on large images); ``edgesr run`` records it on crops anyway.
"""

from __future__ import annotations

import json
import os
import sys

from edgesr.app.integer_litert import is_integer_graph, validate_integer
from edgesr.app.validation import (
    INT8_MAX_DROP_DB,
    emulation_images,
    emulation_matrix,
    failure_message,
    validate_artifact,
)
from edgesr.commands._args import (
    add_out_argument,
    add_progress_argument,
    existing_dir,
    existing_file,
    existing_path,
    nonnegative_int,
    output_file,
    positive_float,
    positive_int,
    show_progress,
)
from edgesr.converters.partitions import xnnpack_line
from edgesr.core.atomic import write_text_atomic
from edgesr.core.checkpoint import load_checkpoint
from edgesr.core.contract import read_artifact_metadata
from edgesr.core.data import resolve_eval_sets
from edgesr.core.errors import EdgesrError
from edgesr.quantization.api import is_quantized, read_quantized
from edgesr.quantization.integer_ref import IntegerGraph, contract_of_tflite


def _reference(text: str) -> str:
    """``--reference``: the word ``integer`` (when no file has that name) or an existing checkpoint."""
    return text if text == "integer" and not os.path.exists(text) else existing_file(text)


def _source_module(source: str, artifact: str, precision: str | None):
    """The module ``artifact`` was exported from: of a quantized checkpoint, the one its precision
    takes (:meth:`~edgesr.quantization.api.QuantizedCheckpoint.module_for`: the weights for wide
    activations for w8a16 and Core ML W8, else its deploy module)."""
    if not is_quantized(source):
        return load_checkpoint(source, deploy=True)[0]
    q = read_quantized(source)
    if precision is None and os.path.exists(artifact):  # a file, or an .mlpackage folder
        try:
            precision = read_artifact_metadata(artifact).get("provenance", {}).get("precision")
        except EdgesrError:
            precision = None
    return q.module_for(precision or "int8")


def add_arguments(p) -> None:
    p.add_argument("artifact", type=existing_path, help="exported model: .tflite, .onnx, .mlpackage or .pte")
    p.add_argument("--reference", required=True, type=_reference,
                   help="the edgesr checkpoint the artifact was exported from, or 'integer': compare an int8 or w8a16 .tflite "
                        "with edgesr's NumPy integer reference only, bit for bit (no checkpoint needed; "
                        "JSON {integer_reference: {mismatched_elements, max_lsb_diff, ...}}; exit 1 on a mismatch)")
    p.add_argument("--source", type=existing_file, default=None, metavar="CKPT",
                   help="the checkpoint the artifact was exported from when it is not --reference (e.g. the quantized "
                        "CKPT_int8.pt): the errors vs the reference (max abs, 99.9th percentile, PSNR) are measured "
                        "against it, the PSNR drop vs HR against --reference")
    p.add_argument("--data-root", type=existing_dir, help="folder holding Set5/HR, Set14/HR, ... (default: embedded photographs)")
    p.add_argument("--sets", help="comma-separated set names under --data-root, or image folders")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8", "w8a16", "w8", "w8a8"), default=None,
                   help="tolerance class (default: the artifact's metadata)")
    p.add_argument("--int8-tolerance-db", type=positive_float, default=None,
                   help="allowed PSNR drop vs the reference for int8/w8/w8a8 (default 0.15 dB)")
    p.add_argument("--num-threads", type=positive_int, default=None, help="runtime threads (TFLite, ONNX)")
    p.add_argument("--kernels", choices=("xnnpack", "optimized", "reference"), default=None,
                   help="TFLite: LiteRT kernel family: xnnpack (default interpreter), optimized (builtin kernels, "
                        "no delegate) or reference (BUILTIN_REF reference kernels)")
    p.add_argument("--reference-kernels", action="store_true", help="TFLite: same as --kernels reference")
    p.add_argument("--integer-reference", action="store_true",
                   help="int8 TFLite: also compare LiteRT with edgesr's NumPy integer reference bit for bit "
                        "(adds integer_reference {mismatched_elements, max_lsb_diff} to the JSON; exit 1 on a mismatch)")
    p.add_argument("--emulation", action="store_true",
                   help="also score the artifact as each phone engine would run it (cpu_reference, xnnpack, gpu_fp16, "
                        "npu_int8; adds emulation {engine: {psnr_y, ssim_y, psnr_vs_reference_db, max_abs_err} | "
                        "{skipped}} to the JSON)")
    p.add_argument("--emulation-crop", type=nonnegative_int, default=0, metavar="PX",
                   help="with --emulation: centre crops of at most PX x PX HR pixels (default 0: whole images)")
    add_out_argument(p, "also write the result as JSON to OUT (.json)", type=output_file(".json"), aliases=("--json",))
    add_progress_argument(p)


def _fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def _integer_only(args, sets) -> int:
    """``--reference integer``: LiteRT (every kernel family) vs the NumPy integer reference."""
    from pathlib import Path

    import numpy as np


    path = Path(args.artifact)
    if path.suffix.lower() != ".tflite":
        raise EdgesrError(f"{path}: --reference integer is for int8 and w8a16 .tflite artifacts")
    used = [flag for flag, on in (("--emulation", args.emulation), ("--integer-reference", args.integer_reference),
                                  ("--kernels", args.kernels), ("--reference-kernels", args.reference_kernels)) if on]
    if used:
        raise EdgesrError(f"--reference integer compares every kernel family itself; drop {', '.join(used)}")
    graph = IntegerGraph(path, "reference")
    dtype = graph.tensors[graph.inputs[0]].dtype
    if not is_integer_graph(graph):
        raise EdgesrError(f"{path}: --reference integer needs an int8/uint8-input or a w8a16 TFLite model "
                          f"(input is {np.dtype(dtype).name}, no int16 graph)")
    contract = contract_of_tflite(path, graph)
    ir = validate_integer(path, sets, contract)
    result = {"artifact": str(path), "reference": "integer", "integer_reference": ir,
              "passed": ir["mismatched_elements"] == 0}
    print(f"{path}  (integer reference)")
    print(f"  {ir['mismatched_elements']} of {ir['elements']} elements differ (max {ir['max_lsb_diff']} LSB; "
          + ", ".join(f"{k} {v['mismatched_elements']}" for k, v in ir["per_kernels"].items()) + ")")
    if args.out:
        write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    if not result["passed"]:
        print(f"edgesr: validate: {path}: LiteRT and the integer reference differ on {ir['mismatched_elements']} "
              f"elements (max {ir['max_lsb_diff']} LSB)", file=sys.stderr)
        return 1
    print("  passed")
    return 0


def run(args) -> int:
    from pathlib import Path


    if args.emulation_crop and not args.emulation:
        raise EdgesrError("--emulation-crop needs --emulation")
    if args.emulation and Path(args.artifact).suffix.lower() not in (".tflite", ".onnx", ".mlpackage"):
        raise EdgesrError(f"{args.artifact}: --emulation is for .tflite, .onnx and .mlpackage artifacts")
    sets = resolve_eval_sets(args.data_root, args.sets.split(",") if args.sets else None)
    if args.reference == "integer" and not Path(args.reference).exists():
        return _integer_only(args, sets)
    reference, _ = load_checkpoint(args.reference, deploy=True)
    options = {}
    if args.num_threads is not None:
        options["num_threads"] = args.num_threads
    kernels = args.kernels
    if args.reference_kernels:
        if kernels not in (None, "reference"):
            raise EdgesrError(f"--reference-kernels contradicts --kernels {kernels}")
        kernels = "reference"
    if kernels is not None:
        if not args.artifact.endswith(".tflite"):
            raise EdgesrError("--kernels / --reference-kernels apply to .tflite artifacts only")
        options["kernels"] = kernels
    tol = INT8_MAX_DROP_DB if args.int8_tolerance_db is None else args.int8_tolerance_db
    source = _source_module(args.source, args.artifact, args.precision) if args.source else None
    result = validate_artifact(args.artifact, reference, sets, args.precision, int8_tolerance_db=tol,
                               progress=show_progress(args), source_reference=source, **options)
    if args.integer_reference:  # edgesr.app.integer_litert (issue 6)
        ir = validate_integer(args.artifact, sets, reference.contract)
        result["integer_reference"] = ir
        if ir["mismatched_elements"]:
            result["passed"] = False
    if args.emulation:
        images = emulation_images(sets, args.emulation_crop)
        result["emulation"] = emulation_matrix(args.artifact, reference, images, result["precision"],
                                               progress=show_progress(args))
        result["emulation_images"] = {"crop_px": args.emulation_crop or None, "images": [n for n, _ in images]}
    print(f"{result['artifact']}  ({result['precision']})")
    if result["skipped"]:
        print(f"  numbers skipped: {result['skipped']}")
    else:
        against = "source" if "source_reference_eval" in result else "reference"
        need = result["tolerance"].get("min_psnr_vs_reference_db")
        print(f"  vs {against}: max abs error {_fmt(result['max_abs_err'], '.3g')}, 99.9th percentile "
              f"{_fmt(result['p999_abs_err'], '.3g')}, PSNR {_fmt(result['psnr_vs_reference_db'], '.2f')} dB"
              + (f" (needs >= {need:.2f} dB)" if need is not None else "")
              + (f"; as an independent error it would cost {result['independent_error_cost_db']:.3f} dB"
                 if result.get("independent_error_cost_db") is not None else ""))
        for name, r in result["eval"].items():
            ref = result["reference_eval"][name]
            src = result.get("source_reference_eval", {}).get(name)
            print(f"  {name:<10} {r['psnr_y']:7.3f} dB / {r['ssim_y']:.4f}   (reference {ref['psnr_y']:7.3f} / {ref['ssim_y']:.4f}"
                  + (f"; source {src['psnr_y']:7.3f} / {src['ssim_y']:.4f})" if src else ")"))
    if "structure" in result:
        print(f"  structure: {'ok' if result['structure']['passed'] else '; '.join(result['structure']['problems'])}")
    if "xnnpack" in result:
        print(f"  {xnnpack_line(result['xnnpack'])}")
    if "integer_reference" in result:
        ir = result["integer_reference"]
        print(f"  integer reference vs LiteRT: {ir['mismatched_elements']} of {ir['elements']} elements differ "
              f"(max {ir['max_lsb_diff']} LSB; " + ", ".join(f"{k} {v['mismatched_elements']}" for k, v in ir["per_kernels"].items()) + ")")
    if "emulation" in result:
        crop = result["emulation_images"]["crop_px"]
        print(f"  emulation matrix ({f'{crop} px crops' if crop else 'whole images'}; PSNR-Y / SSIM-Y vs HR, vs the float reference):")
        for name, row in result["emulation"].items():
            if "skipped" in row:
                print(f"    {name:<14} skipped: {row['skipped']}")
            else:
                vs_xnn = row.get("max_abs_err_vs_xnnpack")
                print(f"    {name:<14} {row['psnr_y']:7.3f} dB / {row['ssim_y']:.4f}   vs reference "
                      f"{_fmt(row['psnr_vs_reference_db'], '.2f')} dB, max abs err {row['max_abs_err']:.3g}"
                      + (f", vs xnnpack {vs_xnn:.3g}" if vs_xnn is not None else ""))
    if args.out:
        write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    if not result["passed"]:
        print(f"edgesr: validate: {failure_message(result)}", file=sys.stderr)
        return 1
    print("  passed")
    return 0
