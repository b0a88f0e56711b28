"""Where TFLite's int8 graph holds a quantized tensor, read off a traced deploy module.

The traced graph is ``torch.fx.symbolic_trace(deploy_module)``; its node names are the keys
of ``activation_ranges`` everywhere in edgesr (calibration, QAT, the converters' Keras rebuild).

TFLite int8 (full-integer conversion) per op, mirrored by :func:`quant_plan`, which reads each
op's role from the op table (:mod:`edgesr.core.ops`, the ``quant`` column):

* the input: QUANTIZE -> its own (scale, zero point);
* CONV_2D / ADD / MUL / CONCATENATION / PRELU / MEAN / SUM and any op not listed below: the
  output tensor has its own parameters;
* CONCATENATION's operands share its output parameters (TFLite's converter enforces one scale
  for the operands and the result, and propagates it back through same-scale ops such as
  STRIDED_SLICE to the tensors they slice). So a concat, its operands and their sources form
  one *same-scale cluster* with one (scale, zero point): its first member in graph order
  keeps :data:`QUANTIZE`, the others are :data:`SHARED` with it as source, and those that
  had parameters of their own (a conv output that is sliced, an earlier concat) are
  ``observed``: calibration and QAT take the union of their ranges. An operand produced only
  for the concat is a subset of the concat's values and needs no observer of its own.
  (Measured on SplitSR: the converter gives the stem conv, every slice, every fused
  ADD+RELU and every concat of a group one scale; a per-node range there clipped the stem's
  negative values and cost 18-23 dB.)
* RELU / RELU6 following a CONV_2D or ADD whose only consumer it is (identity layers between
  them do not count): *fused* into that op
  (``fused_activation_function``), so conv+relu is one int8 tensor: the conv node is
  :data:`FUSED` (no tensor of its own) and the relu node carries the parameters;
* DEPTH_TO_SPACE, RESHAPE, TRANSPOSE, MAXIMUM/MINIMUM with a constant (the final clip to
  [0, 1]), MAX_POOL, REDUCE_MAX/MIN (also the values of ``torch.max(x, dim)``): the output
  keeps the input's parameters (:data:`SHARED`);
* SOFTMAX, LOGISTIC: fixed output parameters scale 1/256, zero point -128 (range
  [0, 255/256]); TANH: scale 1/128, zero point 0 (range [-1, 127/128]).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import fx, nn

from edgesr.core.ops import SOFTMAX_RANGE, TANH_RANGE, op_of

__all__ = ["FUSED", "NOT_A_TENSOR", "QUANTIZE", "SHARED", "SOFTMAX_RANGE", "TANH_RANGE", "QuantPoint", "clip_limits",
           "observed_nodes", "quant_plan", "range_source", "tensor_nodes", "trace"]

QUANTIZE = "quantize"
"""The node's output is an int8 tensor with its own parameters."""
FUSED = "fused"
"""The node's output is no TFLite tensor: the RELU after it is fused into it."""
SHARED = "shared"
"""The node's output keeps the parameters of :attr:`QuantPoint.source`."""
NOT_A_TENSOR = "none"
"""Output node, attributes, shapes: nothing to quantize."""

@dataclass(frozen=True)
class QuantPoint:
    """How one fx node's output is quantized in the int8 TFLite model.

    Attributes:
        kind: :data:`QUANTIZE`, :data:`FUSED`, :data:`SHARED` or :data:`NOT_A_TENSOR`.
        source: for :data:`SHARED`, the :data:`QUANTIZE` node whose parameters it keeps.
        fixed_range: for ops with fixed output parameters (softmax, logistic, tanh).
        observed: for :data:`SHARED` members of a same-scale cluster that are not a subset of
            another member's values: the source's range must also cover this node's values.
    """

    kind: str
    source: str | None = None
    fixed_range: tuple[float, float] | None = None
    observed: bool = False


def trace(module: nn.Module) -> fx.GraphModule:
    """``torch.fx.symbolic_trace`` of a deploy module (node names are the range keys)."""
    return fx.symbolic_trace(module)


