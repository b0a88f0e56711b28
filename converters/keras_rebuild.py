"""Generic PyTorch -> Keras rebuild of a deploy module, driven by ``torch.fx.symbolic_trace``.

No per-model Keras twin: every node of the traced graph is looked up in the op table
(:mod:`edgesr.core.ops`) and its emitter in :data:`edgesr.converters.keras_ops.EMITTERS` and emitted as a Keras layer or ``keras.ops`` call
on NHWC tensors. Weights are copied (conv OIHW -> HWIO). The Keras model takes
float32 (1, H, W, C) with dynamic H and W and returns float32 (1, s*H, s*W, C).

Channel order of depth-to-space. PyTorch's ``pixel_shuffle(r)`` sends input channel
``c*r*r + i*r + j`` to output channel ``c`` at sub-pixel ``(i, j)``; TF's
``depth_to_space(r)`` reads that value from channel ``(i*r + j)*C + c``. They agree when
C = 1. For C > 1 the rebuild keeps, per tensor, a *channel layout* ``perm`` (Keras channel
``k`` holds PyTorch channel ``perm[k]``) and asks the producers of a depth-to-space input for
the permuted layout: convs absorb it by permuting their output channels (weights and bias),
elementwise ops (add, mul, PReLU, ReLU, clamp, tanh, softmax) pass it on to their inputs, so
the exported graph holds no extra op. Only where a producer cannot absorb it (a concat, the
model input, conflicting consumers) is an explicit channel gather inserted.

Activation ranges: ``activation_ranges={fx node name: (min, max)}`` inserts a fake-quant
(``tf.quantization.fake_quant_with_min_max_args``, 8 bits, TFLite's nudged ranges) after
each named node, so the int8 converter uses exactly those ranges. Give ranges at TFLite's
quantization points (:func:`edgesr.quantization.graph.quant_plan`): where the converter fuses a node
away (an ADD or CONV_2D followed by ReLU or by the final clip to [0, 1], which becomes a fused
RELU), the fused op's tensor takes the range of the node that ends the fusion, and a range
given for the fused-away node is not used.
"""

from __future__ import annotations

import numpy as np
import torch
from edgesr.converters.keras_ops import (
    CONV,
    DEPTH_TO_SPACE,
    ELEMENTWISE,
    FIXED,
    INVARIANT,
    _constant_nhwc,
    _keras,
    _layers,
    spec_of,
)
from torch import nn

from edgesr.core.errors import EdgesrError

# --------------------------------------------------------------------------- the builder


class Builder:
    """State of one rebuild: the traced module, shapes, chosen layouts and emitted tensors."""

    def __init__(self, gm: torch.fx.GraphModule):
        self.gm = gm
        self.layout: dict[torch.fx.Node, tuple[int, ...] | None] = {}
        self.env: dict[torch.fx.Node, object] = {}

    # shapes of the PyTorch tensors (N, C, H, W), from ShapeProp
    def channels(self, node) -> int | None:
        meta = node.meta.get("tensor_meta") if isinstance(node, torch.fx.Node) else None
        shape = getattr(meta, "shape", None)
        return int(shape[1]) if shape is not None and len(shape) == 4 else None

    def module(self, node) -> nn.Module:
        return self.gm.get_submodule(node.target)

    def constant(self, node) -> torch.Tensor:
        if isinstance(node, torch.fx.Node) and node.op == "get_attr":
            obj = self.gm
            for part in node.target.split("."):
                obj = getattr(obj, part)
            return obj.detach()
        raise EdgesrError(f"keras rebuild: expected a parameter, got {node} (weights computed in forward are not supported; export the collapsed module)")

    def to_layout(self, tensor, have, want):
        """Reorder ``tensor`` from channel layout ``have`` to ``want`` (None = PyTorch order)."""
        if have == want:
            return tensor
        n = len(have or want)
        inv_have = np.argsort(np.asarray(have if have is not None else range(n)))
        index = inv_have[np.asarray(want if want is not None else range(n))]
        return _layers()["ChannelGather"](index)(tensor)


# --------------------------------------------------------------------------- the rebuild


def trace(module: nn.Module, channels: int) -> torch.fx.GraphModule:
    """``torch.fx.symbolic_trace`` the module and record every tensor's shape (ShapeProp).

    Raises:
        EdgesrError: the module cannot be traced symbolically (data-dependent control flow).
    """
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        gm = torch.fx.symbolic_trace(module.eval())
    except Exception as exc:  # fx raises TraceError, TypeError, ... on untraceable code
        raise EdgesrError(f"keras rebuild: {type(module).__name__} cannot be traced by torch.fx ({str(exc).splitlines()[0][:160]})") from None
    with torch.no_grad():
        ShapeProp(gm).propagate(torch.rand(1, channels, 12, 12, generator=torch.Generator().manual_seed(0)))
    return gm


_ANY = "any"


def _groups(b: Builder, conv: torch.fx.Node) -> int:
    if conv.op == "call_module":
        return b.module(conv).groups
    return conv.args[6] if len(conv.args) > 6 else conv.kwargs.get("groups", 1)


