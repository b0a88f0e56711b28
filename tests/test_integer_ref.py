"""The NumPy integer reference reproduces LiteRT bit for bit on real photos (int8 graphs)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import crop
from edgesr.quantization import integer_kernels as K
from edgesr.quantization.integer_ref import (
    IntegerGraph,
    IntegerReference,
    quantize_input,
)
from test_integer_ref_models import int8_model

from edgesr.app.integer_litert import compare_with_litert, run_litert
from edgesr.core.data import embedded_image, to_luma
from edgesr.core.errors import EdgesrError


def _inputs(path):
    """int8 NHWC crops of three real photographs at odd sizes (catches layout/padding bugs)."""
    t = IntegerGraph(path).tensors[IntegerGraph(path).inputs[0]]
    crops = [crop(embedded_image("chelsea"), 61, 87, 40, 150), crop(embedded_image("camera"), 77, 53, 200, 210),
             crop(embedded_image("coffee"), 45, 99, 100, 300)]
    return [quantize_input(to_luma(c)[None, :, :, None], t) for c in crops]


def test_ruy_x86_rounding_differs_from_gemmlowp_on_a_negative_tie():
    # acc * M * 2^shift = -3.5002...: the first stage rounds to -3584 = -3.5 * 2^10 exactly, a tie.
    acc, m, shift = np.int64(-6246), 1232310722, -10
    assert int(K.multiply_by_quantized_multiplier(np.array([acc]), m, shift)[0]) == -4  # ties away from 0
    assert int(K.multiply_by_quantized_multiplier_ruy_x86(acc, m, shift)) == -3  # ties up
    assert int(K.requantize_fp32(acc, np.float32(m * 2.0**shift / 2**31), 0, -128, 127)) == -4


def test_quantize_multiplier_edges():
    assert K.quantize_multiplier(1.0) == (1 << 30, 1)
    assert K.quantize_multiplier(0.0) == (0, 0)
    assert K.quantize_multiplier(2.0**-40) == (0, 0)


def test_activation_ranges_follow_calculate_activation_range_quantized():
    assert K.activation_range_int8("RELU", 0.01, -11) == (-11, 127)
    assert K.activation_range_int8("RELU6", 0.05, -128) == (-128, -8)  # round(6 / 0.05) = 120
    assert K.activation_range_int8("NONE", 0.05, 3) == (-128, 127)


@pytest.mark.parametrize("kernels", ["reference", "optimized", "xnnpack"])
def test_bit_exact_with_litert_on_real_photos(kernels):
    path = int8_model("sesr_like")
    res = compare_with_litert(path, _inputs(path), kernels=kernels)
    assert res["elements"] > 3 * 45 * 53 * 4
    assert res["mismatched_elements"] == 0, res
    assert res["max_lsb_diff"] == 0


def test_kernel_families_are_distinguishable():
    """The comparison can fail: LiteRT's reference and optimized kernels differ on this graph
    (ruy's x86 rounding), and the reference-kernel emulation does not match the optimized run."""
    path = int8_model("sesr_like")
    q = _inputs(path)[0]
    ours = IntegerGraph(path, "reference").run(q)[0]
    assert (ours != run_litert(path, q, "optimized")).any()
    res = compare_with_litert(path, [q], kernels=("reference", "optimized"))
    diff = res["litert_reference_vs_optimized"]
    assert diff["mismatched_elements"] > 0 and 1 <= diff["max_lsb_diff"] <= 3


def test_upscaler_matches_dequantized_litert():
    path = int8_model("sesr_like")
    up = IntegerReference(path, kernels="xnnpack")
    assert up.contract.scale == 2 and up.contract.channels == 1
    y = to_luma(crop(embedded_image("astronaut"), 33, 41, 100, 100))
    out = up(y[None, None])
    assert out.shape == (1, 1, 66, 82) and out.dtype == np.float32
    q = quantize_input(y[None, :, :, None], up.input_tensor)
    ref = run_litert(path, q, "xnnpack").astype(np.float32)
    t = up.output_tensor
    np.testing.assert_array_equal(out[0, 0], (t.s * (ref[0, :, :, 0].astype(np.int64) - t.z)).astype(np.float32))


def test_bad_inputs(tmp_path):
    with pytest.raises(EdgesrError, match="no such TFLite model"):
        IntegerGraph(tmp_path / "missing.tflite")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(EdgesrError, match="junk.tflite"):
        IntegerGraph(junk)
    g = IntegerGraph(int8_model("sesr_like"))
    with pytest.raises(EdgesrError, match="needs int8"):
        g.run(np.zeros((1, 8, 8, 1), np.float32))
    with pytest.raises(EdgesrError, match="unknown kernels"):
        IntegerGraph(int8_model("sesr_like"), kernels="gpu")


ZOO = ["sesr_m3", "sesr_m5_relu", "esr_max_s2_k7_c13", "esr_cnn_s2_c8_d3_s9", "esr_tm_s2_k7_c16", "esr_tr_s2_k7_c13",
       "pkn", "pkn_fixed", "splitsr_s"]


@pytest.mark.parametrize("name", ZOO)
def test_zoo_int8_exports_bit_exact(name):
    """edgesr's own int8 exports (edgesr.converters.export) on two real photos (48 x 64 crops): every
    kernel family, BUILTIN_REF included (gemmlowp SOFTMAX, LUT TANH, the uint8 SUM), 0 mismatches."""
    from test_integer_ref_models import zoo_int8

    from edgesr.core.evaluate import model_input

    path, module = zoo_int8(name)
    t = IntegerGraph(path).tensors[IntegerGraph(path).inputs[0]]
    crops = [crop(embedded_image("coffee"), 48, 64, 100, 200), crop(embedded_image("astronaut"), 48, 64, 180, 260)]
    inputs = [quantize_input(model_input(c, module.contract).transpose(0, 2, 3, 1), t) for c in crops]
    res = compare_with_litert(path, inputs, kernels=("reference", "optimized", "xnnpack"))
    assert res["elements"] == 2 * 96 * 128 * module.contract.channels  # x2 outputs of both crops
    for k, r in res["per_kernels"].items():
        assert r["mismatched_elements"] == 0, (k, r)


def test_zoo_sum_reference_is_litert_builtin_ref_not_the_documented_formula(tmp_path):
    """The reference family reproduces what BUILTIN_REF computes for int8 SUM (the uint8
    instantiation of reference_ops::QuantizedMeanOrSum), which is far from the documented
    float epilogue that the optimized kernel computes: the comparison can fail."""

    from edgesr.core.evaluate import model_input

    from edgesr.converters.export import export_tflite
    from edgesr.core.models import create
    from edgesr.quantization import quantize_module

    # eSR-TM's training form: its head is MUL then SUM (the deploy forms of the zoo compute their
    # weighted sums as BATCH_MATMUL, edgesr.core.ops.channel_dot, and hold no int8 SUM any more)
    module = create("esr_tm_s2_k7_c16", scale=2).eval()
    path = tmp_path / "esr_tm_sum.tflite"
    export_tflite(quantize_module(module, None, count=16), path, "int8")
    assert "SUM" in {op.name for op in IntegerGraph(path).ops}
    t = IntegerGraph(path).tensors[IntegerGraph(path).inputs[0]]
    q = quantize_input(model_input(crop(embedded_image("coffee"), 48, 64, 100, 200), module.contract).transpose(0, 2, 3, 1), t)
    res = compare_with_litert(path, [q], kernels=("reference", "optimized"))
    assert res["mismatched_elements"] == 0, res
    # measured: most output elements differ between LiteRT's two resolvers, by up to ~160 LSB;
    # only the SUM can do that (their CONV_2D roundings differ by <= 3 LSB, their softmaxes by <= 1)
    assert res["litert_reference_vs_optimized"]["mismatched_elements"] > res["elements"] // 2
    assert res["litert_reference_vs_optimized"]["max_lsb_diff"] > 100


def test_validate_integer_reference_option(tmp_path):
    """`edgesr validate --integer-reference` adds the bit-exactness numbers to the validation JSON."""
    from test_integer_ref_models import zoo_int8

    from edgesr.cli import main
    from edgesr.core.checkpoint import save_checkpoint

    path, module = zoo_int8("sesr_m3")
    ckpt = save_checkpoint(tmp_path / "deploy.pt", module, form="deploy")
    from edgesr.core.imageio import write_image

    write_image(tmp_path / "imgs" / "chelsea.png", crop(embedded_image("chelsea"), 120, 150, 50, 150))
    out = tmp_path / "v.json"
    main(["validate", str(path), "--reference", str(ckpt), "--sets", str(tmp_path / "imgs"), "--integer-reference",
          "--int8-tolerance-db", "100", "--json", str(out)])
    import json

    ir = json.loads(out.read_text())["integer_reference"]
    assert ir["mismatched_elements"] == 0 and ir["max_lsb_diff"] == 0
    assert ir["elements"] == 120 * 150  # the x2 output of the 60 x 75 LR
    assert set(ir["per_kernels"]) == {"reference", "optimized", "xnnpack"}


def test_validate_reference_integer_needs_no_checkpoint(tmp_path, monkeypatch, capsys):
    """`edgesr validate ART --reference integer`: bit-exactness alone, exit 1 on a mismatch, exit 2 on a float model."""
    import json

    from test_integer_ref_models import zoo_int8

    from edgesr.cli import main
    from edgesr.core.imageio import write_image

    path, _ = zoo_int8("sesr_m3")
    write_image(tmp_path / "imgs" / "coffee.png", crop(embedded_image("coffee"), 96, 128, 100, 200))
    out = tmp_path / "v.json"
    assert main(["validate", str(path), "--reference", "integer", "--sets", str(tmp_path / "imgs"), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["passed"] and res["integer_reference"]["mismatched_elements"] == 0
    assert res["integer_reference"]["elements"] == 96 * 128 and res["integer_reference"]["max_lsb_diff"] == 0

    import edgesr.commands.validate as command

    real = command.validate_integer
    monkeypatch.setattr(command, "validate_integer", lambda *a, **k: real(*a, **k) | {"mismatched_elements": 3, "max_lsb_diff": 1})
    assert main(["validate", str(path), "--reference", "integer", "--sets", str(tmp_path / "imgs")]) == 1
    assert "differ on 3 elements (max 1 LSB)" in capsys.readouterr().err

    fp32 = tmp_path / "m.tflite"
    from edgesr.converters import tflite

    _, module = zoo_int8("sesr_m3")
    fp32.write_bytes(tflite.convert(module, 1, "fp32"))
    assert main(["validate", str(fp32), "--reference", "integer", "--sets", str(tmp_path / "imgs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "int8/uint8-input" in err[0] and "Traceback" not in err[0]


@pytest.mark.parametrize("name", ["esr_tr_s2_k7_c13", "pkn"])
def test_fixed_size_dot_product_bit_exact(name, tmp_path):
    """A fixed-size int8 export lowers the per-pixel dot product (edgesr.core.ops.channel_dot) at
    rank 4 (RESHAPE, BATCH_MATMUL, RESHAPE): the reference reproduces LiteRT on a real photo crop
    in every kernel family."""
    from test_integer_ref_models import zoo_int8

    from edgesr.converters.export import calibration_patches, export_tflite
    from edgesr.core.evaluate import model_input

    _, module = zoo_int8(name)
    path = tmp_path / f"{name}_48x64.tflite"
    export_tflite(module, path, "int8", calibration_patches(None, module.contract, patch=32, count=8), input_size=(48, 64))
    graph = IntegerGraph(path)
    assert "BATCH_MATMUL" in {op.name for op in graph.ops} and "EXPAND_DIMS" not in {op.name for op in graph.ops}
    t = graph.tensors[graph.inputs[0]]
    q = quantize_input(model_input(crop(embedded_image("astronaut"), 48, 64, 180, 260), module.contract).transpose(0, 2, 3, 1), t)
    res = compare_with_litert(path, [q], kernels=("reference", "optimized", "xnnpack"))
    for k, r in res["per_kernels"].items():
        assert r["mismatched_elements"] == 0, (k, r)
