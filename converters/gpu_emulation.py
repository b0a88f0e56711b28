"""The TFLite GPU delegate's arithmetic, emulated in NumPy on a ``.tflite`` artifact's own graph.

What the delegate does with the graph (TensorFlow Lite, ``tensorflow/lite/delegates/gpu``):

* **Quantized models run dequantized** ("a floating-point view of the original model"):
  constant int8/uint8/int32 tensors are dequantized once at build time
  (``model_builder_helper.cc`` ``CreateVectorCopyData`` -> ``DequantizeConstantTensor``:
  ``real = scale[c] * (q - zero_point[c])``, per channel); every non-constant int8/uint8 tensor
  becomes a float value carrying its quantization parameters (``object_reader.cc``
  ``ReadNonConstantTensor``, ``PopulateQuantParams``: ``min = scale * (qmin - zp)``, ``max =
  scale * (qmax - zp)``). The graph transformation ``add_quant_adjustments.cc`` inserts a
  QUANTIZE_AND_DEQUANTIZE node after every node whose output carries quantization parameters
  and is consumed by another node; QUANTIZE and DEQUANTIZE ops themselves become
  QUANTIZE_AND_DEQUANTIZE (``model_builder.cc``: QuantizeOperationParser with the output's
  parameters, DequantizeOperationParser with the input's; a DEQUANTIZE of a constant, e.g. the
  fp16 weights of an fp16 export, is folded into the constant). The fake quantization is
  ``tasks/quantize_and_dequantize.cc``::

      clamped = min(max, max(min, x)); q = round((clamped - min) / scale); y = q * scale + min

  with ``min``/``max``/``scale`` stored as half in F16 and F32_F16 and ``scale`` raised to
  0.000062 (the smallest normal half) there; ``round`` is OpenCL's, half away from zero.
  The delegate's own graph inputs and outputs that are int8 are dequantized before and
  quantized after the GPU program on the CPU (``quantization_util.cc`` ``DequantizeInputs`` /
  ``QuantizeOutputs``, TFLite's ``Dequantize`` / ``AffineQuantize``: here
  :func:`edgesr.quantization.arithmetic.dequantize` / ``quantize``, round half away from zero
  of ``x / scale``; ARM NEON builds multiply by ``1 / scale`` instead, which differs only on
  exact ties).
* **Precision** (``CalculationsPrecision``, ``cl/api.cc`` ``GetPrecision``): with
  ``is_precision_loss_allowed`` set, the delegate puts ``MIN_LATENCY`` first, AUTO priorities
  resolve to ``MAX_PRECISION`` third (``api.cc`` ``ResolveAutoPriority``), and position 3 selects
  **F16**: half storage *and* half arithmetic (OpenCL defines ``FLT half``, ``ACCUM_FLT4
  half4``); where the device lacks fp16 it falls back to **F32_F16** (half storage, float
  accumulators). Precision loss not allowed -> **F32** (float everywhere). Android's Java API
  allows precision loss by default (``GpuDelegateFactory.Options``: ``precisionLossAllowed =
  true``, quantized models allowed by default); the C API's default options leave it to the
  priorities, whose default (``MAX_PRECISION`` first) is F32.

The emulation, per ``precision`` (:data:`PRECISIONS`):

* ``"fp16"`` (F16): weights, biases and every stored value rounded to half (IEEE binary16,
  round to nearest even); a convolution accumulates in half, one rounding per multiply-add
  (a fused multiply-add, computed exactly in float64 and rounded once), over kernel row,
  kernel column, input channel in that order, starting from 0; the bias is added in half
  after the sum, then the fused activation. Element-wise ops (ADD, SUB, MUL, PRELU) round
  their exact result to half; EXP/TANH/LOGISTIC/SOFTMAX and the SUM reduction are computed in
  float32 (float64 for the libm functions) from the half inputs and rounded to half once.
* ``"fp32_fp16"`` (F32_F16): half storage as above, float32 convolution accumulators (the sum
  rounded to half once, then the bias added in half).
* ``"fp32"`` (F32): float32 everywhere (bit-for-bit up to summation order with LiteRT's float
  kernels on a float model; tested against LiteRT to 1e-6).

Known limits, stated rather than hidden: a real GPU sums a convolution in its own order
(``ConvGeneric`` works on slices of 4 channels; vendor compilers may or may not fuse the
multiply-add), and its half ``exp`` is less exact than this one, so a device differs from this
emulation by a few half ulps of the accumulators; the delegate takes only its largest partition
(``max_delegated_partitions = 1``): ops it would leave on the CPU run here in GPU arithmetic
anyway (edgesr's exports keep the GPU delegate's op constraints; ``edgesr lint --target gpu``).

Tensors are NHWC float32 (holding half values in the half precisions).
:class:`GpuDelegateUpscaler` is an :class:`edgesr.core.evaluate.Upscaler`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from edgesr.quantization import integer_kernels as K
from edgesr.quantization.arithmetic import dequantize, quantize, round_half_away
from edgesr.quantization.tflite_model import Tensor, read_model

from edgesr.core.contract import MissingMetadata, infer_contract, read_contract
from edgesr.core.errors import EdgesrError

PRECISIONS = ("fp16", "fp32_fp16", "fp32")
"""The GPU delegate's CalculationsPrecision: F16, F32_F16, F32 (module doc)."""

