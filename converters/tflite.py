"""PyTorch deploy module -> TFLite (LiteRT) flatbuffer, through the generic Keras rebuild.

``tf.lite.TFLiteConverter.from_keras_model`` on the Keras model of
:func:`edgesr.converters.keras_rebuild.rebuild`; input float32/int8/uint8 (1, H, W, C) NHWC with
dynamic H and W (``interpreter.resize_tensor_input`` then ``allocate_tensors``), or with
``input_size=(H, W)`` a fixed ``[1, H, W, C]`` signature (shape and ``shape_signature``, what
the GPU delegate and NNAPI compile for); output (1, s*H, s*W, C). Precisions:

* ``fp32``: float32 weights and activations;
* ``fp16``: float16 weights (DEQUANTIZE to float32 at load), float32 arithmetic;
* ``w8a16``: int8 weights, int16 activations, float32 input/output (TFLite's 16x8
  quantization at the int8 model's ranges; :mod:`edgesr.converters.tflite_w8a16`);
* ``int8``: full integer: per-channel symmetric int8 weights, per-tensor asymmetric int8
  activations, int8 or uint8 input/output (``io_dtype``). Affine mapping:
  ``real = scale * (q - zero_point)``. The activation ranges are always edgesr's: the
  caller's ``activation_ranges`` (a quantized checkpoint's, :mod:`edgesr.quantization.api`),
  or else min/max ranges that :func:`edgesr.quantization.calibration.calibrate` observes on
  the caller's real image patches. They enter the Keras graph as fake-quant ops, one per int8
  tensor, so the converter does not pick ranges itself: its representative dataset (which
  its API requires) changes no scale, zero point or weight (tested), and with given ranges
  and no patches it is a ramp over the input range. (Left to its own statistics, the converter gives a same-scale cluster,
  e.g. SplitSR's stem conv + slices + concats, the range of one member only: it clipped
  the stem's negative values and cost SplitSR 18-23 dB.)

The artifact's metadata (contract + provenance, :mod:`edgesr.converters.metadata`) is embedded
by :func:`embed_metadata` as the flatbuffer's ``Metadata`` entry ``"edgesr"`` (a ``Buffer`` of
UTF-8 JSON); the graph, tensors and weights are unchanged (weight buffers stay 16-byte aligned).

The graph keeps native DEPTH_TO_SPACE and PRELU ops and no tensor above rank 4 (what the GPU
delegate and NNAPI accept); :func:`graph_report` reads them back from the flatbuffer. In int8,
the output clamp's MINIMUM/RELU ops are dropped where the output quantization saturates at the
same bounds (:func:`edgesr.converters.tflite_passes.drop_saturating_clamps`, bit-identical;
XNNPACK would otherwise leave them outside the delegate).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
from edgesr.converters.keras_rebuild import rebuild
from edgesr.converters.tflite_passes import drop_saturating_clamps
from edgesr.converters.tflite_w8a16 import quantize_16x8
from edgesr.quantization.calibration import calibrate

from edgesr.core.atomic import atomic_path
from edgesr.core.contract import KEY, metadata_text
from edgesr.core.errors import EdgesrError
from edgesr.core.thirdparty import block_triton_after_tensorflow

PRECISIONS = ("fp32", "fp16", "int8", "w8a16")
IO_DTYPES = ("int8", "uint8")


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    block_triton_after_tensorflow()
    import tensorflow as tf

    return tf


def convert(module, channels: int, precision: str = "fp32", calibration: np.ndarray | None = None,
            io_dtype: str = "int8", activation_ranges: dict[str, tuple[float, float]] | None = None,
            input_size: tuple[int, int] | None = None) -> bytes:
    """Convert a deploy module to TFLite flatbuffer bytes.

    Args:
        module: deploy ``nn.Module`` (float32 NCHW (N, C, H, W) -> (N, C, s*H, s*W)).
        channels: C of the input.
        precision: ``"fp32"``, ``"fp16"``, ``"int8"`` or ``"w8a16"`` (int8 weights, int16
            activations at the int8 model's ranges, float32 I/O).
        calibration: for int8 and w8a16: float32 (N, C, h, w) NCHW real image patches in the model's
            input space ([0, 1]); each patch is one representative sample. Needed only when
            ``activation_ranges`` is None (they are calibrated on it).
        io_dtype: for int8: ``"int8"`` or ``"uint8"`` input and output tensors.
        activation_ranges: ``{fx node name: (min, max)}`` fixed activation ranges (fake-quant
            in the rebuild); default for int8: min/max calibrated on ``calibration`` by
            :func:`edgesr.quantization.calibration.calibrate`.
        input_size: ``(H, W)`` LR pixels for a fixed ``[1, H, W, C]`` input; None (default):
            dynamic H and W. The graph's ops, weights and quantization are the same either way.

    Raises:
        EdgesrError: unknown precision / io dtype, int8 with neither ranges nor calibration
        patches, an op the rebuild does not support.
    """

    if precision not in PRECISIONS:
        raise EdgesrError(f"unknown TFLite precision {precision!r} (expected {', '.join(PRECISIONS)})")
    quantized = precision in ("int8", "w8a16")
    if quantized:
        if precision == "int8" and io_dtype not in IO_DTYPES:
            raise EdgesrError(f"unknown int8 io dtype {io_dtype!r} (expected {', '.join(IO_DTYPES)})")
        if activation_ranges is not None and (calibration is None or len(calibration) == 0):
            calibration = _ramp(channels)
        if calibration is None or len(calibration) == 0:
            raise EdgesrError("int8 TFLite needs calibration patches (real images; e.g. --calib DIR)")
        calibration = np.asarray(calibration, dtype=np.float32)
        if calibration.ndim != 4 or calibration.shape[1] != channels:
            raise EdgesrError(f"calibration patches must be float32 (N, {channels}, h, w), got shape {calibration.shape}")
        if activation_ranges is None:
            activation_ranges = calibrate(module, calibration, "minmax")
    tf = _tf()
    model = rebuild(module, channels, activation_ranges, input_size, dot_as_matmul=quantized)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quantized:
        nhwc = np.ascontiguousarray(calibration.transpose(0, 2, 3, 1))
        if input_size is not None:  # the fixed signature takes only (1, H, W, C) samples
            nhwc = _fit_samples(nhwc, input_size)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([p[None]] for p in nhwc)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = "int8" if precision == "w8a16" else io_dtype
        conv.inference_input_type = conv.inference_output_type = {"int8": tf.int8, "uint8": tf.uint8}[io_type]
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Statistics for quantized inputs were expected" etc.
            data = conv.convert()
    except Exception as exc:  # the converter raises ConverterError and friends
        raise EdgesrError(f"TFLite conversion ({'int8' if quantized else precision}) failed: {str(exc).strip().splitlines()[0][:200]}") from None
    if precision == "w8a16":  # the int8 graph gives the ranges (no clamp pass: int16 does not saturate there)
        return quantize_16x8(rebuild(module, channels, None, input_size, dot_as_matmul=True), data, nhwc)
    if precision == "int8":  # the output clamp the int8 quantization already saturates at (bit-identical)
        data, _ = drop_saturating_clamps(data)
    return data


BUFFER_ALIGNMENT = 16
"""Alignment of every buffer's data in the rewritten flatbuffer (what the TFLite converter
uses, so weights can be read in place from a memory-mapped file)."""


def embed_metadata(data: bytes, meta: dict) -> bytes:
    """Return the flatbuffer ``data`` with ``meta`` embedded as edgesr metadata.

    Adds (or replaces) the ``Model.metadata`` entry named ``"edgesr"`` pointing at a new
    ``Buffer`` whose data is the UTF-8 JSON of ``meta`` (keys sorted). The model is unpacked
    and repacked with TensorFlow's flatbuffer object API
    (``tensorflow.lite.tools.flatbuffer_utils``); operators, tensors and buffer contents are
    kept as they are, and every buffer's data is aligned to :data:`BUFFER_ALIGNMENT` bytes.

    Args:
        data: a TFLite flatbuffer (``TFL3``), e.g. :func:`convert`'s output.
        meta: the artifact metadata (:func:`edgesr.converters.metadata.build_metadata`).

    Raises:
        EdgesrError: ``data`` is not a TFLite flatbuffer.
    """
    _tf()
    block_triton_after_tensorflow()
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    if len(data) < 8 or bytes(data[4:8]) != b"TFL3":
        raise EdgesrError("not a TFLite flatbuffer (no 'TFL3' identifier)")
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    text = np.frombuffer(metadata_text(meta).encode("utf-8"), dtype=np.uint8)
    model.metadata = [m for m in (model.metadata or []) if m.name not in (KEY, KEY.encode())]
    buffer = schema.BufferT()
    buffer.data = text
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = KEY, len(model.buffers) - 1
    model.metadata.append(entry)
    aligned = _aligned_buffer_class()
    for b in model.buffers:
        b.__class__ = aligned
    return flatbuffer_utils.convert_object_to_bytearray(model)


def _aligned_buffer_class():
    block_triton_after_tensorflow()
    from tensorflow.lite.python import schema_py_generated as schema

    class AlignedBufferT(schema.BufferT):
        """``BufferT`` whose data vector starts on a :data:`BUFFER_ALIGNMENT`-byte boundary
        (flatbuffers aligns from the end; ``Finish`` pads the total to the largest alignment)."""

        def Pack(self, builder):
            raw = None if self.data is None else np.asarray(self.data, dtype=np.uint8).tobytes()
            vec = None
            if raw is not None:
                builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
                builder.head -= len(raw)
                builder.Bytes[builder.head : builder.head + len(raw)] = raw
                builder.vectorNumElems = len(raw)
                vec = builder.EndVector()
            schema.BufferStart(builder)
            if vec is not None:
                schema.BufferAddData(builder, vec)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBufferT


def _ramp(channels: int) -> np.ndarray:
    """One (1, C, 16, 16) float32 sample, a ramp over [0, 1]: the representative dataset the
    converter's API asks for when every int8 tensor already has its range (it changes nothing)."""
    ramp = np.linspace(0.0, 1.0, 256, dtype=np.float32).reshape(16, 16)
    return np.broadcast_to(ramp, (1, channels, 16, 16)).copy()


