"""Run exported artifacts as :class:`edgesr.core.evaluate.Upscaler` s (the one evaluation path).

Every Upscaler takes float32 (N, C, h, w) NCHW in [0, 1] (the contract's input space) and
returns float32 (N, C, s*h, s*w); the artifacts hold batch 1, so the batch is run image by
image. Each is built from the artifact's path and its contract, which
:func:`edgesr.app.artifacts.open_artifact` reads from the file
(:func:`edgesr.core.contract.read_contract`); open artifacts through it.

* ``.tflite``: LiteRT ``ai_edge_litert.interpreter.Interpreter`` (NHWC inside; int8/uint8
  I/O quantized here as TFLite's QUANTIZE does, :func:`edgesr.quantization.arithmetic.quantize`:
  ``q = clamp(round_half_away(x / scale) + zero_point)``, and the output dequantized
  ``real = scale * (q - zero_point)``); options ``num_threads`` and ``kernels`` (the LiteRT
  kernel family, :data:`KERNELS`: ``"xnnpack"`` the default interpreter, ``"optimized"`` the
  builtin kernels without delegates, ``"reference"`` the plain reference kernels). This is
  the one LiteRT runner: :mod:`edgesr.app.integer_litert` compares the integer reference
  with it.
* ``.onnx``: ONNX Runtime, CPU execution provider; option ``num_threads``.
* ``.mlpackage``: ``MLModel.predict`` on macOS; elsewhere the NumPy MIL interpreter
  :mod:`edgesr.converters.mil_interpreter` (option ``precision="fp16"|"fp32"``: how it rounds
  activations) when that module exists, else :class:`RuntimeUnavailable`.
* ``.pte``: the ExecuTorch runtime (:class:`edgesr.converters.executorch.ExecuTorchUpscaler`)
  when the ``executorch`` package is installed and has every backend the program delegates
  to, else :class:`RuntimeUnavailable` (a Core ML-delegated program off Apple devices).
"""

from __future__ import annotations

import importlib.util
import os
import platform
from pathlib import Path

import numpy as np
from edgesr.quantization.arithmetic import (  # TFLite's QUANTIZE, the one implementation
    dequantize,
    quantize,
)

from edgesr.core.contract import (
    IOContract,
    MissingMetadata,
    infer_contract,
    read_contract,
)
from edgesr.core.errors import EdgesrError
from edgesr.core.thirdparty import block_triton_after_tensorflow


class RuntimeUnavailable(EdgesrError):
    """The artifact's runtime cannot run on this machine (e.g. Core ML on Linux); the message says why."""


def _per_image(run, x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"expected float32 (N, C, h, w), got shape {x.shape}")
    return np.concatenate([run(x[i : i + 1]) for i in range(x.shape[0])], axis=0)


KERNELS = {"xnnpack": "AUTO", "optimized": "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "reference": "BUILTIN_REF"}
"""LiteRT kernel families -> ``OpResolverType``: ``AUTO`` (builtin kernels + the default
XNNPACK delegate), ``BUILTIN_WITHOUT_DEFAULT_DELEGATES`` (optimized builtin kernels),
``BUILTIN_REF`` (reference kernels)."""


def model_bytes_for_resolver(path: str | os.PathLike, kernels: str) -> bytes:
    """The model bytes to give LiteRT for ``kernels``.

    LiteRT's BUILTIN_REF resolver registers DEPTH_TO_SPACE only up to version 1 (float/uint8)
    although its reference kernel is templated over int8; the int8 op is version 2. For the
    reference run the operator-code version is rewritten to 1 in a copy (same kernel code,
    nothing else changes); other resolvers get the file unchanged.
    """
    if kernels != "reference":
        return Path(path).read_bytes()
    import struct

    import tflite

    buf = bytearray(Path(path).read_bytes())
    model = tflite.Model.GetRootAsModel(buf, 0)
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        if max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()) == tflite.BuiltinOperator.DEPTH_TO_SPACE:
            off = oc._tab.Offset(8)  # OperatorCode.version (vtable slot 2)
            if off:
                struct.pack_into("<i", buf, oc._tab.Pos + off, 1)
    return bytes(buf)


