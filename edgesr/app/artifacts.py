"""Open any exported artifact as an :class:`~edgesr.core.evaluate.Upscaler`.

Dispatch by file type; the runtimes live in the stage packages and are imported here only
when needed:

* ``.onnx`` (ONNX Runtime), ``.tflite`` (LiteRT), ``.mlpackage`` (Core ML: ``MLModel.predict``
  on macOS, edgesr's MIL interpreter elsewhere), ``.pte`` (the ExecuTorch runtime, when the
  ``executorch`` package is installed): :func:`edgesr.converters.runtime.load_upscaler`;
* ``.lut`` (edgesr LUT bundle): :func:`edgesr.lut_baking.bundle.load_upscaler`.

The returned Upscaler's ``contract`` is read from the artifact, never guessed.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgesr.converters.runtime import load_upscaler as load_network
from edgesr.core.errors import EdgesrError
from edgesr.lut_baking.bundle import load_upscaler as load_lut

NETWORK_SUFFIXES = (".onnx", ".tflite", ".mlpackage", ".pte")
LUT_SUFFIXES = (".lut",)


def load_upscaler(path: str | os.PathLike, **options):
    """Open the artifact at ``path`` with its own runtime.

    ``options`` go to the runtime (e.g. ``engine="c"`` for LUTs, ``num_threads=2`` for
    LiteRT, ``precision="fp16"`` for the Core ML interpreter).

    Raises:
        EdgesrError: missing file or an unknown artifact type.
    """
    path = Path(path)
    if not path.exists():
        raise EdgesrError(f"{path}: no such artifact")
    suffix = path.suffix.lower()
    if suffix in NETWORK_SUFFIXES:
        return load_network(path, **options)
    if suffix in LUT_SUFFIXES:
        return load_lut(path, **options)
    raise EdgesrError(f"{path}: unknown artifact type {suffix!r} (expected {', '.join(NETWORK_SUFFIXES + LUT_SUFFIXES)})")
