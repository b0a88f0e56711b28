"""Core ML numerics on Linux: the MIL interpreter vs PyTorch on real photos (fp32 and fp16)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import crop
from edgesr.converters.mil_interpreter import MILUpscaler, describe, load_program
from torch import nn

from edgesr.core.contract import IOContract
from edgesr.core.data import embedded_image, eval_pairs, to_luma
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import FunctionUpscaler, evaluate


class SESRLike(nn.Module):
    """Y in, x2: conv, per-channel PReLU, ReLU, residual adds, broadcast add, pixel shuffle, clip."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first = nn.Conv2d(1, 8, 5, padding=2)
        self.mid = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.PReLU(8)
        with torch.no_grad():
            self.act.weight.copy_(torch.linspace(-0.2, 0.4, 8))
        self.last = nn.Conv2d(8, 4, 3, padding=1)
        self.contract = IOContract(scale=2)

    def forward(self, x):
        x0 = self.first(x)
        h = torch.relu(self.act(self.mid(x0))) + x0
        return torch.clamp(nn.functional.pixel_shuffle(self.last(h) + x, 2), 0, 1)


class RGBHead(nn.Module):
    """RGB in, x2 with C = 3 after the shuffle: tanh, channel softmax, mean + tile, concat, sigmoid."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(16, 12, 3, padding=1)

    def forward(self, x):
        h = torch.tanh(self.a(x))
        h = h * torch.softmax(h, dim=1)
        m = h.mean(dim=1, keepdim=True).repeat(1, 8, 1, 1)
        return torch.sigmoid(nn.functional.pixel_shuffle(self.b(torch.cat([h, m], 1)), 2))


def _convert(module, channels, path, precision):
    import coremltools as ct

    ex = torch.rand(1, channels, 24, 24)
    traced = torch.jit.trace(module.eval(), ex)
    shape = (1, channels, ct.RangeDim(8, 512, 24), ct.RangeDim(8, 512, 24))
    ml = ct.convert(traced, inputs=[ct.TensorType(name="x", shape=shape)], convert_to="mlprogram",
                    minimum_deployment_target=ct.target.iOS17,
                    compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32)
    ml.save(str(path))
    return path, ml


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    d = tmp_path_factory.mktemp("coreml")
    y, rgb = SESRLike().eval(), RGBHead().eval()
    out = {"y": y, "rgb": rgb}
    out["y_fp16"], ml = _convert(y, 1, d / "y16.mlpackage", "fp16")
    out["y_fp32"], _ = _convert(y, 1, d / "y32.mlpackage", "fp32")
    out["rgb_fp16"], _ = _convert(rgb, 3, d / "rgb16.mlpackage", "fp16")
    import coremltools.optimize.coreml as cto

    cfg = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric", weight_threshold=0))
    q = cto.linear_quantize_weights(ml, cfg)
    q.save(str(d / "y_w8.mlpackage"))
    out["y_w8"] = d / "y_w8.mlpackage"
    return out


def _y(h, w, y0, x0):
    return to_luma(crop(embedded_image("chelsea"), h, w, y0, x0))[None, None]


def _torch(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def test_fp32_program_matches_pytorch(packages):
    x = _y(37, 45, 60, 200)
    ref = _torch(packages["y"], x)
    got = MILUpscaler(packages["y_fp32"], precision="fp32")(x)
    assert got.shape == (1, 1, 74, 90)
    assert np.abs(got - ref).max() < 1e-5


def test_fp16_program_within_fp16_tolerance(packages):
    x = _y(41, 33, 100, 120)
    ref = _torch(packages["y"], x)
    fp16 = MILUpscaler(packages["y_fp16"], precision="fp16")(x)
    fp32 = MILUpscaler(packages["y_fp16"], precision="fp32")(x)
    err16, err32 = np.abs(fp16 - ref).max(), np.abs(fp32 - ref).max()
    assert 0 < err16 < 4e-3  # fp16 activations: a few fp16 ulps of values in [0, 1]
    assert err32 < err16  # the same program with fp32 activations is closer (fp16 weights only)
    prog = load_program(packages["y_fp16"])
    assert {"conv", "prelu", "pixel_shuffle", "clip"} <= {op.type for op in prog.ops}
    assert prog.compute_precision == "fp16" and prog.flexible_inputs == ["x"]


def test_rgb_ops_and_channel_order(packages):
    x = crop(embedded_image("coffee"), 29, 35, 150, 200).astype(np.float32).transpose(2, 0, 1)[None] / 255
    ref = _torch(packages["rgb"], x)
    got = MILUpscaler(packages["rgb_fp16"], precision="fp16")(x)
    assert got.shape == ref.shape == (1, 3, 58, 70)
    assert np.abs(got - ref).max() < 4e-3
    ops = set(describe(packages["rgb_fp16"]).split('"'))
    assert {"tanh", "softmax", "reduce_mean", "tile", "concat", "sigmoid", "pixel_shuffle"} <= ops


def test_int8_weights_through_the_evaluation_path(packages):
    ops = {op.type for op in load_program(packages["y_w8"]).ops}
    assert "constexpr_affine_dequantize" in ops
    pairs = eval_pairs([("chelsea", crop(embedded_image("chelsea"), 64, 80, 80, 150))], 2)
    ref = evaluate(FunctionUpscaler(lambda x: _torch(packages["y"], x), IOContract(scale=2)), pairs)
    w8 = evaluate(MILUpscaler(packages["y_w8"], precision="fp16", contract=IOContract(scale=2)), pairs)
    fp16 = evaluate(MILUpscaler(packages["y_fp16"], precision="fp16", contract=IOContract(scale=2)), pairs)
    assert abs(fp16["psnr_y"] - ref["psnr_y"]) < 0.05
    assert abs(w8["psnr_y"] - ref["psnr_y"]) < 0.5


def test_contract_inferred_and_errors(packages, tmp_path):
    up = MILUpscaler(packages["rgb_fp16"])
    assert up.contract.scale == 2 and up.contract.channels == 3 and up.contract.color == "rgb"
    with pytest.raises(EdgesrError, match="no such Core ML package"):
        MILUpscaler(tmp_path / "none.mlpackage")
    with pytest.raises(EdgesrError, match="precision"):
        MILUpscaler(packages["y_fp16"], precision="int4")


def test_lint_coreml_ane(packages):
    from edgesr.converters.lint import has_errors, lint

    fp16 = lint(packages["y_fp16"], "coreml-ane")
    assert not has_errors(fp16) and [f.check for f in fp16] == ["dynamic-shape"]
    fp32 = lint(packages["y_fp32"], "coreml-ane")
    assert has_errors(fp32) and any(f.check == "precision" for f in fp32)
    rgb = lint(packages["rgb_fp16"], "coreml-ane")
    assert not has_errors(rgb)


ZOO = ["sesr_m3", "esr_max_s2_k7_c13", "esr_tm_s2_k7_c16", "esr_tr_s2_k7_c13", "esr_cnn_s2_c8_d3_s9", "pkn", "pkn_fixed",
       "splitsr_s"]


@pytest.mark.parametrize("name", ZOO)
def test_zoo_coreml_exports_on_linux(name, tmp_path):
    """edgesr's own Core ML export (edgesr.converters.export, fp16) of every zoo network, evaluated by the
    MIL interpreter and scored against the PyTorch float module through edgesr.core.evaluate."""
    from edgesr.converters.export import deploy_module, export_coreml

    from edgesr.core.models import create

    torch.manual_seed(0)
    module = deploy_module(create(name, scale=2))
    path = tmp_path / f"{name}.mlpackage"
    export_coreml(module, path, "fp16")
    up16, up32 = MILUpscaler(path, precision="fp16"), MILUpscaler(path, precision="fp32")
    assert up16.contract == module.contract  # read from the package's metadata
    pairs = eval_pairs([("coffee", crop(embedded_image("coffee"), 64, 80, 150, 200))], 2)
    from edgesr.core.evaluate import TorchUpscaler, model_input

    ref = evaluate(TorchUpscaler(module), pairs)
    got = evaluate(up16, pairs)
    assert abs(got["psnr_y"] - ref["psnr_y"]) < 0.05  # issue 3's fp16 tolerance
    x = model_input(pairs[0].lr, module.contract)
    want = _torch(module, x)
    err16, err32 = np.abs(up16(x) - want).max(), np.abs(up32(x) - want).max()
    assert err32 < err16 < 4e-3


def test_quantize_dequantize_ops(tmp_path):
    """MIL quantize/dequantize (iOS17, what W8A8 exports emit): real = scale * (q - zero_point)."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 1, 20, 24))], opset_version=ct.target.iOS17)
    def prog(x):
        q = mb.quantize(input=x, scale=np.float32(0.004), zero_point=np.int8(-20), output_dtype="int8")
        return mb.dequantize(input=q, scale=np.float32(0.004), zero_point=np.int8(-20))

    ml = ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                    compute_precision=ct.precision.FLOAT32)
    ml.save(str(tmp_path / "q.mlpackage"))
    x = _y(20, 24, 30, 40) * np.float32(1.2)  # a real photo; values above 0.588 saturate at q = 127
    got = MILUpscaler(tmp_path / "q.mlpackage", "fp32", contract=IOContract(scale=1))(x)
    q = np.clip(np.round(x / np.float32(0.004)) - 20, -128, 127)
    np.testing.assert_allclose(got, (q + 20) * np.float32(0.004), rtol=0, atol=1e-7)
    assert (q == 127).any() and (q < 127).any()
