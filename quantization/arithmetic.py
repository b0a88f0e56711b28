"""Int8 arithmetic exactly as TFLite defines it: quantization parameters, weights, biases and
the fixed-point requantization of integer kernels.

Spec: https://ai.google.dev/edge/litert/models/quantization_spec (TFLite 8-bit quantization)::

    real_value = scale * (int8_value - zero_point)

* weights: int8, per output channel, symmetric: range [-127, 127] (-128 unused), zero point 0,
  ``scale[c] = max|w[c]| / 127``;
* activations: int8, per tensor, asymmetric: range [-128, 127], zero point in [-128, 127],
  (scale, zero point) from a (min, max) range *nudged* so that 0.0 is exactly representable;
* bias: int32, zero point 0, ``scale[c] = input_scale * weight_scale[c]``;
* requantization inside a kernel: the real multiplier ``input_scale * weight_scale[c] /
  output_scale`` becomes an int32 Q31 multiplier and a power-of-two shift
  (:func:`quantize_multiplier`), applied by :func:`multiply_by_quantized_multiplier`.

Sources reproduced here (TensorFlow / TFLite, default build, i.e. without
``TFLITE_SINGLE_ROUNDING``):

* ``tensorflow/core/kernels/fake_quant_ops_functor.h``: ``Nudge`` (:func:`nudged_qparams`);
* ``tensorflow/lite/kernels/internal/quantization_util.cc``: ``QuantizeMultiplier``;
* ``tensorflow/lite/kernels/internal/common.h``: ``MultiplyByQuantizedMultiplier`` =
  gemmlowp ``SaturatingRoundingDoublingHighMul`` then ``RoundingDivideByPOT``;
* ``tensorflow/lite/kernels/internal/reference/quantize.h``: ``AffineQuantize``
  (``TfLiteRound`` = ``std::round``, half away from zero).

Rounding modes, named once (all are "round to nearest"; they differ on ties):

* :func:`round_half_away` (``std::round``, ``TfLiteRound``): ties away from zero;
* :func:`saturating_rounding_doubling_high_mul`: ties toward +infinity (gemmlowp's nudge);
* :func:`rounding_divide_by_pot`: ties away from zero;
* TF's FakeQuant op: ``floor(x + 0.5)``, ties toward +infinity.

Every function works element-wise on NumPy arrays (or scalars) and raises ``ValueError`` for
arguments outside the ranges TFLite allows, never silently wraps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
"""Activation range (int8, per tensor)."""
WEIGHT_QMIN, WEIGHT_QMAX = -127, 127
"""Weight range: symmetric "narrow range" int8, as TFLite's converter emits per-channel weights."""
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to nearest, ties away from zero (C's ``std::round``, TFLite's ``TfLiteRound``).

    NumPy's ``np.round`` rounds ties to even, which differs at .5: 0.5 -> 1, -2.5 -> -3 here.
    Returns float64 (or the input's float dtype) holding integers.
    """
    x = np.asarray(x)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class QParams:
    """Per-tensor affine int8 parameters: ``real = scale * (q - zero_point)``.

    ``nudged_min``/``nudged_max`` are the reals of q = -128 and q = 127 (float32 values,
    computed as TF's FakeQuant computes them). ``scale`` is float32-representable.
    """

    scale: float
    zero_point: int
    nudged_min: float
    nudged_max: float


def nudged_qparams(rmin: float, rmax: float) -> QParams:
    """Int8 activation parameters for the range [rmin, rmax], nudged as TF's FakeQuant does.

    Reproduces ``Nudge`` of ``fake_quant_ops_functor.h`` in float32 with num_bits=8 and
    narrow_range=False (quant range [0, 255]), then shifts the zero point by -128 to int8::

        scale          = (rmax - rmin) / 255                    (float32)
        zp_from_min    = 0 - rmin / scale
        zp_uint8       = clamp(round_half_away(zp_from_min), 0, 255)
        nudged_min/max = (0 - zp_uint8) * scale, (255 - zp_uint8) * scale
        zero_point     = zp_uint8 - 128                         (int8)

    so that 0.0 is exactly ``q = zero_point``. TFLite's MLIR quantizer derives the same scale
    and, up to float rounding of the zero point, the same zero point from FakeQuant ranges.

    Args:
        rmin, rmax: the range; must satisfy rmin <= 0 <= rmax and rmax > rmin (TFLite's
            converter refuses FakeQuant ranges that do not straddle zero; widen them first).

    Raises:
        ValueError: non-finite bounds, an empty range, or one that does not contain 0.
    """
    lo, hi = np.float32(rmin), np.float32(rmax)
    if not (np.isfinite(lo) and np.isfinite(hi)) or not lo <= 0.0 <= hi or not hi > lo:
        raise ValueError(f"int8 activation range must be finite, contain 0 and be non-empty, got [{rmin}, {rmax}]")
    qmin_f, qmax_f = np.float32(0.0), np.float32(255.0)
    scale = (hi - lo) / (qmax_f - qmin_f)
    zero_point_from_min = qmin_f - lo / scale
    if zero_point_from_min < qmin_f:
        zp = 0
    elif zero_point_from_min > qmax_f:
        zp = 255
    else:
        zp = int(round_half_away(zero_point_from_min))
    nudged_min = (qmin_f - np.float32(zp)) * scale
    nudged_max = (qmax_f - np.float32(zp)) * scale
    return QParams(float(scale), zp - 128, float(nudged_min), float(nudged_max))


def fake_quant(x: np.ndarray, rmin: float, rmax: float) -> np.ndarray:
    """TF's ``FakeQuantWithMinMaxArgs`` (num_bits=8, narrow_range=False), bit for bit, float32.

    With the nudged range of :func:`nudged_qparams` and ``inv_scale = 255 / (rmax - rmin)``::

        quant_zero = floor(-nudged_min * inv_scale + 0.5)            (the uint8 zero point)
        out = floor((clamp(x, nudged_min, nudged_max) - nudged_min) * inv_scale
                    - quant_zero + 0.5) * scale                      (ties toward +infinity)

    i.e. ``real = scale * (q - zero_point)`` of the int8 value q nearest to x. Returns float32.
    """
    p = nudged_qparams(rmin, rmax)
    lo, hi = np.float32(rmin), np.float32(rmax)
    inv_scale = np.float32(255.0) / (hi - lo)
    nmin, nmax = np.float32(p.nudged_min), np.float32(p.nudged_max)
    quant_zero = np.floor(-nmin * inv_scale + np.float32(0.5))
    shifted = np.minimum(np.maximum(np.asarray(x, np.float32), nmin), nmax) - nmin
    return (np.floor(shifted * inv_scale - quant_zero + np.float32(0.5)) * np.float32(p.scale)).astype(np.float32)


def quantize(x: np.ndarray, scale: float, zero_point: int, qmin: int = INT8_MIN, qmax: int = INT8_MAX) -> np.ndarray:
    """float -> int8 as TFLite's QUANTIZE op (``AffineQuantize``).

    ``q = clamp(round_half_away(x / scale) + zero_point, qmin, qmax)``; x / scale in float32.
    Returns int8 (or int32 when the range does not fit int8).
    """
    if not scale > 0:
        raise ValueError(f"quantization scale must be > 0, got {scale}")
    scaled = np.asarray(x, dtype=np.float32) / np.float32(scale)
    q = np.clip(round_half_away(scaled).astype(np.int64) + int(zero_point), qmin, qmax)
    return q.astype(np.int8 if (qmin >= INT8_MIN and qmax <= INT8_MAX) else np.int32)


def dequantize(q: np.ndarray, scale, zero_point=0) -> np.ndarray:
    """int -> float32: ``real = scale * (q - zero_point)`` (scale/zero point broadcast)."""
    return (np.asarray(scale, np.float32) * (np.asarray(q, np.int64) - np.asarray(zero_point, np.int64))).astype(np.float32)


def quantize_weights_per_channel(w: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel symmetric int8 weights as TFLite's converter makes them.

    ``scale[c] = max|w[c]| / 127`` (computed in float64, stored as float32);
    ``q = clamp(round_half_away(w / scale[c]), -127, 127)``, zero point 0. A channel of zeros
    gets scale 1.0 (any positive scale represents it exactly).

    Args:
        w: float weights, e.g. conv OIHW (O, I, kH, kW) with ``axis=0`` (PyTorch) or HWIO
            with ``axis=3``.
    Returns:
        ``(q, scale)``: int8 array of w's shape and float32 (w.shape[axis],) scales.
    """
    w = np.asarray(w, dtype=np.float32)
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1).astype(np.float64)
    absmax = np.abs(moved).max(axis=1) if moved.size else np.zeros(w.shape[axis])
    scale = np.where(absmax > 0, absmax / WEIGHT_QMAX, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = round_half_away(w.astype(np.float64) / scale.astype(np.float64).reshape(shape))
    return np.clip(q, WEIGHT_QMIN, WEIGHT_QMAX).astype(np.int8), scale


def quantize_bias(b: np.ndarray, input_scale: float, weight_scale: np.ndarray) -> np.ndarray:
    """int32 bias: ``q = round_half_away(b / (input_scale * weight_scale[c]))``, zero point 0.

    The bias scale is ``input_scale * weight_scale[c]`` (float32 product) so the bias adds
    directly to the int32 accumulator ``sum (q_in - zp_in) * q_w``.

    Raises:
        ValueError: a value outside int32 (bias too large for this input/weight scale).
    """
    bias_scale = np.float32(input_scale) * np.asarray(weight_scale, np.float32)
    q = round_half_away(np.asarray(b, np.float64) / bias_scale.astype(np.float64))
    if q.size and (q.min() < INT32_MIN or q.max() > INT32_MAX):
        raise ValueError(f"int32 bias overflow: |bias / scale| reaches {np.abs(q).max():.3g}")
    return q.astype(np.int32)


# --------------------------------------------------------------------------- fixed point


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """A positive real multiplier as ``(quantized_multiplier, shift)`` (TFLite ``QuantizeMultiplier``).

    ``real ~= quantized_multiplier * 2**shift / 2**31`` with ``quantized_multiplier`` in
    [2**30, 2**31 - 1] (a Q31 number in [0.5, 1)), ``shift`` the power of two (positive =
    left). Computed as ``q, shift = frexp(real)``; ``q_fixed = round_half_away(q * 2**31)``;
    if rounding reaches 2**31 it is halved and ``shift`` incremented; a multiplier below
    2**-32 (shift < -31) becomes (0, 0). Zero gives (0, 0).

    Raises:
        ValueError: negative, non-finite, or so large that the shift exceeds 30.
    """
    if not (math.isfinite(real_multiplier) and real_multiplier >= 0):
        raise ValueError(f"real multiplier must be finite and >= 0, got {real_multiplier}")
    if real_multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(real_multiplier)
    q_fixed = int(round_half_away(q * (1 << 31)))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        raise ValueError(f"real multiplier {real_multiplier} too large for a fixed-point shift (> 2**30)")
    return q_fixed, shift


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul``: the high 32 bits of ``2 * a * b``, rounded.

    ``(a * b + nudge) / 2**31`` with C's truncating division, ``nudge = 2**30`` if ``a * b >= 0``
    else ``1 - 2**30``: round to nearest with ties toward +infinity, i.e.
    ``floor((a * b + 2**30) / 2**31)``. The single overflow, ``a == b == -2**31``, saturates
    to ``2**31 - 1``. Inputs int32 (checked); computed in int64 (|a*b| <= 2**62); returns int32.
    """
    a, b = _int32(a, "a"), _int32(b, "b")
    ab = a * b
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    num = ab + nudge
    high = np.sign(num) * (np.abs(num) >> 31)  # C division truncates toward zero
    overflow = (a == b) & (a == INT32_MIN)
    return np.where(overflow, INT32_MAX, high).astype(np.int32)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded to nearest, ties away from zero.

    ``mask = 2**e - 1; remainder = x & mask; threshold = (mask >> 1) + (x < 0)``;
    result ``(x >> e) + (remainder > threshold)`` (arithmetic shift). x int32, 0 <= e <= 31.
    """
    x = _int32(x, "x")
    e = np.asarray(exponent, np.int64)
    if np.any((e < 0) | (e > 31)):
        raise ValueError(f"exponent must be in [0, 31], got {exponent}")
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return ((x >> e) + (remainder > threshold)).astype(np.int32)


def multiply_by_quantized_multiplier(x, quantized_multiplier, shift) -> np.ndarray:
    """TFLite ``MultiplyByQuantizedMultiplier``: ``x * real_multiplier`` in int32 fixed point.

    ``left = max(shift, 0); right = max(-shift, 0)``;
    ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x * 2**left, M), right)``.
    Two roundings (ties to +inf, then ties away from zero), as the default TFLite build
    (``TFLITE_SINGLE_ROUNDING`` off). ``quantized_multiplier`` and ``shift`` broadcast against
    x (per-channel requantization passes arrays shaped to the channel axis).

    Raises:
        ValueError: ``x * 2**left`` overflows int32 (C++ leaves this undefined; TFLite's
            kernels keep it in range by construction).
    """
    x = _int32(x, "x")
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = x << left
    if np.any((shifted < INT32_MIN) | (shifted > INT32_MAX)):
        raise ValueError("x * 2**left_shift overflows int32 in multiply_by_quantized_multiplier")
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, quantized_multiplier), right)


def requantize(acc, quantized_multiplier, shift, output_zero_point: int,
               act_min: int = INT8_MIN, act_max: int = INT8_MAX) -> np.ndarray:
    """int32 accumulator -> int8 output, the epilogue of TFLite's integer conv/FC kernels.

    ``clamp(MultiplyByQuantizedMultiplier(acc, M, shift) + output_zero_point, act_min, act_max)``;
    a fused RELU sets ``act_min = max(-128, output_zero_point)`` (the quantized 0.0).
    """
    out = multiply_by_quantized_multiplier(acc, quantized_multiplier, shift).astype(np.int64) + int(output_zero_point)
    return np.clip(out, act_min, act_max).astype(np.int8)


def _int32(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array, got {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < INT32_MIN or arr.max() > INT32_MAX):
        raise ValueError(f"{name} is outside int32")
    return arr
