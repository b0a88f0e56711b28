"""w8a16 (TFLite 16x8) exports: the graph TFLite's 16x8 quantizer makes at edgesr's ranges, and
the NumPy integer reference against LiteRT bit for bit on real photos."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import crop
from edgesr.quantization import integer_kernels as K
from edgesr.quantization.integer_ref import IntegerGraph
from test_integer_ref_models import zoo_int8, zoo_w8a16

from edgesr.app.integer_litert import compare_with_litert
from edgesr.core.data import embedded_image
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import model_input

MODELS = ["sesr_m5", "sesr_m5_relu", "esr_max_s2_k7_c13", "splitsr_s", "esr_tm_s2_k7_c16", "esr_tr_s2_k7_c13",
          "esr_cnn_s2_c8_d3_s9", "pkn", "pkn_fixed"]


def _photo_inputs(module):
    """float32 NHWC model inputs from two real photographs (48 x 64 LR crops)."""
    crops = [crop(embedded_image("coffee"), 48, 64, 100, 200), crop(embedded_image("astronaut"), 48, 64, 180, 260)]
    return [model_input(c, module.contract).transpose(0, 2, 3, 1).astype(np.float32) for c in crops]


@pytest.mark.parametrize("name", MODELS)
def test_w8a16_bit_exact_with_litert_reference_kernels(name):
    """BUILTIN_REF on every zoo model with a 16x8 export (16x8 CONV_2D, int16 ADD/SUB/MUL,
    BATCH_MATMUL, SOFTMAX, TANH, EXP, float PRELU/DEPTH_TO_SPACE islands, QUANTIZE/DEQUANTIZE): 0
    differing outputs; the optimized and default (XNNPACK) interpreters too (their float->int16
    QUANTIZE and int16 ADD round differently from BUILTIN_REF's)."""
    path, module = zoo_w8a16(name)
    res = compare_with_litert(path, _photo_inputs(module), kernels=("reference", "optimized", "xnnpack"))
    assert res["elements"] == 2 * 96 * 128 * module.contract.channels
    for k, r in res["per_kernels"].items():
        assert r["mismatched_elements"] == 0, (k, r)


def test_w8a16_comparison_can_fail():
    """LiteRT's two resolvers differ on SESR-M5's 16x8 graph (the input QUANTIZE rounds differently),
    and the reference emulation does not match the optimized run: the comparison is not vacuous
    although outputs are float."""
    path, module = zoo_w8a16("sesr_m5")
    inputs = _photo_inputs(module)
    res = compare_with_litert(path, inputs, kernels=("reference", "optimized"))
    diff = res["litert_reference_vs_optimized"]
    assert diff["mismatched_elements"] > 0 and diff["max_lsb_diff"] >= 1
    ours = IntegerGraph(path, "reference").run(inputs[0])[0]
    theirs = IntegerGraph(path, "optimized").run(inputs[0])[0]
    assert (ours != theirs).any()


def test_w8a16_graph_is_16x8_with_float_io_and_float_islands():
    """int16 activations (zero point 0), int8 per-channel weights, int64 biases, float32 input
    and output; PRELU and DEPTH_TO_SPACE (no int16 kernel in LiteRT) run in float."""
    path, _ = zoo_w8a16("sesr_m5")
    g = IntegerGraph(path)
    assert g.tensors[g.inputs[0]].dtype == np.float32 and g.tensors[g.outputs[0]].dtype == np.float32
    convs = [op for op in g.ops if op.name == "CONV_2D"]
    assert len(convs) == 7
    for op in convs:
        x, w, b, y = (g.tensors[i] for i in op.inputs + op.outputs)
        assert (x.dtype, w.dtype, b.dtype, y.dtype) == (np.int16, np.int8, np.int64, np.int16)
        assert x.z == 0 and y.z == 0 and len(w.scale) == w.shape[0]
    float_ops = {op.name for op in g.ops if g.tensors[op.outputs[0]].dtype == np.float32} - {"DEQUANTIZE"}
    assert float_ops == {"PRELU", "DEPTH_TO_SPACE"}


def test_w8a16_takes_the_int8_models_ranges():
    """Each int16 conv output has scale max(|lo|, |hi|) / 32767 of the int8 export's range
    [s8 * (-128 - z8), s8 * (127 - z8)] of the same tensor: the ranges are edgesr's, not the
    converter's calibration."""
    p16, _ = zoo_w8a16("sesr_m5_relu")
    p8, _ = zoo_int8("sesr_m5_relu")  # same seed, same calibration patches
    g16, g8 = IntegerGraph(p16), IntegerGraph(p8)
    c16 = [g16.tensors[op.outputs[0]] for op in g16.ops if op.name == "CONV_2D"]
    c8 = [g8.tensors[op.outputs[0]] for op in g8.ops if op.name == "CONV_2D"]
    assert len(c16) == len(c8) == 7
    for t16, t8 in zip(c16, c8):
        lo, hi = t8.s * (-128 - t8.z), t8.s * (127 - t8.z)
        assert t16.s == pytest.approx(max(abs(lo), abs(hi)) / 32767, rel=1e-6)


def test_int64_requantization_rounds_half_up_with_a_16_bit_multiplier():
    # m = 2^30 (0.5): reduced to 2^14; x = 3 -> (3 * 2^14 + 2^14) >> 15 = 2 (1.5 rounds up);
    # x = -3 -> (-3 * 2^14 + 2^14) >> 15 = -1 (-1.5 rounds up, not away from zero)
    assert K.multiply_by_quantized_multiplier_int64(np.array([3, -3, 5]), 1 << 30, 0).tolist() == [2, -1, 3]
    # a multiplier at or above 0x7FFF0000 saturates the reduced multiplier at 0x7FFF
    assert int(K.multiply_by_quantized_multiplier_int64(np.array([1 << 20]), 0x7FFFFFFF, 0)[0]) == (((1 << 20) * 0x7FFF + (1 << 14)) >> 15)


def test_w8a16_attention_heads_run_int16_kernels():
    """eSR-TM's, eSR-CNN's and PKN's w8a16 graphs keep their heads in int16 (the ops the
    bit-exact test above emulates), not in float islands."""
    want = {"esr_tm_s2_k7_c16": {"BATCH_MATMUL", "SOFTMAX"}, "esr_cnn_s2_c8_d3_s9": {"BATCH_MATMUL", "SOFTMAX", "MUL", "TANH"},
            "pkn": {"BATCH_MATMUL", "SOFTMAX", "MUL", "SUB", "EXP"}}
    for name, ops in want.items():
        g = IntegerGraph(zoo_w8a16(name)[0])
        int16_ops = {op.name for op in g.ops if g.tensors[op.outputs[0]].dtype == np.int16}
        assert ops <= int16_ops, (name, ops - int16_ops)


@pytest.mark.parametrize("name", ["sesr_m5", "sesr_m5_relu", "splitsr_s"])
def test_xnnpack_takes_only_the_float_islands_of_w8a16(name):
    """LiteRT 2.3's XNNPACK delegates no int16 op: only the float PRELU / DEPTH_TO_SPACE islands
    (one partition each) go in; `edgesr lint --target xnnpack` predicts it node for node."""
    from edgesr.converters.lint import predict_xnnpack
    from edgesr.converters.partitions import xnnpack_partitions

    path, _ = zoo_w8a16(name)
    truth, predicted = xnnpack_partitions(path), predict_xnnpack(path)
    keys = ("partitions", "delegated_ops", "ops_outside", "nodes_outside", "subsets")
    assert {k: predicted[k] for k in keys} == {k: truth[k] for k in keys}
    assert set(truth["delegated_ops"]) <= {"PRELU", "DEPTH_TO_SPACE"}
    assert "CONV_2D" in truth["ops_outside"]
    assert truth["partitions"] == (6 if name == "sesr_m5" else 1)


def test_w8a16_export_uses_the_checkpoint_ranges_and_records_them(tmp_path):
    """A QuantizedCheckpoint's ranges (here: min/max widened 3x, which no calibration would give)
    set the int16 scales; the metadata records w8a16, float32 I/O and the ranges' origin."""
    import torch
    from edgesr.converters.export import calibration_patches, deploy_module, export_tflite
    from edgesr.quantization.api import QuantizedCheckpoint
    from edgesr.quantization.calibration import calibrate

    from edgesr.core.contract import read_artifact_metadata
    from edgesr.core.models import create

    torch.manual_seed(0)
    module = deploy_module(create("sesr_m3", scale=2))
    ranges = calibrate(module, calibration_patches(None, module.contract, patch=32, count=4))
    wide = {k: (3 * lo, 3 * hi) if k == "first" else (lo, hi) for k, (lo, hi) in ranges.items()}
    path = tmp_path / "m.tflite"
    export_tflite(QuantizedCheckpoint(module, wide, "ckpt_int8.pt", {"observer": "minmax"}), path, "w8a16")
    g = IntegerGraph(path)
    first = g.tensors[next(op for op in g.ops if op.name == "CONV_2D").outputs[0]]
    lo, hi = wide["first"]
    assert first.s == pytest.approx(max(-lo, hi) / 32767, rel=2e-2)  # the int8 nudging moves it < 1 int8 step
    meta = read_artifact_metadata(path)
    prov = meta["provenance"]
    assert prov["precision"] == "w8a16" and prov["io_dtype"] == "float32"
    assert prov["quantization"]["ranges_from"] == "checkpoint" and prov["quantization"]["activations"].startswith("int16")
    assert meta["contract"]["dtype"] == "float32" and meta["contract"]["layout"] == "NHWC"


def test_w8a16_takes_the_checkpoint_minmax_ranges_where_int8_takes_its_clipped_ones(tmp_path):
    """A checkpoint whose int8 ranges clip (here: the first conv's halved, as range search or
    QAT may leave them) and whose ``minmax_ranges`` do not: the int8 export uses the clipped
    range, the w8a16 export the min/max one; ``quantize_module`` records min/max ranges that
    cover its calibration data, one per int8 tensor."""
    import torch
    from edgesr.converters.export import calibration_patches, deploy_module, export_tflite
    from edgesr.quantization.api import QuantizedCheckpoint, quantize_module
    from edgesr.quantization.calibration import calibrate

    from edgesr.core.models import create

    torch.manual_seed(0)
    module = deploy_module(create("sesr_m3", scale=2))
    minmax = calibrate(module, calibration_patches(None, module.contract, patch=32, count=4))
    clipped = {k: (lo / 2, hi / 2) if k == "first" else (lo, hi) for k, (lo, hi) in minmax.items()}
    q = QuantizedCheckpoint(module, clipped, "ckpt_int8.pt", {"observer": "minmax"}, minmax)
    scales = {}
    for precision in ("int8", "w8a16"):
        path = tmp_path / f"m_{precision}.tflite"
        export_tflite(q, path, precision, calibration_patches(None, module.contract, patch=32, count=4))
        g = IntegerGraph(path)
        scales[precision] = g.tensors[next(op for op in g.ops if op.name == "CONV_2D").outputs[0]].s
    lo, hi = minmax["first"]
    assert scales["w8a16"] == pytest.approx(max(-lo, hi) / 32767, rel=2e-2)
    assert scales["int8"] == pytest.approx((hi - lo) / 2 / 255, rel=2e-2)

    recorded = quantize_module(module, count=8)
    assert set(recorded.minmax_ranges) == set(recorded.activation_ranges)
    for k, (lo, hi) in recorded.minmax_ranges.items():
        assert lo <= 0 <= hi and hi > lo, k


def test_cli_export_and_integer_validation_of_w8a16(tmp_path):
    """`edgesr export --precisions w8a16` writes the artifact; `edgesr validate ART --reference
    integer` compares it with LiteRT bit for bit (exit 0, 0 differing elements); a plain
    validation gates it with the w8a16 tolerance."""
    import json

    import torch

    from edgesr.cli import main
    from edgesr.core.checkpoint import save_checkpoint
    from edgesr.core.imageio import write_image
    from edgesr.core.models import create

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "deploy.pt", create("sesr_m3", scale=2).collapse().eval(), form="deploy")
    assert main(["export", str(ckpt), "--formats", "tflite", "--precisions", "w8a16", "-o", str(tmp_path / "art")]) == 0
    art = tmp_path / "art" / "sesr_m3_x2_w8a16.tflite"
    write_image(tmp_path / "imgs" / "coffee.png", crop(embedded_image("coffee"), 96, 128, 100, 200))
    out = tmp_path / "ir.json"
    assert main(["validate", str(art), "--reference", "integer", "--sets", str(tmp_path / "imgs"), "--json", str(out)]) == 0
    ir = json.loads(out.read_text())["integer_reference"]
    assert ir["mismatched_elements"] == 0 and ir["elements"] == 96 * 128
    out = tmp_path / "v.json"
    main(["validate", str(art), "--reference", str(ckpt), "--sets", str(tmp_path / "imgs"), "--json", str(out)])
    v = json.loads(out.read_text())
    assert v["precision"] == "w8a16" and v["tolerance"]["max_drop_db"] == 0.02
    assert v["psnr_vs_reference_db"] is not None and v["xnnpack"]["partitions"] >= 1


