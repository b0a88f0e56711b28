"""TFLite int8 arithmetic: hand-derived cases, big-integer references, TensorFlow and LiteRT."""

from __future__ import annotations

import math

import numpy as np
import pytest
from edgesr.quantization.arithmetic import (
    INT32_MAX,
    INT32_MIN,
    dequantize,
    fake_quant,
    multiply_by_quantized_multiplier,
    nudged_qparams,
    quantize,
    quantize_bias,
    quantize_multiplier,
    quantize_weights_per_channel,
    requantize,
    round_half_away,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)

from edgesr.core.data import embedded_image, to_luma


# ------------------------------------------------------------------ big-integer references (Python ints)
def ref_high_mul(a: int, b: int) -> int:
    """round(a * b / 2**31), ties toward +inf; a == b == INT32_MIN saturates."""
    if a == b == INT32_MIN:
        return INT32_MAX
    return (a * b + (1 << 30)) // (1 << 31)


def ref_divide_pot(x: int, e: int) -> int:
    """round(x / 2**e), ties away from zero."""
    q, r = divmod(abs(x), 1 << e)
    q += 2 * r >= (1 << e) if e > 0 else 0
    return q if x >= 0 else -q


def ref_mbqm(x: int, m: int, shift: int) -> int:
    return ref_divide_pot(ref_high_mul(x * (1 << max(shift, 0)), m), max(-shift, 0))


def _edge_and_random_int32(rng, n):
    edges = [0, 1, -1, 2, -2, INT32_MAX, INT32_MIN, INT32_MAX - 1, INT32_MIN + 1, 1 << 30, -(1 << 30), (1 << 15), -(1 << 15) - 1]
    return np.concatenate([np.array(edges, np.int64), rng.integers(INT32_MIN, INT32_MAX, n, endpoint=True),
                           rng.integers(-(1 << 16), 1 << 16, n)])


def test_round_half_away_from_zero():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, -0.49999997, 3.0, -3.2])
    np.testing.assert_array_equal(round_half_away(x), [1, 2, 3, -1, -2, -3, 0, 0, 3, -3])


def test_saturating_rounding_doubling_high_mul_hand_cases():
    cases = {(1 << 30, 1): 1,                        # 2**30 / 2**31 = 0.5 -> 1 (tie up)
             (-(1 << 30), 1): 0,                     # -0.5 -> 0 (tie toward +inf)
             (-3 * (1 << 29), 2): -1,                # -1.5 -> -1
             (INT32_MIN, INT32_MIN): INT32_MAX,      # the one overflow saturates
             (INT32_MAX, INT32_MAX): INT32_MAX - 1,  # (2**31-1)**2 / 2**31 = 2**31 - 2 + 2**-31
             (1 << 30, 1 << 30): 1 << 29}
    for (a, b), want in cases.items():
        assert int(saturating_rounding_doubling_high_mul(a, b)) == want, (a, b)


def test_high_mul_matches_big_integers():
    rng = np.random.default_rng(0)
    a = _edge_and_random_int32(rng, 3000)
    b = np.concatenate([np.array([INT32_MIN, INT32_MAX, 1 << 30, (1 << 31) - 3] * 4, np.int64)[: len(a) % 16 or 1],
                        rng.permutation(a)])[: len(a)]
    got = saturating_rounding_doubling_high_mul(a, b)
    want = np.array([ref_high_mul(int(x), int(y)) for x, y in zip(a, b)], np.int64)
    np.testing.assert_array_equal(got, want)


def test_rounding_divide_by_pot_hand_cases_and_big_integers():
    for (x, e), want in {(5, 1): 3, (-5, 1): -3, (3, 1): 2, (-3, 1): -2, (7, 2): 2, (-6, 2): -2, (-7, 2): -2,
                         (6, 2): 2, (INT32_MIN, 31): -1, (INT32_MAX, 31): 1, (12345, 0): 12345}.items():
        assert int(rounding_divide_by_pot(x, e)) == want, (x, e)
    rng = np.random.default_rng(1)
    x = _edge_and_random_int32(rng, 2000)
    e = rng.integers(0, 32, len(x))
    want = np.array([ref_divide_pot(int(v), int(k)) for v, k in zip(x, e)], np.int64)
    np.testing.assert_array_equal(rounding_divide_by_pot(x, e), want)
    with pytest.raises(ValueError):
        rounding_divide_by_pot(1, 32)


