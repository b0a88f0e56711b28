"""TFLite's int8 fixed-point arithmetic, as plain NumPy functions with the spec beside them.

The spec functions (QuantizeMultiplier, SaturatingRoundingDoublingHighMul,
RoundingDivideByPOT, MultiplyByQuantizedMultiplier, TfLiteRound) come from
:mod:`edgesr.quantization.arithmetic`, the one implementation shared with QAT; this module adds
the kernels' other rounding variants and the per-op kernels. Sources (LiteRT / TFLite):
``kernels/internal/common.h`` (MultiplyByQuantizedMultiplier), ``quantization_util.cc``
(QuantizeMultiplier), gemmlowp ``fixedpoint.h`` (SaturatingRoundingDoublingHighMul,
RoundingDivideByPOT), ruy ``kernel_avx2_fma.cc`` (the x86 GEMM behind TFLite's optimized
int8 CONV_2D), XNNPACK ``qs8`` ``fp32`` microkernels (fp32 requantization); for the
reference SOFTMAX gemmlowp ``fixedpoint.h`` (``exp_on_negative_values``,
``one_over_one_plus_x_for_x_in_0_1``, ``Rescale``, ``RoundingHalfSum``), TFLite
``common.h`` (``GetReciprocal``, ``MultiplyByQuantizedMultiplierGreaterThanOne``),
``quantization_util.cc`` (``PreprocessSoftmaxScaling``, ``CalculateInputRadius``) and
``reference/softmax.h``; for SUM ``reduce.cc`` and ``reference/reduce.h``
(``QuantizedMeanOrSum``).

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

import functools

import numpy as np
from edgesr.quantization.arithmetic import (  # the spec functions, one implementation shared with QAT
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
    q = lambda v: quantize_float(v, scale, zero_point)
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


def multiply_by_quantized_multiplier_family(acc, multiplier, shift, rounding: str = "double"):
    """Scale int32 accumulators by ``multiplier * 2^(shift - 31)`` with one kernel family's rounding.

    Only the fixed-point multiply: the zero point and the clamp follow at the call site
    (:func:`edgesr.quantization.arithmetic.requantize` is the whole epilogue of the reference kernels).

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


def mbqm_with_rounding(double_rounding_fn, rounding: str = "double"):
    """The MultiplyByQuantizedMultiplier variant a build uses: ``double_rounding_fn`` (a gemmlowp
    variant of the default build) for ``"double"``; for ``"single"`` the TFLITE_SINGLE_ROUNDING
    build's one rounding (common.h routes MultiplyByQuantizedMultiplier, ...SmallerThanOneExp and
    ...GreaterThanOne alike through :func:`multiply_by_quantized_multiplier_single_round`)."""
    if rounding == "double":
        return double_rounding_fn
    if rounding == "single":
        return multiply_by_quantized_multiplier_single_round
    raise ValueError(f"unknown rounding {rounding!r}")


def requantize_fp32(acc, scale_f32, out_zp: int, act_min: int, act_max: int):
    """XNNPACK fp32 requantization (qs8 ``fp32`` microkernels).

    ``v = float(acc) * scale`` (float32 multiply); clamp to ``[act_min - zp, act_max - zp]``
    in float; round half to even (``lrintf``/magic bias); ``+ zp``.
    """
    v = np.asarray(acc, dtype=np.float32) * np.asarray(scale_f32, dtype=np.float32)
    v = np.clip(v, np.float32(act_min - out_zp), np.float32(act_max - out_zp))
    return np.rint(v).astype(np.int64) + out_zp


def multiply_by_quantized_multiplier_int64(x, quantized_multiplier, shift):
    """common.h ``MultiplyByQuantizedMultiplier(int64_t x, int32_t m, int shift)``: the 16x8
    requantization of int64 accumulators (CONV_2D / DEPTHWISE_CONV_2D with int64 bias).

    The multiplier is first reduced to 16 bits: ``rm = m < 0x7FFF0000 ? (m + 2^15) >> 16 :
    0x7FFF`` (round half up); then ``(x * rm + 2^(total - 1)) >> total`` with ``total = 15 -
    shift``: one rounding, half up (arithmetic shift), cast to int32. Valid for |x| < 2^47
    (int16 x int8 products summed over at most 2^24 terms) and shift in [-31, 7]; |x * rm|
    < 2^62 fits int64.
    """
    m = np.asarray(quantized_multiplier, dtype=np.int64)
    reduced = np.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, 0x7FFF)
    total = 15 - np.asarray(shift, dtype=np.int64)
    prod = np.asarray(x, dtype=np.int64) * reduced + (np.int64(1) << (total - 1))
    return _wrap_int32(prod >> total)


def quantize_int16_optimized(x, scale: float, zero_point: int = 0):
    """float32 -> int16 QUANTIZE as LiteRT's optimized kernels compute it (BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    and the default interpreter, whose XNNPACK leaves int16 to them): ``q = rint(x * (1 / scale))
    + zero_point`` with the inverse scale and the product in float32 and **round half to even**,
    clamped to int16. Measured, not read from the source: on 126,976 float32 values in [0, 1]
    (uniform samples, every k/255 and k/65535) at scale 1/32767 this reproduces LiteRT 2.3 on every
    one, while the reference kernel's ``TfLiteRound(x / scale)`` (float32 division, half away
    from zero: :func:`edgesr.quantization.arithmetic.quantize`) differs on 68 of them."""
    inv = np.float32(1) / np.float32(scale)
    q = np.rint(np.asarray(x, np.float32) * inv).astype(np.int64) + int(zero_point)
    return np.clip(q, -32768, 32767)


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
    return {"left_shift": left_shift, "m1": m1, "sh1": sh1, "m2": m2, "sh2": sh2, "mo": mo, "sho": sho}


