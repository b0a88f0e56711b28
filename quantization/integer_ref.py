"""A NumPy integer reference for edgesr's int8 and 16x8 (w8a16) TFLite graphs, bit-exact with LiteRT.

Reads the ``.tflite`` flatbuffer with :func:`edgesr.quantization.tflite_model.read_model`, then
runs the operators in graph order with the kernels of
:mod:`edgesr.quantization.integer_kernels`, written after TFLite's reference kernels
(``kernels/internal/reference/integer_ops``). Tensors are NHWC; activations int8 (or
uint8/float32 at the model's edges); weights int8 per-channel (OHWI), biases int32.

Kernel families (``kernels=``), each reproducing one LiteRT configuration bit for bit:

* ``"reference"``: ``OpResolverType.BUILTIN_REF`` (gemmlowp double-rounding fixed point; the
  float LUTs where its kernels use them; its int8 SUM quirk, below);
* ``"optimized"``: ``BUILTIN_WITHOUT_DEFAULT_DELEGATES`` (x86 build; :data:`KERNEL_NOTES`);
* ``"xnnpack"``: the default ``Interpreter`` (XNNPACK delegate for the ops it takes).

Operators: CONV_2D (per-channel, fused RELU/RELU6 clamps), DEPTHWISE_CONV_2D, ADD, SUB, MUL,
PRELU, RELU, RELU6, MAXIMUM/MINIMUM (same-scale), CONCATENATION, DEPTH_TO_SPACE, RESHAPE,
STRIDED_SLICE, REDUCE_MAX, SUM, SOFTMAX, EXP/TANH/LOGISTIC, BATCH_MATMUL (int8, no adjoint;
gemmlowp rounding in ``"reference"``, ruy's in the others: XNNPACK does not take it),
EXPAND_DIMS, SQUEEZE, QUANTIZE, DEQUANTIZE.

The kernels whose arithmetic differs between families, and the rounding each uses:

* SOFTMAX: ``"reference"`` runs ``reference_ops::Softmax`` in gemmlowp fixed point
  (:func:`~edgesr.quantization.integer_kernels.softmax_int8_reference`: PreprocessSoftmaxScaling /
  CalculateInputRadius at prepare time, ``exp_on_negative_values`` on Q5.26, Q12.19 sums,
  ``GetReciprocal``; SaturatingRoundingDoublingHighMul rounds ties up, RoundingDivideByPOT ties
  away from zero); ``"optimized"``/``"xnnpack"`` run the float LUT softmax (``expf`` table,
  float32 sums, ``std::round``). The two agree except on about one row in 4000 (1 LSB);
* TANH, LOGISTIC, EXP: one float LUT (``LUTPopulate``, ``std::round`` half away from zero) in
  every family. LiteRT's BUILTIN_REF takes the same LUT: it registers ``Register_TANH_REF`` /
  ``Register_LOGISTIC_REF`` (register_ref.cc), whose int8 ``TanhPrepare<kReference>`` /
  ``SigmoidPrepare<kReference>`` populate the table and whose Eval looks it up; the gemmlowp
  fixed-point int8 tanh / logistic (``Tanh16bitPrecision``, ``Register_*_FIXED_POINT_OPT``) is
  registered by neither resolver (measured: all 256 codes at eight input scales, 0 mismatches);
* SUM with rescaling: ``"optimized"``/``"xnnpack"`` use the float epilogue of
  ``optimized_ops::QuantizedMeanOrSum`` (:func:`~edgesr.quantization.integer_kernels.sum_int8`);
  ``"reference"`` reproduces what BUILTIN_REF really computes: reduce.cc's reference branch
  instantiates ``reference_ops::QuantizedMeanOrSum`` for uint8 whatever the tensor type, so
  int8 bytes are summed as uint8, requantized with MultiplyByQuantizedMultiplier (double
  rounding) and clamped to [0, 255] before the byte is stored
  (:func:`~edgesr.quantization.integer_kernels.sum_int8_builtin_ref`). Measured at the SUM outputs
  of eSR-TM on a 48 x 64 photo crop, the documented formula differs from BUILTIN_REF on
  12,176 of 12,288 elements, up to 162 LSB (eSR-TR 167, PKN-fixed 128); the emulation on 0;
* CONV_2D: ruy's x86 rounding in ``"optimized"``, fp32 requantization in ``"xnnpack"``
  (:data:`KERNEL_NOTES`); ADD/SUB/MUL: XNNPACK's own parameters in ``"xnnpack"``.

Known limits, stated rather than hidden:

* QUANTIZE from float uses TFLite's rounding (half away from zero) in every family; XNNPACK's
  own float->int8 conversion (half to even) is not emulated (edgesr's exports have int8 I/O);
* the reference SOFTMAX and SUM are emulated for int8 -> int8 tensors only (others raise);
* BUILTIN_REF registers DEPTH_TO_SPACE only up to version 1; see
  :func:`edgesr.converters.runtime.model_bytes_for_resolver`.

Requantization rounding (``rounding=``, with ``kernels="reference"`` only): ``"double"`` (the
default build: gemmlowp SaturatingRoundingDoublingHighMul then RoundingDivideByPOT) or
``"single"``: the arithmetic of a ``TFLITE_SINGLE_ROUNDING`` build (``kernels/internal/common.h``:
``(x * m + 2^(30 - shift)) >> (31 - shift)``, half up, in every MultiplyByQuantizedMultiplier of
CONV_2D, DEPTHWISE_CONV_2D, ADD, SUB, MUL, PRELU and the requantizing ops); CMSIS-NN computes the
same under ``CMSIS_NN_USE_SINGLE_ROUNDING`` (``arm_nn_requantize``). SUM then takes the int8
formula (:func:`~edgesr.quantization.integer_kernels.sum_int8`), not BUILTIN_REF's uint8
instantiation; the float LUTs and the int8 SOFTMAX are unchanged. In 16x8 graphs the int16 MUL,
SUB and ADD and the input scaling of the int16 SOFTMAX take the single rounding too; the int64
requantization of CONV_2D and BATCH_MATMUL rounds once in either build.

16x8 graphs (w8a16: int16 activations with zero point 0, int8 per-channel weights, int64
biases; :mod:`edgesr.converters.tflite_w8a16`). The LiteRT 2.3 kernels with a 16x8 path that
edgesr's graphs use, and how each is emulated (sources: TensorFlow Lite ``kernels/conv.cc``,
``add.cc``, ``quantize.cc``, ``dequantize.cc``, ``maximum_minimum.cc``, ``concatenation.cc``,
``reduce.cc``, ``activations.cc``, ``internal/common.h``, ``internal/reference/integer_ops/conv.h``):

* CONV_2D (and DEPTHWISE_CONV_2D) int16 x int8 with int64 bias: ``reference_integer_ops::ConvPerChannel``
  for int16 input: ``acc = sum(filter * input) + bias`` in int64 (no zero points), then the
  int64 ``MultiplyByQuantizedMultiplier`` (:func:`~edgesr.quantization.integer_kernels.multiply_by_quantized_multiplier_int64`:
  the multiplier reduced to 16 bits, one rounding half up), clamped to the fused activation;
  every family (conv.cc runs this reference loop whenever the bias is int64);
* ADD int16: add.cc's general int16 path (``pot_scale_int16`` false, as the converter writes it):
  the int8 formula with ``left_shift = 15`` (:func:`~edgesr.quantization.integer_kernels.add_int8`)
  in BUILTIN_REF and for broadcast ADDs; the optimized kernel (``"optimized"``, ``"xnnpack"``)
  runs ``AddElementwiseInt16``'s NEON loop (NEON_2_SSE on x86), which rounds each input once
  instead of twice and so differs on near-ties
  (:func:`~edgesr.quantization.integer_kernels.add_int16_optimized`);
* QUANTIZE float -> int16: reference ``TfLiteRound(x / scale)`` in float32 (half away from zero);
  optimized and default interpreter: ``rint(x * (1 / scale))`` in float32 (half to even,
  :func:`~edgesr.quantization.integer_kernels.quantize_int16_optimized`, measured); int16 -> int16:
  ``Requantize`` (MultiplyByQuantizedMultiplier, double rounding); DEQUANTIZE int16 -> float:
  ``scale * q``;
* MAXIMUM/MINIMUM, CONCATENATION (same scale), RELU, REDUCE_MAX, STRIDED_SLICE, RESHAPE on int16:
  data movement or comparisons;
* MUL int16: reference_integer_ops ``Mul`` / ``BroadcastMul6DSlow`` (int32 product, MultiplyByQuantizedMultiplier,
  :func:`~edgesr.quantization.integer_kernels.mul_int16`);
* SUB int16: the general path, the int8 formula with ``left_shift = 15`` (sub.cc's optimized
  ``SubElementwiseInt16`` gives the same values on LiteRT 2.3's x86 wheel: measured on random
  codes, elementwise and broadcast);
* BATCH_MATMUL int16: ``reference_ops::BatchMatMul<int16_t, int64_t>``, int64 accumulators and the
  int64 requantization (:func:`~edgesr.quantization.integer_kernels.batch_matmul_int16`);
* SOFTMAX int16: ``reference_ops::SoftmaxInt16`` with tables from ``LUTPopulateInt16<double>``
  (:func:`~edgesr.quantization.integer_kernels.softmax_int16`);
* TANH / LOGISTIC int16: ``reference_integer_ops::Tanh`` / ``Logistic`` on ``sigmoid_table_uint16``
  (:func:`~edgesr.quantization.integer_kernels.tanh_int16`). At a power-of-two input scale the
  optimized resolver runs gemmlowp's fixed-point kernel instead: refused outside ``"reference"``;
* EXP int16: ``LUTPopulateInt16<float>`` and the interpolating lookup
  (:func:`~edgesr.quantization.integer_kernels.lut_lookup_int16`).

Apart from that TANH / LOGISTIC case, LiteRT runs each of these with the same arithmetic in every
resolver (batch_matmul.cc, mul.cc and activations.cc have no optimized int16 path for them).
int16 SUM is not emulated (refused by name).

LiteRT has no int16 PRELU (activations.cc: float32/uint8/int8) and no int16 DEPTH_TO_SPACE
(depth_to_space.cc: float32/uint8/int8/int32/int64): TFLite's 16x8 converter runs them in
float32 between DEQUANTIZE and QUANTIZE, and so does this reference (``x >= 0 ? x : x * alpha``
in float32; DEPTH_TO_SPACE moves floats). XNNPACK (LiteRT 2.3) delegates no
int16 op, so the ``"xnnpack"`` family of a 16x8 graph is its builtin kernels plus the float
islands. Bit-exact with LiteRT on real photos in every family for every zoo model's w8a16 export
(``tests/test_integer_ref_w8a16.py``), and op by op on every int16 code
(``tests/test_integer_kernels_int16.py``).

``IntegerReference(path)`` is an :class:`edgesr.core.evaluate.Upscaler`;
:func:`edgesr.app.integer_litert.compare_with_litert` runs it and LiteRT (through
:class:`edgesr.converters.runtime.TFLiteUpscaler`, the one LiteRT runner) and counts differing elements.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from edgesr.quantization import integer_kernels as K
from edgesr.quantization.arithmetic import dequantize, quantize
from edgesr.quantization.tflite_model import Tensor, read_model

from edgesr.core.contract import MissingMetadata, infer_contract, read_contract
from edgesr.core.errors import EdgesrError

_QRANGE = {np.int8: (-128, 127), np.uint8: (0, 255), np.int16: (-32768, 32767)}

KERNEL_NOTES = {
    "reference": ("TFLite reference kernels (BUILTIN_REF): gemmlowp double rounding in every requantization; SOFTMAX in "
                  "gemmlowp fixed point (exp_on_negative_values, GetReciprocal); TANH/LOGISTIC/EXP through the float LUT; "
                  "int8 SUM through reduce.cc's uint8 instantiation (bytes summed as uint8, clamped to [0, 255])."),
    "optimized": ("TFLite optimized kernels: int8 CONV_2D through ruy's x86 GEMM, whose requantization rounds "
                  "ties half up (twice) where the reference rounds negative ties away from zero; SOFTMAX through the "
                  "float expf LUT; SUM with a float epilogue (std::round)."),
    "xnnpack": ("XNNPACK: fp32 requantization of CONV/DEPTHWISE/MUL accumulators (float multiply, round half to even); "
                "ADD with 21-bit multipliers and one arithmetic shift (half up)."),
}


# --------------------------------------------------------------------------- the graph


def _libm(fn):
    """A float32 libm function (expf, tanhf) as glibc computes it: correctly rounded from the
    exact value, emulated in float64 (NumPy's float32 SIMD versions can be 1 ulp off)."""
    return lambda v: fn(np.asarray(v, np.float64)).astype(np.float32)


def _float_activation(v: np.ndarray, activation: str) -> np.ndarray:
    """A float op's fused activation (CalculateActivationRange): RELU clamps below at 0, RELU6 to
    [0, 6], RELU_N1_TO_1 to [-1, 1]."""
    bounds = {"NONE": (None, None), "RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}[activation]
    return v if bounds == (None, None) else np.clip(v, *bounds).astype(np.float32)


def _act_range(t: Tensor, activation: str) -> tuple[int, int]:
    qmin, qmax = _QRANGE[t.dtype]
    return K.activation_range_int8(activation, t.s, t.z, qmin, qmax)


class IntegerGraph:
    """Subgraph 0 of an int8 ``.tflite`` model, executable with NumPy integer kernels.

    Args:
        path: the ``.tflite`` file.
        kernels: ``"reference"`` | ``"optimized"`` | ``"xnnpack"`` (see the module doc).
        rounding: ``"double"`` | ``"single"`` (TFLITE_SINGLE_ROUNDING; reference kernels only).
    Raises:
        EdgesrError: unreadable file, unsupported operator (named), unknown ``kernels`` or ``rounding``.
    """

    SUPPORTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL", "CONCATENATION", "PRELU", "RELU", "RELU6",
                 "DEPTH_TO_SPACE", "QUANTIZE", "DEQUANTIZE", "MAXIMUM", "MINIMUM", "REDUCE_MAX", "RESHAPE",
                 "TANH", "LOGISTIC", "EXP", "SUB", "SUM", "SOFTMAX", "STRIDED_SLICE", "BATCH_MATMUL", "EXPAND_DIMS",
                 "SQUEEZE")

    SUPPORTED_INT16 = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "SUB", "MUL", "BATCH_MATMUL", "SOFTMAX", "TANH",
                       "LOGISTIC", "EXP", "CONCATENATION", "RELU", "DEPTH_TO_SPACE", "QUANTIZE", "DEQUANTIZE",
                       "MAXIMUM", "MINIMUM", "REDUCE_MAX", "RESHAPE", "STRIDED_SLICE", "EXPAND_DIMS", "SQUEEZE")
    """Ops emulated on int16 (16x8) tensors; data movement and MAX/MIN need no arithmetic."""

    def __init__(self, path: str | os.PathLike, kernels: str = "reference", rounding: str = "double"):
        if kernels not in KERNEL_NOTES:
            raise EdgesrError(f"unknown kernels {kernels!r}; expected one of {', '.join(KERNEL_NOTES)}")
        if rounding not in ("double", "single") or (rounding == "single" and kernels != "reference"):
            raise EdgesrError(f"rounding {rounding!r} with {kernels} kernels: expected 'double', or 'single' with reference kernels")
        self.path = Path(path)
        self.kernels, self.rounding = kernels, rounding
        self.tensors, self.ops, self.inputs, self.outputs = read_model(path)
        bad = sorted({op.name for op in self.ops if op.name not in self.SUPPORTED})
        if bad:
            raise EdgesrError(f"{self.path}: the integer reference has no kernel for {', '.join(bad)}")
        bad16 = sorted({op.name for op in self.ops if op.name not in self.SUPPORTED_INT16
                        and any(self.tensors[t].dtype == np.int16 for t in op.inputs + op.outputs if t >= 0)})
        if bad16:
            raise EdgesrError(f"{self.path}: the integer reference has no int16 (16x8) kernel for {', '.join(bad16)}")

    def run(self, *inputs: np.ndarray, keep: bool = False) -> list[np.ndarray] | dict:
        """Run the graph on NHWC arrays of the model's input dtypes; returns the outputs (or
        every tensor by id when ``keep``). Raises EdgesrError on a wrong input dtype/rank."""
        if len(inputs) != len(self.inputs):
            raise EdgesrError(f"{self.path}: model takes {len(self.inputs)} input(s), got {len(inputs)}")
        values: dict[int, np.ndarray] = {}
        for tid, arr in zip(self.inputs, inputs):
            t = self.tensors[tid]
            arr = np.asarray(arr)
            if arr.dtype != t.dtype or arr.ndim != len(t.shape):
                raise EdgesrError(f"{self.path}: input {t.name!r} needs {np.dtype(t.dtype).name} rank {len(t.shape)}, got {arr.dtype} {arr.shape}")
            values[tid] = arr
        for op in self.ops:
            args = [values[i] if i in values else (self.tensors[i].data if i >= 0 else None) for i in op.inputs]
            out = getattr(self, "_op_" + op.name.lower())(op, args)
            t = self.tensors[op.outputs[0]]
            values[op.outputs[0]] = np.asarray(out).astype(t.dtype)
        return values if keep else [values[i] for i in self.outputs]

    # ---- helpers
    def _t(self, op, k, out=False) -> Tensor:
        return self.tensors[(op.outputs if out else op.inputs)[k]]

    # ---- convolutions
    def _conv(self, op, args, depthwise: bool):
        x, w, b = args[0], args[1], args[2] if len(args) > 2 else None
        ti, tw, to = self._t(op, 0), self._t(op, 1), self._t(op, 0, out=True)
        o = op.options
        acc = K.conv_accumulate(x.astype(np.int64) - ti.z, w, (o["stride_h"], o["stride_w"]),
                                (o.get("dilation_h", 1), o.get("dilation_w", 1)), o["padding"], depthwise)
        if b is not None:
            acc = acc + b.astype(np.int64)
        lo, hi = _act_range(to, o["activation"])
        cout = acc.shape[-1]
        wscale = np.broadcast_to(tw.scale, (cout,))
        if ti.dtype == np.int16:  # 16x8: ConvPerChannel(int16 in, int8 filter, int64 bias), no zero points
            if b is not None and b.dtype != np.int64:
                raise EdgesrError(f"{self.path}: 16x8 {op.name} with a {np.dtype(b.dtype).name} bias is not supported (int64 expected)")
            pairs = [K.quantize_multiplier(float(ti.s) * float(ws) / float(to.s)) for ws in wscale]
            mult = np.array([p[0] for p in pairs], np.int64)
            shift = np.array([p[1] for p in pairs], np.int64)
            return np.clip(K.multiply_by_quantized_multiplier_int64(acc, mult, shift), lo, hi)
        if self.kernels == "xnnpack":
            scale = np.float32(ti.s) * wscale.astype(np.float32) / np.float32(to.s)
            return K.requantize_fp32(acc, scale, to.z, lo, hi)
        # kernel_util.cc PopulateConvolutionQuantizationParams: double(in) * double(w_c) / double(out)
        pairs = [K.quantize_multiplier(float(ti.s) * float(ws) / float(to.s)) for ws in wscale]
        mult = np.array([p[0] for p in pairs], np.int64)
        shift = np.array([p[1] for p in pairs], np.int64)
        # optimized CONV_2D runs im2col + ruy GEMM; optimized depthwise keeps gemmlowp rounding
        rounding = "ruy_x86" if self.kernels == "optimized" and not depthwise else self.rounding
        return np.clip(K.multiply_by_quantized_multiplier_family(acc, mult, shift, rounding) + to.z, lo, hi)

    def _op_conv_2d(self, op, args):
        return self._conv(op, args, False)

    def _op_depthwise_conv_2d(self, op, args):
        return self._conv(op, args, True)

    # ---- elementwise
    def _op_add(self, op, args):
        t1, t2, to = self._t(op, 0), self._t(op, 1), self._t(op, 0, out=True)
        if to.dtype == np.float32:
            return _float_activation(args[0].astype(np.float32) + args[1].astype(np.float32), op.options.get("activation", "NONE"))
        lo, hi = _act_range(to, op.options.get("activation", "NONE"))
        if to.dtype == np.int16:  # add.cc general int16 path (pot_scale_int16 false): left shift 15, every family
            if op.options.get("pot_scale_int16", False):
                raise EdgesrError(f"{self.path}: int16 ADD with power-of-two scales (pot_scale_int16) is not supported")
            params = K.add_params(t1.s, t2.s, to.s, left_shift=15)
            if self.kernels != "reference" and args[0].shape == args[1].shape:  # AddElementwiseInt16 (NEON_2_SSE)
                return K.add_int16_optimized(args[0], args[1], params, lo, hi)
            return K.add_int8(args[0], t1.z, args[1], t2.z, to.z, params, lo, hi, self.rounding)  # BUILTIN_REF; broadcast
        if self.kernels == "xnnpack":
            return K.add_int8_xnnpack(args[0], t1.z, args[1], t2.z, t1.s, t2.s, to.s, to.z, lo, hi)
        return K.add_int8(args[0], t1.z, args[1], t2.z, to.z, K.add_params(t1.s, t2.s, to.s), lo, hi, self.rounding)

    def _op_mul(self, op, args):
        t1, t2, to = self._t(op, 0), self._t(op, 1), self._t(op, 0, out=True)
        lo, hi = _act_range(to, op.options.get("activation", "NONE"))
        if to.dtype == np.int16:  # mul.cc: reference_integer_ops Mul / BroadcastMul6DSlow<int16> in every family
            return K.mul_int16(args[0], args[1], t1.s, t2.s, to.s, lo, hi, self.rounding)
        if self.kernels == "xnnpack":
            return K.mul_int8_xnnpack(args[0], t1.z, args[1], t2.z, t1.s, t2.s, to.s, to.z, lo, hi)
        return K.mul_int8(args[0], t1.z, args[1], t2.z, t1.s, t2.s, to.s, to.z, lo, hi, self.rounding)

    def _op_prelu(self, op, args):
        ti, ta, to = self._t(op, 0), self._t(op, 1), self._t(op, 0, out=True)
        if ti.dtype == np.float32:  # activations.cc ApplyPrelu: x >= 0 ? x : x * alpha (float32)
            x, alpha = args[0].astype(np.float32), args[1].astype(np.float32)
            return np.where(x >= 0, x, (x * alpha).astype(np.float32))
        return K.prelu_int8(args[0], ti.z, args[1], ta.z, ti.s, ta.s, to.s, to.z, *_QRANGE[to.dtype], self.rounding)

    def _relu(self, op, args, activation):
        ti, to = self._t(op, 0), self._t(op, 0, out=True)
        lo, hi = _act_range(to, activation)
        return np.clip(K.requantize_int8(args[0], ti.z, ti.s, to.s, to.z, *_QRANGE[to.dtype], self.rounding), lo, hi)

    def _op_relu(self, op, args):
        return self._relu(op, args, "RELU")

    def _op_relu6(self, op, args):
        return self._relu(op, args, "RELU6")

    def _minmax(self, op, args, fn):
        t1, t2, to = self._t(op, 0), self._t(op, 1), self._t(op, 0, out=True)
        if to.dtype == np.float32:
            return fn(args[0].astype(np.float32), args[1].astype(np.float32))
        if (t1.s, t1.z) != (to.s, to.z) or (t2.s, t2.z) != (to.s, to.z):
            raise EdgesrError(f"{self.path}: {op.name} with rescaling inputs is not supported")
        return fn(args[0], args[1])

    def _op_maximum(self, op, args):
        return self._minmax(op, args, np.maximum)

    def _op_minimum(self, op, args):
        return self._minmax(op, args, np.minimum)

    # ---- data movement
    def _op_concatenation(self, op, args):
        to = self._t(op, 0, out=True)
        parts = []
        for k, a in enumerate(args):
            t = self._t(op, k)
            parts.append(a if (t.s, t.z) == (to.s, to.z) else K.requantize_int8(a, t.z, t.s, to.s, to.z, *_QRANGE[to.dtype], self.rounding))
        return np.concatenate(parts, axis=op.options.get("axis", -1))

    def _op_depth_to_space(self, op, args):
        return K.depth_to_space_nhwc(args[0], op.options["block_size"])

    def _op_reshape(self, op, args):
        shape = args[1] if len(args) > 1 and args[1] is not None else self._t(op, 0, out=True).shape
        return args[0].reshape([int(v) for v in shape])

    def _op_expand_dims(self, op, args):
        return np.expand_dims(args[0], int(np.asarray(args[1]).ravel()[0]))

    def _op_squeeze(self, op, args):
        dims = op.options.get("squeeze_dims") or [k for k, n in enumerate(args[0].shape) if n == 1]
        return np.squeeze(args[0], axis=tuple(int(d) % args[0].ndim for d in dims))

    def _op_batch_matmul(self, op, args):
        t1, t2, to = self._t(op, 0), self._t(op, 1), self._t(op, 0, out=True)
        if op.options.get("adj_x") or op.options.get("adj_y"):
            raise EdgesrError(f"{self.path}: BATCH_MATMUL with adjoint operands is not supported")
        if (t1.dtype, t2.dtype, to.dtype) == (np.int16, np.int16, np.int16):  # EvalInt16: reference in every family
            return K.batch_matmul_int16(args[0], args[1], t1.s, t2.s, to.s, *_act_range(to, "NONE"))
        if (t1.dtype, t2.dtype, to.dtype) != (np.int8, np.int8, np.int8):
            raise EdgesrError(f"{self.path}: BATCH_MATMUL is emulated for int8 x int8 -> int8 only")
        lo, hi = _act_range(to, "NONE")
        # BUILTIN_REF: reference_ops::BatchMatMul (gemmlowp rounding); optimized and XNNPACK
        # graphs (XNNPACK does not take it): the ruy GEMM, as optimized CONV_2D
        rounding = self.rounding if self.kernels == "reference" else "ruy_x86"
        return K.batch_matmul_int8(args[0], t1.z, args[1], t2.z, t1.s, t2.s, to.s, to.z, lo, hi, rounding)

    def _op_reduce_max(self, op, args):
        axes = tuple(int(a) for a in np.atleast_1d(args[1]))
        return args[0].max(axis=axes, keepdims=bool(op.options.get("keep_dims", False)))

    def _op_quantize(self, op, args):
        ti, to = self._t(op, 0), self._t(op, 0, out=True)
        if ti.dtype == np.float32 and to.dtype == np.int16 and self.kernels != "reference":
            return K.quantize_int16_optimized(args[0], to.s, to.z)
        if ti.dtype == np.float32:
            return quantize(args[0], to.s, to.z, *_QRANGE[to.dtype])
        return K.requantize_int8(args[0], ti.z, ti.s, to.s, to.z, *_QRANGE[to.dtype], self.rounding)

    def _op_dequantize(self, op, args):
        ti = self._t(op, 0)
        return K.dequantize_affine(args[0], ti.s, ti.z)

    def _lut(self, op, args, fn):
        # activations.cc: TanhPrepare/SigmoidPrepare<kReference> and <kGenericOptimized> both
        # LUTPopulate the int8 table (the gemmlowp fixed-point kernels are
        # Register_*_FIXED_POINT_OPT, which neither LiteRT resolver registers); exp.cc likewise
        ti, to = self._t(op, 0), self._t(op, 0, out=True)
        table = K.activation_lut_int8(fn, ti.s, ti.z, to.s, to.z)
        return table[args[0].astype(np.int64) + 128]

    def _op_exp(self, op, args):  # exp.cc: LUTPopulate for int8 in every kernel family
        ti, to = self._t(op, 0), self._t(op, 0, out=True)
        if ti.dtype == np.int16:  # exp.cc: LUTPopulate<int16_t> (float32, expf) + the interpolating lookup
            table = K.lut_populate_int16(_libm(np.exp), ti.s, ti.z, to.s, to.z, np.float32)
            return K.lut_lookup_int16(args[0], table)
        return self._lut(op, args, _libm(np.exp))

    def _op_sub(self, op, args):
        t1, t2, to = self._t(op, 0), self._t(op, 1), self._t(op, 0, out=True)
        lo, hi = _act_range(to, op.options.get("activation", "NONE"))
        if to.dtype == np.int16:  # sub.cc general int16 path (pot_scale_int16 false): left shift 15
            if op.options.get("pot_scale_int16", False):
                raise EdgesrError(f"{self.path}: int16 SUB with power-of-two scales (pot_scale_int16) is not supported")
            return K.sub_int8(args[0], 0, args[1], 0, 0, K.add_params(t1.s, t2.s, to.s, left_shift=15), lo, hi, self.rounding)
        if self.kernels == "xnnpack":  # XNNPACK subtracts as an add with a negated b multiplier
            return K.add_int8_xnnpack(args[0], t1.z, args[1], t2.z, t1.s, -t2.s, to.s, to.z, lo, hi)
        return K.sub_int8(args[0], t1.z, args[1], t2.z, to.z, K.add_params(t1.s, t2.s, to.s), lo, hi, self.rounding)

    def _op_sum(self, op, args):
        ti, to = self._t(op, 0), self._t(op, 0, out=True)
        axes = tuple(sorted({int(a) % args[0].ndim for a in np.atleast_1d(args[1])}))
        keep_dims = bool(op.options.get("keep_dims", False))
        if self.kernels == "reference" and self.rounding == "double":  # LiteRT's BUILTIN_REF: the uint8 instantiation
            if to.dtype != np.int8:
                raise EdgesrError(f"{self.path}: SUM with reference kernels is emulated for int8 only, not {np.dtype(to.dtype).name}")
            return K.sum_int8_builtin_ref(args[0], ti.z, ti.s, to.s, to.z, axes, keep_dims)
        return K.sum_int8(args[0], ti.z, ti.s, to.s, to.z, axes, keep_dims, *_QRANGE[to.dtype])

    def _op_softmax(self, op, args):
        ti, to = self._t(op, 0), self._t(op, 0, out=True)
        beta = op.options.get("beta", 1.0)
        if (ti.dtype, to.dtype) == (np.int16, np.int16):  # SoftmaxQuantized<int16, int16>: every family
            return K.softmax_int16(args[0], ti.s, beta, self.rounding)
        if self.kernels == "reference":  # reference_ops::Softmax: gemmlowp fixed-point exp and reciprocal
            if (ti.dtype, to.dtype) != (np.int8, np.int8):
                raise EdgesrError(f"{self.path}: SOFTMAX with reference kernels is emulated for int8 -> int8 only")
            return K.softmax_int8_reference(args[0], ti.s, beta)
        return K.softmax_int8_lut(args[0], ti.s, beta, to.s, to.z, *_QRANGE[to.dtype])

    def _op_strided_slice(self, op, args):
        o = op.options
        if o.get("ellipsis_mask") or o.get("new_axis_mask") or o.get("offset"):
            raise EdgesrError(f"{self.path}: STRIDED_SLICE with ellipsis/new-axis/offset is not supported")
        return K.strided_slice(args[0], args[1], args[2], args[3], o.get("begin_mask", 0), o.get("end_mask", 0),
                               o.get("shrink_axis_mask", 0))

    def _sigmoid_tanh_int16(self, op, args, tanh: bool):
        # TanhEval / SigmoidEval int16: reference_integer_ops in BUILTIN_REF, and in the optimized
        # resolver whenever the input scale is not a power of two (input_multiplier > 0)
        ti = self._t(op, 0)
        m, shift = K.sigmoid_tanh_int16_params(ti.s, tanh)
        if m == 0 and self.kernels != "reference":
            raise EdgesrError(f"{self.path}: int16 {op.name} at a power-of-two input scale runs optimized_ops' "
                              "gemmlowp kernel, which is not emulated")
        return (K.tanh_int16 if tanh else K.logistic_int16)(args[0], m, shift)

    def _op_tanh(self, op, args):
        if self._t(op, 0).dtype == np.int16:
            return self._sigmoid_tanh_int16(op, args, tanh=True)
        return self._lut(op, args, _libm(np.tanh))

    def _op_logistic(self, op, args):
        if self._t(op, 0).dtype == np.int16:
            return self._sigmoid_tanh_int16(op, args, tanh=False)
        return self._lut(op, args, lambda v: np.float32(1) / (np.float32(1) + _libm(np.exp)(-v)))


