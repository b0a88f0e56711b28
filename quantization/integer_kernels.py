"""TFLite's int8 fixed-point arithmetic, as plain NumPy functions with the spec beside them.

The spec functions (QuantizeMultiplier, SaturatingRoundingDoublingHighMul,
RoundingDivideByPOT, MultiplyByQuantizedMultiplier, TfLiteRound) come from
:mod:`quantization.arithmetic`, the one implementation shared with QAT; this module adds
the kernels' other rounding variants and the per-op kernels. Sources (LiteRT / TFLite):
``kernels/internal/common.h`` (MultiplyByQuantizedMultiplier), ``quantization_util.cc``
(QuantizeMultiplier), gemmlowp ``fixedpoint.h`` (SaturatingRoundingDoublingHighMul,
RoundingDivideByPOT), ruy ``kernel_avx2_fma.cc`` (the x86 GEMM behind TFLite's optimized
int8 CONV_2D), XNNPACK ``qs8`` ``fp32`` microkernels (fp32 requantization).

Quantization is affine: ``real = scale * (q - zero_point)``. Every function takes and
returns ``int64`` NumPy arrays holding int32 values (int64 so that the products below, at
most 2^31 * 2^31 = 2^62, never overflow); multipliers and shifts may be scalars or arrays
that broadcast against the data (per-channel on the last, NHWC channel axis).

Rounding modes, named as in the sources:

* ``TfLiteRound`` / ``std::round``: half away from zero (:func:`round_half_away`);
* SaturatingRoundingDoublingHighMul: ``(a*b + nudge) / 2^31`` with ``nudge = 2^30`` for
  non-negative products and ``1 - 2^30`` otherwise, C division truncating toward zero;
* RoundingDivideByPOT: arithmetic shift right rounding half away from zero;
* single rounding (TFLITE_SINGLE_ROUNDING builds): ``(x*m + 2^(s-1)) >> s``, half up;
* ruy x86: ``(x*m + 2^30) >> 31`` then ``(v + 2^(e-1)) >> e``, both half up;
* ``lrintf`` / magic-bias (XNNPACK): half to even (:func:`np.rint`).
"""

from __future__ import annotations

import numpy as np

from quantization.arithmetic import (  # noqa: F401  (re-exported: one implementation of the spec)
    INT32_MAX,
    INT32_MIN,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    round_half_away,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)


def multiply_by_quantized_multiplier_single_round(x, quantized_multiplier, shift):
    """ruy ``MultiplyByQuantizedMultiplier`` / TFLITE_SINGLE_ROUNDING: one rounding, half up.

    ``total_shift = 31 - shift``; ``(x * m + 2^(total_shift - 1)) >> total_shift``,
    saturated to int32.
    """
    total = 31 - np.asarray(shift, dtype=np.int64)
    prod = np.asarray(x, dtype=np.int64) * np.asarray(quantized_multiplier, dtype=np.int64)
    out = (prod + (np.int64(1) << (total - 1))) >> total
    return np.clip(out, INT32_MIN, INT32_MAX)


def multiply_by_quantized_multiplier_ruy_x86(x, quantized_multiplier, shift):
    """ruy's x86 (AVX2/AVX-512) 8-bit kernels, used by TFLite's optimized int8 CONV_2D GEMM.

    ``high = (x * 2^left * m + 2^30) >> 31`` (round half up, not gemmlowp's nudge), then a
    rounding right shift ``(high + 2^(e-1)) >> e`` (half up, where RoundingDivideByPOT
    rounds ties away from zero): differs from the reference on negative ties.
    """
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = np.asarray(x, dtype=np.int64) * (np.int64(1) << left)
    high = (x * np.asarray(quantized_multiplier, dtype=np.int64) + (1 << 30)) >> 31
    nudge = np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), 0)
    return (high + nudge) >> right


def multiply_by_quantized_multiplier_smaller_than_one_exp(x, quantized_multiplier, left_shift):
    """common.h: ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x, m), -left_shift)``."""
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, quantized_multiplier), -np.asarray(left_shift))


def quantize_float(value: float, scale: float, zero_point: int) -> int:
    """Quantize one float as TFLite's CalculateActivationRangeQuantized does:
    ``zero_point + (int)TfLiteRound(value / scale)`` with float32 division."""
    return int(zero_point + round_half_away(np.float32(value) / np.float32(scale)))


