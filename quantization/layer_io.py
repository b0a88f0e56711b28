"""Inputs and outputs of single layers, captured on calibration patches (for layer-wise PTQ).

Bias correction and AdaRound work conv by conv: they need what a conv receives in the int8
simulation (the quantized activations of the layers before it) and what it produced in the
float model. Both are read with forward hooks while the whole model runs on patches.
"""

from __future__ import annotations

import copy

import torch
from edgesr.quantization.fake_quant import QuantConv2d, fake_quant_module
from edgesr.quantization.graph import trace
from torch import fx, nn

from edgesr.core.errors import EdgesrError


def conv_targets(gm: fx.GraphModule) -> list[str]:
    """Module paths of the ``nn.Conv2d`` called by ``gm``, in graph order (each once)."""
    out: list[str] = []
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), (nn.Conv2d, QuantConv2d)):
            if node.target not in out:
                out.append(node.target)
    return out


def run_capture(module: nn.Module, path: str, x: torch.Tensor, batch_size: int = 16,
                want: str = "output") -> torch.Tensor:
    """The input or output of submodule ``path`` while ``module`` runs on ``x`` (no grad).

    Args:
        module: any module (a deploy module, or its int8 simulation), run in its current mode.
        path: the submodule's qualified name (``gm.get_submodule(path)``).
        x: float32 (N, C, H, W) model inputs, run ``batch_size`` at a time.
        want: ``"input"`` (the first positional argument) or ``"output"``.
    Returns:
        float32 tensor, the captured batches concatenated on dim 0 (e.g. (N, C', H', W')). A
        module called several times per forward contributes every call, in order.
    """
    sub = module.get_submodule(path)
    seen: list[torch.Tensor] = []

    def hook(_mod, args, out):
        seen.append((args[0] if want == "input" else out).detach())

    handle = sub.register_forward_hook(hook)
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                module(x[i : i + batch_size])
    finally:
        handle.remove()
    return torch.cat(seen)


def channel_mean(t: torch.Tensor) -> torch.Tensor:
    """Per-channel mean of an (N, C, H, W) tensor over N, H, W, float64, shape (C,)."""
    return t.double().mean(dim=(0, 2, 3))


def layerwise_setup(deploy_module: nn.Module, ranges: dict, patches, technique: str, activations: bool = True):
    """The common start of a layer-by-layer PTQ pass (AdaRound, bias correction).

    ``activations=False`` simulates int8 weights with float activations (the w8a16 model;
    ``ranges`` unused), so a pass fits the weights' rounding alone.

    Returns:
        ``(x, reference, module, sim, targets)``: the patches as float32 (N, C, H, W), a float
        copy of ``deploy_module`` to read targets from, the copy the pass edits, its int8
        simulation sharing the edited weights (:func:`fake_quant_module`, ``share_weights=True``),
        and the conv module paths in graph order (:func:`conv_targets`).

    Raises:
        EdgesrError: ``patches`` not (N, C, H, W) with N > 0 (the message names ``technique``).
    """
    x = torch.as_tensor(patches, dtype=torch.float32)
    if x.ndim != 4 or x.shape[0] == 0:
        raise EdgesrError(f"{technique} needs patches (N, C, H, W), got shape {tuple(x.shape)}")
    reference = copy.deepcopy(deploy_module).float().eval()
    module = copy.deepcopy(deploy_module).float().eval()
    sim = fake_quant_module(module, ranges, share_weights=True, activations=activations).eval()
    return x, reference, module, sim, conv_targets(trace(reference))