HALF_MIN_NORMAL_SCALE = 0.000062
"""quantize_and_dequantize.cc: in F16 / F32_F16 a smaller fake-quant scale is raised to this."""

_QRANGE = {np.int8: (-128, 127), np.uint8: (0, 255)}
_ACT = {"NONE": None, "RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}


def to_half(x) -> np.ndarray:
    """Round to IEEE binary16 (nearest, ties to even) and back to float32 (exact)."""
    return np.asarray(x, np.float64).astype(np.float16).astype(np.float32)


def _f32(x) -> np.ndarray:
    return np.asarray(x, np.float64).astype(np.float32)


def _dequantize_constant(t: Tensor) -> np.ndarray:
    """DequantizeConstantTensor: float32 ``scale[c] * (q - zero_point[c])`` along the quantized
    dimension (per tensor when one scale); float16 data widened to float32; float32 as is."""
    data = t.data
    if data.dtype == np.float32:
        return data
    if data.dtype == np.float16:
        return data.astype(np.float32)
    if not len(t.scale):
        return data.astype(np.float32)
    shape = [1] * data.ndim
    if len(t.scale) > 1:
        shape[t.quantized_dimension] = len(t.scale)
    scale = t.scale.astype(np.float32).reshape(shape)
    zp = (t.zero_point if len(t.zero_point) == len(t.scale) else np.zeros(len(t.scale), np.int64)).reshape(shape)
    return (data.astype(np.int64) - zp).astype(np.float32) * scale


class GpuDelegateGraph:
    """Subgraph 0 of a ``.tflite`` (fp32, fp16 or int8) as the TFLite GPU delegate runs it.

    Args:
        path: the ``.tflite`` file.
        precision: ``"fp16"`` | ``"fp32_fp16"`` | ``"fp32"`` (module doc).
    Raises:
        EdgesrError: unreadable file, unknown precision, or an operator without a GPU kernel here (named).
    """

    SUPPORTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "SUB", "MUL", "PRELU", "RELU", "RELU6", "MAXIMUM",
                 "MINIMUM", "CONCATENATION", "DEPTH_TO_SPACE", "RESHAPE", "STRIDED_SLICE", "REDUCE_MAX", "SUM",
                 "MEAN", "SOFTMAX", "EXP", "TANH", "LOGISTIC", "QUANTIZE", "DEQUANTIZE", "PAD", "BATCH_MATMUL",
                 "EXPAND_DIMS", "SQUEEZE")

    def __init__(self, path: str | os.PathLike, precision: str = "fp16"):
        if precision not in PRECISIONS:
            raise EdgesrError(f"unknown GPU precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
        self.path, self.precision = Path(path), precision
        self.tensors, self.ops, self.inputs, self.outputs = read_model(path)
        bad = sorted({op.name for op in self.ops if op.name not in self.SUPPORTED})
        if bad:
            raise EdgesrError(f"{self.path}: the GPU delegate emulation has no kernel for {', '.join(bad)}")
        self.consumed = {i for op in self.ops for i in op.inputs if i >= 0}
        self.half = precision != "fp32"
        self.store = to_half if self.half else _f32

    # ---- helpers
    def _quantized(self, tid: int) -> bool:
        t = self.tensors[tid]
        return t.dtype in _QRANGE and len(t.scale) == 1 and t.data is None

    def fake_quant(self, x: np.ndarray, t: Tensor) -> np.ndarray:
        """QUANTIZE_AND_DEQUANTIZE with ``t``'s parameters, in this precision's FLT arithmetic."""
        qmin, qmax = _QRANGE[t.dtype]
        scale = np.float32(t.s)
        mn = np.float32(scale * (np.float32(qmin) - np.float32(t.z)))  # PopulateQuantParams, float
        mx = np.float32(scale * (np.float32(qmax) - np.float32(t.z)))
        if self.half:
            scale = np.float32(max(scale, np.float32(HALF_MIN_NORMAL_SCALE)))
        r = self.store
        mn, mx, scale = (float(r(v)) for v in (mn, mx, scale))
        clamped = np.minimum(mx, np.maximum(mn, x))
        q = round_half_away(r(r(np.asarray(clamped, np.float64) - mn) / np.float64(scale)))
        return r(q.astype(np.float64) * scale + mn)  # one rounding: a fused multiply-add

    def _value(self, values: dict, tid: int):
        if tid < 0:
            return None
        if tid in values:
            return values[tid]
        t = self.tensors[tid]
        if t.data is None:
            raise EdgesrError(f"{self.path}: tensor {t.name!r} is read before it is computed")
        return self.store(_dequantize_constant(t)) if t.data.dtype != np.int32 else _dequantize_constant(t)

    def _activation(self, y: np.ndarray, act: str) -> np.ndarray:
        lohi = _ACT.get(act, "?")
        if lohi == "?":
            raise EdgesrError(f"{self.path}: fused activation {act} is not emulated")
        if lohi is None:
            return y
        lo, hi = lohi
        return np.clip(y, lo, hi if hi is not None else np.inf).astype(np.float32)

    # ---- the graph
    def run(self, *inputs: np.ndarray, keep: bool = False):
        """Run on NHWC arrays of the model's input dtypes (int8 inputs are dequantized on the CPU
        first, as DequantizeInputs does); returns the outputs in the model's output dtypes
        (int8 outputs quantized as QuantizeOutputs does), or every value by tensor id when ``keep``.

        Raises:
            EdgesrError: wrong number, dtype or rank of inputs.
        """
        if len(inputs) != len(self.inputs):
            raise EdgesrError(f"{self.path}: model takes {len(self.inputs)} input(s), got {len(inputs)}")
        values: dict[int, np.ndarray] = {}
        for tid, arr in zip(self.inputs, inputs):
            t, arr = self.tensors[tid], np.asarray(arr)
            if arr.dtype != t.dtype or arr.ndim != len(t.shape):
                raise EdgesrError(f"{self.path}: input {t.name!r} needs {np.dtype(t.dtype).name} rank {len(t.shape)}, "
                                  f"got {arr.dtype} {arr.shape}")
            values[tid] = self.store(dequantize(arr, t.s, t.z) if t.dtype in _QRANGE else arr)
        raw_outputs = {}
        for op in self.ops:
            args = [self._value(values, i) for i in op.inputs]
            out = np.asarray(getattr(self, "_op_" + op.name.lower())(op, args), np.float32)
            tid = op.outputs[0]
            if op.name not in ("QUANTIZE", "DEQUANTIZE") and self._quantized(tid) and tid in self.consumed:
                raw_outputs[tid] = out  # add_quant_adjustments: consumers read the fake-quantized value
                out = self.fake_quant(out, self.tensors[tid])
            values[tid] = out
        if keep:
            return values
        results = []
        for tid in self.outputs:
            t, y = self.tensors[tid], raw_outputs.get(tid, values[tid])
            results.append(quantize(y, t.s, t.z, *_QRANGE[t.dtype]).astype(t.dtype) if t.dtype in _QRANGE else y)
        return results

    def _t(self, op, k: int, out: bool = False) -> Tensor:
        return self.tensors[(op.outputs if out else op.inputs)[k]]

    # ---- convolutions
    def _conv(self, op, args, depthwise: bool):
        x, w, b = args[0], args[1], args[2] if len(args) > 2 else None
        o = op.options
        n, h, wd, cin = x.shape
        _, kh, kw, _ = w.shape
        (sh, sw), (dh, dw) = (o["stride_h"], o["stride_w"]), (o.get("dilation_h", 1), o.get("dilation_w", 1))
        if o["padding"] == "SAME":
            oh, ph = K.same_padding(h, kh, sh, dh)
            ow, pw = K.same_padding(wd, kw, sw, dw)
        else:
            oh, ph = (h - (kh - 1) * dh - 1) // sh + 1, 0
            ow, pw = (wd - (kw - 1) * dw - 1) // sw + 1, 0
        xp = np.zeros((n, max((oh - 1) * sh + (kh - 1) * dh + 1, h + ph), max((ow - 1) * sw + (kw - 1) * dw + 1, wd + pw), cin),
                      np.float32)
        xp[:, ph : ph + h, pw : pw + wd] = x
        cout = w.shape[3] if depthwise else w.shape[0]
        if depthwise and cout // cin > 1:
            xp = np.repeat(xp, cout // cin, axis=3)
        half_accum = self.precision == "fp16"
        acc = np.zeros((n, oh, ow, cout), np.float64 if half_accum else np.float32)
        for i in range(kh):
            for j in range(kw):
                win = xp[:, i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw : j * dw + (ow - 1) * sw + 1 : sw]
                if not half_accum:
                    acc += win * w[0, i, j] if depthwise else win @ w[:, i, j, :].T
                elif depthwise:  # one product per channel and tap: a half FMA
                    acc = to_half(acc + win.astype(np.float64) * w[0, i, j]).astype(np.float64)
                else:
                    for c in range(cin):  # half FMA per input channel, in channel order
                        acc = to_half(acc + win[..., c : c + 1].astype(np.float64) * w[:, i, j, c]).astype(np.float64)
        y = self.store(acc)
        if b is not None:
            y = self.store(y.astype(np.float64) + self.store(b))
        return self._activation(y, o.get("activation", "NONE"))

    def _op_conv_2d(self, op, args):
        return self._conv(op, args, False)

    def _op_depthwise_conv_2d(self, op, args):
        return self._conv(op, args, True)

    # ---- elementwise (exact result, rounded once to the storage precision)
    def _binary(self, op, args, fn):
        y = self.store(fn(np.asarray(args[0], np.float64), np.asarray(args[1], np.float64)))
        return self._activation(y, op.options.get("activation", "NONE"))

    def _op_add(self, op, args):
        return self._binary(op, args, np.add)

    def _op_sub(self, op, args):
        return self._binary(op, args, np.subtract)

    def _op_mul(self, op, args):
        return self._binary(op, args, np.multiply)

    def _op_maximum(self, op, args):
        return np.maximum(args[0], args[1])

    def _op_minimum(self, op, args):
        return np.minimum(args[0], args[1])

    def _op_prelu(self, op, args):
        x = args[0]
        return np.where(x >= 0, x, self.store(np.asarray(x, np.float64) * args[1])).astype(np.float32)

    def _op_relu(self, op, args):
        return np.maximum(args[0], 0).astype(np.float32)

    def _op_relu6(self, op, args):
        return np.clip(args[0], 0, 6).astype(np.float32)

    # ---- quantization: QUANTIZE_AND_DEQUANTIZE (model_builder.cc)
    def _op_quantize(self, op, args):
        return self.fake_quant(args[0], self._t(op, 0, out=True))

    def _op_dequantize(self, op, args):
        t = self._t(op, 0)
        if t.data is not None:  # a constant (fp16 weights): folded, already dequantized by _value
            return args[0]
        return self.fake_quant(args[0], t) if t.dtype in _QRANGE else self.store(args[0])

    # ---- data movement (exact)
    def _op_concatenation(self, op, args):
        y = np.concatenate(args, axis=op.options.get("axis", -1))
        return self._activation(y, op.options.get("activation", "NONE"))

    def _op_depth_to_space(self, op, args):
        return K.depth_to_space_nhwc(args[0], op.options["block_size"])

    def _op_reshape(self, op, args):
        shape = args[1] if len(args) > 1 and args[1] is not None else self._t(op, 0, out=True).shape
        return args[0].reshape([int(v) for v in np.asarray(shape).ravel()])

    def _op_strided_slice(self, op, args):
        o = op.options
        if o.get("ellipsis_mask") or o.get("new_axis_mask") or o.get("offset"):
            raise EdgesrError(f"{self.path}: STRIDED_SLICE with ellipsis/new-axis/offset is not emulated")
        ints = [np.asarray(self.tensors[i].data).astype(np.int64) for i in op.inputs[1:4]]
        return K.strided_slice(args[0], *ints, o.get("begin_mask", 0), o.get("end_mask", 0), o.get("shrink_axis_mask", 0))

    def _op_expand_dims(self, op, args):
        return np.expand_dims(args[0], int(np.asarray(self.tensors[op.inputs[1]].data).ravel()[0]))

    def _op_squeeze(self, op, args):
        dims = op.options.get("squeeze_dims") or [k for k, n in enumerate(args[0].shape) if n == 1]
        return np.squeeze(args[0], axis=tuple(int(d) % args[0].ndim for d in dims))

    def _op_batch_matmul(self, op, args):
        # The delegate takes no rank-5 tensor (edgesr emits BATCH_MATMUL only in int8 graphs,
        # (1, H, W, 1, C) x (1, H, W, C, 1)): emulated like the sums, float32 accumulation, one rounding.
        if op.options.get("adj_x") or op.options.get("adj_y"):
            raise EdgesrError(f"{self.path}: BATCH_MATMUL with adjoint operands is not emulated")
        return self.store(np.matmul(np.asarray(args[0], np.float32), np.asarray(args[1], np.float32)))

    def _op_pad(self, op, args):
        pads = np.asarray(self.tensors[op.inputs[1]].data).astype(np.int64)
        return np.pad(args[0], [tuple(p) for p in pads])

    # ---- reductions and transcendental functions (float32, rounded once)
    def _axes(self, op, x) -> tuple:
        return tuple(sorted({int(a) % x.ndim for a in np.atleast_1d(self.tensors[op.inputs[1]].data)}))

    def _op_reduce_max(self, op, args):
        return args[0].max(axis=self._axes(op, args[0]), keepdims=bool(op.options.get("keep_dims", False)))

    def _op_sum(self, op, args):
        return self.store(args[0].sum(axis=self._axes(op, args[0]), dtype=np.float32,
                                      keepdims=bool(op.options.get("keep_dims", False))))

    def _op_mean(self, op, args):
        return self.store(args[0].mean(axis=self._axes(op, args[0]), dtype=np.float32,
                                       keepdims=bool(op.options.get("keep_dims", False))))

    def _op_softmax(self, op, args):
        z = args[0].astype(np.float32) * np.float32(op.options.get("beta", 1.0))
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return self.store(e / e.sum(axis=-1, keepdims=True, dtype=np.float32))

    def _op_exp(self, op, args):
        return self.store(np.exp(np.asarray(args[0], np.float64)))

    def _op_tanh(self, op, args):
        return self.store(np.tanh(np.asarray(args[0], np.float64)))

    def _op_logistic(self, op, args):
        return self.store(1.0 / (1.0 + np.exp(-np.asarray(args[0], np.float64))))


class GpuDelegateUpscaler:
    """The GPU delegate emulation as an :class:`edgesr.core.evaluate.Upscaler`.

    ``__call__(x)``: float32 (N, C, h, w) in [0, 1] -> float32 (N, C, s*h, s*w): NHWC, quantized
    to an int8 input tensor as the app does (:func:`edgesr.quantization.arithmetic.quantize`),
    run by :class:`GpuDelegateGraph`, an int8 output dequantized (``real = scale * (q - zp)``).
    ``run_quantized(q)`` works on the model's own NHWC input tensor and returns its output tensor.

    Raises:
        EdgesrError: as :class:`GpuDelegateGraph`; invalid embedded metadata.
    """

    def __init__(self, path: str | os.PathLike, precision: str = "fp16", contract=None):
        self.path = Path(path)
        self.graph = GpuDelegateGraph(path, precision)
        self.input_tensor = self.graph.tensors[self.graph.inputs[0]]
        self.output_tensor = self.graph.tensors[self.graph.outputs[0]]
        if contract is None:
            try:
                contract = read_contract(self.path)
            except MissingMetadata:
                c, t = int(self.input_tensor.shape[-1]), self.input_tensor
                contract = infer_contract(c, lambda side: self.run_quantized(np.zeros((1, side, side, c), t.dtype)).shape[1], "NHWC")
        self.contract = contract

    def run_quantized(self, q: np.ndarray) -> np.ndarray:
        return self.graph.run(q)[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        if x.ndim != 4:
            raise ValueError(f"expected float32 (N, C, h, w), got shape {x.shape}")
        t, to = self.input_tensor, self.output_tensor
        outs = []
        for i in range(x.shape[0]):
            xi = x[i : i + 1].transpose(0, 2, 3, 1)
            q = quantize(xi, t.s, t.z, *_QRANGE[t.dtype]).astype(t.dtype) if t.dtype in _QRANGE else xi
            y = self.run_quantized(q)
            outs.append((dequantize(y, to.s, to.z) if to.dtype in _QRANGE else y.astype(np.float32)).transpose(0, 3, 1, 2))
        return np.concatenate(outs, axis=0)
