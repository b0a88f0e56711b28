"""The 16x8 (int16 activation) kernels of the integer reference against LiteRT, one operator at a
time: every one of the 65,536 int16 input codes for the unary ops (TANH, LOGISTIC, EXP), rows
that cover the softmax's range, and random codes for MUL, SUB (also broadcast) and BATCH_MATMUL,
in the three resolvers (0 differing elements required).

Single-operator models come from TFLite's own 16x8 quantizer with int16 I/O
(:func:`test_integer_ref_models.single_op_int16`), so LiteRT's Prepare sees the scales a
converter writes.
"""

from __future__ import annotations

import numpy as np
import pytest
from edgesr.quantization import integer_kernels as K
from edgesr.quantization.integer_ref import IntegerGraph
from test_integer_ref_models import single_op_int16

from edgesr.converters.runtime import LiteRTModel
from edgesr.core.errors import EdgesrError

FAMILIES = ("reference", "optimized", "xnnpack")
ALL_CODES = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16).reshape(1, 256, 256, 1)


def _litert(path, arrays, kernels):
    """LiteRT's first output for a model with one or more inputs, fed by tensor name."""
    it = LiteRTModel(path, kernels, 1).interpreter
    graph = IntegerGraph(path)
    by_name = {graph.tensors[t].name: a for t, a in zip(graph.inputs, arrays)}
    details = it.get_input_details()
    for d in details:
        it.resize_tensor_input(d["index"], list(by_name[d["name"]].shape))
    it.allocate_tensors()
    for d in details:
        it.set_tensor(d["index"], np.ascontiguousarray(by_name[d["name"]]))
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


def _mismatches(path, arrays, kernels):
    ours = IntegerGraph(path, kernels).run(*arrays)[0]
    theirs = _litert(path, arrays, kernels)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == np.int16
    return int((ours != theirs).sum()), ours


@pytest.mark.parametrize("kind,lo,hi", [("tanh", -3, 2), ("tanh", -0.5, 0.2), ("tanh", -30, 30),
                                        ("sigmoid", -3, 2), ("sigmoid", -20, 9),
                                        ("exp", -3, 2), ("exp", -10, 0.5), ("exp", -1, 4)])
@pytest.mark.parametrize("kernels", FAMILIES)
def test_unary_int16_every_code(kind, lo, hi, kernels):
    """TANH / LOGISTIC (sigmoid_table_uint16 interpolation) and EXP (the 513-entry float32 LUT with
    interpolation), all 65,536 int16 codes, each family: 0 mismatches."""
    path = single_op_int16(kind, lo, hi)
    n, ours = _mismatches(path, [ALL_CODES], kernels)
    assert n == 0
    assert len(np.unique(ours)) > 5000  # the interpolation resolves far more than 256 levels


def test_int16_tanh_at_a_power_of_two_scale_is_refused_where_litert_runs_gemmlowp():
    """An input range of +-8 gives the scale 8/32767, within CheckedLog2's 1e-3 of 2^-12: LiteRT's
    optimized resolvers then run optimized_ops::Tanh (gemmlowp), which is not emulated, so the
    reference refuses those families in one line and still matches BUILTIN_REF."""
    path = single_op_int16("tanh", -8, 8)
    assert K.sigmoid_tanh_int16_params(IntegerGraph(path).tensors[IntegerGraph(path).inputs[0]].s, True)[0] == 0
    assert _mismatches(path, [ALL_CODES], "reference")[0] == 0
    for kernels in ("optimized", "xnnpack"):
        with pytest.raises(EdgesrError, match="power-of-two input scale"):
            IntegerGraph(path, kernels).run(ALL_CODES)


def _softmax_rows(channels: int, seed: int = 0) -> np.ndarray:
    """int16 rows for the softmax axis: one code at every distance from the row maximum (32767
    against a row of v, v over a grid of all codes), saturating rows, uniform rows, random rows and
    narrow spreads (sums near one exp term per channel)."""
    rng = np.random.default_rng(seed)
    rows = [np.r_[32767, np.full(channels - 1, v)] for v in range(-32768, 32768, 97)]
    rows += [np.full(channels, -32768), np.full(channels, 32767), np.r_[-32767, np.full(channels - 1, -32768)]]
    rows += list(rng.integers(-32768, 32768, (3000, channels)))
    rows += list(rng.integers(30000, 32768, (1000, channels)))
    rows = rng.permuted(np.array(rows, np.int64), axis=1)
    return rows.astype(np.int16)[None, None]


@pytest.mark.parametrize("lo,hi,channels", [(-3, 2, 5), (-30, 30, 13), (-1, 1, 49), (-200, 100, 16)])
@pytest.mark.parametrize("kernels", FAMILIES)
def test_softmax_int16(lo, hi, channels, kernels):
    """SOFTMAX int16 -> int16 (reference_ops::SoftmaxInt16 in every family): 0 mismatches; wide
    input ranges reach both ends of the output (probability ~1, and the floor the exp table sets:
    its smallest entry, exp(-10) in Q0.15, is 1)."""
    path = single_op_int16("softmax", lo, hi, channels)
    n, ours = _mismatches(path, [_softmax_rows(channels)], kernels)
    assert n == 0
    if hi - lo >= 30:
        assert ours.max() >= 32700 and ours.min() <= 1


