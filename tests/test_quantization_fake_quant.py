"""Fake quantization vs the integer arithmetic, and the int8 simulation of a deploy module."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from edgesr.quantization import (
    calibrate,
    fake_quant_module,
    quantizer_ranges,
)
from edgesr.quantization.arithmetic import (
    fake_quant,
    nudged_qparams,
    quantize,
    quantize_bias,
    quantize_multiplier,
    quantize_weights_per_channel,
    requantize,
)
from edgesr.quantization.fake_quant import fake_quant_activation, fake_quant_weight
from edgesr.quantization.graph import (
    FUSED,
    QUANTIZE,
    SHARED,
    observed_nodes,
    quant_plan,
    tensor_nodes,
    trace,
)
from test_quantization_common import one_thread, tiny_deploy  # noqa: F401 (fixture)

from edgesr.core.data import embedded_image, to_luma
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import calibration_patches
from edgesr.core.metrics import psnr
from edgesr.core.models import create

pytestmark = pytest.mark.usefixtures("one_thread")


def test_torch_fake_quant_equals_numpy_reference():
    y = to_luma(embedded_image("coffee"))
    x = np.concatenate([y.ravel() * 3 - 1, [-50.0, 50.0]]).astype(np.float32)
    for lo, hi in [(-1.0, 2.0), (0.0, 1.0), (-0.37, 0.81)]:
        got = fake_quant_activation(torch.from_numpy(x), torch.tensor(lo), torch.tensor(hi)).numpy()
        np.testing.assert_array_equal(got, fake_quant(x, lo, hi))


def test_fake_quant_weight_is_the_dequantized_per_channel_int8():
    w = tiny_deploy().blocks[0].weight.detach()
    q, scale = quantize_weights_per_channel(w.numpy(), axis=0)
    want = q.astype(np.float64) * scale.astype(np.float64)[:, None, None, None]
    np.testing.assert_array_equal(fake_quant_weight(w).numpy(), want.astype(np.float32))
    assert (np.abs(q).reshape(q.shape[0], -1).max(1) == 127).all()  # each channel's extreme maps to +-127


def test_gradients_are_straight_through():
    x = torch.linspace(-2, 2, 101, requires_grad=True)
    fake_quant_activation(x, torch.tensor(-1.0), torch.tensor(1.0)).sum().backward()
    p = nudged_qparams(-1.0, 1.0)
    inside = (x.detach() >= p.nudged_min) & (x.detach() <= p.nudged_max)
    np.testing.assert_array_equal(x.grad.numpy(), inside.float().numpy())
    w = torch.randn(4, 2, 3, 3, requires_grad=True)
    fake_quant_weight(w).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), np.ones((4, 2, 3, 3), np.float32))


def test_plan_mirrors_tflite_int8_tensors():
    relu_plan = quant_plan(trace(tiny_deploy("sesr_m3_relu")))
    prelu_plan = quant_plan(trace(tiny_deploy("sesr_m3")))
    assert relu_plan["blocks_0"].kind == FUSED and "blocks_0" not in tensor_nodes(relu_plan)  # conv+relu: one tensor
    assert "blocks_0" in tensor_nodes(prelu_plan)  # conv and PRELU: two tensors
    for plan in (relu_plan, prelu_plan):
        assert {"x", "first", "add", "last", "add_1"} <= set(tensor_nodes(plan))
        assert plan["pixel_shuffle"].kind == SHARED and plan["pixel_shuffle"].source == "add_1"
        assert plan["clamp"].source == "add_1"


def test_one_conv_simulation_predicts_the_integer_kernel():
    """conv + fused relu: the fake-quant output is the integer kernel's output (within 1 LSB)."""
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(1, 6, 3, padding=1)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return F.relu(self.conv(x))

    x = torch.from_numpy(to_luma(embedded_image("camera"))[100:180, 200:290][None, None].copy())
    ranges = calibrate(Net(), x)
    out = fake_quant_module(Net(), ranges).eval()(x).detach().numpy()[0]  # (6, H, W)
    (in_lo, in_hi), (out_lo, out_hi) = ranges["x"], ranges["relu"]
    p_in, p_out = nudged_qparams(in_lo, in_hi), nudged_qparams(out_lo, out_hi)
    q_w, w_scale = quantize_weights_per_channel(conv.weight.detach().numpy())
    q_b = quantize_bias(conv.bias.detach().numpy(), p_in.scale, w_scale)
    q_in = quantize(x.numpy()[0, 0], p_in.scale, p_in.zero_point).astype(np.int64) - p_in.zero_point
    win = np.lib.stride_tricks.sliding_window_view(np.pad(q_in, 1), (3, 3))  # (H, W, 3, 3)
    acc = np.einsum("hwkl,okl->ohw", win, q_w[:, 0].astype(np.int64)) + q_b[:, None, None]
    mult = [quantize_multiplier(float(np.float32(p_in.scale)) * float(s) / float(np.float32(p_out.scale))) for s in w_scale]
    m, sh = np.array([a for a, _ in mult])[:, None, None], np.array([b for _, b in mult])[:, None, None]
    q_out = requantize(acc.astype(np.int32), m, sh, p_out.zero_point, act_min=max(-128, p_out.zero_point))
    lsb = np.rint((out / np.float32(p_out.scale))).astype(np.int64) + p_out.zero_point - q_out
    assert np.abs(lsb).max() <= 1
    assert (lsb == 0).mean() > 0.99