def add_int8(a, za: int, b, zb: int, zo: int, p: dict, act_min: int, act_max: int, rounding: str = "double"):
    """reference_integer_ops AddElementwise (broadcast by NumPy rules).

    ``v_i = (q_i - z_i) * 2^left_shift``; ``scaled_i = MBQMSmallerThanOneExp(v_i, m_i, sh_i)``;
    ``out = MBQMSmallerThanOneExp(scaled_1 + scaled_2, m_o, sh_o) + z_o``; clamp.
    """
    mbqm = mbqm_with_rounding(multiply_by_quantized_multiplier_smaller_than_one_exp, rounding)
    v1 = (a.astype(np.int64) - za) * (1 << p["left_shift"])
    v2 = (b.astype(np.int64) - zb) * (1 << p["left_shift"])
    s1 = mbqm(v1, p["m1"], p["sh1"])
    s2 = mbqm(v2, p["m2"], p["sh2"])
    raw = mbqm(s1 + s2, p["mo"], p["sho"]) + zo
    return np.clip(raw, act_min, act_max)


def mul_int8(a, za: int, b, zb: int, s1: float, s2: float, so: float, zo: int, act_min: int, act_max: int,
             rounding: str = "double"):
    """reference_integer_ops Mul: ``out = zo + MBQM((a - za) * (b - zb), M, shift)``, clamp;
    ``M = s1 * s2 / so`` (mul.cc, float32 arithmetic widened to double)."""
    real = float(np.float32(s1) * np.float32(s2) / np.float32(so))
    m, sh = quantize_multiplier(real)
    prod = (a.astype(np.int64) - za) * (b.astype(np.int64) - zb)
    return np.clip(zo + mbqm_with_rounding(multiply_by_quantized_multiplier, rounding)(prod, m, sh), act_min, act_max)


def batch_matmul_int8(a, za: int, b, zb: int, sa: float, sb: float, so: float, zo: int, act_min: int, act_max: int,
                      rounding: str = "double"):
    """TFLite int8 BATCH_MATMUL: ``out = zo + MBQM(sum_k (a[..., i, k] - za) (b[..., k, j] - zb), M, shift)``, clamp.

    ``a`` (..., I, K) and ``b`` (..., K, J) int8 with broadcastable batch dims (no adjoint);
    ``M = double(sa) * double(sb) / double(so)`` (QuantizeMultiplier); the sum is exact in int32
    for the sizes edgesr emits (K <= 2^15). ``rounding``: the MultiplyByQuantizedMultiplier family
    (``"double"`` reference kernels, ``"single"``, ``"ruy_x86"`` for the optimized ruy GEMM).
    Returns int64 values in [act_min, act_max] of shape (..., I, J).
    """
    acc = np.matmul(np.asarray(a, np.int64) - za, np.asarray(b, np.int64) - zb)
    m, sh = quantize_multiplier(float(sa) * float(sb) / float(so))
    return np.clip(zo + multiply_by_quantized_multiplier_family(acc, m, sh, rounding), act_min, act_max)


def prelu_int8(x, zx: int, alpha, za: int, sx: float, sa: float, so: float, zo: int, qmin=-128, qmax=127,
               rounding: str = "double"):
    """reference_ops BroadcastPrelu4DSlow (int8), prelu.cc Prepare:
    ``M1 = sx / so``, ``M2 = sx * sa / so`` (float32 arithmetic); ``v = x - zx``;
    ``out = v >= 0 ? MBQM(v, M1) : MBQM(v * (alpha - za), M2)``; ``+ zo``; clamp to int8."""
    m1, sh1 = quantize_multiplier(float(np.float32(sx) / np.float32(so)))
    m2, sh2 = quantize_multiplier(float(np.float32(sx) * np.float32(sa) / np.float32(so)))
    mbqm = mbqm_with_rounding(multiply_by_quantized_multiplier, rounding)
    v = x.astype(np.int64) - zx
    pos = mbqm(v, m1, sh1)
    neg = mbqm(v * (alpha.astype(np.int64) - za), m2, sh2)
    return np.clip(np.where(v >= 0, pos, neg) + zo, qmin, qmax)


def requantize_int8(x, zx: int, sx: float, so: float, zo: int, qmin=-128, qmax=127, rounding: str = "double"):
    """Requantize (QUANTIZE int8 -> int8, RELU's and MAXIMUM's rescale):
    ``out = zo + MBQM(x - zx, M, shift)``, ``M = sx / so``; clamp."""
    m, sh = quantize_multiplier(float(np.float32(sx)) / float(np.float32(so)))
    mbqm = mbqm_with_rounding(multiply_by_quantized_multiplier, rounding)
    return np.clip(zo + mbqm(x.astype(np.int64) - zx, m, sh), qmin, qmax)


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