def _requirement(b: Builder, user: torch.fx.Node, node: torch.fx.Node):
    """The channel layout ``user`` wants for its input ``node``: a perm, None (PyTorch order) or _ANY."""
    if user.op == "output":
        return None
    spec = spec_of(b.gm, user)
    if spec.kind == INVARIANT:
        return _ANY
    if spec.kind == CONV:
        return _ANY if _groups(b, user) == 1 and user.args[0] is node else None
    if spec.kind == ELEMENTWISE:
        return b.layout.get(user) if b.channels(node) == b.channels(user) else _ANY
    if spec.kind == DEPTH_TO_SPACE:
        r = int(b.module(user).upscale_factor if user.op == "call_module" else (user.args[1] if len(user.args) > 1 else user.kwargs["upscale_factor"]))
        c = b.channels(user)
        return None if c == 1 else tuple(c_ * r * r + ij for ij in range(r * r) for c_ in range(c))
    return None


def _choose_layouts(b: Builder) -> None:
    """Reverse pass: each conv/elementwise node takes the layout all its consumers agree on."""
    for node in reversed(b.gm.graph.nodes):
        if node.op not in ("call_module", "call_function", "call_method") or (b.channels(node) or 1) == 1:
            continue
        kind = spec_of(b.gm, node).kind
        if kind not in (CONV, ELEMENTWISE) or (kind == CONV and _groups(b, node) != 1):
            continue  # grouped convs keep PyTorch order (their channels are tied to the input's)
        wants = {_requirement(b, u, node) for u in node.users} - {_ANY}
        b.layout[node] = wants.pop() if len(wants) == 1 else None


def rebuild(module: nn.Module, channels: int, activation_ranges: dict[str, tuple[float, float]] | None = None,
            input_size: tuple[int, int] | None = None, dot_as_matmul: bool = False):
    """Rebuild a deploy module as a Keras functional model.

    Args:
        module: the deploy ``nn.Module`` (NCHW float32 in, NCHW out), traceable by torch.fx.
        channels: C of the input (the contract's channels).
        activation_ranges: ``{fx node name: (min, max)}``; a fake-quant with that range is
            inserted after each named node (the placeholder's name covers the input).
        input_size: ``(H, W)`` for a fixed input shape; None: dynamic H and W.
        dot_as_matmul: lower :func:`edgesr.core.ops.channel_dot` to BATCH_MATMUL (the int8 and
            w8a16 exports; both conversions of a w8a16 export, which must match op for op)
            instead of MUL + SUM (float graphs).

    Returns:
        ``keras.Model`` taking float32 (1, H, W, C) NHWC (None, None for dynamic H and W),
        returning (1, s*H, s*W, C_out).

    Raises:
        EdgesrError: an op outside the op table (:mod:`edgesr.core.ops`) or without an emitter, an unknown node name in ``activation_ranges``,
        or weights computed in forward.
    """
    keras = _keras()
    gm = trace(module, channels)
    b = Builder(gm)
    names = {n.name for n in gm.graph.nodes}
    unknown = sorted(set(activation_ranges or {}) - names)
    if unknown:
        raise EdgesrError(f"activation_ranges name nodes not in the traced graph: {', '.join(unknown[:5])} (nodes: {', '.join(sorted(names))[:300]})")
    b.dot_as_matmul = dot_as_matmul
    _choose_layouts(b)
    inputs = outputs = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if inputs is not None:
                raise EdgesrError("keras rebuild: the module must take one input tensor")
            hw = (None, None) if input_size is None else tuple(int(v) for v in input_size)
            inputs = y = keras.Input(shape=(*hw, channels), batch_size=1, name="input")
        elif node.op == "get_attr":
            y = b.constant(node)
        elif node.op == "output":
            out = node.args[0]
            if not isinstance(out, torch.fx.Node):
                raise EdgesrError("keras rebuild: the module must return one tensor")
            outputs = b.to_layout(b.env[out], b.layout.get(out), None)
            continue
        else:
            spec = spec_of(b.gm, node)
            want = b.layout.get(node)

            def fetch(a, spec=spec, want=want, node=node):
                t = b.env[a]
                if isinstance(t, torch.Tensor):  # constant operand (get_attr): NHWC numpy, same layout
                    same = spec.kind == ELEMENTWISE and (b.channels(a) or 1) > 1 and b.channels(a) == b.channels(node)
                    return _constant_nhwc(t, want if same else None) if spec.kind == ELEMENTWISE else t
                if spec.kind == ELEMENTWISE and (b.channels(a) or 1) > 1:
                    return b.to_layout(t, b.layout.get(a), want)
                if spec.kind in (FIXED, DEPTH_TO_SPACE) and (b.channels(a) or 1) > 1:
                    return b.to_layout(t, b.layout.get(a), _requirement(b, node, a))
                return t

            args = torch.fx.node.map_arg(node.args, fetch)
            kwargs = torch.fx.node.map_arg(node.kwargs, fetch)
            y = spec.emit(b, node, *args, **kwargs)
        if activation_ranges and node.name in activation_ranges:
            lo, hi = activation_ranges[node.name]
            y = _layers()["FakeQuant"](lo, hi, name=f"fq_{node.name}")(y)
        b.env[node] = y
    # TF's name scopes refuse a leading underscore (the conversion then fails deep inside TF)
    return keras.Model(inputs, outputs, name=type(module).__name__.lstrip("_") or "model")
