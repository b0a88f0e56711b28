"""The export library: a model or checkpoint -> TFLite / Core ML / ONNX / ExecuTorch artifacts with metadata.

Per-format functions (:func:`export_tflite`, :func:`export_onnx`, :func:`export_coreml`,
:func:`export_executorch`)
write one artifact with its metadata (contract + provenance) embedded in the file
(:mod:`edgesr.converters.metadata`), and on request (``sidecar=True``) the same JSON in a
sidecar ``PATH.json``; :func:`export` runs the requested
formats x precisions. Artifacts are named ``{model}_x{scale}_{precision}.{ext}``.

Precisions per format (a requested precision a format does not have is skipped for that format):
``tflite``: fp32, fp16, int8 (full integer), w8a16 (int8 weights, int16 activations, float I/O;
never a default: request it); ``onnx``: fp32; ``coreml``: fp32, fp16,
w8 (int8 weights), w8a8 (int8 weights and activations); ``int8`` requested for Core ML means
w8 and w8a8; ``executorch`` (``.pte`` lowered to XNNPACK, the ``edgesr[executorch]`` extra):
fp32, fp16, int8 (PT2E); ``executorch-coreml`` (``.coreml.pte``, ExecuTorch's Core ML delegate for
iOS: compiled here, runnable only on Apple devices, so never a default format): fp32, fp16.

Input shapes: dynamic H x W by default; ``input_sizes=[(H, W)]`` (LR pixels, ``edgesr export
--input-size HxW``) gives TFLite a fixed ``[1, H, W, C]`` signature, ONNX static dims and Core ML
a fixed shape; several sizes give Core ML ``EnumeratedShapes`` (TFLite and ONNX take one size;
ExecuTorch programs stay dynamic, so they are refused with sizes and left out of the default
formats). :func:`check_input_sizes` checks them before any work; the contract records them
with the model's receptive field, and :func:`edgesr.app.artifacts.open_artifact` runs such an
artifact on any photo in tiles of its size (:class:`edgesr.core.tiling.FixedShapeUpscaler`).

Activation ranges (TFLite int8 and Core ML W8A8 use the same ones): a quantized checkpoint
(``edgesr quantize`` output, :class:`edgesr.quantization.api.QuantizedCheckpoint`) brings its
own and nothing is recalibrated; any other model is calibrated once per :func:`export` call
(min/max on the calibration patches, :func:`int8_ranges`). TFLite w8a16 takes the checkpoint's
``minmax_ranges`` (the quantized module's own min/max, recorded by ``edgesr quantize``; the
int8 ranges where an older checkpoint lacks them): ranges tuned for int8 may clip, which int16
cannot make up for. It converts the checkpoint's ``w8a16_module`` where ``edgesr quantize``
found the float model's own weights better at int16 activations than the recipe's. Each int8/w8a8/w8a16 artifact's metadata records its ranges under
``provenance["quantization"]`` with ``ranges_from`` ``"checkpoint"`` or ``"export calibration"``.
"""

from __future__ import annotations

import operator
import os
from pathlib import Path

import numpy as np
from edgesr.converters import coreml, onnx_export, tflite
from edgesr.converters import executorch as et
from edgesr.converters.metadata import build_metadata, write_sidecar
from edgesr.quantization.api import QuantizedCheckpoint, is_quantized, read_quantized
from edgesr.quantization.calibration import calibrate

from edgesr.core.checkpoint import load_checkpoint
from edgesr.core.contract import normalize_input_sizes, sidecar_path
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import calibration_patches

FORMATS = ("tflite", "coreml", "onnx", "executorch", "executorch-coreml")
FORMAT_PRECISIONS = {"tflite": ("fp32", "fp16", "int8", "w8a16"), "onnx": ("fp32",), "coreml": ("fp32", "fp16", "w8", "w8a8"),
                     "executorch": et.DELEGATE_PRECISIONS["xnnpack"],
                     "executorch-coreml": et.DELEGATE_PRECISIONS["coreml"]}
RANGED_PRECISIONS = ("int8", "w8a16", "w8a8")
"""Precisions built on activation ranges (:func:`int8_ranges`): a quantized checkpoint's, or one
min/max calibration per :func:`export` call shared by all of them."""
SUFFIX = {"tflite": ".tflite", "onnx": ".onnx", "coreml": ".mlpackage", "executorch": ".pte",
          "executorch-coreml": ".coreml.pte"}


