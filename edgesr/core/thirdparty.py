"""Loading the heavy third-party runtimes quietly and safely.

edgesr imports TensorFlow, coremltools, ONNX Runtime, LiteRT and torchao only inside the
functions that need them (``edgesr eval`` never loads TensorFlow). Two process-wide concerns
live here, so every call site handles them the same way:

* :func:`quiet_third_party`: their start-up chatter (Python warnings and log records of
  torchao, coremltools, TensorFlow/absl, the ONNX exporter) is silenced so the terminal shows
  edgesr's own output. TensorFlow's C++ banner lines (oneDNN, CPU features) are printed
  before any Python setting can reach them.
* :func:`block_triton_after_tensorflow`: PyPI's torch wheels for Python >= 3.12 are CUDA builds
  that ship triton; ``torch.export`` imports triton, and importing triton *after* TensorFlow
  crashes the process (a segfault between their bundled LLVMs, seen with torch 2.13 +
  tensorflow 2.21 on Python 3.12). edgesr never compiles GPU kernels, so once TensorFlow is
  about to load, torch is told triton is absent (``sys.modules["triton"] = None``: ``import
  triton`` raises ImportError, which torch handles). A triton already imported is left alone.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

_LOGGERS = ("torchao", "coremltools", "tensorflow", "absl", "torch.onnx", "onnxscript", "torch._export",
            "torch.utils._pytree")
_WARNING_MODULES = r"(coremltools|torchao|onnxscript|tensorflow|keras|torch\.onnx).*"


def quiet_third_party() -> None:
    """Silence the runtimes' Python warnings and log records below ERROR (idempotent)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=_WARNING_MODULES)


def block_triton_after_tensorflow() -> None:
    """Keep triton out of a process that is about to load TensorFlow (module doc)."""
    if "triton" not in sys.modules:
        sys.modules["triton"] = None


def import_tensorflow():
    """``import tensorflow`` with triton kept out and the chatter silenced; returns the module."""
    quiet_third_party()
    block_triton_after_tensorflow()
    import tensorflow

    return tensorflow
