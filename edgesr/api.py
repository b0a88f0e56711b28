"""edgesr's Python API: from a registered model to a validated phone artifact in a few calls.

::

    import edgesr

    ckpt = edgesr.train("sesr_m5", scale=2, data="T91/HR", steps=2000, out="runs/m5")
    deploy = edgesr.collapse(ckpt)                        # plain convs, checked on a real photo
    int8 = edgesr.quantize(deploy, calibration="T91/HR")  # the default recipe; ranges travel with it
    arts = edgesr.export(int8, "runs/m5/artifacts", formats=("tflite",), precisions=("int8",))
    report = edgesr.validate(arts[0]["path"], deploy, sets=["Set5"], data_root="benchmarks")
    up = edgesr.open_artifact(arts[0]["path"])            # float32 (N, C, h, w) -> (N, C, s*h, s*w)

Every function raises :class:`edgesr.core.errors.EdgesrError` (one line naming the file or
value) for a user mistake. Tensors are NCHW float32 in the model's contract space, values in
[0, 1] (:class:`edgesr.core.contract.IOContract`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from torch import nn

from edgesr.app.artifacts import open_artifact
from edgesr.app.validation import reference_run, validate_artifact
from edgesr.converters.export import export as _export
from edgesr.core.checkpoint import load_checkpoint
from edgesr.core.collapse import collapse_checked
from edgesr.core.data import resolve_eval_sets
from edgesr.core.errors import EdgesrError
from edgesr.core.models import create
from edgesr.core.train import TrainConfig
from edgesr.core.train import train as _train
from edgesr.quantization.api import QuantizedCheckpoint, quantize_module, read_quantized

__all__ = ["collapse", "create", "export", "open_artifact", "quantize", "train", "validate"]


def train(model: str = "sesr_m5", scale: int = 2, *, data: str | os.PathLike | None = None,
          out: str | os.PathLike = "runs/train", steps: int = 1000, **config) -> Path:
    """Train (or resume) a registered model with edgesr's one trainer; returns the checkpoint path.

    Args:
        model, scale: a registry name (``edgesr list``) and its upscaling factor.
        data: folder of HR training photos; None: scikit-image's embedded photographs.
        out: run folder; the checkpoint is ``out/checkpoints/last.pt`` (atomic, resumable).
        steps: optimizer steps in total.
        config: any other :class:`edgesr.core.train.TrainConfig` field (``batch``, ``lr``,
            ``loss="l1" | "mse"``, ``device``, ``seed``, ``progress``...).

    Raises:
        EdgesrError: unknown model, scale or config field; a bad data folder.
    """
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise EdgesrError(f"unknown training setting {unknown[0]!r} (TrainConfig has: {', '.join(sorted(fields))})")
    return _train(TrainConfig(model=model, scale=scale, data=None if data is None else str(data), out=str(out),
                              steps=steps, **config))


def collapse(model_or_checkpoint: nn.Module | str | os.PathLike) -> nn.Module:
    """The deploy form (plain convolutions with biases) of a model or checkpoint, checked.

    A model with a training-only form is collapsed and compared with its trained form on a real
    photo (:func:`edgesr.core.collapse.collapse_checked`, max abs error <= 1e-5); a plain model
    is its own deploy form and comes back unchanged (in eval mode).

    Raises:
        EdgesrError: unreadable checkpoint, or forms that disagree.
    """
    model = model_or_checkpoint
    if isinstance(model, (str, os.PathLike)):
        model, _ = load_checkpoint(model)
    if not hasattr(model, "collapse"):
        return model.eval()
    deploy, _ = collapse_checked(model)
    return deploy


def quantize(model_or_checkpoint: nn.Module | str | os.PathLike, *, calibration=None, **options) -> QuantizedCheckpoint:
    """Int8-quantize a model: its activation ranges (and fine-tuned weights) for every exporter.

    Args:
        model_or_checkpoint: a float model (collapsed here if it has a training form), a
            checkpoint path, or an already quantized checkpoint path (read back, no work).
        calibration: real photos for calibration and QAT: a folder, a list of uint8 images,
            or None for the embedded training photographs.
        options: :func:`edgesr.quantization.api.quantize_module` settings (``recipe``,
            ``observer``, ``qat_steps``, ``seed``...).

    Returns:
        a :class:`edgesr.quantization.api.QuantizedCheckpoint` (``module``,
        ``activation_ranges``, ``settings``) that :func:`export` turns into int8 artifacts
        with exactly these ranges (no recalibration).

    Raises:
        EdgesrError: unreadable checkpoint, no calibration photo, bad settings.
    """
    if isinstance(model_or_checkpoint, (str, os.PathLike)):
        try:
            return read_quantized(model_or_checkpoint)
        except EdgesrError:
            model_or_checkpoint = collapse(model_or_checkpoint)
    return quantize_module(collapse(model_or_checkpoint), calibration, **options)


def export(model, out_dir: str | os.PathLike, formats=("tflite", "coreml", "onnx"),
           precisions=("fp32", "fp16", "int8"), **options) -> list[dict]:
    """Export a model, checkpoint or :class:`QuantizedCheckpoint` to phone artifacts.

    Each artifact embeds its I/O contract and provenance (TFLite metadata, ONNX
    ``metadata_props``, Core ML ``user_defined_metadata``). See
    :func:`edgesr.converters.export.export` for ``options``, e.g. ``input_sizes=[(360, 640)]``
    (LR H x W) for a fixed input shape (Core ML: several sizes give enumerated shapes), which
    the contract records; :func:`open_artifact` runs such a file on any size in tiles. ``precisions`` may include
    ``"w8a16"`` (TFLite: int8 weights, int16 activations at the int8 ranges, float32 I/O).

    Returns:
        ``[{"format", "precision", "path", "bytes"}]``.

    Raises:
        EdgesrError: unknown format or precision, unwritable folder, unsupported op.
    """
    return _export(model, out_dir, formats, precisions, **options)


def validate(artifact: str | os.PathLike, reference: nn.Module | str | os.PathLike, *,
             sets: list[str] | None = None, data_root: str | os.PathLike | None = None, **options) -> dict:
    """Validate an artifact against its float reference through the one evaluation path.

    Args:
        artifact: a ``.tflite``, ``.onnx``, ``.mlpackage``, ``.lut`` (or ``.pte``) file.
        reference: the float deploy model or a checkpoint path.
        sets: benchmark set names under ``data_root`` (Set5, Set14, B100, Urban100); None: the
            embedded validation photographs.
        options: :func:`edgesr.app.validation.validate_artifact` settings.

    Returns:
        the validation dict: ``passed``, ``failed_checks``, PSNR/SSIM per set for artifact and
        reference, ``max_abs_err``, the 99.9th-percentile error, ``psnr_vs_reference_db``.

    Raises:
        EdgesrError: unreadable artifact or reference, unknown set.
    """
    if isinstance(reference, (str, os.PathLike)):
        reference = collapse(reference)
    eval_sets = resolve_eval_sets(None if data_root is None else str(data_root), sets)
    return validate_artifact(artifact, reference_run(reference, eval_sets), eval_sets, **options)