FIXED_SHAPE_FORMATS = ("tflite", "onnx", "coreml")
"""Formats that take ``input_sizes`` (a fixed input shape); only ``coreml`` takes several."""


def default_formats(input_sizes=None) -> tuple[str, ...]:
    """The formats exported when none are named: tflite, coreml, onnx, and ``executorch`` when
    the optional ExecuTorch package is installed and no ``input_sizes`` are given
    (``executorch-coreml`` only on request: it cannot be validated off Apple devices)."""
    return tuple(f for f in FORMATS if f != "executorch-coreml"
                 and (f != "executorch" or (not input_sizes and et.unavailable_reason() is None)))


def check_input_sizes(module, formats, input_sizes) -> tuple[tuple[int, int], ...] | None:
    """Check fixed/enumerated input sizes against the formats and the model, before any work.

    Args:
        module: the deploy module (its ``receptive_field``, LR pixels, sets the tiling halo
            ``receptive_field // 2``).
        formats: the formats to export.
        input_sizes: ``[(H, W), ...]`` LR pixels, or None (dynamic shapes).

    Returns:
        the sizes as a tuple of ``(H, W)`` ints, or None.

    Raises:
        EdgesrError: a format outside :data:`FIXED_SHAPE_FORMATS`, several sizes for TFLite or
            ONNX, a model that declares no receptive field, or a side not bigger than two halos
            (tiles of that size could not keep any pixel).
    """
    if not input_sizes:
        return None
    try:
        sizes = normalize_input_sizes([tuple(operator.index(v) for v in hw) for hw in input_sizes])
    except (ValueError, TypeError) as exc:
        raise EdgesrError(f"input sizes: {exc}") from None
    shown = ",".join(f"{h}x{w}" for h, w in sizes)
    bad = [f for f in formats if f not in FIXED_SHAPE_FORMATS]
    if bad:
        raise EdgesrError(f"input size {shown}: {bad[0]} exports keep dynamic shapes; fixed sizes are for "
                          f"{', '.join(FIXED_SHAPE_FORMATS)}")
    single = [f for f in formats if f != "coreml"]
    if len(sizes) > 1 and single:
        raise EdgesrError(f"input sizes {shown}: enumerated shapes are Core ML only; {single[0]} takes one fixed "
                          "size (use --formats coreml, or export once per size)")
    rf = getattr(module, "receptive_field", None)
    if not isinstance(rf, int) or isinstance(rf, bool) or rf < 1:
        raise EdgesrError(f"input size {shown}: {type(module).__name__} declares no receptive field, so a fixed-size "
                          "artifact could not be tiled over larger photos")
    halo = rf // 2
    small = [(h, w) for h, w in sizes if min(h, w) <= 2 * halo]
    if small:
        h, w = small[0]
        raise EdgesrError(f"input size {h}x{w}: each side must be more than {2 * halo} pixels (twice the halo of the "
                          f"model's {rf}-pixel receptive field)")
    return sizes


def deploy_module(model_or_checkpoint):
    """A deploy-form module from an ``nn.Module`` (collapsed if it has ``collapse``), a
    :class:`QuantizedCheckpoint` (its module) or a checkpoint path.

    Raises:
        EdgesrError: unreadable checkpoint (see :func:`edgesr.core.checkpoint.load_checkpoint`).
    """
    if isinstance(model_or_checkpoint, (str, os.PathLike)):
        model, _ = load_checkpoint(model_or_checkpoint, deploy=True)
        return model
    if isinstance(model_or_checkpoint, QuantizedCheckpoint):
        return model_or_checkpoint.module
    model = model_or_checkpoint
    return (model.collapse() if hasattr(model, "collapse") else model).eval()


def load_model(model_or_checkpoint):
    """What :func:`export` exports: a :class:`QuantizedCheckpoint` for a quantized checkpoint
    path (or one given as such), else the deploy module (:func:`deploy_module`).

    Raises:
        EdgesrError: unreadable checkpoint, or a quantized one whose ranges do not fit its graph.
    """
    if isinstance(model_or_checkpoint, (str, os.PathLike)) and is_quantized(model_or_checkpoint):
        return read_quantized(model_or_checkpoint)
    if isinstance(model_or_checkpoint, QuantizedCheckpoint):
        return model_or_checkpoint
    return deploy_module(model_or_checkpoint)