# --------------------------------------------------------------------------- Upscaler


def contract_of_tflite(path: Path, graph: IntegerGraph):
    """The IOContract the ``.tflite`` carries (:func:`edgesr.core.contract.read_contract`: its
    embedded edgesr metadata); for a bare file without it, the one
    :func:`edgesr.core.contract.infer_contract` infers (channels from the input tensor, scale
    from a 4 x 4 probe through ``graph``).

    Raises:
        EdgesrError: unreadable file or invalid embedded metadata.
    """
    try:
        return read_contract(path)
    except MissingMetadata:
        pass
    t = graph.tensors[graph.inputs[0]]
    c = int(t.shape[-1])
    return infer_contract(c, lambda side: graph.run(np.zeros((1, side, side, c), dtype=t.dtype))[0].shape[1], "NHWC")


def quantize_input(x_nhwc: np.ndarray, t: Tensor) -> np.ndarray:
    """Float model-space input -> the model's input dtype: ``clamp(round_half_away(x / s) + z)``
    for int8/uint8 inputs (TFLite's AffineQuantize rounding; :func:`edgesr.quantization.arithmetic.quantize`,
    the helper :class:`edgesr.converters.runtime.TFLiteUpscaler` uses too), unchanged for float inputs."""
    if t.dtype == np.float32:
        return x_nhwc.astype(np.float32)
    return quantize(x_nhwc, t.s, t.z, *_QRANGE[t.dtype]).astype(t.dtype)


