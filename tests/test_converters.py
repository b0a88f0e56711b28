"""Converters: the generic Keras rebuild, TFLite graphs (native ops, int8 without float
islands, dynamic shapes, depth-to-space channel order with C > 1, activation ranges),
ONNX and Core ML structure, metadata. Real photo crops as inputs; conversions shared per module."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from edgesr.app.artifacts import open_artifact
from edgesr.converters import export_coreml, export_onnx, export_tflite
from edgesr.converters.export import plan
from edgesr.converters.runtime import (
    RuntimeUnavailable,
    TFLiteUpscaler,
    coreml_runtime_status,
)
from edgesr.converters.tflite import convert, graph_report
from test_converters_common import photo_input, tiny_sesr
from torch import nn

from edgesr.core.contract import IOContract, contract_of, read_artifact_metadata
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import calibration_patches


def _torch(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def prelu_model():
    return tiny_sesr("sesr_m3")


@pytest.fixture(scope="module")
def calib():
    return calibration_patches(None, IOContract(scale=2), count=16, patch=32)


@pytest.fixture(scope="module")
def prelu_fp32(prelu_model, tmp_path_factory):
    return export_tflite(prelu_model, tmp_path_factory.mktemp("tfl") / "m_fp32.tflite", "fp32")


@pytest.fixture(scope="module", params=["int8", "uint8"])
def prelu_int8(request, prelu_model, calib, tmp_path_factory):
    path = tmp_path_factory.mktemp("tfl") / f"m_int8_{request.param}.tflite"
    return request.param, export_tflite(prelu_model, path, "int8", calib, io_dtype=request.param)


# --------------------------------------------------------------------------- depth-to-space, C > 1


class RGBShuffle(nn.Module):
    """conv 3 -> 12, PReLU (per channel), optional depthwise branch, pixel_shuffle(2) -> 3 channels."""

    def __init__(self, depthwise: bool):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.act = nn.PReLU(12)
        with torch.no_grad():
            self.act.weight.copy_(torch.linspace(0.0, 0.6, 12))
        self.dw = nn.Conv2d(3, 12, 3, padding=1, groups=3) if depthwise else None
        self.contract = IOContract(scale=2, color="rgb", channels=3)

    def forward(self, x):
        h = self.act(self.conv(x))
        if self.dw is not None:
            h = h + self.dw(x)
        return torch.clamp(F.pixel_shuffle(h, 2), 0.0, 1.0)


@pytest.mark.parametrize("depthwise", [False, True])
def test_depth_to_space_channel_order_with_three_channels(depthwise, photo, tmp_path):
    module = RGBShuffle(depthwise).eval()
    art = export_tflite(module, tmp_path / "rgb.tflite", "fp32")
    ops = graph_report(art["path"])["ops"]
    assert "DEPTH_TO_SPACE" in ops and "PRELU" in ops
    if not depthwise:  # the permutation is absorbed into the conv weights: no extra op
        assert "GATHER" not in ops and "TRANSPOSE" not in ops
    x = photo_input(photo, module.contract, 37, 45, y=100, x=150)
    out = open_artifact(art["path"])(x)
    ref = _torch(module, x)
    assert out.shape == ref.shape == (1, 3, 74, 90)
    np.testing.assert_allclose(out, ref, atol=1e-5)


# --------------------------------------------------------------------------- float graphs


def test_native_ops_and_rank(prelu_fp32):
    rep = graph_report(prelu_fp32["path"])
    assert {"DEPTH_TO_SPACE", "PRELU", "CONV_2D", "ADD"} <= set(rep["ops"])
    assert rep["max_rank"] <= 4
    assert not {"GATHER", "RESHAPE", "TRANSPOSE", "SELECT", "SELECT_V2", "GREATER"} & set(rep["ops"])


def test_dynamic_shapes_one_interpreter(prelu_model, prelu_fp32, gray_photo):
    up = TFLiteUpscaler(prelu_fp32["path"], prelu_model.contract)
    sig = up.interpreter.get_input_details()[0]["shape_signature"]
    assert list(sig) == [1, -1, -1, 1]
    for h, w, y, x in [(31, 47, 10, 20), (64, 29, 200, 300)]:
        inp = photo_input(gray_photo, prelu_model.contract, h, w, y, x)
        out = up(inp)
        assert out.shape == (1, 1, 2 * h, 2 * w)
        np.testing.assert_allclose(out, _torch(prelu_model, inp), atol=1e-5)


def test_reference_kernels_match_optimized(prelu_model, prelu_fp32, photo):
    x = photo_input(photo, prelu_model.contract, 40, 52, 50, 60)
    fast = open_artifact(prelu_fp32["path"], num_threads=2)(x)
    ref = open_artifact(prelu_fp32["path"], kernels="reference", num_threads=1)(x)
    np.testing.assert_allclose(ref, fast, atol=1e-5)


def test_fp16_weights(prelu_model, tmp_path, photo):
    art = export_tflite(prelu_model, tmp_path / "m_fp16.tflite", "fp16")
    rep = graph_report(art["path"])
    assert "FLOAT16" in rep["tensor_types"].values() and "DEQUANTIZE" in rep["ops"]
    x = photo_input(photo, prelu_model.contract, 33, 41, 80, 90)
    np.testing.assert_allclose(open_artifact(art["path"])(x), _torch(prelu_model, x), atol=5e-3)


# --------------------------------------------------------------------------- int8


def test_int8_is_integer_only(prelu_int8):
    io, art = prelu_int8
    rep = graph_report(art["path"])
    assert rep["float_ops"] == []
    allowed = {"INT8", "INT32"} | ({"UINT8"} if io == "uint8" else set())
    assert set(rep["tensor_types"].values()) <= allowed
    assert "DEQUANTIZE" not in rep["ops"] and {"DEPTH_TO_SPACE", "PRELU"} <= set(rep["ops"])
    assert rep["max_rank"] <= 4
    up = open_artifact(art["path"])
    details = up.interpreter.get_input_details()[0]
    assert details["dtype"] == np.dtype(io)
    meta = read_artifact_metadata(art["path"])  # embedded in the .tflite, no sidecar
    assert meta["provenance"]["io_dtype"] == io
    assert meta["contract"]["layout"] == "NHWC" and up.contract.layout == "NHWC"  # the tensor's own layout


def test_int8_output_is_close_to_float(prelu_int8, prelu_model, photo):
    _, art = prelu_int8
    x = photo_input(photo, prelu_model.contract, 48, 64, 120, 200)
    out, ref = open_artifact(art["path"])(x), _torch(prelu_model, x)
    assert out.shape == ref.shape
    mse = float(np.mean((np.clip(out, 0, 1) - ref) ** 2))
    assert 10 * np.log10(1.0 / mse) > 30.0  # int8 noise, not a wrong graph


def test_activation_ranges_reach_the_int8_model(prelu_model, calib):
    lo, hi = -0.75, 1.25  # a range no calibration of this model produces
    scale = (hi - lo) / 255.0

    def has_scale(data):
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_content=data)
        return any(abs(d["quantization"][0] - scale) < 1e-7 and d["quantization"][1] == -128 + round(-lo / scale)
                   for d in it.get_tensor_details())

    assert not has_scale(convert(prelu_model, 1, "int8", calib))
    # "add" (x0 + residual branch) is an ADD with its own int8 tensor in TFLite
    ranged = convert(prelu_model, 1, "int8", calib, activation_ranges={"add": (lo, hi)})
    assert has_scale(ranged)
    assert graph_report(ranged)["float_ops"] == []
    with pytest.raises(EdgesrError, match="not in the traced graph"):
        convert(prelu_model, 1, "int8", calib, activation_ranges={"no_such_node": (0.0, 1.0)})


def test_unsupported_op_is_named(calib):
    class Sig(nn.Module):
        def forward(self, x):
            return torch.sigmoid(x)

    with pytest.raises(EdgesrError, match="sigmoid"):
        convert(Sig(), 1, "fp32")
    with pytest.raises(EdgesrError, match="calibration"):
        convert(Sig(), 1, "int8", None)


# --------------------------------------------------------------------------- ONNX, Core ML


def test_onnx_dynamic_and_metadata(prelu_model, tmp_path, photo):
    import onnx

    art = export_onnx(prelu_model, tmp_path / "m.onnx")
    model = onnx.load(art["path"])
    assert "DepthToSpace" in {n.op_type for n in model.graph.node}
    meta = json.loads(next(p.value for p in model.metadata_props if p.key == "edgesr"))
    assert contract_of(meta) == prelu_model.contract
    up = open_artifact(art["path"])
    assert up.contract == prelu_model.contract
    for h, w in [(29, 35), (50, 41)]:
        x = photo_input(photo, prelu_model.contract, h, w, 30, 40)
        np.testing.assert_allclose(up(x), _torch(prelu_model, x), atol=1e-5)


@pytest.mark.parametrize("precision,weights", [("fp16", "FLOAT16"), ("w8", "INT8"), ("w8a8", "INT8")])
def test_coreml_structure(precision, weights, prelu_model, calib, tmp_path, photo):
    from edgesr.converters.coreml import check_structure

    art = export_coreml(prelu_model, tmp_path / f"m_{precision}.mlpackage", precision, calib)
    s = check_structure(art["path"], precision, channels=1)
    assert s["passed"], s["problems"]
    assert s["weight_dtypes"] == [weights]
    assert {"conv", "pixel_shuffle"} <= set(s["ops"])
    assert json.loads(s["metadata"])["contract"]["scale"] == 2
    if precision == "w8a8":
        assert {"quantize", "dequantize"} <= set(s["ops"])
    if coreml_runtime_status() is not None:
        with pytest.raises(RuntimeUnavailable, match="macOS"):
            open_artifact(art["path"])
    elif precision == "fp16":  # macOS, or the MIL interpreter on Linux
        x = photo_input(photo, prelu_model.contract, 30, 38, 60, 70)
        np.testing.assert_allclose(open_artifact(art["path"])(x), _torch(prelu_model, x), atol=1e-2)


def test_plan_maps_precisions_per_format():
    assert plan(["tflite", "onnx", "coreml"], ["fp32", "int8"]) == [
        ("tflite", "fp32"), ("tflite", "int8"), ("onnx", "fp32"), ("coreml", "fp32"), ("coreml", "w8"), ("coreml", "w8a8")]
    with pytest.raises(EdgesrError, match="format"):
        plan(["tflite", "tensorrt"], ["fp32"])
    with pytest.raises(EdgesrError, match="bf16"):
        plan(["onnx"], ["bf16"])


# --------------------------------------------------------------------------- every registry network


def _network_entries():
    """Every registered network, minus the authors' fixed configurations (``*_s2_k7_c13``: the
    same factory as ``esr_max`` etc.), the other SESR depths (M5..XL: more of the same blocks as M3)
    and configurations above 120k deploy parameters (full SplitSR), to keep the test fast."""
    import re

    from edgesr.converters.export import deploy_module

    from edgesr.core.models import create, list_models

    out = []
    for e in list_models():
        if e.family in ("bicubic", "lut") or re.search(r"_s\d_|^sesr_(m5|m7|m11|xl)", e.name):
            continue
        if sum(p.numel() for p in deploy_module(create(e.name, scale=e.scales[0])).parameters()) <= 120_000:
            out.append(e)
    return out


@pytest.mark.parametrize("entry", _network_entries(), ids=lambda e: e.name)
def test_keras_rebuild_of_every_registry_network(entry, photo):
    """The generic rebuild (no per-model code) computes what the deploy module computes."""
    from edgesr.converters.export import deploy_module
    from edgesr.converters.keras_rebuild import rebuild

    from edgesr.core.models import create

    torch.manual_seed(0)
    module = deploy_module(create(entry.name, scale=entry.scales[0]))
    c = module.contract
    x = photo_input(photo, c, 23, 29, 140, 210)
    if x.shape[0] > 1:  # per-channel RGB models take one plane per batch item
        x = x[:1]
    km = rebuild(module, c.channels)
    out = km(x.transpose(0, 2, 3, 1)).numpy().transpose(0, 3, 1, 2)
    np.testing.assert_allclose(out, _torch(module, x), atol=1e-4)  # the fp32 tolerance of issue 3


def test_esr_tm_tflite_reductions(photo, tmp_path):
    """softmax / mul / sum over channels and channel slices survive TFLite conversion."""
    from edgesr.core.models import create

    torch.manual_seed(0)
    module = create("esr_tm", scale=2).eval()
    art = export_tflite(module, tmp_path / "esr.tflite", "fp32")
    rep = graph_report(art["path"])
    assert {"SOFTMAX", "SUM", "MUL", "DEPTH_TO_SPACE"} <= set(rep["ops"]) and rep["max_rank"] <= 4
    x = photo_input(photo, module.contract, 31, 27, 20, 30)
    np.testing.assert_allclose(open_artifact(art["path"])(x), _torch(module, x), atol=1e-5)


def test_calibrated_ranges_from_quantization_become_the_tflite_params(prelu_model, calib):
    """The cross-package contract: ``edgesr.quantization.calibration.calibrate`` ranges (percentile,
    so unlike the converter's own min/max) reach every int8 activation tensor, nudged as
    TF FakeQuant does."""
    from ai_edge_litert.interpreter import Interpreter
    from edgesr.quantization.arithmetic import nudged_qparams
    from edgesr.quantization.calibration import calibrate

    ranges = calibrate(prelu_model, calib, "percentile", percentile=99.0)
    it = Interpreter(model_content=convert(prelu_model, 1, "int8", calib, activation_ranges=ranges))
    params = [d["quantization"] for d in it.get_tensor_details() if len(d["quantization_parameters"]["scales"]) == 1]
    for name, (lo, hi) in ranges.items():
        q = nudged_qparams(lo, hi)
        assert any(abs(s - q.scale) <= 1e-6 * q.scale and abs(z - q.zero_point) <= 1 for s, z in params), name
