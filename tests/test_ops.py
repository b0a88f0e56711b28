"""The op table (edgesr.core.ops) against its consumers and against what the converters emit.

* Each consumer (the Keras rebuild's emitters, the integer reference, the MIL interpreter)
  implements exactly the ops the table says it does: a missing implementation and an
  implementation the table calls unsupported both fail.
* Every call node of every zoo model's deploy graph is a table op that all three consumers
  implement.
* Ground truth: the TFLite (fp32 and int8) and Core ML graphs the converters make of small
  modules built from the table's ops hold only the ops the table says those ops lower to.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from edgesr.converters import coreml, tflite
from edgesr.converters.gpu_emulation import GpuDelegateGraph
from edgesr.converters.keras_ops import EMITTERS
from edgesr.converters.mil_interpreter import KERNELS as MIL_KERNELS
from edgesr.converters.mil_interpreter import load_program
from edgesr.quantization.graph import quant_plan, trace
from edgesr.quantization.integer_ref import IntegerGraph
from edgesr.quantization.tflite_model import read_model
from skimage import data
from torch import nn

from edgesr.core.errors import EdgesrError
from edgesr.core.models import create, list_models
from edgesr.core.ops import CONSUMERS, OPS, channel_dot, consumer_ops, op_named, op_of

torch.fx.wrap("channel_dot")

# ops a converter adds around any graph (I/O conversion, constants), not lowered from a model op
TFLITE_HOUSEKEEPING = {"QUANTIZE", "DEQUANTIZE"}
MIL_HOUSEKEEPING = {"const", "cast", "identity", "quantize", "dequantize", "constexpr_affine_dequantize"}


def test_every_consumer_implements_exactly_its_ops():
    keras = {op.name for op in consumer_ops("keras")}
    assert set(EMITTERS) == keras, f"emitters without a row / rows without an emitter: {set(EMITTERS) ^ keras}"
    for consumer, kernels in (("integer_ref", IntegerGraph.SUPPORTED), ("gpu_emulation", GpuDelegateGraph.SUPPORTED)):
        for op in OPS:
            if op.tflite:
                has = set(op.tflite) <= set(kernels)
                assert has == (consumer not in op.unsupported), f"{op.name}: {consumer} kernels for {op.tflite}: {has}"
    for op in OPS:
        if not op.mil:
            continue
        has = set(op.mil) <= set(MIL_KERNELS)
        assert has == ("mil" not in op.unsupported), f"{op.name}: MIL interpreter kernels for {op.mil}: {has}"


def test_table_refuses_an_unknown_consumer():
    with pytest.raises(ValueError, match="unknown consumer"):
        consumer_ops("nnapi")
    assert set(CONSUMERS) == {"keras", "integer_ref", "gpu_emulation", "mil"}


# the lookup tables are baked, not converted; the bicubic baseline is not an exported network
NETWORKS = [e for e in list_models() if e.family not in ("lut", "bicubic")]


@pytest.mark.parametrize("entry", NETWORKS, ids=lambda e: e.name)
def test_zoo_deploy_graphs_hold_only_table_ops(entry):
    model = create(entry.name, scale=entry.scales[0]).eval()
    deploy = model.collapse() if hasattr(model, "collapse") else model
    gm = trace(deploy)
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        op = op_of(gm, node)
        assert op is not None, f"{entry.name}: node {node.name} ({node.target}) is not in the op table"
        assert not op.unsupported, f"{entry.name}: {op.name} lacks {sorted(op.unsupported)}"


class _Elementwise(nn.Module):
    """conv, prelu (distinct slopes), relu, add, sub, mul, clamp, depth-to-space."""

    ops = ("conv2d", "prelu", "relu", "add", "sub", "mul", "clamp", "depth_to_space")

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = nn.Conv2d(3, 12, 3, padding=1)
        self.b = nn.Conv2d(12, 12, 3, padding=1)
        self.prelu = nn.PReLU(12)
        with torch.no_grad():
            self.prelu.weight.copy_(torch.rand(12, generator=g) * 0.5)

    def forward(self, x):
        h = self.prelu(self.a(x))
        h = torch.relu(self.b(h)) + h
        h = (h - 0.25) * 0.5
        return torch.clamp(F.pixel_shuffle(h, 2), 0.0, 1.0)


class _Heads(nn.Module):
    """concat, channel slices, reduce_max (amax and max), sum, channel_dot, mean, softmax, tanh, exp, relu6, identity."""

    ops = ("conv2d", "concat", "getitem", "reduce_max", "max", "sum", "channel_dot", "mean", "softmax", "tanh", "exp",
           "relu6", "identity", "mul", "add", "depth_to_space")

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.drop = nn.Dropout(0.1)
        self.act = nn.ReLU6()

    def forward(self, x):
        h = self.drop(self.a(x))
        left, right = h[:, 0:4], h[:, 4:8]
        m = torch.amax(left, dim=1, keepdim=True) + torch.max(right, dim=1, keepdim=True)[0]
        s = torch.sum(left * torch.softmax(right, dim=1), dim=1, keepdim=True)
        t = torch.tanh(torch.mean(h, dim=1, keepdim=True)) + torch.exp(self.act(m) * -1.0)
        d = channel_dot(right, torch.softmax(left, dim=1))
        return F.pixel_shuffle(torch.cat([m, s, t, d], dim=1), 2)


def _declared(module, backend: str) -> set[str]:
    return {name for op in module.ops for name in getattr(op_named(op), backend)}


@pytest.fixture(scope="module")
def calibration():
    img = data.astronaut()[::4, ::4].astype(np.float32) / 255.0
    patches = [img[y:y + 32, x:x + 32].transpose(2, 0, 1) for y in (0, 40, 80) for x in (0, 40, 80)]
    return np.stack(patches)


@pytest.mark.parametrize("module_cls", [_Elementwise, _Heads], ids=lambda c: c.__name__)
def test_plan_reads_the_table(module_cls):
    gm = trace(module_cls().eval())
    plan = quant_plan(gm)
    seen = {op_of(gm, n).name for n in gm.graph.nodes if n.op.startswith("call_")}
    assert seen == set(module_cls.ops), "the test module uses exactly the ops it names"
    for node in gm.graph.nodes:
        op = op_of(gm, node) if node.op.startswith("call_") else None
        if op is not None and op.quant == "fixed":
            assert plan[node.name].fixed_range == op.fixed_range


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("module_cls", [_Elementwise, _Heads], ids=lambda c: c.__name__)
def test_tflite_lowering_matches_the_table(module_cls, precision, calibration, tmp_path):
    blob = tflite.convert(module_cls().eval(), 3, precision, calibration=calibration if precision == "int8" else None)
    path = tmp_path / "m.tflite"
    path.write_bytes(blob)
    _, ops, _, _ = read_model(path)
    emitted = {op.name for op in ops}
    assert emitted - TFLITE_HOUSEKEEPING <= _declared(module_cls, "tflite"), emitted - _declared(module_cls, "tflite")
    if precision == "int8":  # the integer reference runs what the table says it can, and names what it cannot
        missing = [op for op in module_cls.ops if "integer_ref" in op_named(op).unsupported]
        if missing:
            with pytest.raises(EdgesrError, match="no kernel for " + "|".join(op_named(m).tflite[0] for m in missing)):
                IntegerGraph(path)
        else:
            IntegerGraph(path)
    GpuDelegateGraph(path, "fp16")  # the GPU delegate's emulation runs every op the table gives it


@pytest.mark.parametrize("module_cls", [_Elementwise, _Heads], ids=lambda c: c.__name__)
def test_coreml_lowering_matches_the_table(module_cls, tmp_path):
    ml = coreml.convert(module_cls().eval(), 3, "fp32")
    path = coreml.save(ml, tmp_path / "m.mlpackage", {})
    emitted = {op.type for op in load_program(path).ops}
    assert emitted - MIL_HOUSEKEEPING <= _declared(module_cls, "mil"), emitted - _declared(module_cls, "mil")
    assert emitted - {"const"} <= set(MIL_KERNELS)