def _op_class(gm: fx.GraphModule, node: fx.Node) -> tuple[str, tuple[float, float] | None]:
    """The node's quantization role (:data:`edgesr.core.ops.QUANT_ROLES`) and fixed range.

    Read from the op table (:mod:`edgesr.core.ops`); a placeholder is quantized, an output or
    attribute is no tensor, and an op outside the table gets its own parameters.
    """
    if node.op == "placeholder":
        return "quantize", None
    if node.op in ("output", "get_attr"):
        return "none", None
    op = op_of(gm, node)
    if op is None:
        return "quantize", None
    return op.quant, op.fixed_range


def quant_plan(gm: fx.GraphModule) -> dict[str, QuantPoint]:
    """The :class:`QuantPoint` of every node of ``gm`` (see the module doc for the rules).

    Identity layers (``nn.Identity``, ``nn.Dropout``: absent from the TFLite graph) keep their
    input's parameters and do not prevent a RELU from fusing into the conv before them.
    ``x[...]`` slicing of a quantized tensor (STRIDED_SLICE) keeps its parameters; indexing
    anything else (a shape, a tuple) is not a tensor to quantize.
    """
    classes = {n.name: _op_class(gm, n) for n in gm.graph.nodes}
    plan: dict[str, QuantPoint] = {}
    for node in gm.graph.nodes:
        cls, rng = classes[node.name]
        first = next((a for a in node.args if isinstance(a, fx.Node)), None)
        first_is_tensor = first is not None and plan[first.name].kind in (QUANTIZE, SHARED)
        if cls == "slice" and first is not None and classes[first.name][0] == "tuple":  # torch.max(...)[0]
            values_of = next((a for a in first.args if isinstance(a, fx.Node)), None)
            plan[node.name] = QuantPoint(SHARED, source=range_source(plan, values_of.name))
        elif cls in ("none", "tuple") or (cls == "slice" and not first_is_tensor):
            plan[node.name] = QuantPoint(NOT_A_TENSOR)
        elif cls == "fixed":
            plan[node.name] = QuantPoint(QUANTIZE, fixed_range=rng)
        elif cls in ("shared", "identity", "slice") and first_is_tensor:
            plan[node.name] = QuantPoint(SHARED, source=range_source(plan, first.name))
        else:
            plan[node.name] = QuantPoint(QUANTIZE)
        if cls == "relu" and first is not None:
            chain = [first]  # walk back through identity layers to the producer
            while classes[chain[-1].name][0] == "identity" and len(chain[-1].users) == 1:
                arg = next((a for a in chain[-1].args if isinstance(a, fx.Node)), None)
                if arg is None:
                    break
                chain.append(arg)
            if classes[chain[-1].name][0] == "fusing" and all(len(n.users) == 1 for n in chain):
                for n in chain:
                    plan[n.name] = QuantPoint(FUSED)
    for node in gm.graph.nodes:  # CONCATENATION: operands produced for it alone take its parameters
        if classes[node.name][0] == "concat" and plan[node.name].kind == QUANTIZE:
            for arg in node.args[0] if isinstance(node.args[0], (list, tuple)) else ():
                point = plan.get(getattr(arg, "name", None))
                if point is not None and point.kind == QUANTIZE and point.fixed_range is None and len(arg.users) == 1:
                    plan[arg.name] = QuantPoint(SHARED, source=node.name)
    _merge_same_scale_clusters(gm, plan)
    return plan


def _merge_same_scale_clusters(gm: fx.GraphModule, plan: dict[str, QuantPoint]) -> None:
    """Give each concat, its operands' sources and everything sharing them one source (in place)."""
    parent: dict[str, str] = {}

    def find(n: str) -> str:
        while parent.get(n, n) != n:
            n = parent[n]
        return n

    order = {n.name: i for i, n in enumerate(gm.graph.nodes)}
    for node in gm.graph.nodes:
        if _op_class(gm, node)[0] != "concat" or plan[node.name].kind != QUANTIZE:
            continue
        for arg in node.args[0] if isinstance(node.args[0], (list, tuple)) else ():
            point = plan.get(getattr(arg, "name", None))
            if point is None or point.kind not in (QUANTIZE, SHARED):
                continue
            a, b = find(range_source(plan, arg.name)), find(node.name)
            if a != b and plan[a].fixed_range is None:
                a, b = sorted((a, b), key=order.get)
                parent[b] = a  # the earlier node represents the cluster
    if not parent:
        return
    for name, point in list(plan.items()):
        if point.kind == QUANTIZE and find(name) != name:
            plan[name] = QuantPoint(SHARED, source=find(name), observed=True)
        elif point.kind == SHARED and find(point.source) != point.source:
            plan[name] = QuantPoint(SHARED, source=find(point.source), observed=point.observed)