def dequantize_output(q: np.ndarray, t: Tensor) -> np.ndarray:
    """``real = scale * (q - zero_point)`` (:func:`edgesr.quantization.arithmetic.dequantize`, as the LiteRT runner)."""
    return q.astype(np.float32) if t.dtype == np.float32 else dequantize(q, t.s, t.z)


class IntegerReference:
    """The int8 integer reference as an :class:`edgesr.core.evaluate.Upscaler`.

    ``__call__(x)``: float32 (N, C, h, w) in [0, 1] -> float32 (N, C, s*h, s*w): quantized
    to the input tensor (NHWC), run with :class:`IntegerGraph`, dequantized.
    ``run_quantized(q)`` works on the model's own NHWC integer tensors.
    """

    def __init__(self, path: str | os.PathLike, kernels: str = "reference", contract=None, rounding: str = "double"):
        self.path = Path(path)
        self.graph = IntegerGraph(path, kernels, rounding)
        self.contract = contract if contract is not None else contract_of_tflite(self.path, self.graph)
        self.input_tensor = self.graph.tensors[self.graph.inputs[0]]
        self.output_tensor = self.graph.tensors[self.graph.outputs[0]]

    def run_quantized(self, q: np.ndarray) -> np.ndarray:
        return self.graph.run(q)[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        q = quantize_input(np.asarray(x, np.float32).transpose(0, 2, 3, 1), self.input_tensor)
        out = self.run_quantized(q)
        return dequantize_output(out, self.output_tensor).transpose(0, 3, 1, 2)