class LiteRTModel:
    """A ``.tflite`` model on a LiteRT interpreter with one kernel family, run on the model's
    own NHWC tensors (int8/uint8/float32 as its input takes). ``interpreter`` is public.

    Raises:
        EdgesrError: unknown ``kernels``, missing or unreadable model.
    """

    def __init__(self, path: str | os.PathLike, kernels: str = "xnnpack", num_threads: int | None = None,
                 any_shape: bool = False):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        if kernels not in KERNELS:
            raise EdgesrError(f"unknown LiteRT kernels {kernels!r} (expected {', '.join(KERNELS)})")
        self.path, self.kernels = Path(path), kernels
        resolver = getattr(OpResolverType, KERNELS[kernels])
        try:
            self._content = model_bytes_for_resolver(path, kernels)  # kept alive with the interpreter
            self.interpreter = Interpreter(model_content=self._content, num_threads=num_threads,
                                           experimental_op_resolver_type=resolver)
        except Exception as exc:  # OSError, LiteRT's ValueError, flatbuffer decode errors
            raise EdgesrError(f"{path}: not a readable TFLite model ({(str(exc).splitlines() or [type(exc).__name__])[0][:120]})") from None
        self._shape = None
        self.any_shape = any_shape

    def input_details(self) -> dict:
        return self.interpreter.get_input_details()[0]

    def output_details(self) -> dict:
        return self.interpreter.get_output_details()[0]

    def run(self, q: np.ndarray) -> np.ndarray:
        """One NHWC input tensor -> a copy of the first output tensor (resized when the shape changes).

        With ``any_shape`` (constructor), a fixed signature is resized too (LiteRT's non-strict
        resize: the same graph and kernels at another H x W, what a dynamic export runs).

        Raises:
            EdgesrError: a shape the model cannot take (a fixed-shape export, ``--input-size``,
                takes only its own ``[1, H, W, C]``; run other sizes through ``open_artifact``,
                which tiles them).
        """
        it = self.interpreter
        if self._shape != q.shape:
            try:
                it.resize_tensor_input(self.input_details()["index"], list(q.shape), strict=not self.any_shape)
            except (RuntimeError, ValueError):  # LiteRT: "ResizeInputTensorStrict only allows mutating unknown dimensions"
                want = [int(d) for d in self.input_details()["shape_signature"]]
                raise EdgesrError(f"{self.path}: the model takes input shape {want} (-1: any), got {list(q.shape)}; "
                                  "a fixed-shape export runs other sizes in tiles through open_artifact") from None
            it.allocate_tensors()
            self._shape = q.shape
        it.set_tensor(self.input_details()["index"], np.ascontiguousarray(q))
        it.invoke()
        return it.get_tensor(self.output_details()["index"]).copy()


class TFLiteUpscaler:
    """A ``.tflite`` model on LiteRT as an Upscaler (float NCHW in the contract's space).

    ``kernels``: ``"xnnpack"`` | ``"optimized"`` | ``"reference"`` (:data:`KERNELS`);
    ``any_shape``: also run a fixed-shape model at other sizes (:class:`LiteRTModel`);
    ``interpreter`` is public (op details, tensor details); :meth:`run_quantized` runs the
    model's own NHWC tensors.
    """

    def __init__(self, path: str | os.PathLike, contract: IOContract, num_threads: int | None = None,
                 kernels: str = "xnnpack", any_shape: bool = False):
        self.model = LiteRTModel(path, kernels, num_threads, any_shape)
        self.interpreter = self.model.interpreter
        self.contract = contract
        self.path = Path(path)

    def run_quantized(self, q: np.ndarray) -> np.ndarray:
        return self.model.run(q)

    def _run(self, x: np.ndarray) -> np.ndarray:
        nhwc = x.transpose(0, 2, 3, 1)
        inp, out = self.model.input_details(), self.model.output_details()
        integer = (np.int8, np.uint8)
        if inp["dtype"] in integer:  # q = clamp(round_half_away(x / scale) + zero_point), ties away from zero
            scale, zero_point = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            nhwc = quantize(nhwc, scale, zero_point, info.min, info.max).astype(inp["dtype"])
        y = self.run_quantized(nhwc)
        if out["dtype"] in integer:  # real = scale * (q - zero_point)
            scale, zero_point = out["quantization"]
            y = dequantize(y, scale, zero_point)
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2), dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _per_image(self._run, x)