def test_optimized_int16_add_rounds_each_input_once():
    """One element LiteRT 2.3 computes differently in its two resolvers (SplitSR-S w8a16, an int16
    ADD measured on a photo crop): exact value -2495.49999; the reference kernel's two roundings
    give -2496, the optimized NEON loop's single rounding -2495. A block of 16 takes the NEON loop."""
    p = {"left_shift": 15, "m1": 1790259635, "sh1": -3, "m2": 1073741824, "sh2": 0, "mo": 2101761030, "sho": -14}
    a, b = np.full((1, 1, 1, 16), -12407), np.full((1, 1, 1, 16), 36)
    assert set(K.add_int8(a, 0, b, 0, 0, p, -32768, 32767).ravel()) == {-2496}
    assert set(K.add_int16_optimized(a, b, p, -32768, 32767).ravel()) == {-2495}
    assert set(K.add_int16_optimized(a[..., :15], b[..., :15], p, -32768, 32767).ravel()) == {-2496}  # scalar tail


def test_emulation_matrix_of_a_w8a16_artifact():
    """`edgesr run` builds the emulation matrix of every artifact: for w8a16 the LiteRT rows run,
    the npu row is the 16x8 integer reference, and the GPU row says why it is not emulated."""
    from edgesr.app.validation import emulation_matrix

    path, module = zoo_w8a16("sesr_m5_relu")
    photos = [("camera", embedded_image("camera")), ("coffee", embedded_image("coffee"))]
    rows = emulation_matrix(path, module, photos, precision="w8a16")
    assert "int16" in rows["gpu_fp16"]["skipped"]
    for engine in ("cpu_reference", "xnnpack", "npu_int8"):
        assert "psnr_y" in rows[engine], (engine, rows[engine])
        assert rows[engine]["max_abs_err"] < 0.05, (engine, rows[engine])