def add_int16_optimized(a, b, p: dict, act_min: int, act_max: int):
    """LiteRT's optimized int16 ADD without broadcast, ``optimized_integer_ops::AddElementwiseInt16``
    (zero points 0; :func:`add_params` with ``left_shift = 15``), as the x86 wheel runs it: its
    ``USE_NEON`` loop through NEON_2_SSE, 16 elements at a time over the flat index:

    ``x_i = vqrdmulh(q_i << (left_shift + sh_i), m_i)``: the input's right shift ``sh_i <= 0`` is
    folded into the left shift, so the reference's RoundingDivideByPOT of each input (a second
    rounding) is absent; ``vqrdmulh`` is SaturatingRoundingDoublingHighMul. Then ``s =
    vqrdmulh(x_1 + x_2, m_o)``, ``out = RoundingDivideByPOT(s, -sh_o)``, clamped. The last
    ``size mod 16`` elements take the scalar loop, i.e. the reference :func:`add_int8`
    arithmetic. Measured: 0 differing elements against LiteRT 2.3 at every non-broadcast int16
    ADD of a SplitSR-S w8a16 export on three photo crops, where the reference arithmetic
    differs on 14 (values within 1e-4 of a tie).
    """
    a64, b64 = np.asarray(a, np.int64), np.asarray(b, np.int64)
    out = add_int8(a64, 0, b64, 0, 0, p, act_min, act_max).ravel()
    n = (a64.size // 16) * 16
    x1 = saturating_rounding_doubling_high_mul(_wrap_int32(a64.ravel()[:n] << (p["left_shift"] + p["sh1"])), p["m1"])
    x2 = saturating_rounding_doubling_high_mul(_wrap_int32(b64.ravel()[:n] << (p["left_shift"] + p["sh2"])), p["m2"])
    s = rounding_divide_by_pot(saturating_rounding_doubling_high_mul(_wrap_int32(x1 + x2), p["mo"]), -p["sho"])
    out[:n] = np.clip(s, act_min, act_max)
    return out.reshape(a64.shape)


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


# --------------------------------------------------------------------------- gemmlowp fixed point
#
# gemmlowp ``fixedpoint/fixedpoint.h`` on int32 raw values, vectorized: arrays are int64 holding
# int32 values. ``FixedPoint<int32, I>`` has I integer bits and 31 - I fractional bits
# (``real = raw / 2^(31 - I)``). Its ``+``/``-`` are plain int32 adds (overflow wraps here, as
# the compiled code does); ``*`` is SaturatingRoundingDoublingHighMul; ``Rescale`` and
# ``SaturatingRoundingMultiplyByPOT`` shift left saturating or right with RoundingDivideByPOT.


def _wrap_int32(v):
    """Two's-complement int32 wrap-around of int64 values (gemmlowp's non-saturating Add/Sub)."""
    return ((np.asarray(v, np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _srdhm(a, b):
    """FixedPoint ``*``: SaturatingRoundingDoublingHighMul (ties toward +inf; -2^31 * -2^31 saturates)."""
    return saturating_rounding_doubling_high_mul(a, b).astype(np.int64)


def _rdbpot(x, exponent: int):
    """RoundingDivideByPOT: arithmetic right shift rounding to nearest, ties away from zero."""
    return rounding_divide_by_pot(x, exponent).astype(np.int64)


def saturating_rounding_multiply_by_pot(x, exponent: int):
    """gemmlowp ``SaturatingRoundingMultiplyByPOT<exponent>`` on int32: for ``exponent > 0``
    ``x * 2^exponent`` saturated to int32 (threshold ``2^(31 - exponent) - 1``); for
    ``exponent < 0`` RoundingDivideByPOT by ``-exponent``; unchanged for 0."""
    x = np.asarray(x, np.int64)
    if exponent == 0:
        return x
    if exponent < 0:
        return _rdbpot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, x << exponent))


def rescale(x, src_integer_bits: int, dst_integer_bits: int):
    """gemmlowp ``Rescale<dst>(FixedPoint<int32, src>)``: SaturatingRoundingMultiplyByPOT by
    ``src - dst``."""
    return saturating_rounding_multiply_by_pot(x, src_integer_bits - dst_integer_bits)


def rounding_half_sum(a, b):
    """gemmlowp ``RoundingHalfSum`` (int32): ``(a + b + sign) / 2`` in int64, ``sign = +1`` for
    ``a + b >= 0`` else ``-1``, C division truncating toward zero (ties away from zero)."""
    s = np.asarray(a, np.int64) + np.asarray(b, np.int64)
    num = s + np.where(s >= 0, 1, -1)
    return np.sign(num) * (np.abs(num) // 2)


def count_leading_zeros_u32(x):
    """``CountLeadingZeros(uint32)`` (common.h): 32 for 0."""
    u = np.asarray(x, np.int64) & 0xFFFFFFFF
    out = np.full(u.shape, 32, np.int64)
    nz = u > 0
    # floor(log2) of integers below 2^32 is exact from frexp on float64
    out[nz] = 32 - np.frexp(u[nz].astype(np.float64))[1]
    return out


_Q31_ONE = INT32_MAX  # FixedPoint<int32, 0>::One()


def exp_on_interval_between_negative_one_quarter_and_0_excl(a):
    """gemmlowp ``exp_on_interval_between_negative_one_quarter_and_0_excl`` (Q0.31 in and out).

    Taylor expansion around -1/8: ``x = a + 2^28``; ``x2 = x*x``, ``x3 = x2*x``, ``x4 = x2*x2``
    (SaturatingRoundingDoublingHighMul); ``x4_over_4 = RDBPOT(x4, 2)``;
    ``poly = RDBPOT((x4_over_4 + x3) * 1/3 + x2, 1)``; ``exp(-1/8) + exp(-1/8) * (x + poly)``
    with the constants 1895147668 = exp(-1/8) and 715827883 = 1/3 in Q0.31.
    """
    constant_term, constant_1_over_3 = 1895147668, 715827883
    x = _wrap_int32(np.asarray(a, np.int64) + (1 << 28))
    x2 = _srdhm(x, x)
    x3 = _srdhm(x2, x)
    x4 = _srdhm(x2, x2)
    x4_over_4 = saturating_rounding_multiply_by_pot(x4, -2)
    poly = saturating_rounding_multiply_by_pot(_wrap_int32(_srdhm(_wrap_int32(x4_over_4 + x3), constant_1_over_3) + x2), -1)
    return _wrap_int32(constant_term + _srdhm(constant_term, _wrap_int32(x + poly)))


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242))
"""gemmlowp's GEMMLOWP_EXP_BARREL_SHIFTER table: ``exp(-2^k)`` in Q0.31 for k = -2 .. 4."""


def exp_on_negative_values(a, integer_bits: int):
    """gemmlowp ``exp_on_negative_values(FixedPoint<int32, integer_bits>)`` -> Q0.31, for a <= 0.

    ``a_mod = (a & (2^(F-2) - 1)) - 2^(F-2)`` (F = 31 - integer_bits fractional bits: the
    input modulo 1/4, shifted into [-1/4, 0)); ``result = exp_on_interval(Rescale<0>(a_mod))``;
    ``remainder = a_mod - a``; for each k in -2..4 with ``integer_bits > k``: where bit
    ``F + k`` of ``remainder`` is set, ``result *= exp(-2^k)`` (SaturatingRoundingDoublingHighMul);
    for ``integer_bits > 5`` inputs below -32 give 0; ``a == 0`` gives One (2^31 - 1).
    """
    a = np.asarray(a, np.int64)
    frac = 31 - integer_bits
    one_quarter = 1 << (frac - 2)
    a_mod = _wrap_int32((a & (one_quarter - 1)) - one_quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(rescale(a_mod, integer_bits, 0))
    remainder = _wrap_int32(a_mod - a)
    for k, multiplier in _EXP_BARREL:
        if integer_bits > k:
            bit = (remainder >> (frac + k)) & 1
            result = np.where(bit != 0, _srdhm(result, multiplier), result)
    if integer_bits > 5:
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, _Q31_ONE, result)


def one_over_one_plus_x_for_x_in_0_1(a):
    """gemmlowp ``one_over_one_plus_x_for_x_in_0_1`` (Q0.31 in and out): Newton-Raphson division.

    ``d = RoundingHalfSum(a, One)`` (= (1 + a) / 2, Q0.31); in Q2.29
    ``x = 48/17 + d * (-32/17)`` (constants 1515870810, -1010580540), then three times
    ``x = x + Rescale<2>(x * (1 - d * x))`` (the product is Q4.27, rescaled by a saturating
    left shift of 2); returns ``Rescale<0>`` of x read as Q1.30 (a saturating left shift by 1).
    """
    half_denominator = rounding_half_sum(a, _Q31_ONE)
    f2_one = 1 << 29
    x = _wrap_int32(1515870810 + _srdhm(half_denominator, -1010580540))
    for _ in range(3):
        half_denominator_times_x = _srdhm(half_denominator, x)
        one_minus = _wrap_int32(f2_one - half_denominator_times_x)
        x = _wrap_int32(x + rescale(_srdhm(x, one_minus), 4, 2))
    return rescale(x, 1, 0)


def get_reciprocal(x, x_integer_digits: int):
    """common.h ``GetReciprocal``: ``(1 / x as Q0.31 raw, num_bits_over_unit)`` for x > 0 in
    ``FixedPoint<int32, x_integer_digits>``.

    ``headroom_plus_one = CountLeadingZeros(uint32(x))``; ``num_bits_over_unit =
    x_integer_digits - headroom_plus_one``; ``shifted_sum_minus_one = int32((uint32(x) <<
    headroom_plus_one) - 2^31)`` (uint32 arithmetic); the reciprocal is
    :func:`one_over_one_plus_x_for_x_in_0_1` of it, to be scaled by ``2^-num_bits_over_unit``.
    """
    x = np.asarray(x, np.int64)
    headroom_plus_one = count_leading_zeros_u32(x)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted = ((x & 0xFFFFFFFF) << headroom_plus_one) & 0xFFFFFFFF
    shifted_sum_minus_one = _wrap_int32(shifted - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit


def multiply_by_quantized_multiplier_greater_than_one(x, quantized_multiplier, left_shift: int):
    """common.h ``MultiplyByQuantizedMultiplierGreaterThanOne`` (double-rounding build):
    ``SaturatingRoundingDoublingHighMul(x * 2^left_shift, M)`` (one rounding, ties toward +inf)."""
    return _srdhm(_wrap_int32(np.asarray(x, np.int64) << left_shift), quantized_multiplier)


def calculate_input_radius(input_integer_bits: int, input_left_shift: int, total_signed_bits: int = 31) -> int:
    """quantization_util.cc ``CalculateInputRadius``: ``floor((2^I - 1) * 2^(total - I) / 2^left_shift)``
    in double (exact here: integers below 2^53)."""
    return int(np.floor(((1 << input_integer_bits) - 1) * float(1 << (total_signed_bits - input_integer_bits))
                        / float(1 << input_left_shift)))


def softmax_reference_params(sx: float, beta: float, scaled_diff_integer_bits: int = 5) -> tuple[int, int, int]:
    """activations.cc ``SoftmaxPrepare<kReference>`` for int8/uint8: ``(input_beta_multiplier,
    input_beta_left_shift, diff_min)``.

    PreprocessSoftmaxScaling: ``real = min(double(beta) * double(sx) * 2^(31 - 5), 2^31 - 1)``
    (double arithmetic); QuantizeMultiplierGreaterThanOne(real) (TFLite aborts when ``real <= 1``
    or the shift is negative; this raises ValueError); ``diff_min = -CalculateInputRadius(5,
    left_shift)``. At the cap the shift is 31 (``M = 2^31 - 1``), which QuantizeMultiplier
    allows without TFLITE_SINGLE_ROUNDING; ``diff_min`` is then 0, so only a row's maxima count.
    """
    real = min(float(np.float32(beta)) * float(np.float32(sx)) * float(1 << (31 - scaled_diff_integer_bits)),
               float((1 << 31) - 1))
    if not real > 1.0:
        raise ValueError(f"softmax input multiplier {real} must exceed 1 (TFLite's QuantizeMultiplierGreaterThanOne)")
    # QuantizeMultiplier(real) = frexp + round; halving real changes only the exponent, which
    # keeps edgesr.quantization.arithmetic's shift <= 30 guard (single-rounding builds) out of the way
    multiplier, half_shift = quantize_multiplier(real / 2)
    left_shift = half_shift + 1
    if left_shift < 0:
        raise ValueError(f"softmax input multiplier {real} gives a negative shift")
    return multiplier, left_shift, -calculate_input_radius(scaled_diff_integer_bits, left_shift)


def softmax_int8_reference(x, sx: float, beta: float, out_bits: int = 8, out_min: int = -128, out_max: int = 127):
    """reference_ops::Softmax for int8 (uint8) input and int8 output: LiteRT's BUILTIN_REF SOFTMAX.

    Per row over the last axis, with :func:`softmax_reference_params` ``(M, left_shift, diff_min)``:

    * ``diff = q - max(row)``; elements with ``diff < diff_min`` count as exp = 0 and output ``out_min``;
    * ``scaled = MultiplyByQuantizedMultiplierGreaterThanOne(diff, M, left_shift)`` (Q5.26);
      ``e = exp_on_negative_values(scaled)`` (Q0.31, :func:`exp_on_negative_values`);
    * ``sum_of_exps = sum(Rescale<12>(e))`` (Q12.19: RoundingDivideByPOT by 12, plain int32 adds,
      in channel order; the order does not matter for integers);
    * ``shifted_scale, num_bits_over_unit = GetReciprocal(sum_of_exps, 12)``;
    * ``out = RoundingDivideByPOT(shifted_scale * e, num_bits_over_unit + 31 - out_bits) + out_min``
      (``*`` = SaturatingRoundingDoublingHighMul: ties toward +inf; the shift rounds ties away
      from zero), clamped to ``[out_min, out_max]``.
    """
    m, left_shift, diff_min = softmax_reference_params(sx, beta)
    xi = np.asarray(x).astype(np.int64)
    diff = xi - xi.max(axis=-1, keepdims=True)
    keep = diff >= diff_min
    scaled = multiply_by_quantized_multiplier_greater_than_one(np.where(keep, diff, 0), m, left_shift)
    e = exp_on_negative_values(scaled, 5)
    sum_of_exps = _wrap_int32(np.where(keep, rescale(e, 0, 12), 0).sum(axis=-1, keepdims=True))
    shifted_scale, num_bits_over_unit = get_reciprocal(sum_of_exps, 12)
    exponent = num_bits_over_unit + 31 - out_bits
    if np.any((exponent < 0) | (exponent > 31)):
        raise ValueError("softmax reciprocal exponent outside [0, 31] (TFLite's TFLITE_CHECK)")
    prod = _srdhm(np.broadcast_to(shifted_scale, e.shape), e)
    unsat = rounding_divide_by_pot(prod, np.broadcast_to(exponent, e.shape)).astype(np.int64)
    out = np.clip(unsat + out_min, out_min, out_max)
    return np.where(keep, out, out_min)


# --------------------------------------------------------------------------- reductions, softmax, slicing


def sum_int8(x, zx: int, sx: float, so: float, zo: int, axes: tuple, keep_dims: bool, qmin=-128, qmax=127):
    """Optimized int8 SUM with rescaling: ``optimized_ops::QuantizedMeanOrSum(compute_sum=true)``,
    a float epilogue (LiteRT's BUILTIN_WITHOUT_DEFAULT_DELEGATES and the default interpreter):

    ``temp_sum = sum(q)`` (int32); ``scale = sx / so`` (float32); ``bias = -zx * scale * n``
    (float32); ``value = (int32)TfLiteRound(temp_sum * scale + bias) + zo`` (half away from
    zero, float32 arithmetic), saturated to int8 (measured on eSR-TM: a wrap-around would
    differ by 255). For BUILTIN_REF see :func:`sum_int8_builtin_ref`.
    """
    n = int(np.prod([x.shape[a] for a in axes]))
    temp_sum = x.astype(np.int64).sum(axis=axes, keepdims=keep_dims)
    scale = np.float32(sx) / np.float32(so)
    bias = (np.float32(-zx) * scale * np.float32(n)).astype(np.float32)
    value = round_half_away((temp_sum.astype(np.float32) * scale + bias).astype(np.float32)).astype(np.int64) + zo
    return np.clip(value, qmin, qmax)


def sum_int8_builtin_ref(x, zx: int, sx: float, so: float, zo: int, axes: tuple, keep_dims: bool):
    """What LiteRT's BUILTIN_REF computes for an int8 SUM: ``reference_ops::QuantizedMeanOrSum``
    instantiated for **uint8** on the int8 tensors.

    ``reduce.cc``'s ``QuantizedMeanOrSum<T, kReference>`` passes
    ``GetTensorData<uint8_t>(input)`` and ``GetTensorData<uint8_t>(output)`` whatever ``T``
    is (the TensorFlow source LiteRT 2.3.0 is built from; current LiteRT main passes
    ``GetTensorData<T>``). So, with the zero points and scales of the int8 tensors:

    * every int8 byte is read as uint8 (``q & 0xFF``: -1 reads 255) and summed in int32;
    * ``shifted = temp_sum - zx * n``; ``M, shift = QuantizeMultiplier(double(sx) / double(so))``
      (PrepareMeanOrSum); ``v = MultiplyByQuantizedMultiplier(shifted, M, shift) + zo``
      (gemmlowp double rounding: ties up, then ties away from zero);
    * ``v`` is clamped to uint8's [0, 255] and its byte stored, i.e. read back as int8
      ``v - 256`` for v >= 128.

    Measured against LiteRT BUILTIN_REF on a single-op SUM model (3256 rows, random codes):
    0 mismatches; the documented int8 formula differs on almost every element with a
    negative value anywhere in the reduced row.
    """
    n = int(np.prod([x.shape[a] for a in axes]))
    as_u8 = np.asarray(x).astype(np.int64) & 0xFF
    temp_sum = as_u8.sum(axis=axes, keepdims=keep_dims)
    m, sh = quantize_multiplier(float(np.float32(sx)) / float(np.float32(so)))
    shifted = _wrap_int32(temp_sum - np.int64(zx) * n)
    v = multiply_by_quantized_multiplier(shifted, m, sh).astype(np.int64) + zo
    u8 = np.clip(v, 0, 255)
    return np.where(u8 >= 128, u8 - 256, u8)


def sub_int8(a, za: int, b, zb: int, zo: int, p: dict, act_min: int, act_max: int, rounding: str = "double"):
    """reference_integer_ops SubElementwise: as :func:`add_int8` with ``raw = scaled_1 - scaled_2``."""
    mbqm = mbqm_with_rounding(multiply_by_quantized_multiplier_smaller_than_one_exp, rounding)
    v1 = (a.astype(np.int64) - za) * (1 << p["left_shift"])
    v2 = (b.astype(np.int64) - zb) * (1 << p["left_shift"])
    s1 = mbqm(v1, p["m1"], p["sh1"])
    s2 = mbqm(v2, p["m2"], p["sh2"])
    raw = mbqm(s1.astype(np.int64) - s2, p["mo"], p["sho"]) + zo
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


# --------------------------------------------------------------------------- 16x8 (int16 activation) kernels
#
# LiteRT runs every one of these through its reference arithmetic in all three resolvers (the
# optimized builds have no int16 path for them, and XNNPACK delegates no int16 op): mul.cc
# (reference_integer_ops::Mul / BroadcastMul6DSlow for int16), batch_matmul.cc (EvalInt16:
# "optimized_ops not yet implemented for int16_t, use reference_ops in all cases"),
# activations.cc (SoftmaxQuantized<int16, int16> -> reference_ops::SoftmaxInt16; TanhEval /
# SigmoidEval int16 -> reference_integer_ops::Tanh / Logistic whenever the input scale is not a
# power of two), exp.cc (int16 LUTPopulate + the interpolating lookup). Sources:
# ``kernels/internal/common.h`` (LUTPopulateInt16, lut_lookup_with_interpolation,
# sigmoid_table_uint16), ``reference/softmax.h``, ``reference/integer_ops/{tanh,logistic,mul}.h``,
# ``reference/batch_matmul.h``.

INT16_MIN, INT16_MAX = -32768, 32767

# common.h ``sigmoid_table_uint16``: sigmoid(i / 24) in unsigned Q0.16, i = 0..255, the shared
# table of TFLite's (and CMSIS-NN's) int16 TANH and LOGISTIC. Spec constants: 44 entries differ
# by one from round(65536 * sigmoid(i / 24)), so the table is data, not a formula.
SIGMOID_TABLE_UINT16 = np.array([
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149, 40794, 41432, 42064, 42688,
    43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369, 47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409,
    51865, 52311, 52745, 53169, 53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433,
    57724, 58007, 58280, 58544, 58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110,
    61279, 61441, 61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886, 62990, 63090, 63186,
    63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835, 63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308,
    64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786, 64816, 64845, 64873, 64900,
    64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079, 65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208,
    65221, 65234, 65246, 65258, 65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360, 65367,
    65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433, 65438, 65442, 65445, 65449,
    65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474, 65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491,
    65493, 65495, 65497, 65498, 65500, 65501, 65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513,
    65514, 65515, 65516, 65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524,
    65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529, 65529, 65529, 65530, 65530,
    65530, 65530, 65531, 65531, 65531, 65531, 65531, 65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533,
    65533, 65533, 65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65535,
], np.int64)


def lut_populate_int16(fn, s_in: float, z_in: int, s_out: float, z_out: int, dtype=np.float32) -> np.ndarray:
    """common.h ``LUTPopulateInt16<FloatT>``: the 513-entry int16 table of ``fn`` over the input's
    int16 range, for :func:`lut_lookup_int16`.

    All arithmetic in ``dtype`` (``FloatT``: float32 for EXP's ``LUTPopulate(float, ...)``, float64
    for SOFTMAX's tables): ``lo = s_in * (-32768 - z_in)``, ``hi = s_in * (32767 - z_in)``, ``step
    = (hi - lo) / 512``; the output's real range gives ``inv = 65536 / (out_hi - out_lo)``. Entry
    ``i < 512`` is ``round(fn(x_i) * inv) - bias_i`` with ``x_i = lo + i * step`` and ``bias_i =
    round((round((fn(x_{i+1}) * inv + round(fn(x_i) * inv)) / 2) - round(fn(x_i + step / 2) * inv)) / 2)``
    (half the interpolation error at the midpoint); entry 512 is ``round(fn(hi) * inv)``; every
    ``round`` is std::round (half away from zero), every entry clamped to int16. ``fn`` maps a
    ``dtype`` array to ``dtype`` values. Returns int64 (513,)."""
    f = dtype
    lo = f(s_in) * f(INT16_MIN - z_in)
    hi = f(s_in) * f(INT16_MAX - z_in)
    out_lo = f(s_out) * f(INT16_MIN - z_out)
    out_hi = f(s_out) * f(INT16_MAX - z_out)
    step = (hi - lo) / f(512)
    half = step / f(2)
    inv = f(65536) / (out_hi - out_lo)
    i = np.arange(512).astype(f)
    x = (lo + i * step).astype(f)
    val = np.asarray(fn(x), f)
    val_mid = np.asarray(fn((x + half).astype(f)), f)
    val_next = np.asarray(fn((lo + (i + f(1)) * step).astype(f)), f)
    sample = _std_round((val * inv).astype(f))
    interp = _std_round(((val_next * inv + sample) / f(2)).astype(f))
    mid = _std_round((val_mid * inv).astype(f))
    bias = _std_round(((interp - mid) / f(2)).astype(f))
    table = np.empty(513, np.int64)
    table[:512] = np.clip(sample - bias, INT16_MIN, INT16_MAX)
    table[512] = np.clip(_std_round((np.asarray(fn(np.array([hi], f)), f) * inv).astype(f))[0], INT16_MIN, INT16_MAX)
    return table


def lut_lookup_int16(q, table: np.ndarray):
    """common.h ``lut_lookup_with_interpolation`` (int16 in, int16 out): ``index = 256 + (q >> 7)``,
    ``offset = q & 127``; ``out = base + ((slope * offset + 64) >> 7)`` with ``base = table[index]``
    and ``slope = table[index + 1] - base`` (int16), the shift arithmetic (half up); the sum is
    cast to int16 (wraps). Returns int64 values."""
    q = np.asarray(q, np.int64)
    index = 256 + (q >> 7)
    base = table[index]
    slope = _wrap_int16(table[index + 1] - base)
    return _wrap_int16(base + ((slope * (q & 0x7F) + 64) >> 7))


def _std_round(x):
    """``std::round`` in the array's own float dtype, exactly: the fraction ``|x| - floor(|x|)`` is
    exact, so ties go away from zero and nothing below a tie rounds up (``floor(|x| + 0.5)`` in
    float32 rounds 0.49999997 to 1)."""
    x = np.asarray(x)
    a = np.abs(x)
    fl = np.floor(a)
    return (np.sign(x) * (fl + (a - fl >= 0.5))).astype(x.dtype)


def _wrap_int16(v):
    """Two's-complement int16 wrap-around (``static_cast<int16_t>``) of int64 values."""
    return ((np.asarray(v, np.int64) + (1 << 15)) & 0xFFFF) - (1 << 15)


def mul_int16(a, b, s1: float, s2: float, so: float, act_min: int, act_max: int, rounding: str = "double"):
    """16x8 MUL (zero points 0): reference_integer_ops ``MulElementwise`` / ``BroadcastMul6DSlow``
    on int16, in every LiteRT resolver: ``out = MBQM(a * b, M, shift)`` (the int32
    MultiplyByQuantizedMultiplier; ``|a * b| <= 2^30`` fits int32), clamped; ``M = s1 * s2 / so``
    in float32 (mul.cc). ``a`` and ``b`` broadcast (NumPy rules). Returns int64."""
    return mul_int8(a, 0, b, 0, s1, s2, so, 0, act_min, act_max, rounding)


def batch_matmul_int16(a, b, sa: float, sb: float, so: float, act_min: int, act_max: int):
    """16x8 BATCH_MATMUL (zero points 0): batch_matmul.cc ``EvalInt16`` -> ``reference_ops::BatchMatMul
    <int16_t, int64_t>`` in every resolver: ``acc = sum_k a[..., i, k] * b[..., k, j]`` in int64, then
    the int64 MultiplyByQuantizedMultiplier (:func:`multiply_by_quantized_multiplier_int64`: 16-bit
    multiplier, one rounding half up), clamped. ``M = double(sa) * double(sb) / double(so)``.
    ``a`` (..., I, K), ``b`` (..., K, J), batch dims broadcast; returns int64 (..., I, J)."""
    acc = np.matmul(np.asarray(a, np.int64), np.asarray(b, np.int64))
    m, sh = quantize_multiplier(float(sa) * float(sb) / float(so))
    return np.clip(multiply_by_quantized_multiplier_int64(acc, m, sh), act_min, act_max)


@functools.cache
def softmax_int16_luts() -> tuple[np.ndarray, np.ndarray]:
    """activations.cc SoftmaxPrepare (int16): the ``exp`` table over [-10, 0] and the ``1 / (1 + x)``
    table over [0, 1], both with output range [-1, 1] (scale ``2 / 65535``), built by
    :func:`lut_populate_int16` in float64 ("double as FloatT for backward compatibility").
    The same for every SOFTMAX: built once, returned read-only."""
    r = 65535.0
    exp_lut = lut_populate_int16(np.exp, 10.0 / r, INT16_MAX, 2.0 / r, 0, np.float64)
    recip_lut = lut_populate_int16(lambda v: 1.0 / (1.0 + v), 1.0 / r, INT16_MIN, 2.0 / r, 0, np.float64)
    exp_lut.flags.writeable = recip_lut.flags.writeable = False
    return exp_lut, recip_lut


def softmax_int16(x, sx: float, beta: float, rounding: str = "double"):
    """reference_ops ``SoftmaxInt16`` over the last axis (int16 in, int16 out at scale 1/32768,
    zero point 0), LiteRT's kernel in every resolver.

    Prepare: ``(M, shift) = QuantizeMultiplier(double(sx) * beta / (10 / 65535))``. Per row:
    ``d = MBQM(x - max, M, shift)`` (int32; ``rounding`` as in :func:`mbqm_with_rounding`) maps
    [-10, 0] to [-65535, 0];
    ``e = lookup(exp_lut, clamp(d + 32767))`` (Q0.15); ``s = sum e`` (int32); ``h =
    CountLeadingZeros(uint32(s))``; ``r = lookup(recip_lut, clamp((((s << (h - 1)) + 2^13) >> 14)
    - 98304))``; ``out = clamp((e * r + 2^(30 - h)) >> (31 - h), 0, 32767)``. Returns int64."""
    exp_lut, recip_lut = softmax_int16_luts()
    m, sh = quantize_multiplier(float(sx) * float(beta) / (10.0 / 65535.0))
    x = np.asarray(x, np.int64)
    diff = x - x.max(axis=-1, keepdims=True)
    scaled = mbqm_with_rounding(multiply_by_quantized_multiplier, rounding)(diff, m, sh).astype(np.int64)
    e = lut_lookup_int16(np.clip(scaled + 32767, INT16_MIN, INT16_MAX), exp_lut)
    s = e.sum(axis=-1, keepdims=True)
    h = count_leading_zeros_u32(s)
    shifted = ((s << (h - 1)) + (1 << 13)) >> 14
    r = lut_lookup_int16(np.clip(shifted - ((1 << 15) + (1 << 16)), INT16_MIN, INT16_MAX), recip_lut)
    right = 31 - h
    return np.clip((e * r + (np.int64(1) << (right - 1))) >> right, 0, INT16_MAX)


def _is_pot_scale(scale: float) -> tuple[bool, int]:
    """kernel_util ``CheckedLog2``: (``|log2(scale) - round(log2(scale))| < 1e-3``, the rounded log2)."""
    lg = float(np.log(np.float32(scale)) * (np.float32(1) / np.log(np.float32(2))))
    r = int(round_half_away(np.float64(lg)))
    return abs(lg - r) < 1e-3, r


def sigmoid_tanh_int16_params(s_in: float, tanh: bool) -> tuple[int, int]:
    """TanhPrepare / SigmoidPrepare (int16): ``(input_multiplier, input_left_shift)``. A
    power-of-two input scale (``left_shift = 12 + log2(s_in)`` in {0, 1} for TANH, 0 for LOGISTIC)
    gives multiplier 0; otherwise ``m = double(s_in) * 4096 * 3``, doubled (``left_shift += 1``)
    while ``m <= 32767 / 2`` and ``left_shift <= 30``, then truncated to int32."""
    pot, lg = _is_pot_scale(s_in)
    shift = 12 + lg
    if pot and (shift in (0, 1) if tanh else shift == 0):
        return 0, shift
    m, shift = float(np.float32(s_in)) * 4096.0 * 3.0, 0
    while m <= 32767.0 / 2.0 and shift <= 30:
        shift += 1
        m *= 2.0
    return int(m), shift


def _sigmoid_table_input(x, multiplier: int, left_shift: int):
    if multiplier == 0:  # power-of-two scale: 3 << left_shift, no shift
        multiplier, left_shift = 3 << left_shift, 0
    rnd = (1 << (left_shift - 1)) if left_shift > 0 else 0
    return (np.asarray(x, np.int64) * multiplier + rnd) >> left_shift


def tanh_int16(x, multiplier: int, left_shift: int):
    """reference_integer_ops ``Tanh`` (int16 in; out at scale 2^-15, zero point 0): ``v = (x * M +
    round) >> shift`` (``round = 2^(shift-1)``), ``|v|`` split into ``uh = |v| >> 8`` and ``ut =
    |v| & 255``; ``r = (T[uh] << 8) + ut * (T[uh+1] - T[uh])`` (``0xFFFF << 8`` when ``uh >= 255``);
    ``out = (v >= 0 ? r - 2^23 + 2^7 : 2^23 - r + 2^7 - 1) >> 8`` with ``T`` =
    :data:`SIGMOID_TABLE_UINT16` (tanh(x) = 2 sigmoid(2x) - 1). Returns int64."""
    v = _sigmoid_table_input(x, multiplier, left_shift)
    a = np.abs(v)
    uh = np.minimum(a >> 8, 254)
    t = SIGMOID_TABLE_UINT16
    r = np.where((a >> 8) >= 255, 0xFFFF << 8, (t[uh] << 8) + (a & 0xFF) * (t[uh + 1] - t[uh]))
    r = np.where(v >= 0, r - (1 << 23) + (1 << 7), -r + (1 << 23) + (1 << 7) - 1)
    return _wrap_int16(r >> 8)


def logistic_int16(x, multiplier: int, left_shift: int):
    """reference_integer_ops ``Logistic`` (int16 in; out at scale 2^-15, zero point 0): as
    :func:`tanh_int16` with ``uh = |v| >> 9``, ``ut = |v| & 511``, ``r = (T[uh] << 9) + ut * (T[uh+1]
    - T[uh])`` (``0x7FFF << 10`` when ``uh >= 255``) and ``out = (v >= 0 ? r + 2^9 : 2^25 - r + 2^9
    - 1) >> 10``. Returns int64."""
    v = _sigmoid_table_input(x, multiplier, left_shift)
    a = np.abs(v)
    uh = np.minimum(a >> 9, 254)
    t = SIGMOID_TABLE_UINT16
    r = np.where((a >> 9) >= 255, 0x7FFF << 10, (t[uh] << 9) + (a & 0x1FF) * (t[uh + 1] - t[uh]))
    r = np.where(v >= 0, r + (1 << 9), (1 << 25) - r + (1 << 9) - 1)
    return _wrap_int16(r >> 10)