def activation_range_int8(activation: str, scale: float, zero_point: int, qmin: int = -128, qmax: int = 127) -> tuple[int, int]:
    """CalculateActivationRangeQuantized: the clamp of a fused activation, in quantized units.

    ``activation``: ``"NONE" | "RELU" | "RELU6" | "RELU_N1_TO_1"``.
    RELU: ``[max(qmin, q(0)), qmax]``; RELU6: ``[max(qmin, q(0)), min(qmax, q(6))]``;
    RELU_N1_TO_1: ``[max(qmin, q(-1)), min(qmax, q(1))]``.
    """
    q = lambda v: quantize_float(v, scale, zero_point)  # noqa: E731
    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, q(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    raise ValueError(f"unsupported fused activation {activation}")


# --------------------------------------------------------------------------- requantization


def requantize(acc, multiplier, shift, rounding: str = "double"):
    """Scale int32 accumulators by ``multiplier * 2^(shift - 31)``.

    ``rounding``: ``"double"`` (gemmlowp, reference kernels), ``"single"``
    (TFLITE_SINGLE_ROUNDING builds) or ``"ruy_x86"`` (ruy's x86 GEMM kernels).
    """
    if rounding == "double":
        return multiply_by_quantized_multiplier(acc, multiplier, shift)
    if rounding == "single":
        return multiply_by_quantized_multiplier_single_round(acc, multiplier, shift)
    if rounding == "ruy_x86":
        return multiply_by_quantized_multiplier_ruy_x86(acc, multiplier, shift)
    raise ValueError(f"unknown rounding {rounding!r}")


def requantize_fp32(acc, scale_f32, out_zp: int, act_min: int, act_max: int):
    """XNNPACK fp32 requantization (qs8 ``fp32`` microkernels).

    ``v = float(acc) * scale`` (float32 multiply); clamp to ``[act_min - zp, act_max - zp]``
    in float; round half to even (``lrintf``/magic bias); ``+ zp``.
    """
    v = np.asarray(acc, dtype=np.float32) * np.asarray(scale_f32, dtype=np.float32)
    v = np.clip(v, np.float32(act_min - out_zp), np.float32(act_max - out_zp))
    return np.rint(v).astype(np.int64) + out_zp


# --------------------------------------------------------------------------- convolution


def same_padding(in_size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """ComputePaddingHeightWidth for SAME: ``(out_size, pad_before)``; the extra pixel of an
    odd total goes after."""
    eff = (k - 1) * dilation + 1
    out = (in_size + stride - 1) // stride
    total = max((out - 1) * stride + eff - in_size, 0)
    return out, total // 2


def conv_accumulate(x_offset, weights, stride=(1, 1), dilation=(1, 1), padding="SAME", depthwise=False):
    """Integer accumulation of ConvPerChannel / DepthwiseConvPerChannel (reference_integer_ops).

    Args:
        x_offset: (N, H, W, Cin) int64, already ``input + input_offset`` (``input_offset =
            -input_zero_point``); pixels outside the image contribute 0, exactly as the
            reference loops skip them.
        weights: int8 (Cout, KH, KW, Cin) OHWI, or for depthwise (1, KH, KW, Cin * M) with
            output channel ``oc = ic * M + m``.
        padding: ``"SAME"`` or ``"VALID"``.
    Returns:
        (N, OH, OW, Cout) int64 accumulators ``sum(filter * (input + input_offset))``.
        Sums are exact: float64 dot products of integers below 2^53 (|acc| < 2^31 here).
    """
    n, h, w, cin = x_offset.shape
    _, kh, kw, _ = weights.shape
    (sh, sw), (dh, dw) = stride, dilation
    if padding == "SAME":
        oh, ph = same_padding(h, kh, sh, dh)
        ow, pw = same_padding(w, kw, sw, dw)
    else:
        oh, ph = (h - (kh - 1) * dh - 1) // sh + 1, 0
        ow, pw = (w - (kw - 1) * dw - 1) // sw + 1, 0
    need_h = (oh - 1) * sh + (kh - 1) * dh + 1
    need_w = (ow - 1) * sw + (kw - 1) * dw + 1
    xp = np.zeros((n, max(need_h, h + ph), max(need_w, w + pw), cin), dtype=np.float64)
    xp[:, ph : ph + h, pw : pw + w] = x_offset
    wf = weights.astype(np.float64)
    cout = wf.shape[3] if depthwise else wf.shape[0]
    acc = np.zeros((n, oh, ow, cout), dtype=np.float64)
    if depthwise:
        mult = cout // cin
        xp = np.repeat(xp, mult, axis=3) if mult > 1 else xp
    for i in range(kh):
        for j in range(kw):
            win = xp[:, i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw : j * dw + (ow - 1) * sw + 1 : sw]
            acc += win * wf[0, i, j] if depthwise else win @ wf[:, i, j, :].T
    return acc.astype(np.int64)


# --------------------------------------------------------------------------- elementwise


def add_params(s1: float, s2: float, s_out: float, left_shift: int = 20) -> dict:
    """add.cc Prepare for int8: ``twice_max = 2 * max(s1, s2)`` (float); per-input multipliers
    ``s_i / twice_max`` and output ``twice_max / (2^left_shift * s_out)`` via QuantizeMultiplier."""
    twice_max = float(np.float32(2) * max(np.float32(s1), np.float32(s2)))
    m1, sh1 = quantize_multiplier(float(np.float32(s1)) / twice_max)
    m2, sh2 = quantize_multiplier(float(np.float32(s2)) / twice_max)
    mo, sho = quantize_multiplier(twice_max / ((1 << left_shift) * float(np.float32(s_out))))
    return dict(left_shift=left_shift, m1=m1, sh1=sh1, m2=m2, sh2=sh2, mo=mo, sho=sho)


def add_int8(a, za: int, b, zb: int, zo: int, p: dict, act_min: int, act_max: int):
    """reference_integer_ops AddElementwise (broadcast by NumPy rules).

    ``v_i = (q_i - z_i) * 2^left_shift``; ``scaled_i = MBQMSmallerThanOneExp(v_i, m_i, sh_i)``;
    ``out = MBQMSmallerThanOneExp(scaled_1 + scaled_2, m_o, sh_o) + z_o``; clamp.
    """
    v1 = (a.astype(np.int64) - za) * (1 << p["left_shift"])
    v2 = (b.astype(np.int64) - zb) * (1 << p["left_shift"])
    s1 = multiply_by_quantized_multiplier_smaller_than_one_exp(v1, p["m1"], p["sh1"])
    s2 = multiply_by_quantized_multiplier_smaller_than_one_exp(v2, p["m2"], p["sh2"])
    raw = multiply_by_quantized_multiplier_smaller_than_one_exp(s1 + s2, p["mo"], p["sho"]) + zo
    return np.clip(raw, act_min, act_max)


def mul_int8(a, za: int, b, zb: int, s1: float, s2: float, so: float, zo: int, act_min: int, act_max: int):
    """reference_integer_ops Mul: ``out = zo + MBQM((a - za) * (b - zb), M, shift)``, clamp;
    ``M = s1 * s2 / so`` (mul.cc, float32 arithmetic widened to double)."""
    real = float(np.float32(s1) * np.float32(s2) / np.float32(so))
    m, sh = quantize_multiplier(real)
    prod = (a.astype(np.int64) - za) * (b.astype(np.int64) - zb)
    return np.clip(zo + multiply_by_quantized_multiplier(prod, m, sh), act_min, act_max)


def prelu_int8(x, zx: int, alpha, za: int, sx: float, sa: float, so: float, zo: int, qmin=-128, qmax=127):
    """reference_ops BroadcastPrelu4DSlow (int8), prelu.cc Prepare:
    ``M1 = sx / so``, ``M2 = sx * sa / so`` (float32 arithmetic); ``v = x - zx``;
    ``out = v >= 0 ? MBQM(v, M1) : MBQM(v * (alpha - za), M2)``; ``+ zo``; clamp to int8."""
    m1, sh1 = quantize_multiplier(float(np.float32(sx) / np.float32(so)))
    m2, sh2 = quantize_multiplier(float(np.float32(sx) * np.float32(sa) / np.float32(so)))
    v = x.astype(np.int64) - zx
    pos = multiply_by_quantized_multiplier(v, m1, sh1)
    neg = multiply_by_quantized_multiplier(v * (alpha.astype(np.int64) - za), m2, sh2)
    return np.clip(np.where(v >= 0, pos, neg) + zo, qmin, qmax)


def requantize_int8(x, zx: int, sx: float, so: float, zo: int, qmin=-128, qmax=127):
    """Requantize (QUANTIZE int8 -> int8, RELU's and MAXIMUM's rescale):
    ``out = zo + MBQM(x - zx, M, shift)``, ``M = sx / so``; clamp."""
    m, sh = quantize_multiplier(float(np.float32(sx)) / float(np.float32(so)))
    return np.clip(zo + multiply_by_quantized_multiplier(x.astype(np.int64) - zx, m, sh), qmin, qmax)


def dequantize_affine(q, scale: float, zero_point: int):
    """Dequantize: ``float(scale * (q - zp))`` (the double product is exact, one rounding)."""
    return (np.float64(np.float32(scale)) * (q.astype(np.int64) - zero_point)).astype(np.float32)


def depth_to_space_nhwc(x, block: int):
    """DEPTH_TO_SPACE (NHWC): ``out[n, h*b + i, w*b + j, c] = x[n, h, w, (i*b + j)*C + c]``."""
    n, h, w, c = x.shape
    co = c // (block * block)
    return x.reshape(n, h, w, block, block, co).transpose(0, 1, 3, 2, 4, 5).reshape(n, h * block, w * block, co)


def activation_lut_int8(fn, s_in: float, z_in: int, s_out: float, z_out: int):
    """PopulateLookupTable (activations.cc, optimized int8 TANH/LOGISTIC): for every int8 q,
    ``table[q] = clamp(round(fn(s_in * (q - z_in)) * (1 / s_out)) + z_out)`` in float32,
    ``std::round`` (half away from zero). Indexed by ``q + 128``."""
    q = np.arange(-128, 128, dtype=np.int64)
    deq = np.float32(s_in) * (q - z_in).astype(np.float32)
    tr = np.asarray(fn(deq), np.float32)
    res = round_half_away(tr * (np.float32(1) / np.float32(s_out))).astype(np.int64) + z_out
    return np.clip(res, -128, 127)


# --------------------------------------------------------------------------- XNNPACK variants


def _f32_exponent(v: np.float32) -> int:
    """Unbiased binary exponent of a positive float32, read from its bits (``bits >> 23) - 127``)."""
    return int(np.array(v, np.float32).view(np.uint32) >> 23) - 127


def add_int8_xnnpack(a, za: int, b, zb: int, sa: float, sb: float, so: float, zo: int, act_min: int, act_max: int):
    """XNNPACK qs8 VADD (``xnn_init_qs8_add_minmax_scalar_params`` + ``qs8-vadd`` kernels).

    ``r_i = s_i / s_out`` (float32); ``shift = 20 - exponent(max(r_a, r_b))``;
    ``m_i = lrintf(r_i * 2^shift)`` (half to even); ``bias = 2^(shift-1) - m_a*z_a - m_b*z_b``;
    ``out = (bias + m_a*a + m_b*b) >> shift`` (arithmetic: rounds half up) ``+ z_out``; clamp.
    """
    ra = np.float32(sa) / np.float32(so)
    rb = np.float32(sb) / np.float32(so)
    shift = 20 - _f32_exponent(max(abs(ra), abs(rb)))  # SUB passes a negative s_b: m_b = -lrintf(|r_b| * 2^shift)
    ma = int(np.rint(np.float32(np.ldexp(ra, shift))))
    mb = int(np.rint(np.float32(np.ldexp(rb, shift))))
    bias = (1 << (shift - 1)) - ma * za - mb * zb
    acc = bias + ma * a.astype(np.int64) + mb * b.astype(np.int64)
    return np.clip((acc >> shift) + zo, act_min, act_max)


def mul_int8_xnnpack(a, za: int, b, zb: int, sa: float, sb: float, so: float, zo: int, act_min: int, act_max: int):
    """XNNPACK qs8 VMUL fp32: ``scale = (s_a * s_b) / s_out`` (float32);
    ``out = rint(clamp(float((a - z_a) * (b - z_b)) * scale)) + z_out``."""
    scale = (np.float32(sa) * np.float32(sb)) / np.float32(so)
    acc = (a.astype(np.int64) - za) * (b.astype(np.int64) - zb)
    return requantize_fp32(acc, scale, zo, act_min, act_max)


# --------------------------------------------------------------------------- reductions, softmax, slicing


def sum_int8(x, zx: int, sx: float, so: float, zo: int, axes: tuple, keep_dims: bool, qmin=-128, qmax=127):
    """reduce.cc EvalSum with rescaling -> QuantizedMeanOrSum(compute_sum=true), float epilogue:

    ``temp_sum = sum(q)`` (int32); ``scale = sx / so`` (float32); ``bias = -zx * scale * n``
    (float32); ``value = (int32)TfLiteRound(temp_sum * scale + bias) + zo``, saturated to int8
    (LiteRT 2.x's optimized kernel saturates; measured on eSR-TM: a wrap-around would differ by 255).
    """
    n = int(np.prod([x.shape[a] for a in axes]))
    temp_sum = x.astype(np.int64).sum(axis=axes, keepdims=keep_dims)
    scale = np.float32(sx) / np.float32(so)
    bias = (np.float32(-zx) * scale * np.float32(n)).astype(np.float32)
    value = round_half_away((temp_sum.astype(np.float32) * scale + bias).astype(np.float32)).astype(np.int64) + zo
    return np.clip(value, qmin, qmax)


def sub_int8(a, za: int, b, zb: int, zo: int, p: dict, act_min: int, act_max: int):
    """reference_integer_ops SubElementwise: as :func:`add_int8` with ``raw = scaled_1 - scaled_2``."""
    v1 = (a.astype(np.int64) - za) * (1 << p["left_shift"])
    v2 = (b.astype(np.int64) - zb) * (1 << p["left_shift"])
    s1 = multiply_by_quantized_multiplier_smaller_than_one_exp(v1, p["m1"], p["sh1"])
    s2 = multiply_by_quantized_multiplier_smaller_than_one_exp(v2, p["m2"], p["sh2"])
    raw = multiply_by_quantized_multiplier_smaller_than_one_exp(s1.astype(np.int64) - s2, p["mo"], p["sho"]) + zo
    return np.clip(raw, act_min, act_max)


def softmax_int8_lut(x, sx: float, beta: float, so: float, zo: int, qmin=-128, qmax=127):
    """optimized_ops::Softmax with PopulateSoftmaxLookupTable (LiteRT's default int8 softmax on x86).

    ``table[255 - v] = expf(-sx * beta * v)`` (float32); per row over the last axis:
    ``max``; ``sum = sum_j table[255 - max + x_j]`` accumulated in float32 in channel order;
    ``inv = 1 / (sum * so)``; ``out = std::round(table[...] * inv) + zo`` (half away), clamp.
    """
    scale = np.float32(-np.float32(sx) * np.float32(beta))
    v = np.arange(256, dtype=np.float32)
    table = np.empty(256, np.float32)
    # glibc's expf is correctly rounded here; NumPy's float32 SIMD exp is not always: use float64
    table[255 - np.arange(256)] = np.exp((scale * v).astype(np.float64)).astype(np.float32)
    xi = x.astype(np.int64)
    mx = xi.max(axis=-1, keepdims=True)
    e = table[255 - mx + xi]
    total = np.zeros(e.shape[:-1], np.float32)
    for j in range(e.shape[-1]):
        total = (total + e[..., j]).astype(np.float32)
    inv = (np.float32(1) / (total * np.float32(so))).astype(np.float32)
    prob = (e * inv[..., None]).astype(np.float32)
    return np.clip(round_half_away(prob).astype(np.int64) + zo, qmin, qmax)


def strided_slice(x, begin, end, strides, begin_mask: int, end_mask: int, shrink_axis_mask: int):
    """STRIDED_SLICE (data movement; masks are bit fields per axis, as in the TFLite schema)."""
    idx, shrink = [], []
    for i in range(len(begin)):
        if shrink_axis_mask >> i & 1:
            idx.append(slice(int(begin[i]), int(begin[i]) + 1 if int(begin[i]) != -1 else None, 1))
            shrink.append(i)
            continue
        b = None if begin_mask >> i & 1 else int(begin[i])
        e = None if end_mask >> i & 1 else int(end[i])
        idx.append(slice(b, e, int(strides[i])))
    y = x[tuple(idx)]
    return y.squeeze(tuple(shrink)) if shrink else y