@pytest.mark.parametrize("name", ["esr_tm_s2_k7_c16", "pkn", "pkn_fixed"])
def test_w8a16_dot_products_stay_close_to_float(name):
    """The w8a16 exports compute per-pixel dot products as one int16 BATCH_MATMUL: no int16
    product tensor whose range nobody measured (eSR-TM with MUL + SUM: the converter calibrated it on
    a synthetic ramp and clipped the products, about 0.37 mean error). PKN's two same-input convs of
    different sizes are paired with their int8 twins by their weights (it did not convert before).
    PKN-fixed's clamp bound and its ones-conv bias (both 1.0) no longer share a buffer that the 16x8
    quantizer overwrote (its output was a constant -0.004). On LiteRT, on a real photo crop, the
    output stays within 2 of 255 levels of the float model."""
    import torch

    from edgesr.app.artifacts import open_artifact

    path, module = zoo_w8a16(name)
    x = model_input(crop(embedded_image("astronaut"), 48, 64, 180, 260), module.contract)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    got = np.asarray(open_artifact(path)(x))
    assert np.abs(got - want).max() <= 2.0 / 255, np.abs(got - want).max() * 255


def test_w8a16_exports_the_checkpoints_w8a16_weights_and_validates_against_them(tmp_path):
    """A quantized checkpoint whose ``w8a16_state_dict`` holds other weights than its int8 module:
    ``read_quantized`` rebuilds them, the w8a16 export converts them (LiteRT's output follows
    them, not the int8 module's), the int8 export keeps the int8 module's; a state dict that does
    not fit the model is refused in one line."""
    import json

    import torch
    from edgesr.converters.export import calibration_patches, deploy_module, export_tflite
    from edgesr.quantization.api import read_quantized
    from edgesr.quantization.calibration import calibrate

    from edgesr.app.artifacts import open_artifact
    from edgesr.cli import main
    from edgesr.core.checkpoint import save_checkpoint
    from edgesr.core.models import create

    torch.manual_seed(0)
    float_module = deploy_module(create("sesr_m3", scale=2))
    int8_module = deploy_module(create("sesr_m3", scale=2))  # other weights: the int8 module's
    int8_module.registry_name = float_module.registry_name = "sesr_m3"
    patches = calibration_patches(None, float_module.contract, patch=32, count=4)
    ranges, minmax = calibrate(int8_module, patches), calibrate(float_module, patches)
    ckpt = save_checkpoint(tmp_path / "q_int8.pt", int8_module, form="deploy",
                           extra={"activation_ranges": {k: list(v) for k, v in ranges.items()},
                                  "minmax_ranges": {k: list(v) for k, v in minmax.items()},
                                  "w8a16_state_dict": float_module.state_dict(), "quantization": {}})
    q = read_quantized(ckpt)
    assert q.w8a16() is q.w8a16_module and q.minmax_ranges == minmax
    for k, v in float_module.state_dict().items():
        assert torch.equal(q.w8a16_module.state_dict()[k], v)
        assert v.ndim != 4 or not torch.equal(q.module.state_dict()[k], v)  # conv weights differ (PReLU init does not)
    x = torch.from_numpy(model_input(crop(embedded_image("coffee"), 48, 64, 100, 200), float_module.contract).astype(np.float32))
    outs = {}
    for precision in ("w8a16", "int8"):
        path = tmp_path / f"m_{precision}.tflite"
        export_tflite(q, path, precision, patches)
        outs[precision] = torch.from_numpy(open_artifact(path)(x.numpy()))
    with torch.no_grad():
        to_float, to_int8 = (float(torch.abs(outs["w8a16"] - m(x)).max()) for m in (float_module, int8_module))
        # each export computes its own weights' function (random weights: the other's is far off)
        assert to_float < to_int8 / 4
        assert float(torch.abs(outs["int8"] - int8_module(x)).max()) < float(torch.abs(outs["int8"] - float_module(x)).max()) / 4
    plain = save_checkpoint(tmp_path / "int8_weights.pt", int8_module, form="deploy")  # not quantized
    p999 = {}
    for name, source in (("checkpoint", ckpt), ("int8 module", plain)):
        main(["validate", str(tmp_path / "m_w8a16.tflite"), "--reference", str(ckpt), "--source", str(source),
              "--out", str(tmp_path / "v.json")])
        p999[name] = json.loads((tmp_path / "v.json").read_text())["p999_abs_err"]
    assert p999["checkpoint"] < p999["int8 module"] / 4  # --source CKPT_int8.pt: measured against its w8a16 weights
    bad = save_checkpoint(tmp_path / "bad_int8.pt", int8_module, form="deploy",
                          extra={"activation_ranges": {k: list(v) for k, v in ranges.items()},
                                 "w8a16_state_dict": {"first.weight": torch.zeros(1)}, "quantization": {}})
    with pytest.raises(EdgesrError, match="w8a16_state_dict does not fit"):
        read_quantized(bad)