def int8_ranges(model, calibration=None) -> QuantizedCheckpoint:
    """The activation ranges of the int8 artifacts of ``model``.

    Args:
        model: a :class:`QuantizedCheckpoint` (returned as is: its ranges are the ones QAT or
            calibration produced) or a deploy ``nn.Module``.
        calibration: for a module: float32 (N, C, h, w) NCHW real patches in the model's input
            space (:func:`edgesr.core.evaluate.calibration_patches`); min/max ranges are
            calibrated on them (:func:`edgesr.quantization.calibration.calibrate`).

    Raises:
        EdgesrError: a module without calibration patches.
    """
    if isinstance(model, QuantizedCheckpoint):
        return model
    if calibration is None or len(calibration) == 0:
        raise EdgesrError("int8 export of a float model needs calibration patches (real images; e.g. --calib DIR), "
                          "or a quantized checkpoint ('edgesr quantize')")
    ranges = calibrate(model, np.asarray(calibration, dtype=np.float32), "minmax")
    return QuantizedCheckpoint(model, ranges, None, {"observer": "minmax", "calib": f"{len(calibration)} patches"})


def writable_dir(out_dir: str | os.PathLike) -> Path:
    """Create ``out_dir`` if needed and check that files can be created in it (before slow work).

    Raises:
        EdgesrError: the folder cannot be created or written (the message names it).
    """
    import tempfile

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise EdgesrError(f"{out_dir}: cannot write artifacts here ({exc.strerror})") from None
    return out_dir


def _finish(path: Path, meta: dict, fmt: str, precision: str, write, sidecar: bool = False) -> dict:
    """Write the artifact (``write(path)``, atomic; it embeds ``meta``), then the optional
    sidecar; remove both on failure. Without ``sidecar``, a stale ``PATH.json`` from an earlier
    export is removed (it would describe another file)."""
    write(path)
    try:
        if sidecar:
            write_sidecar(path, meta)
        else:
            sidecar_path(path).unlink(missing_ok=True)
    except BaseException:
        import shutil

        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        raise
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    return {"format": fmt, "precision": precision, "path": str(path), "bytes": int(size)}


def export_tflite(model, path, precision: str = "fp32", calibration=None, io_dtype: str = "int8",
                  source=None, sidecar: bool = False, input_size: tuple[int, int] | None = None) -> dict:
    """Write a ``.tflite`` (see :mod:`edgesr.converters.tflite`) with its metadata embedded;
    returns ``{format, precision, path, bytes}``. ``input_size``: ``(H, W)`` for a fixed
    ``[1, H, W, C]`` input (recorded in the contract), None for dynamic H x W.

    ``model``: a deploy ``nn.Module`` or a :class:`QuantizedCheckpoint` (its module; for int8
    its ranges, else ranges calibrated on ``calibration``, see :func:`int8_ranges`).
    """
    module, extra, ranges = deploy_module(model), {}, None
    if precision in RANGED_PRECISIONS:
        q = int8_ranges(model, calibration)
        ranges, extra = q.activation_ranges, {"quantization": q.provenance()}
    if precision == "w8a16":
        wide = q.minmax_ranges is not None
        ranges = q.minmax_ranges if wide else ranges
        module = q.module_for(precision)
        extra["quantization"] |= {"weights": "int8 per-channel symmetric", "activations": "int16 symmetric (zero point 0)",
                                  "weights_from": q.weights_from(precision),
                                  "biases": "int64",
                                  "ranges": "the quantized module's min/max ranges (minmax_ranges)" if wide
                                  else "the int8 model's tensor ranges",
                                  "activation_ranges": {k: [lo, hi] for k, (lo, hi) in ranges.items()}}
    data = tflite.convert(module, module.contract.channels, precision, calibration, io_dtype, ranges, input_size)
    meta = build_metadata(module, "tflite", precision, io_dtype=io_dtype if precision == "int8" else "float32",
                          source=source, tools=("tensorflow", "ai-edge-litert"), extra=extra,
                          input_sizes=None if input_size is None else [input_size])
    data = tflite.embed_metadata(data, meta)
    return _finish(Path(path), meta, "tflite", precision, lambda p: tflite.save(data, p), sidecar)


