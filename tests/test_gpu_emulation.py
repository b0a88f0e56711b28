"""The TFLite GPU delegate emulation (edgesr.converters.gpu_emulation) on edgesr's own exports and
real photographs: with F32 arithmetic it is LiteRT's float result (ground truth: LiteRT); F16
moves outputs by an fp16-sized amount; an int8 graph runs dequantized with fake quantization, so
in F32 it lands on the integer graph's output codes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import crop
from edgesr.converters import export_tflite
from edgesr.converters.gpu_emulation import (
    HALF_MIN_NORMAL_SCALE,
    GpuDelegateGraph,
    GpuDelegateUpscaler,
    to_half,
)
from edgesr.converters.runtime import TFLiteUpscaler
from edgesr.quantization.arithmetic import dequantize, quantize
from edgesr.quantization.tflite_model import Tensor
from test_converters_common import tiny_sesr
from test_integer_ref_models import zoo_int8

from edgesr.app.tolerances import LEVEL
from edgesr.core.data import embedded_image
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import model_input

# odd-sized crops of three scikit-image photographs (colour, gray, colour)
PHOTOS = [crop(embedded_image("chelsea"), 71, 93, 60, 150), crop(embedded_image("camera"), 65, 77, 120, 200),
          crop(embedded_image("coffee"), 40, 48, 100, 200)]


def _inputs(contract):
    return [model_input(p, contract) for p in PHOTOS]


@pytest.fixture(scope="module")
def float_exports(tmp_path_factory):
    """SESR-M3 (PReLU) fp32 and fp16 .tflite, and fp32 exports of zoo models that bring the other
    ops (SOFTMAX, SUM, MUL, STRIDED_SLICE, TANH, EXP, SUB, CONCATENATION, REDUCE_MAX, RELU)."""
    import torch
    from edgesr.converters.export import deploy_module

    from edgesr.core.models import create

    d = tmp_path_factory.mktemp("gpu_emu")
    m = tiny_sesr("sesr_m3")
    out = {"sesr_m3_fp32": (export_tflite(m, d / "s_fp32.tflite", "fp32")["path"], m),
           "sesr_m3_fp16": (export_tflite(m, d / "s_fp16.tflite", "fp16")["path"], m)}
    for name in ("esr_cnn", "esr_max", "pkn", "splitsr_s"):
        torch.manual_seed(0)
        mod = deploy_module(create(name, scale=2))
        out[name] = (export_tflite(mod, d / f"{name}_fp32.tflite", "fp32")["path"], mod)
    return out


@pytest.mark.parametrize("key", ["sesr_m3_fp32", "sesr_m3_fp16", "esr_cnn", "esr_max", "pkn", "splitsr_s"])
def test_fp32_arithmetic_is_litert_on_float_exports(float_exports, key):
    """F32 on a float graph (fp16 weights included: the delegate reads them as floats) is LiteRT's
    XNNPACK result up to summation order: 1e-6 on [0, 1] outputs."""
    path, module = float_exports[key]
    emu, lite = GpuDelegateUpscaler(path, "fp32"), TFLiteUpscaler(path, module.contract, num_threads=1)
    for x in _inputs(module.contract):
        y, ref = emu(x), lite(x)
        assert y.shape == ref.shape and y.dtype == np.float32
        assert np.abs(y - ref).max() <= 1e-6


def test_fp16_arithmetic_differs_by_an_fp16_amount(float_exports):
    """F16 (half storage and half accumulation) against F32 on real photos: most outputs move, by
    about an fp16 ulp (2^-11 in [0.5, 1)), never by an 8-bit level; F32_F16 (half storage, float
    accumulators) moves them less on average than half accumulation does."""
    path, module = float_exports["sesr_m3_fp32"]
    runs = {p: GpuDelegateUpscaler(path, p) for p in ("fp32", "fp32_fp16", "fp16")}
    d16, dmix = [], []
    for x in _inputs(module.contract):
        y32 = runs["fp32"](x)
        y16 = runs["fp16"](x)
        assert np.array_equal(y16, to_half(y16))  # the output is stored in half
        d16.append(np.abs(y16 - y32).ravel())
        dmix.append(np.abs(runs["fp32_fp16"](x) - y32).ravel())
    d16, dmix = np.concatenate(d16), np.concatenate(dmix)
    ulp = 2.0**-11
    assert (d16 > 0).mean() > 0.5
    assert ulp / 8 < d16.mean() < 2 * ulp and d16.max() < LEVEL
    assert dmix.mean() < d16.mean()


@pytest.fixture(scope="module")
def sesr_int8():
    return zoo_int8("sesr_m3")


def test_int8_graph_in_fp32_lands_on_the_integer_output_codes(sesr_int8):
    """The dequantized graph with QUANTIZE_AND_DEQUANTIZE after every op output, in F32, gives the
    int8 output codes of LiteRT's XNNPACK run except where a value falls within float rounding of
    a rounding boundary: at most one code apart, on under 1% of the pixels."""
    path, module = sesr_int8
    emu, lite = GpuDelegateUpscaler(path, "fp32"), TFLiteUpscaler(path, module.contract, num_threads=1)
    t = emu.input_tensor
    diffs = []
    for x in _inputs(module.contract):
        q = quantize(x.transpose(0, 2, 3, 1), t.s, t.z).astype(np.int8)
        got = emu.run_quantized(q)
        assert got.dtype == np.int8
        diffs.append(np.abs(got.astype(int) - lite.run_quantized(q).astype(int)).ravel())
    d = np.concatenate(diffs)
    assert d.max() <= 1 and (d > 0).mean() < 0.01


def test_int8_graph_in_fp16_differs_by_output_steps(sesr_int8):
    """In F16 the fake quantization itself runs in half (its (x - min) / scale has 11 bits), so
    codes move: by whole output steps, a few at most."""
    path, module = sesr_int8
    emu16, lite = GpuDelegateUpscaler(path, "fp16"), TFLiteUpscaler(path, module.contract, num_threads=1)
    step = emu16.output_tensor.s
    d = np.concatenate([np.abs(emu16(x) - lite(x)).ravel() for x in _inputs(module.contract)])
    codes = d / step
    assert np.allclose(codes, np.round(codes), atol=1e-3)  # whole steps: both outputs are int8 codes
    assert 0 < codes.max() <= 4 and (codes > 0).mean() < 0.5


def test_fake_quant_follows_the_delegate_formula():
    """QUANTIZE_AND_DEQUANTIZE: in F32 equal to TFLite's quantize -> dequantize away from ties and
    clamps to [min, max]; in half precisions a scale below 2^-14 is raised to 0.000062."""
    t = Tensor("t", (1,), np.int8, np.array([0.02], np.float32), np.array([-5]), 0)
    x = np.linspace(-3.0, 3.0, 2001, dtype=np.float32)
    g32 = GpuDelegateGraph.__new__(GpuDelegateGraph)
    g32.half, g32.store = False, lambda v: np.asarray(v, np.float64).astype(np.float32)
    want = dequantize(quantize(x, 0.02, -5), 0.02, -5)
    got = g32.fake_quant(x, t)
    off_tie = np.abs(np.abs(x / 0.02 - np.floor(x / 0.02)) - 0.5) > 1e-3  # (x - min) / s rounds ties up, x / s away from 0
    assert off_tie.mean() > 0.9 and np.abs(got - want)[off_tie].max() < 1e-6
    assert got.min() == pytest.approx(0.02 * (-128 + 5)) and got.max() == pytest.approx(0.02 * (127 + 5))
    g16 = GpuDelegateGraph.__new__(GpuDelegateGraph)
    g16.half, g16.store = True, to_half
    tiny = Tensor("t", (1,), np.int8, np.array([1e-6], np.float32), np.array([0]), 0)
    y = g16.fake_quant(np.array([0.0, 3e-5, 1e-3], np.float32), tiny)
    steps = (y.astype(np.float64) - to_half(1e-6 * -128)) / to_half(HALF_MIN_NORMAL_SCALE)  # the grid min + k * scale
    assert np.allclose(steps, np.round(steps), atol=1e-2) and np.round(steps).tolist() == [2, 3, 4]  # 1e-3 clamps at max = 127e-6


def test_bad_precision_and_missing_file(float_exports, tmp_path):
    path, _ = float_exports["sesr_m3_fp32"]
    with pytest.raises(EdgesrError, match="unknown GPU precision 'fp8'"):
        GpuDelegateGraph(path, "fp8")
    with pytest.raises(EdgesrError, match="no such TFLite model"):
        GpuDelegateGraph(tmp_path / "nope.tflite")
    with pytest.raises(EdgesrError, match="needs float32 rank 4"):
        GpuDelegateGraph(path).run(np.zeros((1, 4, 4, 1), np.int8))