def test_quantize_multiplier_hand_cases():
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(0.25) == (1 << 30, -1)
    assert quantize_multiplier(0.75) == (3 << 29, 0)
    assert quantize_multiplier(1.0 - 2.0**-40) == (1 << 30, 1)  # rounds to 2**31: halved, shift + 1
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(2.0**-40) == (0, 0)  # shift < -31 flushes to zero
    for bad in (-0.1, float("nan"), float("inf"), 2.0**40):
        with pytest.raises(ValueError):
            quantize_multiplier(bad)


def test_quantize_multiplier_is_within_half_a_q31_step():
    rng = np.random.default_rng(2)
    for real in np.exp(rng.uniform(np.log(1e-6), np.log(50.0), 500)):
        m, shift = quantize_multiplier(float(real))
        assert (1 << 30) <= m <= INT32_MAX
        q, e = math.frexp(real)
        assert shift == e or (shift == e + 1 and m == 1 << 30)
        assert abs(m * 2.0**shift / 2**31 - real) <= 2.0**(shift - 32) * (1 + 1e-12)


def test_multiply_by_quantized_multiplier_matches_big_integers():
    rng = np.random.default_rng(3)
    x = rng.integers(-(1 << 24), 1 << 24, 4000)
    x[:4] = [0, 1, -1, (1 << 24) - 1]
    reals = np.exp(rng.uniform(np.log(1e-5), np.log(8.0), len(x)))
    ms, shifts = zip(*(quantize_multiplier(float(r)) for r in reals))
    ms, shifts = np.array(ms), np.array(shifts)
    got = multiply_by_quantized_multiplier(x, ms, shifts)
    want = np.array([ref_mbqm(int(a), int(m), int(s)) for a, m, s in zip(x, ms, shifts)], np.int64)
    np.testing.assert_array_equal(got, want)
    exact = x * ms.astype(np.float64) * 2.0**shifts / 2**31
    assert np.abs(got - exact).max() <= 1.0  # two roundings: at most one unit from the real product
    with pytest.raises(ValueError):  # x * 2**left overflows int32
        multiply_by_quantized_multiplier(1 << 30, 1 << 30, 2)


def test_nudged_qparams_hand_cases():
    p = nudged_qparams(0.0, 1.0)
    assert (p.scale, p.zero_point, p.nudged_min, p.nudged_max) == (np.float32(1 / 255), -128, 0.0, float(np.float32(1 / 255) * 255))
    # [-1, 1]: in exact arithmetic zp_from_min = 127.5, but float32(2/255) = 0.0078431377 > 2/255,
    # so 1 / scale = 127.49999 rounds to 127 (uint8) -> int8 zero point -1, as float32 TF computes it
    p = nudged_qparams(-1.0, 1.0)
    assert p.zero_point == -1 and p.scale == np.float32(2 / 255)
    assert p.nudged_min == float(np.float32(-127) * np.float32(2 / 255))
    p = nudged_qparams(-0.25, 0.75)  # scale 1/255 (float32): zp_from_min = 63.75 -> 64 -> int8 -64
    assert p.zero_point == -64 and p.nudged_min == float(np.float32(-64) * np.float32(1 / 255))
    for bad in ((0.1, 1.0), (-1.0, -0.1), (0.0, 0.0), (-1.0, float("inf"))):
        with pytest.raises(ValueError):
            nudged_qparams(*bad)


def test_zero_is_exact_and_quantize_round_trips():
    rng = np.random.default_rng(4)
    for lo, hi in zip(-rng.uniform(0, 3, 200), rng.uniform(1e-3, 3, 200)):
        p = nudged_qparams(lo, hi)
        assert -128 <= p.zero_point <= 127
        assert fake_quant(np.float32(0.0), lo, hi) == 0.0
        q = quantize(np.float32(0.0), p.scale, p.zero_point)
        assert q == p.zero_point and dequantize(q, p.scale, p.zero_point) == 0.0
    q = quantize(np.array([-10.0, 10.0], np.float32), 0.01, 3)
    np.testing.assert_array_equal(q, [-128, 127])  # clamped to int8


