"""The fixed-point and LUT kernels of the integer reference against LiteRT, one operator at a
time, over every int8 input code and several input scales (0 differing elements required).

Single-operator Keras models (:func:`test_integer_ref_models.single_op_int8`) calibrated on
different ranges give different input scales and zero points; each is run on LiteRT with the
three resolvers and compared with :class:`edgesr.quantization.integer_ref.IntegerGraph` of the same
kernel family.
"""

from __future__ import annotations

import numpy as np
import pytest
from edgesr.quantization import integer_kernels as K
from edgesr.quantization.integer_ref import IntegerGraph
from test_integer_ref_models import single_op_int8

from edgesr.app.integer_litert import run_litert

FAMILIES = ("reference", "optimized", "xnnpack")
ALL_CODES = np.arange(-128, 128, dtype=np.int8)


def _mismatches(path, q, kernels):
    ours = IntegerGraph(path, kernels).run(q)[0]
    theirs = run_litert(path, q, kernels)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    return int((ours != theirs).sum()), ours, theirs


def _softmax_rows(channels: int, seed: int = 0) -> np.ndarray:
    """Rows over the softmax axis that put every int8 code at every distance from its row's
    maximum, plus saturating edges (one 127 among -128s: probability ~1; uniform rows; rows
    at -128) and random rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for v in range(-128, 128):
        rows.append(np.r_[127, v, np.full(channels - 2, v)])  # diff v - 127 for every code
        rows.append(np.r_[v, rng.integers(-128, v + 1, channels - 1)])  # v is the maximum
    rows += [np.r_[127, np.full(channels - 1, -128)], np.full(channels, -128), np.full(channels, 127),
             np.r_[-127, np.full(channels - 1, -128)], np.r_[np.full(channels - 1, 127), -128]]
    rows += list(rng.integers(-128, 128, (400, channels)))
    rows += list(np.clip(rng.integers(90, 128, (200, channels)), -128, 127))  # narrow spreads: sums near 1
    rows = np.array(rows, np.int64)
    rows = rng.permuted(rows, axis=1)  # the maximum anywhere in the row
    return rows.astype(np.int8)[None, None]  # (1, 1, R, C)


@pytest.mark.parametrize("kind,lo,hi", [("tanh", -1, 1), ("tanh", -8, 8), ("tanh", -6, 2), ("tanh", -0.3, 5),
                                        ("sigmoid", -1, 1), ("sigmoid", -16, 16), ("sigmoid", -2, 9), ("sigmoid", -40, 3)])
@pytest.mark.parametrize("kernels", FAMILIES)
def test_tanh_logistic_every_code(kind, lo, hi, kernels):
    """TANH / LOGISTIC int8, all 256 input codes, each family: 0 mismatches. Every family
    uses the float LUT (activations.cc LUTPopulate, std::round) including BUILTIN_REF."""
    path = single_op_int8(kind, lo, hi)
    q = ALL_CODES.reshape(1, 16, 16, 1)
    n, ours, _ = _mismatches(path, q, kernels)
    assert n == 0
    assert len(np.unique(ours)) > 40
    if min(-lo, hi) >= 8:  # wide input ranges on both sides reach the saturated ends of the output
        assert ours.max() == 127 and ours.min() == -128


@pytest.mark.parametrize("lo,hi", [(-1, 1), (-8, 8), (-64, 64), (-2, 30), (-8000, 8000)])
@pytest.mark.parametrize("kernels", FAMILIES)
def test_softmax_over_channels_every_code(lo, hi, kernels):
    """SOFTMAX int8 over 13 channels, each family: 0 mismatches. The scales cover a tiny
    multiplier, diff_min cutting the row (|diff| > 31 ignored at scale 0.5), and the
    ``2^31 - 1`` cap of PreprocessSoftmaxScaling (scale 62.7)."""
    path = single_op_int8("softmax", lo, hi, 13)
    q = _softmax_rows(13)
    n, ours, _theirs = _mismatches(path, q, kernels)
    assert n == 0, (n, q.size)
    if hi - lo >= 32:  # wide ranges reach both saturating edges (probability ~1 and ~0)
        assert ours.max() == 127 and ours.min() == -128


def test_softmax_reference_differs_from_the_lut():
    """The test can fail: LiteRT's BUILTIN_REF (gemmlowp) and optimized (float LUT) softmax
    disagree on these rows, and each emulation matches only its own resolver."""
    path = single_op_int8("softmax", -8, 8, 13)
    q = np.random.default_rng(0).integers(-128, 128, (1, 1, 20000, 13)).astype(np.int8)  # rare: ~1 row in 4000
    ref, opt = run_litert(path, q, "reference"), run_litert(path, q, "optimized")
    assert (ref != opt).sum() > 0 and np.abs(ref.astype(np.int64) - opt).max() == 1
    ours_ref, ours_lut = IntegerGraph(path, "reference").run(q)[0], IntegerGraph(path, "optimized").run(q)[0]
    assert (ours_ref != ref).sum() == 0 and (ours_lut != opt).sum() == 0
    assert (ours_lut != ref).sum() > 0 and (ours_ref != opt).sum() > 0


def test_softmax_reference_params():
    """PreprocessSoftmaxScaling + CalculateInputRadius: scale 0.5 -> real 2^25 = 2^30 * 2^(26-31),
    diff_min = -floor(31 * 2^26 / 2^26) = -31; a huge scale is capped at 2^31 - 1."""
    assert K.softmax_reference_params(0.5, 1.0) == (1 << 30, 26, -31)
    assert K.softmax_reference_params(1000.0, 1.0) == (2**31 - 1, 31, 0)  # capped: only the maxima count
    with pytest.raises(ValueError, match="exceed 1"):
        K.softmax_reference_params(1e-9, 1.0)


@pytest.mark.parametrize("lo,hi,channels", [(-4, 4, 8), (-0.5, 7, 5), (-30, 2, 16)])
@pytest.mark.parametrize("kernels", FAMILIES)
def test_sum_over_channels(lo, hi, channels, kernels):
    """SUM int8 with rescaling over every code (each code fills a row, then random rows): 0
    mismatches in each family; BUILTIN_REF through its uint8 instantiation."""
    path = single_op_int8("sum", lo, hi, channels)
    rng = np.random.default_rng(1)
    rows = np.concatenate([np.repeat(ALL_CODES[:, None], channels, 1), rng.integers(-128, 128, (1500, channels))])
    q = rows.astype(np.int8)[None, None]
    n, _ours, theirs = _mismatches(path, q, kernels)
    assert n == 0
    if kernels == "reference":  # the documented int8 formula is far from what BUILTIN_REF computes
        g = IntegerGraph(path, "optimized")
        assert (g.run(q)[0] != theirs).mean() > 0.5


def test_sum_builtin_ref_reads_int8_as_uint8():
    """sum_int8_builtin_ref on one row: -1 reads 255, the result clamps to uint8 and is stored as a byte."""
    row = np.array([[20, 20, 20, 20, 20, 20, -1, -1]], np.int8)
    # uint8 sum 630, shifted 638; M = 1153361080 * 2^-1: the high multiply gives 343 (171.5 * 2),
    # RoundingDivideByPOT rounds the tie away -> 172 (double rounding; one rounding gives 171);
    # + zo -1 = 171 -> byte -85, as LiteRT's BUILTIN_REF writes it
    got = K.sum_int8_builtin_ref(row, -1, 0.0313725508749485, 0.11682731658220291, -1, (1,), False)
    assert got.tolist() == [-85]
    got = K.sum_int8_builtin_ref(np.full((1, 8), -1, np.int8), -1, 0.03137255, 0.1168273, -1, (1,), False)
    assert got.tolist() == [-1]  # 255 * 8 overflows uint8: clamps to 255, read back as -1


def test_gemmlowp_exp_and_reciprocal_track_the_real_functions():
    """exp_on_negative_values (Q5.26 in) and one_over_one_plus_x_for_x_in_0_1 (Q0.31) against
    float64, and their exact special values."""
    a = -np.arange(0, 1 << 31, 1 << 19, dtype=np.int64)  # [-32, 0] in Q5.26
    got = K.exp_on_negative_values(a, 5) / 2.0**31
    assert np.abs(got - np.exp(a / 2.0**26)).max() < 2e-8 * 2**5
    assert int(K.exp_on_negative_values(np.array([0]), 5)[0]) == 2**31 - 1
    x = np.arange(0, 1 << 31, 1 << 15, dtype=np.int64)
    got = K.one_over_one_plus_x_for_x_in_0_1(x) / 2.0**31
    assert np.abs(got - 1 / (1 + x / 2.0**31)).max() < 1e-8
    recip, bits = K.get_reciprocal(np.array([3 << 19]), 12)  # 3.0 in Q12.19
    assert int(bits[0]) == 1 and abs(int(recip[0]) / 2.0**31 * 2.0**-1 - 1 / 3) < 1e-8
    assert K.count_leading_zeros_u32(np.array([0, 1, 2**31 - 1, -1])).tolist() == [32, 31, 1, 0]