def tflite_contract(path: str | os.PathLike, kernels: str = "xnnpack") -> IOContract:
    """The contract a ``.tflite`` carries, or for a bare TFLite file with no edgesr metadata
    (another tool's export) the one :func:`edgesr.core.contract.infer_contract` infers
    (channels from the input tensor, scale from a 4 x 4 probe through LiteRT).

    Raises:
        EdgesrError: unreadable file or invalid embedded metadata.
    """
    try:
        return read_contract(path)
    except MissingMetadata:
        pass
    model = LiteRTModel(path, kernels, 1)
    tin = model.input_details()
    c = int(tin["shape"][-1])
    return infer_contract(c, lambda side: model.run(np.zeros((1, side, side, c), dtype=tin["dtype"])).shape[1], "NHWC")


class ONNXUpscaler:
    """An ``.onnx`` model on ONNX Runtime (CPU), input ``input`` / output ``output`` NCHW.
    ``session`` (an ``onnxruntime.InferenceSession``) and ``input_name`` are public.

    ``any_shape``: a model with static H and W (``--input-size``) is loaded with H and W of its
    input and output made symbolic and its intermediate shapes dropped (the same nodes and
    weights), so it runs at any size, as the dynamic export does.
    """

    def __init__(self, path: str | os.PathLike, contract: IOContract, num_threads: int | None = None,
                 any_shape: bool = False):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if num_threads:
            opts.intra_op_num_threads, opts.inter_op_num_threads = int(num_threads), 1
        source = _symbolic_hw(path) if any_shape else str(path)
        self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.contract = contract

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _per_image(lambda b: self.session.run(None, {self.input_name: b})[0].astype(np.float32), x)


def _symbolic_hw(path: str | os.PathLike) -> bytes:
    """The ONNX model at ``path`` with dims 2 and 3 (H, W) of its inputs and outputs renamed to
    symbols and ``value_info`` cleared, serialized; nodes and initializers unchanged."""
    import onnx

    model = onnx.load(str(path))
    for k, value in enumerate(list(model.graph.input) + list(model.graph.output)):
        for axis in (2, 3):
            dim = value.type.tensor_type.shape.dim[axis]
            dim.ClearField("dim_value")
            dim.dim_param = f"{'hw'[axis - 2]}{k}"
    del model.graph.value_info[:]
    return model.SerializeToString()


class CoreMLUpscaler:
    """A ``.mlpackage`` predicted by Core ML (macOS only), input ``input`` / output ``output`` NCHW."""

    def __init__(self, path: str | os.PathLike, contract: IOContract, compute_units: str = "ALL"):
        block_triton_after_tensorflow()
        import coremltools as ct

        self.model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, compute_units))
        self.contract = contract

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _per_image(lambda b: np.asarray(self.model.predict({"input": b})["output"], dtype=np.float32), x)


MIL_INTERPRETER = "edgesr.converters.mil_interpreter"
"""Module of the Core ML numerical interpreter; it defines ``MILUpscaler(path, precision="fp16", contract=None)``."""


def coreml_runtime_status() -> str | None:
    """None if Core ML packages can be run here, else the reason they cannot."""
    if platform.system() == "Darwin" or importlib.util.find_spec(MIL_INTERPRETER) is not None:
        return None
    return f"Core ML predicts only on macOS and {MIL_INTERPRETER} is not available on this {platform.system()} machine"


def coreml_upscaler(path: str | os.PathLike, contract: IOContract, compute_units: str | None = None,
                    precision: str | None = None):
    """A ``.mlpackage`` as an Upscaler on this machine: Core ML itself on macOS
    (:class:`CoreMLUpscaler` on ``compute_units``, default ``"ALL"``), else the MIL interpreter
    (``precision``: ``"fp16"`` (default) or ``"fp32"`` rounding of activations).

    Raises:
        RuntimeUnavailable: neither can run here.
    """
    if platform.system() == "Darwin":
        return CoreMLUpscaler(path, contract, compute_units or "ALL")
    reason = coreml_runtime_status()
    if reason is not None:
        raise RuntimeUnavailable(f"{path}: {reason}")
    mil = importlib.import_module(MIL_INTERPRETER)
    return mil.MILUpscaler(path, precision or "fp16", contract=contract)