def export_onnx(module, path, source=None, sidecar: bool = False, input_size: tuple[int, int] | None = None) -> dict:
    """Write an fp32 ``.onnx`` (see :mod:`edgesr.converters.onnx_export`; ``input_size``: static
    (H, W), recorded in the contract); returns the artifact dict."""

    meta = build_metadata(module, "onnx", "fp32", source=source, tools=("onnx", "onnxscript", "onnxsim"),
                          input_sizes=None if input_size is None else [input_size])
    return _finish(Path(path), meta, "onnx", "fp32",
                   lambda p: onnx_export.export(module, module.contract.channels, p, meta, input_size), sidecar)


def export_coreml(model, path, precision: str = "fp16", calibration=None, source=None, sidecar: bool = False,
                  input_sizes=None) -> dict:
    """Write a ``.mlpackage`` (see :mod:`edgesr.converters.coreml`; ``input_sizes``: one fixed
    (H, W) or several enumerated, recorded in the contract); returns the artifact dict.

    ``model``: a deploy ``nn.Module`` or a :class:`QuantizedCheckpoint`; w8a8 takes the same
    activation ranges as the int8 TFLite model (:func:`int8_ranges`), and W8 (int8 weights, float16
    activations) a quantized checkpoint's weights for wide activations
    (:meth:`QuantizedCheckpoint.module_for`, as TFLite w8a16 does); any other precision converts
    the checkpoint's module.
    """
    module, extra, ranges = deploy_module(model), {}, None
    if precision == "w8a8":
        q = int8_ranges(model, calibration)
        ranges, extra = q.activation_ranges, {"quantization": q.provenance()}
    elif precision == "w8" and isinstance(model, QuantizedCheckpoint):  # the weights for float activations
        module = model.module_for(precision)
        extra = {"quantization": {"weights_from": model.weights_from(precision), "checkpoint": model.path}}
    ml = coreml.convert(module, module.contract.channels, precision, ranges, input_sizes)
    meta = build_metadata(module, "coreml", precision, source=source, tools=("coremltools",), extra=extra,
                          input_sizes=input_sizes)
    return _finish(Path(path), meta, "coreml", precision, lambda p: coreml.save(ml, p, meta), sidecar)


def export_executorch(module, path, precision: str = "fp32", calibration=None, source=None, sidecar: bool = False,
                      delegate: str = "xnnpack") -> dict:
    """Write a ``.pte`` lowered to ``delegate`` (``"xnnpack"`` or ``"coreml"``, see
    :mod:`edgesr.converters.executorch`), the metadata embedded as a constant method (and in the
    optional sidecar); returns the artifact dict (format ``executorch`` or ``executorch-coreml``)."""

    tools = ("executorch", "torchao") + (("coremltools",) if delegate == "coreml" else ())
    meta = build_metadata(module, "executorch", precision, source=source, tools=tools,
                          extra={"delegate": delegate, "max_side": et.MAX_SIDE})
    data = et.convert(module, module.contract.channels, precision, calibration, meta, delegate=delegate)
    fmt = "executorch" if delegate == "xnnpack" else f"executorch-{delegate}"
    return _finish(Path(path), meta, fmt, precision, lambda p: et.save(data, p), sidecar)


def plan(formats, precisions) -> list[tuple[str, str]]:
    """The (format, precision) pairs :func:`export` writes, in order.

    Raises:
        EdgesrError: an unknown format, or a precision no requested format has.
    """
    pairs = []
    for fmt in formats:
        if fmt not in FORMATS:
            raise EdgesrError(f"unknown export format {fmt!r} (expected {', '.join(FORMATS)})")
        for prec in precisions:
            wanted = ("w8", "w8a8") if (fmt == "coreml" and prec == "int8") else (prec,)
            pairs += [(fmt, p) for p in wanted if p in FORMAT_PRECISIONS[fmt] and (fmt, p) not in pairs]
    known = {p for fmt in formats for p in FORMAT_PRECISIONS[fmt]} | {"int8"}
    bad = [p for p in precisions if p not in known]
    if bad:
        raise EdgesrError(f"unknown precision {bad[0]!r} for formats {', '.join(formats)}")
    return pairs


