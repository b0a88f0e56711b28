"""Cross-layer equalization (CLE) of consecutive convolutions in a traced deploy graph.

Nagel, van Baalen, Blankevoort, Welling, "Data-Free Quantization Through Weight Equalization
and Bias Correction", ICCV 2019 (section 4.1). For two convolutions ``conv1 -> f -> conv2``
where ``f`` is positively homogeneous per channel (``f(s x) = s f(x)`` for ``s > 0``: identity,
ReLU, PReLU with any slopes), scaling output channel i of ``conv1`` (weights and bias) by
``1 / s_i`` and input channel i of ``conv2`` by ``s_i`` leaves the float function unchanged.
The paper's choice ``s_i = sqrt(r1_i / r2_i)``, with ``r1_i = max |W1[i, :, :, :]|`` and
``r2_i = max |W2[:, i, :, :]|``, makes both ranges ``sqrt(r1_i * r2_i)``: the per-channel
weight ranges of the pair are equalized, and so are the per-channel ranges of the
activation between them (which TFLite quantizes per tensor).

PReLU needs no change of its slopes: ``prelu_a(s x) = s prelu_a(x)`` for every slope ``a``
when ``s > 0``, so its (per-channel or shared) slopes are the consistent rescaling already.
ReLU6, tanh, clamps and every other non-homogeneous op end a pair.

Pairs are only formed where the graph allows: ``conv1``'s output (and the activation's) must
feed ``conv2`` alone. A residual add, a concat, a slice, a depth-to-space or a second consumer
of the tensor would see the rescaled channels, so such a conv is skipped and the reason
recorded (:class:`EqualizationReport`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from edgesr.quantization.graph import trace
from torch import fx, nn

_RELU_FUNCTIONS = {F.relu, torch.relu}
_IDENTITY_MODULES = (nn.Identity, nn.Dropout)


@dataclass
class EqualizationReport:
    """What :func:`equalize` did.

    Attributes:
        pairs: ``(conv1 node, conv2 node, activation)`` of every equalized pair, graph order.
        skipped: ``{conv node: reason}`` for convs that could not start a pair.
        rounds: equalization sweeps run (chains of pairs converge over sweeps).
    """

    pairs: list[tuple[str, str, str]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    rounds: int = 0


def _is_conv(gm: fx.GraphModule, node: fx.Node) -> bool:
    return node.op == "call_module" and isinstance(gm.get_submodule(node.target), nn.Conv2d)


def _describe(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)).__name__
    if node.op == "output":
        return "the model output"
    return getattr(node.target, "__name__", str(node.target))


def _homogeneous(gm: fx.GraphModule, node: fx.Node) -> str | None:
    """'identity' / 'relu' / 'prelu' when ``node`` commutes with positive per-channel scaling."""
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if isinstance(mod, _IDENTITY_MODULES):
            return "identity"
        if type(mod) is nn.ReLU:
            return "relu"
        if isinstance(mod, nn.PReLU):
            return "prelu"
    if node.op == "call_function" and node.target in _RELU_FUNCTIONS and len(node.args) == 1:
        return "relu"
    if node.op == "call_method" and node.target == "relu":
        return "relu"
    return None


def _pair_after(gm: fx.GraphModule, conv1: fx.Node) -> tuple[fx.Node | None, str]:
    """(conv2, activation) when ``conv1 -> homogeneous ops -> conv2`` is a valid pair, else (None, reason)."""
    node, acts = conv1, []
    while True:
        users = list(node.users)
        if len(users) != 1:
            what = ", ".join(_describe(gm, u) for u in users) or "nothing"
            return None, f"{node.name} feeds {len(users)} consumers ({what}): rescaled channels would reach them"
        (user,) = users
        if _is_conv(gm, user):
            conv2 = gm.get_submodule(user.target)
            c1 = gm.get_submodule(conv1.target)
            if conv2.groups != 1 or c1.groups != 1:
                return None, f"grouped convolution between {conv1.name} and {user.name}"
            if user.args[0] is not node:
                return None, f"{node.name} is not {user.name}'s input"
            return user, "+".join(a for a in acts if a != "identity") or "none"
        kind = _homogeneous(gm, user)
        if kind is None:
            return None, f"followed by {_describe(gm, user)} ({user.name}), not positively homogeneous"
        if kind == "prelu":
            slopes = gm.get_submodule(user.target).weight.numel()
            out = gm.get_submodule(conv1.target).out_channels
            if slopes not in (1, out):
                return None, f"PReLU {user.name} has {slopes} slopes for {out} channels"
        acts.append(kind)
        node = user


def _equalize_pair(conv1: nn.Conv2d, conv2: nn.Conv2d) -> float:
    """Equalize one pair in place; returns max |log s_i| (0 when already equal)."""
    with torch.no_grad():
        w1, w2 = conv1.weight.double(), conv2.weight.double()
        r1 = w1.abs().reshape(w1.shape[0], -1).amax(dim=1)
        r2 = w2.abs().transpose(0, 1).reshape(w2.shape[1], -1).amax(dim=1)
        ok = (r1 > 0) & (r2 > 0)
        s = torch.where(ok, torch.sqrt(r1 / torch.where(ok, r2, 1.0)), torch.ones_like(r1))
        conv1.weight.copy_((w1 / s.reshape(-1, 1, 1, 1)).float())
        if conv1.bias is not None:
            conv1.bias.copy_((conv1.bias.double() / s).float())
        conv2.weight.copy_((w2 * s.reshape(1, -1, 1, 1)).float())
        return float(s.log().abs().max())


def equalization_pairs(gm: fx.GraphModule) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """The conv pairs of a traced graph that CLE may rescale, and why the other convs cannot.

    Returns:
        ``([(conv1 node, conv2 node, activation)], {conv node: reason skipped})``.
    """
    pairs, skipped = [], {}
    for node in gm.graph.nodes:
        if not _is_conv(gm, node):
            continue
        conv2, why = _pair_after(gm, node)
        if conv2 is None:
            skipped[node.name] = why
        else:
            pairs.append((node.name, conv2.name, why))
    return pairs, skipped


def equalize(deploy_module: nn.Module, *, max_rounds: int = 20, tol: float = 1e-4) -> tuple[nn.Module, EqualizationReport]:
    """Cross-layer equalization of every valid conv pair of ``deploy_module`` (a copy).

    Args:
        deploy_module: plain deploy module (after ``collapse()``), float32, fx-traceable; its
            convs are ``nn.Conv2d`` (input and output (N, C, H, W)).
        max_rounds: sweeps over all pairs at most (a chain conv_a -> conv_b -> conv_c shares
            conv_b, so one sweep does not equalize both pairs exactly).
        tol: stop when no scale of a sweep differs from 1 by more than this (log scale).
    Returns:
        ``(module, report)``: a new module of the same class (eval mode, same attributes) whose
        float output equals the input module's up to float32 rounding, and the
        :class:`EqualizationReport`. Activation ranges calibrated before CLE no longer
        apply: calibrate the returned module.
    """
    module = copy.deepcopy(deploy_module).float().eval()
    gm = trace(module)  # shares module's submodules: edits below land in ``module``
    pairs, skipped = equalization_pairs(gm)
    report = EqualizationReport(pairs=pairs, skipped=skipped)
    convs = {n.name: gm.get_submodule(n.target) for n in gm.graph.nodes if _is_conv(gm, n)}
    for report.rounds in range(1, max_rounds + 1):
        change = max((_equalize_pair(convs[a], convs[b]) for a, b, _ in pairs), default=0.0)
        if change < tol:
            break
    return module, report


__all__ = ["EqualizationReport", "equalization_pairs", "equalize"]