def test_softmax_int16_tables_are_built_in_double():
    """The test can fail: softmax tables built in float32 (as TFLite Micro builds them) instead of
    LiteRT's float64 differ, and differ from LiteRT on these rows; the float64 ones do not."""
    path = single_op_int16("softmax", -30, 30, 13)
    rows = _softmax_rows(13)
    exp32 = K.lut_populate_int16(lambda v: np.exp(v.astype(np.float64)).astype(np.float32), 10 / 65535, 32767,
                                 2 / 65535, 0, np.float32)
    recip32 = K.lut_populate_int16(lambda v: np.float32(1) / (np.float32(1) + v), 1 / 65535, -32768, 2 / 65535, 0,
                                   np.float32)
    exp64, recip64 = K.softmax_int16_luts()
    assert (recip32 != recip64).any()
    original = K.softmax_int16_luts
    try:
        K.softmax_int16_luts = lambda: (exp32, recip32)
        assert _mismatches(path, [rows], "reference")[0] > 0
    finally:
        K.softmax_int16_luts = original
    assert _mismatches(path, [rows], "reference")[0] == 0


@pytest.mark.parametrize("kind,broadcast", [("mul", False), ("mul", True), ("sub", False), ("sub", True)])
@pytest.mark.parametrize("kernels", FAMILIES)
def test_mul_sub_int16(kind, broadcast, kernels):
    """MUL (reference_integer_ops Mul on int16: int32 product, double-rounding requantization)
    and SUB (the general int16 path: left shift 15), elementwise and with a [1, 1, 1, C] second
    operand, on random codes over the whole int16 range: 0 mismatches."""
    path = single_op_int16(kind, -3, 2, 4, broadcast)
    rng = np.random.default_rng(1)
    a = rng.integers(-32768, 32768, (1, 128, 128, 4)).astype(np.int16)
    b = rng.integers(-32768, 32768, (1, 1, 1, 4) if broadcast else a.shape).astype(np.int16)
    n, ours = _mismatches(path, [a, b], kernels)
    assert n == 0
    assert ours.std() > 1000


def test_mul_int16_rounding_is_visible():
    """The test can fail: on the products where single rounding (TFLITE_SINGLE_ROUNDING builds:
    ties half up) and the default double rounding (ties away from zero) disagree, found among 4M
    random pairs, LiteRT takes the double-rounding value on every one."""
    path = single_op_int16("mul", -3, 2, 4)
    rng = np.random.default_rng(1)
    a, b = (rng.integers(-32768, 32768, (1, 1024, 1024, 4)).astype(np.int16) for _ in range(2))
    double = IntegerGraph(path, "reference").run(a, b)[0]
    single = IntegerGraph(path, "reference", rounding="single").run(a, b)[0]
    differ = np.nonzero((double != single).ravel())[0]
    assert len(differ) >= 10
    pick = lambda v: v.ravel()[differ].reshape(1, 1, -1, 1).repeat(4, axis=3)  # noqa: E731
    theirs = _litert(path, [pick(a), pick(b)], "reference")
    assert (theirs[..., 0].ravel() == double.ravel()[differ]).all()
    assert (theirs[..., 0].ravel() != single.ravel()[differ]).all()


@pytest.mark.parametrize("kernels", FAMILIES)
def test_batch_matmul_int16(kernels):
    """BATCH_MATMUL int16 x int16 (batch_matmul.cc EvalInt16: int64 accumulators, the int64
    requantization with a 16-bit multiplier) on random codes: 0 mismatches; requantizing the same
    accumulators with the int32 double-rounding formula would not match."""
    path = single_op_int16("matmul", -3, 2)
    rng = np.random.default_rng(2)
    a = rng.integers(-32768, 32768, (256, 6, 8)).astype(np.int16)
    b = rng.integers(-32768, 32768, (256, 8, 5)).astype(np.int16)
    n, ours = _mismatches(path, [a, b], kernels)
    assert n == 0 and ours.std() > 1000
    g = IntegerGraph(path)
    ta, tb, to = (g.tensors[t] for t in (*g.inputs, g.outputs[0]))
    acc = np.matmul(a.astype(np.int64), b.astype(np.int64))
    m, sh = K.quantize_multiplier(float(ta.s) * float(tb.s) / float(to.s))
    fits = np.abs(acc) < 2**31  # where the int32 formula is defined at all
    int32_formula = np.clip(K.multiply_by_quantized_multiplier(acc[fits], m, sh), -32768, 32767)
    assert fits.sum() > 1000 and (int32_formula != ours[fits]).any()


def test_int16_sum_is_refused():
    """SUM has no int16 emulation: a 16x8 graph with one is refused with the op's name."""
    with pytest.raises(EdgesrError, match="no int16 .*SUM"):
        IntegerGraph(single_op_int16("sum", -3, 2, 4))


def test_lut_lookup_interpolates_between_entries():
    """lut_lookup_with_interpolation by hand: code 0 reads entry 256 exactly; code 64 is half-way
    to entry 257 (slope 100: +50); code -1 reads entry 255 plus 127/128 of the slope, rounded."""
    table = np.arange(513, dtype=np.int64) * 100 - 25600
    assert K.lut_lookup_int16(np.array([0, 64, -1, 32767, -32768]), table).tolist() == [0, 50, -1, 25599, -25600]