def test_fake_quant_matches_tensorflow_bit_for_bit():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(5)
    y = to_luma(embedded_image("chelsea")).ravel()
    x = np.concatenate([y * 2.2 - 0.7, rng.normal(0, 0.6, 50000), [-1e3, 1e3]]).astype(np.float32)
    ranges = [(0.0, 1.0), (-1.0, 1.0), (-0.3, 1.1), (-0.0123, 0.987), (-2.5, 0.01)]
    ranges += [(float(-a), float(b)) for a, b in zip(rng.uniform(0, 2, 6), rng.uniform(0.01, 2, 6))]
    for lo, hi in ranges:
        want = tf.quantization.fake_quant_with_min_max_args(x, min=lo, max=hi).numpy()
        np.testing.assert_array_equal(fake_quant(x, lo, hi), want, err_msg=f"range [{lo}, {hi}]")
        p = nudged_qparams(lo, hi)  # the clamp ends are the nudged range
        assert float(want.min()) == np.float32(p.nudged_min) and float(want.max()) == np.float32(p.nudged_max)


def test_weights_bias_and_requantization_match_litert_conv():
    """One int8 conv converted by TFLite: our weights, bias, parameters and integer kernel agree."""
    tf = pytest.importorskip("tensorflow")
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    rng = np.random.default_rng(6)
    kernel = (rng.standard_normal((3, 3, 2, 5)) * 0.3).astype(np.float32)  # HWIO
    kernel[..., 2] *= 0.01  # a channel with a small scale
    bias = (rng.standard_normal(5) * 0.1).astype(np.float32)
    y = to_luma(embedded_image("chelsea"))
    data = np.stack([y, 1.0 - y], -1)[None]  # (1, H, W, 2): two real channels
    crops = [data[:, 37 * i : 37 * i + 24, 60 : 60 + 28] for i in range(4)]
    inp = tf.keras.Input((None, None, 2), batch_size=1)
    conv = tf.keras.layers.Conv2D(5, 3, padding="same")
    model = tf.keras.Model(inp, conv(inp))
    conv.set_weights([kernel, bias])
    c = tf.lite.TFLiteConverter.from_keras_model(model)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = lambda: ([cr] for cr in crops)
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    c.inference_input_type = c.inference_output_type = tf.int8
    it = Interpreter(model_content=c.convert(), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    details = it.get_tensor_details()
    w_detail = next(d for d in details if tuple(d["shape"]) == (5, 3, 3, 2))
    b_detail = next(d for d in details if np.dtype(d["dtype"]) == np.int32)
    in_detail, out_detail = it.get_input_details()[0], it.get_output_details()[0]

    q_w, w_scale = quantize_weights_per_channel(kernel, axis=3)
    np.testing.assert_array_equal(it.get_tensor(w_detail["index"]), q_w.transpose(3, 0, 1, 2))  # OHWI
    np.testing.assert_array_equal(w_detail["quantization_parameters"]["scales"], w_scale)
    in_scale, in_zp = in_detail["quantization"]
    np.testing.assert_array_equal(it.get_tensor(b_detail["index"]), quantize_bias(bias, in_scale, w_scale))
    p_in = nudged_qparams(min(float(np.min(crops)), 0.0), float(np.max(crops)))
    assert in_zp == p_in.zero_point and np.float32(in_scale) == np.float32(p_in.scale)

    q_in = quantize(data[:, :40, :45], in_scale, in_zp)
    it.resize_tensor_input(in_detail["index"], q_in.shape)
    it.allocate_tensors()
    it.set_tensor(in_detail["index"], q_in)
    it.invoke()
    want = it.get_tensor(out_detail["index"])
    out_scale, out_zp = out_detail["quantization"]
    # integer reference: int32 accumulator of (q_in - zp_in) * q_w over a zero-padded window, + bias
    xin = np.pad(q_in[0].astype(np.int64) - in_zp, ((1, 1), (1, 1), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(xin, (3, 3), axis=(0, 1))  # (H, W, I, 3, 3)
    acc = np.einsum("hwikl,klio->hwo", win, q_w.astype(np.int64)) + quantize_bias(bias, in_scale, w_scale)
    mult = [quantize_multiplier(float(in_scale) * float(s) / float(out_scale)) for s in w_scale]
    got = requantize(acc.astype(np.int32), np.array([m for m, _ in mult]), np.array([s for _, s in mult]), out_zp)
    np.testing.assert_array_equal(got[None], want)