def test_simulation_of_sesr_is_close_to_float_and_not_identical():
    model = tiny_deploy()
    img = embedded_image("chelsea")
    ranges = calibrate(model, calibration_patches([img], model.contract, 48, 16))
    sim = fake_quant_module(model, ranges).eval()
    x = torch.from_numpy(to_luma(img)[None, None].copy())
    with torch.no_grad():
        ref, out = model(x).numpy(), sim(x).numpy()
    assert out.shape == ref.shape and not np.array_equal(out, ref)
    assert psnr(out * 255.0, ref * 255.0) > 40.0  # a few int8 steps of error across 6 quantized tensors
    assert quantizer_ranges(sim) == {k: (np.float32(lo).item(), np.float32(hi).item()) for k, (lo, hi) in ranges.items()}


def test_missing_range_is_a_user_error():
    model = tiny_deploy()
    ranges = calibrate(model, calibration_patches([embedded_image("camera")], model.contract, 32, 4))
    del ranges["add"]
    with pytest.raises(EdgesrError, match="add"):
        fake_quant_module(model, ranges)


class _SplitNet(torch.nn.Module):
    """conv -> identity -> relu on half the channels, concat with the other half (SplitSR's pattern)."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.conv = torch.nn.Conv2d(2, 2, 3, padding=1)
        self.norm = torch.nn.Identity()

    def forward(self, x):
        h = self.head(x)
        y = F.relu(self.norm(self.conv(h[:, :2])))
        return torch.cat([h[:, 2:], y], dim=1) + h


def test_identity_keeps_relu_fused_and_a_concat_joins_one_same_scale_cluster():
    plan = quant_plan(trace(_SplitNet()))
    assert plan["conv"].kind == FUSED and plan["norm"].kind == FUSED  # conv + identity + relu: one tensor
    # TFLite gives CONCATENATION, its operands and (through STRIDED_SLICE) the sliced tensor one
    # scale: head, both slices, the fused relu and the concat form one cluster represented by head
    assert plan["head"].kind == QUANTIZE
    for name in ("getitem", "getitem_1", "relu", "cat"):
        assert plan[name].kind == SHARED and plan[name].source == "head", name
    assert plan["cat"].observed and not plan["getitem"].observed  # the slice is a subset of head
    assert observed_nodes(plan)["head"] == ["head", "cat"]
    x = torch.from_numpy(to_luma(embedded_image("camera"))[None, None, :40, :40].copy())
    torch.manual_seed(0)
    net = _SplitNet()
    ranges = calibrate(net, x)
    assert "conv" not in ranges and ranges["getitem"] == ranges["head"] == ranges["relu"] == ranges["cat"]
    # the cluster's range is the union of head's and the concat's value ranges
    with torch.no_grad():
        h = net.head(x)
        cat = torch.cat([h[:, 2:], F.relu(net.conv(h[:, :2]))], dim=1)
    lo, hi = ranges["head"]
    assert lo == pytest.approx(min(float(h.min()), float(cat.min()), 0.0))
    assert hi == pytest.approx(max(float(h.max()), float(cat.max())))
    assert fake_quant_module(net, ranges)(x).shape == (1, 4, 40, 40)


@pytest.mark.parametrize("name", ["esr_cnn", "esr_max", "esr_tr", "pkn_fixed", "splitsr_s"])
def test_zoo_models_calibrate_and_simulate(name):
    torch.manual_seed(0)
    model = create(name, scale=2)
    model = (model.collapse() if hasattr(model, "collapse") else model).eval()
    patches = calibration_patches([embedded_image("camera")], model.contract, 24, 2)
    ranges = calibrate(model, patches)
    assert set(ranges) == set(tensor_nodes(quant_plan(trace(model))))
    with torch.no_grad():
        out = fake_quant_module(model, ranges).eval()(torch.from_numpy(patches))
    assert out.shape == (2, model.contract.channels, 48, 48) and torch.isfinite(out).all()


def test_functional_conv_weights_are_refused():
    class Functional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(2, 1, 3, 3))

        def forward(self, x):
            return F.conv2d(x, self.w, padding=1)

    with pytest.raises(EdgesrError, match="conv2d"):
        fake_quant_module(Functional(), {"x": (0.0, 1.0), "conv2d": (-1.0, 1.0)})


def test_qat_keeps_the_input_range_fixed():
    """The input range is the contract's [0, 1] (every 8-bit level representable): QAT's EMA
    must not shrink it towards a batch's maximum; an ordinary tensor's range follows the batches."""
    torch.manual_seed(0)
    net = _SplitNet()
    x = torch.from_numpy(to_luma(embedded_image("camera"))[None, None, :40, :40].copy())
    ranges = calibrate(net, x)
    sim = fake_quant_module(net, ranges, range_mode="ema").train()
    assert sim.quantizers["x"].mode == "fixed" and sim.quantizers["add"].mode == "ema"
    before = quantizer_ranges(sim)
    sim(x * 0.5)
    after = quantizer_ranges(sim)
    assert after["x"] == before["x"] and after["add"] != before["add"]  # (_SplitNet has no contract: x keeps its calibrated range)