def _fit_samples(nhwc: np.ndarray, input_size: tuple[int, int], count: int = 2) -> np.ndarray:
    """The first ``count`` representative samples (N, h, w, C) repeated periodically
    (``numpy.pad`` mode ``"wrap"``) and cropped to the fixed (H, W). Every int8 tensor's range
    is fixed by edgesr's fake-quant ops, so the samples change nothing in the model; only
    their shape must match the fixed input."""
    h, w = (int(v) for v in input_size)
    pad = ((0, 0), (0, max(0, h - nhwc.shape[1])), (0, max(0, w - nhwc.shape[2])), (0, 0))
    return np.ascontiguousarray(np.pad(nhwc[:count], pad, mode="wrap")[:, :h, :w])


def save(data: bytes, path: str | os.PathLike) -> Path:
    """Write flatbuffer bytes atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def graph_report(model: bytes | str | os.PathLike) -> dict:
    """Read a flatbuffer's ops and tensors (with the ``tflite`` package).

    Returns:
        ``{"ops": [builtin op names in order], "max_rank": int,
        "tensor_types": {tensor name: type name}, "float_ops": [ops with a float32/float16
        input or output other than a leading QUANTIZE's input / trailing DEQUANTIZE's output]}``.
    """
    import tflite

    data = Path(model).read_bytes() if not isinstance(model, (bytes, bytearray)) else bytes(model)
    m = tflite.Model.GetRootAsModel(data, 0)
    g = m.Subgraphs(0)
    op_names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}
    graph_inputs = {g.Inputs(i) for i in range(g.InputsLength())}
    graph_outputs = {g.Outputs(i) for i in range(g.OutputsLength())}
    tensors = [g.Tensors(i) for i in range(g.TensorsLength())]
    ops, float_ops = [], []
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        code = m.OperatorCodes(op.OpcodeIndex())
        name = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        ops.append(name)
        ins = [op.Inputs(k) for k in range(op.InputsLength()) if op.Inputs(k) >= 0]
        outs = [op.Outputs(k) for k in range(op.OutputsLength())]
        if name == "QUANTIZE":
            ins = [t for t in ins if t not in graph_inputs]
        if name == "DEQUANTIZE":
            outs = [t for t in outs if t not in graph_outputs]
        if any(type_names[tensors[t].Type()] in ("FLOAT32", "FLOAT16") for t in ins + outs):
            float_ops.append(name)
    return {
        "ops": ops,
        "max_rank": max((max(t.ShapeLength(), t.ShapeSignatureLength()) for t in tensors), default=0),
        "tensor_types": {t.Name().decode(): type_names[t.Type()] for t in tensors},
        "float_ops": float_ops,
    }