def export(model_or_checkpoint, out_dir, formats=None, precisions=("fp32", "fp16", "int8"), calibration=None,
           io_dtype: str = "int8", stem: str | None = None, source: str | None = None,
           progress: bool = False, sidecar: bool = False, input_sizes=None) -> list[dict]:
    """Export every (format, precision) of :func:`plan`.

    Args:
        model_or_checkpoint: an ``nn.Module`` built by the registry (collapsed here if it has
            ``collapse``), a checkpoint path, or a :class:`QuantizedCheckpoint`. A quantized
            checkpoint (path or object) brings its activation ranges: no calibration.
        out_dir: folder for the artifacts (created).
        formats: names from :data:`FORMATS`; default :func:`default_formats` (of ``input_sizes``).
        calibration: float32 (N, C, h, w) real patches in model-input space, calibrated once
            for int8 / w8a8 of a float model (:func:`calibration_patches`); computed from the
            embedded training photographs when None and needed.
        io_dtype: ``"int8"`` or ``"uint8"`` input/output of the int8 TFLite model (w8a16 has
            float32 input/output).
        stem: file name stem (default ``{model}_x{scale}``).
        source: provenance note (default: the checkpoint path when one is given).
        sidecar: also write each artifact's metadata to ``PATH.json`` (it is always embedded).
        input_sizes: ``[(H, W), ...]`` LR pixels (module doc, :func:`check_input_sizes`): one
            fixed input size for every format, or several enumerated ones for Core ML; None
            (default): dynamic H x W.

    Returns:
        ``[{"format", "precision", "path", "bytes"}]`` in :func:`plan` order.

    Raises:
        EdgesrError: unreadable checkpoint, unwritable ``out_dir``, unsupported op or precision,
            input sizes that the formats or the model cannot take (before anything is written).
    """
    formats = default_formats(input_sizes) if formats is None else formats
    pairs = plan(formats, precisions)
    if source is None and isinstance(model_or_checkpoint, (str, os.PathLike)):
        source = str(model_or_checkpoint)
    model = load_model(model_or_checkpoint)
    module = deploy_module(model)
    sizes = check_input_sizes(module, formats, input_sizes)
    one = None if sizes is None else sizes[0]
    out_dir = writable_dir(out_dir)
    stem = stem or f"{getattr(module, 'registry_name', None) or type(module).__name__.lower()}_x{module.contract.scale}"
    needs_int8 = any(p in RANGED_PRECISIONS for _, p in pairs)
    if needs_int8 and calibration is None and (not isinstance(model, QuantizedCheckpoint)
                                               or any(f.startswith("executorch") for f, _ in pairs)):
        calibration = calibration_patches(None, module.contract)  # also PT2E's, for ExecuTorch int8
    if needs_int8 and not isinstance(model, QuantizedCheckpoint):
        model = int8_ranges(module, calibration)
    from tqdm.auto import tqdm

    results = []
    for fmt, prec in tqdm(pairs, disable=not progress, desc="export", leave=False):
        path = out_dir / f"{stem}_{prec}{SUFFIX[fmt]}"
        if fmt == "tflite":
            results.append(export_tflite(model, path, prec, calibration, io_dtype, source, sidecar, one))
        elif fmt == "onnx":
            results.append(export_onnx(module, path, source, sidecar, one))
        elif fmt.startswith("executorch"):
            results.append(export_executorch(module, path, prec, calibration, source, sidecar,
                                             delegate="coreml" if fmt == "executorch-coreml" else "xnnpack"))
        else:
            results.append(export_coreml(model, path, prec, calibration, source, sidecar, sizes))
    return results


__all__ = ["FIXED_SHAPE_FORMATS", "FORMATS", "FORMAT_PRECISIONS", "RANGED_PRECISIONS", "check_input_sizes", "default_formats", "deploy_module", "export", "export_coreml",
           "export_executorch", "export_onnx", "export_tflite", "int8_ranges", "load_model", "plan", "sidecar_path",
           "writable_dir"]