def _clamp_bounds(node: fx.Node) -> tuple[float, float] | None:
    """(min, max) of a clamp / clip / hardtanh with constant bounds, else None."""
    op = op_of(None, node) if node.op in ("call_function", "call_method") else None
    if op is not None and op.name == "clamp":
        names = ("min_val", "max_val") if node.target is F.hardtanh else ("min", "max")
        defaults = (-1.0, 1.0) if node.target is F.hardtanh else (None, None)
        args = list(node.args[1:3]) + [None] * (2 - len(node.args[1:3]))
        lo, hi = (args[i] if args[i] is not None else node.kwargs.get(names[i], defaults[i]) for i in range(2))
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
            return float(lo), float(hi)
    return None


def clip_limits(gm: fx.GraphModule, plan: dict[str, QuantPoint]) -> dict[str, tuple[float, float]]:
    """``{source: (lo, hi)}`` for parameter groups whose every value ends in a constant clamp.

    A source's tensor and the :data:`SHARED` nodes that keep its parameters (depth-to-space,
    reshapes, slices, REDUCE_MAX, the clamp itself) all have one (scale, zero point). When
    each of those nodes feeds only others of the group, except a final ``clamp(lo, hi)``
    whose result is the model's output, and no member is ``observed`` (a concat cluster),
    then values outside [lo, hi] cannot change the output: every op in between is a selection
    or permutation of values, and ``max``/``min`` commute with a monotone clamp
    (``clip(max(a, b)) == max(clip(a), clip(b))``). The group's range can then be narrowed to
    [lo, hi] (with 0 kept inside), a finer int8 scale at no clipping cost. eSR-MAX is the
    case in point: its conv output's range is several times [0, 1].
    """
    members: dict[str, list[fx.Node]] = {}
    nodes = {n.name: n for n in gm.graph.nodes}
    for name, point in plan.items():
        if point.kind == QUANTIZE and point.fixed_range is None:
            members.setdefault(name, []).insert(0, nodes[name])
        elif point.kind == SHARED:
            members.setdefault(point.source, []).append(nodes[name])
    out = {}
    for source, group in members.items():
        if plan[source].kind != QUANTIZE or any(plan[n.name].observed for n in group):
            continue
        names = {n.name for n in group}
        clamps = [n for n in group if _clamp_bounds(n) is not None and all(u.op == "output" for u in n.users)]
        if len(clamps) != 1:
            continue
        closed = all(all(u.name in names for u in n.users) for n in group if n is not clamps[0])
        if closed:
            out[source] = _clamp_bounds(clamps[0])
    return out


def observed_nodes(plan: dict[str, QuantPoint]) -> dict[str, list[str]]:
    """``{source: [nodes whose values its range must cover]}`` for every calibrated source.

    The source itself first, then the ``observed`` members of its same-scale cluster. Fixed-
    range nodes (softmax, logistic, tanh) are not calibrated and not listed.
    """
    out = {n: [n] for n, p in plan.items() if p.kind == QUANTIZE and p.fixed_range is None}
    for n, p in plan.items():
        if p.kind == SHARED and p.observed:
            out[p.source].append(n)
    return out


def range_source(plan: dict[str, QuantPoint], name: str) -> str:
    """The node whose parameters ``name``'s tensor uses (itself unless :data:`SHARED`)."""
    point = plan[name]
    return point.source if point.kind == SHARED else name


def tensor_nodes(plan: dict[str, QuantPoint]) -> list[str]:
    """Names of the nodes that are int8 tensors in TFLite (the keys of ``activation_ranges``)."""
    return [name for name, p in plan.items() if p.kind in (QUANTIZE, SHARED)]
