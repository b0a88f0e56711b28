"""Open any exported artifact as an :class:`~edgesr.core.evaluate.Upscaler`: the one way.

:func:`open_artifact` reads the contract the file carries
(:func:`edgesr.core.contract.read_contract`: TFLite metadata buffer, ONNX ``metadata_props``,
Core ML ``user_defined_metadata``, the ``.lut`` header) and hands the path to the runtime that
:data:`OPENERS` names for its suffix; the runtimes live in the stage packages:

* ``.tflite``: LiteRT, :class:`edgesr.converters.runtime.TFLiteUpscaler`; options
  ``num_threads``, ``kernels`` (``"xnnpack"``, ``"optimized"``, ``"reference"``);
* ``.onnx``: ONNX Runtime on the CPU, :class:`edgesr.converters.runtime.ONNXUpscaler`; option
  ``num_threads``;
* ``.mlpackage``: Core ML on macOS, edgesr's MIL interpreter elsewhere
  (:func:`edgesr.converters.runtime.coreml_upscaler`); options ``compute_units`` (macOS),
  ``precision`` (``"fp16"`` or ``"fp32"`` activations in the interpreter);
* ``.pte``: the ExecuTorch runtime (the ``edgesr[executorch]`` extra),
  :class:`edgesr.converters.executorch.ExecuTorchUpscaler`; option ``num_threads``;
* ``.lut``: a LUT engine, :class:`edgesr.lut_baking.bundle.LutUpscaler`; option ``engine``
  (``"numpy"``, ``"torch"``, ``"c"``).

An artifact exported with fixed input sizes (its contract's ``input_sizes``, ``edgesr export
--input-size``) comes back wrapped in :class:`edgesr.core.tiling.FixedShapeUpscaler`: it runs on
inputs of any size in tiles of its own size with the model's receptive-field halo, so the one
evaluation path scores it on any photo. An input smaller than every fixed size in a dimension
runs in one piece on the same file at its own size (LiteRT without strict resizing, ONNX Runtime
with symbolic H and W, the MIL interpreter), the same values as a dynamic export; only Core ML
on macOS pads it (a phone app pads too: see the class).

Every opener accepts the options of the others and ignores them, so one set of CLI options
(e.g. ``num_threads``) can be passed to any artifact. A new artifact kind is one opener and
one line in :data:`OPENERS`, plus the reader of its embedded metadata in
:data:`edgesr.core.contract.EMBEDDED_READERS`.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgesr.converters import executorch as et
from edgesr.converters.runtime import (
    CoreMLUpscaler,
    ONNXUpscaler,
    RuntimeUnavailable,
    TFLiteUpscaler,
    coreml_upscaler,
    tflite_contract,
)
from edgesr.core.contract import read_contract
from edgesr.core.errors import EdgesrError
from edgesr.core.tiling import FixedShapeUpscaler
from edgesr.lut_baking.bundle import LutUpscaler, load_bundle


def _tflite(path: Path, num_threads: int | None = None, kernels: str = "xnnpack", any_shape: bool = False, **_ignored):
    return TFLiteUpscaler(path, tflite_contract(path), num_threads=num_threads, kernels=kernels, any_shape=any_shape)


def _onnx(path: Path, num_threads: int | None = None, any_shape: bool = False, **_ignored):
    return ONNXUpscaler(path, read_contract(path), num_threads=num_threads, any_shape=any_shape)


def _coreml(path: Path, compute_units: str | None = None, precision: str | None = None, **_ignored):
    return coreml_upscaler(path, read_contract(path), compute_units, precision)


def _lut(path: Path, engine: str | None = None, **_ignored):
    return LutUpscaler(load_bundle(path), engine or "numpy")


def _executorch(path: Path, num_threads: int | None = None, **_ignored):
    reason = et.unavailable_reason()
    if reason is None and (missing := et.missing_backends(path)):
        reason = (f"the program is delegated to {', '.join(missing)}, which this ExecuTorch runtime lacks "
                  "(the Core ML backend runs only on Apple devices)")
    if reason is not None:
        raise RuntimeUnavailable(f"{path}: {reason}")
    return et.ExecuTorchUpscaler(path, read_contract(path), num_threads=num_threads)


OPENERS = {".tflite": _tflite, ".onnx": _onnx, ".mlpackage": _coreml, ".pte": _executorch, ".lut": _lut}
"""``{suffix: opener(path, **options) -> Upscaler}``."""
NETWORK_SUFFIXES = (".tflite", ".onnx", ".mlpackage", ".pte")
LUT_SUFFIXES = (".lut",)


def _any_shape_runner(path: Path, upscaler, options: dict):
    """For a fixed-shape artifact, the same file run at any size, for inputs smaller than every
    fixed size (:class:`edgesr.core.tiling.FixedShapeUpscaler`): LiteRT resizing the fixed
    signature (not strict), ONNX Runtime with symbolic H and W, the MIL interpreter (which
    runs any shape); None for Core ML on macOS (the input is then padded)."""
    suffix = path.suffix.lower()
    if suffix in (".tflite", ".onnx"):
        return OPENERS[suffix](path, **{**options, "any_shape": True})
    if suffix == ".mlpackage" and not isinstance(upscaler, CoreMLUpscaler):
        return upscaler
    return None


def open_artifact(path: str | os.PathLike, **options):
    """Open the artifact at ``path`` with its own runtime, as an Upscaler.

    The Upscaler maps float32 (N, C, h, w) NCHW in the contract's space and range [0, 1] to
    float32 (N, C, s*h, s*w); its ``contract`` is the one embedded in the file (a bare
    ``.tflite`` from another tool gets an inferred one:
    :func:`edgesr.converters.runtime.tflite_contract`). A fixed-shape artifact (contract
    ``input_sizes``) is wrapped in :class:`edgesr.core.tiling.FixedShapeUpscaler` (module doc).

    Args:
        path: a ``.tflite``, ``.onnx``, ``.mlpackage`` or ``.lut`` artifact.
        options: runtime options (module doc), e.g. ``num_threads=2``, ``kernels="reference"``,
            ``engine="c"``, ``precision="fp16"``; those of other runtimes are ignored.

    Raises:
        RuntimeUnavailable: the runtime cannot run here (Core ML on Linux without the MIL
            interpreter).
        EdgesrError: missing file, unknown suffix, no or invalid embedded contract, or a file
            the runtime cannot load (one line naming the file).
    """
    path = Path(path)
    if not path.exists():
        raise EdgesrError(f"{path}: no such artifact")
    opener = OPENERS.get(path.suffix.lower())
    if opener is None:
        raise EdgesrError(f"{path}: unknown artifact type {path.suffix!r} (expected {', '.join(OPENERS)})")
    try:
        upscaler = opener(path, **options)
    except (EdgesrError, RuntimeUnavailable):
        raise
    except Exception as exc:  # the runtime's own load errors (protobuf, flatbuffer, Core ML weights, ...)
        detail = (str(exc).strip().splitlines() or [""])[0][:160]
        raise EdgesrError(f"{path}: the {path.suffix} runtime cannot load it ({type(exc).__name__}{': ' + detail if detail else ''})") from None
    contract = upscaler.contract
    if contract.input_sizes:
        small = _any_shape_runner(path, upscaler, options)
        try:
            return FixedShapeUpscaler(upscaler, contract.input_sizes, contract.receptive_field, small)
        except EdgesrError as exc:
            raise EdgesrError(f"{path}: {exc}") from None
    return upscaler
