"""w8a16 TFLite: int8 weights, int16 activations (TFLite's "16x8" quantization; Qualcomm's w8a16).

TFLite's converter makes these graphs with
``target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]``:
per-channel symmetric int8 weights (the int8 export's values), per-tensor **symmetric** int16
activations (zero point 0, ``scale = max(|min|, |max|) / 32767``), int64 biases (scale
``s_in * s_w``) and int64 accumulators. Affine mapping as everywhere: ``real = scale * (q -
zero_point)``.

Ranges. The converter quantizes 16x8 with its older quantizer, which reads each tensor's
(min, max) from its own calibration run and ignores fake-quant ops (given them, it fails). So
edgesr never lets it calibrate: :func:`quantize_16x8` asks it for the calibrated float model
only (``_experimental_calibrate_only``), writes edgesr's ranges into every tensor, and runs the
same quantizer on that model without feeding a sample. The ranges are those of the int8
export of the same model (:func:`int8_tensor_ranges`): each int8 tensor's realized range
``[s * (-128 - z), s * (127 - z)]``, i.e. the checkpoint's activation ranges after TFLite's
8-bit nudging and same-scale constraints, matched op for op by graph structure (the two
conversions start from the same Keras rebuild; a mismatch raises). Exporting a
quantized checkpoint therefore never recalibrates, as for int8.

Ops without a 16x8 kernel run in float. LiteRT 2.3 has no int16 PRELU or DEPTH_TO_SPACE
(``activations.cc`` PreluEval: float32/uint8/int8; ``depth_to_space.cc`` Prepare:
float32/uint8/int8/int32/int64; the 16x8 quantizer says "not yet supported" for both), so the
converter wraps each in DEQUANTIZE -> float op -> QUANTIZE (``TFLITE_BUILTINS`` is allowed for
that). SESR-M5's graph thus has five float PRELU islands and a float DEPTH_TO_SPACE;
``sesr_m5_relu`` keeps only the DEPTH_TO_SPACE island (its ReLUs fuse into the convs).

Input and output are float32 (a QUANTIZE to int16 at the input, a DEQUANTIZE at the output):
the app feeds and reads the same tensors as the fp32 model, the input's int16 scale is
``1 / 32767`` for the [0, 1] contract (a uint8 pixel does not map to an integer code), and the
output is rounded to 8 bits by the app anyway. The artifact's metadata says so
(``provenance.io_dtype = "float32"``, ``provenance.quantization.activations = "int16"``).
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np

from edgesr.core.errors import EdgesrError
from edgesr.core.thirdparty import block_triton_after_tensorflow

_SKIP = ("QUANTIZE", "DEQUANTIZE")
_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


def _op_names(model) -> list[str]:
    import tflite

    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    return [names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "CUSTOM") for c in model.operatorCodes]


class _Graph:
    """Subgraph 0 of a flatbuffer object for matching: ops other than QUANTIZE/DEQUANTIZE, each
    QUANTIZE/DEQUANTIZE output aliased to its input (so an int8 graph's int8 input and its float
    input are one tensor), and a signature for each constant operand."""

    def __init__(self, model):
        self.model, self.sg = model, model.subgraphs[0]
        names = _op_names(model)
        self.alias: dict[int, int] = {}
        self.ops = []
        for op in self.sg.operators:
            if names[op.opcodeIndex] in _SKIP:
                self.alias[int(op.outputs[0])] = int(op.inputs[0])
            else:
                self.ops.append((names[op.opcodeIndex], op))

    def canon(self, t: int) -> int:
        while t in self.alias:
            t = self.alias[t]
        return t

    def const_signature(self, t: int, op_name: str):
        """None for a tensor computed at run time; else the data of an int32/int64 constant
        (slice bounds, axes, shapes: equal in both graphs) or "const" (weights and biases,
        float in one graph and int8/int32 in the other: not comparable)."""
        tensor = self.sg.tensors[t]
        data = self.model.buffers[tensor.buffer].data
        if data is None or len(data) == 0:
            return None
        index_like = tensor.type in (2, 4) and op_name not in _WEIGHTED  # INT32, INT64
        return bytes(np.asarray(data, np.uint8)) if index_like else "const"


def _match_ops(float_graph: _Graph, int8_graph: _Graph) -> list[tuple[object, object]]:
    """Pair every op of the float graph with its op in the int8 graph by structure: same builtin,
    inputs that are paired tensors (or equal constants). Independent ops may come in another
    order in the two conversions (SplitSR's slices do); the structure does not change.

    Raises:
        EdgesrError: an op without a counterpart.
    """
    tensor_map = {float_graph.canon(int(float_graph.sg.inputs[0])): int8_graph.canon(int(int8_graph.sg.inputs[0]))}
    pending: dict[tuple, list] = {}
    for name, op in int8_graph.ops:
        key = (name, tuple(int8_graph.const_signature(i, name) or int8_graph.canon(i) for i in op.inputs if i >= 0))
        pending.setdefault(key, []).append(op)
    pairs = []
    for name, op in float_graph.ops:
        ins = []
        for i in (int(v) for v in op.inputs if v >= 0):
            sig = float_graph.const_signature(i, name)
            if sig is None and float_graph.canon(i) not in tensor_map:
                raise EdgesrError(f"w8a16: {name} reads a tensor the int8 graph does not have")
            ins.append(sig or tensor_map[float_graph.canon(i)])
        candidates = pending.get((name, tuple(ins)))
        if not candidates:
            raise EdgesrError(f"w8a16: no int8 counterpart for {name} (the float and int8 conversions differ)")
        # Two ops of one structure (eSR's value and key convs read the same input): the weights decide.
        best = min(range(len(candidates)), key=lambda k: _weight_distance(float_graph, op, int8_graph, candidates[k]))
        twin = candidates.pop(best)
        for a, b in zip(op.outputs, twin.outputs):
            tensor_map[float_graph.canon(int(a))] = int8_graph.canon(int(b))
        pairs.append((op, twin))
    return pairs


def _dequantized(graph: _Graph, t: int) -> np.ndarray | None:
    """A constant tensor's values as float64 (float32 data, or int8/int32 data times its scale), else None."""
    tensor = graph.sg.tensors[t]
    data = graph.model.buffers[tensor.buffer].data
    if data is None or len(data) == 0:
        return None
    raw = bytes(np.asarray(data, np.uint8))
    if tensor.type == 0:  # FLOAT32
        return np.frombuffer(raw, np.float32).astype(np.float64)
    q = tensor.quantization
    if tensor.type not in (9, 2) or q is None or q.scale is None:  # INT8, INT32
        return None
    values = np.frombuffer(raw, np.int8 if tensor.type == 9 else np.int32).astype(np.float64)
    scale = np.asarray(q.scale, np.float64)
    if scale.size > 1:  # per-channel along the quantized dimension
        shape = [int(v) for v in tensor.shape]
        axis = int(q.quantizedDimension)
        view = [1] * len(shape)
        view[axis] = scale.size
        return (values.reshape(shape) * scale.reshape(view)).ravel()
    return values * float(scale[0])


def _weight_distance(float_graph: _Graph, op_f, int8_graph: _Graph, op_8) -> float:
    """Sum over the constant operands of the mean absolute difference between the float values
    and the int8 graph's dequantized ones (0 when the ops have no comparable constants, infinite
    when a constant's size differs)."""
    total = 0.0
    for a, b in zip(op_f.inputs, op_8.inputs):
        if a < 0 or b < 0:
            continue
        fa, fb = _dequantized(float_graph, int(a)), _dequantized(int8_graph, int(b))
        if fa is None or fb is None:
            continue
        if fa.size != fb.size:
            return float("inf")  # different weights, e.g. a 1x1 and a 5x5 conv on one input
        total += float(np.abs(fa - fb).mean())
    return total


def _unshare_buffers(model) -> None:
    """Give every constant tensor a buffer of its own (in place).

    The converter stores equal float constants once: PKN-fixed's ones-conv bias and its output
    clamp's bound are both 1.0 and shared a buffer; the 16x8 quantizer then wrote the bias's int64
    value into it, and the clamp's int16 constant read -128 (a constant -0.004 output, 26.8 dB).
    """
    import copy

    seen: set[int] = set()
    for sg in model.subgraphs:
        for tensor in sg.tensors:
            b = tensor.buffer
            data = model.buffers[b].data if 0 < b < len(model.buffers) else None
            if data is None or len(data) == 0:
                continue
            if b in seen:
                model.buffers.append(copy.deepcopy(model.buffers[b]))
                tensor.buffer = len(model.buffers) - 1
            else:
                seen.add(b)


def _real_range(sg, t: int) -> tuple[float, float]:
    """``[s * (-128 - z), s * (127 - z)]`` of an int8 tensor."""
    q = sg.tensors[t].quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        raise EdgesrError(f"w8a16: int8 tensor {sg.tensors[t].name!r} has no per-tensor quantization")
    s, z = float(q.scale[0]), int(q.zeroPoint[0])
    return s * (-128 - z), s * (127 - z)


def int8_tensor_ranges(int8_model: bytes, float_model: bytes) -> dict[int, tuple[float, float]]:
    """``{tensor id in float_model: (min, max)}``: the real range ``[s * (-128 - z), s * (127 - z)]``
    of the matching int8 tensor, for the graph input and every op output of ``float_model``
    (ops paired by structure, :func:`_match_ops`).

    Raises:
        EdgesrError: the two graphs do not match.
    """
    block_triton_after_tensorflow()
    from tensorflow.lite.tools import flatbuffer_utils

    g8 = _Graph(flatbuffer_utils.convert_bytearray_to_object(bytearray(int8_model)))
    gf = _Graph(flatbuffer_utils.convert_bytearray_to_object(bytearray(float_model)))
    int8_input = int(g8.sg.inputs[0])
    quantize_in = next((op for name, op in _all_ops(g8) if name == "QUANTIZE" and int(op.inputs[0]) == int8_input), None)
    ranges = {int(gf.sg.inputs[0]): _real_range(g8.sg, int(quantize_in.outputs[0]) if quantize_in is not None else int8_input)}
    for op_f, op_8 in _match_ops(gf, g8):
        for a, b in zip(op_f.outputs, op_8.outputs):
            ranges[int(a)] = _real_range(g8.sg, int(b))
    return ranges


def _all_ops(graph: _Graph):
    names = _op_names(graph.model)
    return [(names[op.opcodeIndex], op) for op in graph.sg.operators]


def quantize_16x8(float_model, int8_model: bytes, samples_nhwc: np.ndarray) -> bytes:
    """Convert a Keras model to a 16x8 TFLite flatbuffer at the ranges of its int8 conversion.

    Args:
        float_model: the Keras rebuild **without** fake-quant ops
            (:func:`edgesr.converters.keras_rebuild.rebuild` with no ranges), float32 (1, H, W, C).
        int8_model: the int8 flatbuffer of the same rebuild with edgesr's fake-quant ranges
            (before any graph pass), whose tensor ranges are used.
        samples_nhwc: float32 (N, H, W, C) samples for the converter's calibration pass, which
            it requires; every range it observes is overwritten.

    Returns:
        The flatbuffer bytes: float32 input/output, int16 activations, int8 weights, int64
        biases, float islands where LiteRT has no 16x8 kernel (module doc).

    Raises:
        EdgesrError: the float and int8 graphs do not match op for op (:func:`_match_ops`), or the
            converter fails.
    """
    block_triton_after_tensorflow()
    import tensorflow as tf
    from tensorflow.lite.python.optimize import calibrator
    from tensorflow.lite.tools import flatbuffer_utils

    conv = tf.lite.TFLiteConverter.from_keras_model(float_model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([s[None]] for s in samples_nhwc)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                                      tf.lite.OpsSet.TFLITE_BUILTINS]
    conv._experimental_calibrate_only = True  # the float model with min/max per tensor; edgesr sets them
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calibrated = conv.convert()
        ranges = int8_tensor_ranges(int8_model, calibrated)
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
        _unshare_buffers(model)
        sg = model.subgraphs[0]
        for t, (lo, hi) in ranges.items():
            q = sg.tensors[t].quantization
            if q is None:
                raise EdgesrError(f"w8a16: tensor {sg.tensors[t].name!r} was not calibrated")
            q.min, q.max = np.array([lo], np.float32), np.array([hi], np.float32)
        ranged = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # no samples fed: the quantizer keeps the min/max written above
            return bytes(calibrator.Calibrator(ranged).calibrate_and_quantize(
                lambda: iter(()), tf.float32, tf.float32, True, activations_type=tf.int16, bias_type=tf.int64))
    except EdgesrError:
        raise
    except Exception as exc:  # ConverterError, RuntimeError from the quantizer
        raise EdgesrError(f"TFLite conversion (w8a16) failed: {str(exc).strip().splitlines()[0][:200]}") from None
