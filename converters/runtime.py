"""Run exported artifacts as :class:`edgesr.evaluate.Upscaler` s (the one evaluation path).

Every Upscaler takes float32 (N, C, h, w) NCHW in [0, 1] (the contract's input space) and
returns float32 (N, C, s*h, s*w); the artifacts hold batch 1, so the batch is run image by
image. The contract comes from the artifact (:mod:`converters.metadata`), never guessed.

* ``.tflite``: LiteRT ``ai_edge_litert.interpreter.Interpreter`` (NHWC inside; int8/uint8
  I/O quantized here with the model's input scale and zero point, ``q = round(x / scale) +
  zero_point`` clamped to the dtype, and the output dequantized ``real = scale * (q -
  zero_point)``); options ``num_threads`` and ``reference_kernels`` (LiteRT's
  ``BUILTIN_REF`` op resolver: the plain reference kernels instead of the optimized ones).
* ``.onnx``: ONNX Runtime, CPU execution provider; option ``num_threads``.
* ``.mlpackage``: ``MLModel.predict`` on macOS; elsewhere the NumPy MIL interpreter
  :mod:`converters.mil_interpreter` (option ``precision="fp16"|"fp32"``: how it rounds
  activations) when that module exists, else :class:`RuntimeUnavailable`.
"""

from __future__ import annotations

import importlib.util
import os
import platform
from pathlib import Path

import numpy as np

from converters.metadata import contract_of, read_metadata
from edgesr.errors import EdgesrError
from edgesr.registry import IOContract


class RuntimeUnavailable(EdgesrError):
    """The artifact's runtime cannot run on this machine (e.g. Core ML on Linux); the message says why."""


def _per_image(run, x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"expected float32 (N, C, h, w), got shape {x.shape}")
    return np.concatenate([run(x[i : i + 1]) for i in range(x.shape[0])], axis=0)


class TFLiteUpscaler:
    """A ``.tflite`` model on LiteRT. ``interpreter`` is public (op details, tensor details)."""

    def __init__(self, path: str | os.PathLike, contract: IOContract, num_threads: int | None = None,
                 reference_kernels: bool = False):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads,
                                           experimental_op_resolver_type=resolver)
        except ValueError as exc:
            raise EdgesrError(f"{path}: not a readable TFLite model ({str(exc).splitlines()[0][:120]})") from None
        self.contract = contract
        self.path = Path(path)
        self._shape = None

    def _run(self, x: np.ndarray) -> np.ndarray:
        it = self.interpreter
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        nhwc = x.transpose(0, 2, 3, 1)
        if self._shape != nhwc.shape:
            it.resize_tensor_input(inp["index"], list(nhwc.shape), strict=True)
            it.allocate_tensors()
            self._shape = nhwc.shape
            inp, out = it.get_input_details()[0], it.get_output_details()[0]
        if inp["dtype"] in (np.int8, np.uint8):
            scale, zero_point = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            nhwc = np.clip(np.round(nhwc / scale) + zero_point, info.min, info.max).astype(inp["dtype"])
        it.set_tensor(inp["index"], np.ascontiguousarray(nhwc))
        it.invoke()
        y = it.get_tensor(out["index"])
        if out["dtype"] in (np.int8, np.uint8):
            scale, zero_point = out["quantization"]
            y = scale * (y.astype(np.float32) - zero_point)
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2), dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _per_image(self._run, x)


class ONNXUpscaler:
    """An ``.onnx`` model on ONNX Runtime (CPU), input ``input`` / output ``output`` NCHW."""

    def __init__(self, path: str | os.PathLike, contract: IOContract, num_threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if num_threads:
            opts.intra_op_num_threads = int(num_threads)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.contract = contract

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _per_image(lambda b: self.session.run(None, {self.input_name: b})[0].astype(np.float32), x)


class CoreMLUpscaler:
    """A ``.mlpackage`` predicted by Core ML (macOS only), input ``input`` / output ``output`` NCHW."""

    def __init__(self, path: str | os.PathLike, contract: IOContract, compute_units: str = "ALL"):
        import coremltools as ct

        self.model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, compute_units))
        self.contract = contract

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _per_image(lambda b: np.asarray(self.model.predict({"input": b})["output"], dtype=np.float32), x)


MIL_INTERPRETER = "converters.mil_interpreter"
"""Module of the Core ML numerical interpreter: it defines ``load_upscaler(path, contract,
**options) -> Upscaler`` or ``MILUpscaler(path, precision="fp16", contract=None)``."""


def coreml_runtime_status() -> str | None:
    """None if Core ML packages can be run here, else the reason they cannot."""
    if platform.system() == "Darwin" or importlib.util.find_spec(MIL_INTERPRETER) is not None:
        return None
    return f"Core ML predicts only on macOS and {MIL_INTERPRETER} is not available on this {platform.system()} machine"


def artifact_metadata(path: str | os.PathLike) -> dict:
    """The edgesr metadata of an artifact (embedded for ONNX / Core ML, else the sidecar)."""
    path = Path(path)
    suffix = path.suffix.lower()
    embedded = None
    if suffix == ".onnx":
        from converters.onnx_export import embedded_metadata

        embedded = embedded_metadata(path)
    elif suffix == ".mlpackage":
        from converters.coreml import structure

        embedded = structure(path)["metadata"]
    return read_metadata(path, embedded)


def load_upscaler(path: str | os.PathLike, **options):
    """Open a ``.tflite``, ``.onnx`` or ``.mlpackage`` artifact as an Upscaler.

    Options: ``num_threads`` (TFLite, ONNX), ``reference_kernels`` (TFLite), others go to the
    Core ML runtime (``compute_units`` on macOS; the MIL interpreter's own options).

    Raises:
        EdgesrError: missing or unreadable artifact, missing metadata, unknown suffix.
        RuntimeUnavailable: Core ML on a machine that cannot run it.
    """
    path = Path(path)
    if not path.exists():
        raise EdgesrError(f"{path}: no such artifact")
    suffix = path.suffix.lower()
    if suffix not in (".tflite", ".onnx", ".mlpackage"):
        raise EdgesrError(f"{path}: not a converters artifact (.tflite, .onnx, .mlpackage)")
    try:
        contract = contract_of(artifact_metadata(path))
    except EdgesrError:
        raise
    except Exception as exc:  # onnx / protobuf decode errors on a corrupt file
        raise EdgesrError(f"{path}: unreadable artifact ({type(exc).__name__})") from None
    if suffix == ".tflite":
        return TFLiteUpscaler(path, contract, **options)
    if suffix == ".onnx":
        return ONNXUpscaler(path, contract, **options)
    if platform.system() == "Darwin":
        return CoreMLUpscaler(path, contract, **options)
    reason = coreml_runtime_status()
    if reason is not None:
        raise RuntimeUnavailable(f"{path}: {reason}")
    mil = importlib.import_module(MIL_INTERPRETER)
    if hasattr(mil, "load_upscaler"):
        return mil.load_upscaler(path, contract, **options)
    return mil.MILUpscaler(path, contract=contract, **options)
