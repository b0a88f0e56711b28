"""The export library: a model or checkpoint -> TFLite / Core ML / ONNX artifacts with metadata.

Per-format functions (:func:`export_tflite`, :func:`export_onnx`, :func:`export_coreml`)
write one artifact with its metadata (contract + provenance) embedded in the file
(:mod:`edgesr.converters.metadata`), and on request (``sidecar=True``) the same JSON in a
sidecar ``PATH.json``; :func:`export` runs the requested
formats x precisions. Artifacts are named ``{model}_x{scale}_{precision}.{ext}``.

Precisions per format (a requested precision a format does not have is skipped for that format):
``tflite``: fp32, fp16, int8 (full integer); ``onnx``: fp32; ``coreml``: fp32, fp16,
w8 (int8 weights), w8a8 (int8 weights and activations); ``int8`` requested for Core ML means
w8 and w8a8.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgesr.converters import coreml, onnx_export, tflite
from edgesr.converters.metadata import build_metadata, write_sidecar

from edgesr.core.checkpoint import load_checkpoint
from edgesr.core.contract import sidecar_path
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import calibration_patches

FORMATS = ("tflite", "coreml", "onnx")
FORMAT_PRECISIONS = {"tflite": ("fp32", "fp16", "int8"), "onnx": ("fp32",), "coreml": ("fp32", "fp16", "w8", "w8a8")}
SUFFIX = {"tflite": ".tflite", "onnx": ".onnx", "coreml": ".mlpackage"}


def deploy_module(model_or_checkpoint):
    """A deploy-form module from an ``nn.Module`` (collapsed if it has ``collapse``) or a checkpoint path.

    Raises:
        EdgesrError: unreadable checkpoint (see :func:`edgesr.core.checkpoint.load_checkpoint`).
    """
    if isinstance(model_or_checkpoint, (str, os.PathLike)):
        model, _ = load_checkpoint(model_or_checkpoint, deploy=True)
        return model
    model = model_or_checkpoint
    return (model.collapse() if hasattr(model, "collapse") else model).eval()


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


def export_tflite(module, path, precision: str = "fp32", calibration=None, io_dtype: str = "int8",
                  activation_ranges=None, source=None, sidecar: bool = False) -> dict:
    """Write a ``.tflite`` (see :mod:`edgesr.converters.tflite`) with its metadata embedded;
    returns ``{format, precision, path, bytes}``."""

    c = module.contract
    data = tflite.convert(module, c.channels, precision, calibration, io_dtype, activation_ranges)
    meta = build_metadata(module, "tflite", precision, io_dtype=io_dtype if precision == "int8" else "float32",
                          source=source, tools=("tensorflow", "ai-edge-litert"),
                          extra={"activation_ranges": bool(activation_ranges)})
    data = tflite.embed_metadata(data, meta)
    return _finish(Path(path), meta, "tflite", precision, lambda p: tflite.save(data, p), sidecar)


def export_onnx(module, path, source=None, sidecar: bool = False) -> dict:
    """Write an fp32 ``.onnx`` (see :mod:`edgesr.converters.onnx_export`); returns the artifact dict."""

    meta = build_metadata(module, "onnx", "fp32", source=source, tools=("onnx", "onnxscript", "onnxsim"))
    return _finish(Path(path), meta, "onnx", "fp32", lambda p: onnx_export.export(module, module.contract.channels, p, meta), sidecar)


def export_coreml(module, path, precision: str = "fp16", calibration=None, source=None, sidecar: bool = False) -> dict:
    """Write a ``.mlpackage`` (see :mod:`edgesr.converters.coreml`); returns the artifact dict."""

    ml = coreml.convert(module, module.contract.channels, precision, calibration)
    meta = build_metadata(module, "coreml", precision, source=source, tools=("coremltools",))
    return _finish(Path(path), meta, "coreml", precision, lambda p: coreml.save(ml, p, meta), sidecar)


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


def export(model_or_checkpoint, out_dir, formats=FORMATS, precisions=("fp32", "fp16", "int8"), calibration=None,
           activation_ranges=None, io_dtype: str = "int8", stem: str | None = None, source: str | None = None,
           progress: bool = False, sidecar: bool = False) -> list[dict]:
    """Export every (format, precision) of :func:`plan`.

    Args:
        model_or_checkpoint: an ``nn.Module`` built by the registry (collapsed here if it has
            ``collapse``) or a checkpoint path.
        out_dir: folder for the artifacts (created).
        calibration: float32 (N, C, h, w) real patches in model-input space for int8 /
            w8a8 (:func:`calibration_patches`); computed from the embedded training
            photographs when None and needed.
        activation_ranges: ``{torch.fx node name: (min, max)}`` for the int8 TFLite model.
        io_dtype: ``"int8"`` or ``"uint8"`` input/output of the int8 TFLite model.
        stem: file name stem (default ``{model}_x{scale}``).
        source: provenance note (default: the checkpoint path when one is given).
        sidecar: also write each artifact's metadata to ``PATH.json`` (it is always embedded).

    Returns:
        ``[{"format", "precision", "path", "bytes"}]`` in :func:`plan` order.

    Raises:
        EdgesrError: unreadable checkpoint, unwritable ``out_dir``, unsupported op or precision.
    """
    pairs = plan(formats, precisions)
    if source is None and isinstance(model_or_checkpoint, (str, os.PathLike)):
        source = str(model_or_checkpoint)
    module = deploy_module(model_or_checkpoint)
    out_dir = writable_dir(out_dir)
    stem = stem or f"{getattr(module, 'registry_name', None) or type(module).__name__.lower()}_x{module.contract.scale}"
    if calibration is None and any(p in ("int8", "w8a8") for _, p in pairs):
        calibration = calibration_patches(None, module.contract)
    from tqdm.auto import tqdm

    results = []
    for fmt, prec in tqdm(pairs, disable=not progress, desc="export", leave=False):
        path = out_dir / f"{stem}_{prec}{SUFFIX[fmt]}"
        if fmt == "tflite":
            results.append(export_tflite(module, path, prec, calibration, io_dtype, activation_ranges, source, sidecar))
        elif fmt == "onnx":
            results.append(export_onnx(module, path, source, sidecar))
        else:
            results.append(export_coreml(module, path, prec, calibration, source, sidecar))
    return results


__all__ = ["FORMATS", "FORMAT_PRECISIONS", "deploy_module", "export", "export_coreml",
           "export_onnx", "export_tflite", "plan", "sidecar_path", "writable_dir"]
