"""AdaRound: learned up/down rounding of int8 conv weights, layer by layer.

Nagel, Amjad, van Baalen, Louizos, Blankevoort, "Up or Down? Adaptive Rounding for
Post-Training Quantization", ICML 2020. Rounding each weight to the nearest int8 level is not
what minimises a layer's output error. AdaRound keeps the grid and learns, per weight, whether
to round down or up: ``W~ = s * clamp(floor(W / s) + h(V), -127, 127)`` with the rectified
sigmoid ``h(V) = clip(sigmoid(V) * (zeta - gamma) + gamma, 0, 1)``, zeta = 1.1, gamma = -0.1,
minimising on calibration patches::

    || conv(x~, W~) - conv(x, W) ||^2  +  lambda * sum(1 - |2 h(V) - 1| ** beta)

where x~ is the conv's input in the int8 simulation (earlier layers already rounded) and x its
input in the float model. beta is annealed from 20 to 2 after a warm-up without the
regulariser, which drives every h(V) to 0 or 1; the final rounding is ``h(V) >= 0.5``.

The grid is TFLite's: per-output-channel symmetric int8, scale ``max|W[c]| / 127`` (what
:func:`~edgesr.quantization.fake_quant.fake_quant_weight` computes). The element that sets a
channel's scale keeps its nearest rounding (+-127), so the scale is unchanged and the stored
float weight ``q * s`` re-quantizes to exactly ``q``: the int8 simulation and the exporters
see the AdaRounded integers without any new parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from edgesr.quantization.fake_quant import (
    QuantConv2d,
    _round_half_away,
    fake_quant_bias,
    weight_scales,
)
from edgesr.quantization.layer_io import layerwise_setup, run_capture
from torch import nn

ZETA, GAMMA = 1.1, -0.1


@dataclass(frozen=True)
class LayerResult:
    """One conv's reconstruction error (mean over N, H, W of the sum over channels of the
    squared error, the criterion above) with nearest and with learned rounding; ``kept`` is
    ``"adaround"`` or ``"nearest"`` (AdaRound is kept only where it does not do worse)."""

    nearest: float
    adaround: float
    kept: str


def _rect_sigmoid(v: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def _grid(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(scale (O,1,1,1) float64, floor(W/s), nearest q, mask of each channel's max-|W| element)."""
    s = weight_scales(w).double().reshape(-1, 1, 1, 1)
    ws = w.detach().double() / s
    nearest = torch.clamp(_round_half_away(ws), -127.0, 127.0)
    flat = w.detach().abs().reshape(w.shape[0], -1)
    pin = torch.zeros_like(flat, dtype=torch.bool)
    pin[torch.arange(w.shape[0]), flat.argmax(dim=1)] = True
    return s, torch.floor(ws), nearest, pin.reshape(w.shape)


def _layer_loss(x: torch.Tensor, target: torch.Tensor, w: torch.Tensor, b, conv: nn.Conv2d) -> torch.Tensor:
    out = F.conv2d(x, w, b, conv.stride, conv.padding, conv.dilation, conv.groups)
    return (out - target).pow(2).sum(dim=1).mean()


def _error(x, target, w, b, conv, batch_size: int = 16) -> float:
    with torch.no_grad():
        total = sum(float(_layer_loss(x[i : i + batch_size], target[i : i + batch_size], w, b, conv)) * len(x[i : i + batch_size])
                    for i in range(0, x.shape[0], batch_size))
    return total / x.shape[0]


def adaround_layer(conv: nn.Conv2d, x: torch.Tensor, target: torch.Tensor, bias: torch.Tensor | None, *,
                   iters: int = 500, batch_size: int = 8, lam: float = 0.01, beta: tuple[float, float] = (20.0, 2.0),
                   warmup: float = 0.2, lr: float = 1e-2, seed: int = 0) -> tuple[torch.Tensor, LayerResult]:
    """Learned rounding of one conv's weights (see the module doc).

    Args:
        conv: the float ``nn.Conv2d`` (weights (O, I/g, kH, kW)); not modified.
        x: its inputs in the int8 simulation, float32 (N, I, H, W).
        target: its float outputs on the float inputs, float32 (N, O, H', W').
        bias: the bias the simulation adds (int32-rounded), (O,) or None.
        iters, batch_size, lr: Adam steps on V, patches per step, learning rate.
        lam, beta, warmup: regulariser weight, beta annealed from beta[0] to beta[1] after
            the first ``warmup`` fraction of the steps (which run without the regulariser).
        seed: batch order.
    Returns:
        ``(weight, result)``: float32 weights (O, I/g, kH, kW) equal to ``q * scale`` with int8
        q in [-127, 127] on TFLite's per-channel grid, and the :class:`LayerResult` (the
        returned weights are the better of AdaRound and nearest rounding on ``x``).
    """
    s, floor, nearest, pin = _grid(conv.weight)
    rest = (conv.weight.detach().double() / s - floor).clamp(0.0, 1.0)
    v = torch.logit(((rest - GAMMA) / (ZETA - GAMMA)).clamp(1e-4, 1 - 1e-4)).float().requires_grad_(True)
    s32, floor32, nearest32 = s.float(), floor.float(), nearest.float()

    def soft_weight(h):
        return torch.where(pin, nearest32, torch.clamp(floor32 + h, -127.0, 127.0)) * s32

    opt = torch.optim.Adam([v], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    start = int(warmup * iters)
    for it in range(iters):
        idx = torch.randint(x.shape[0], (min(batch_size, x.shape[0]),), generator=gen)
        h = _rect_sigmoid(v)
        loss = _layer_loss(x[idx], target[idx], soft_weight(h), bias, conv)
        if it >= start:
            b = beta[1] + 0.5 * (beta[0] - beta[1]) * (1 + math.cos(math.pi * (it - start) / max(1, iters - start)))
            loss = loss + lam * (1 - (2 * h - 1).abs().pow(b)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        q = torch.where(pin, nearest, torch.clamp(floor + (v >= 0).double(), -127.0, 127.0))
        w_ada, w_near = (q * s).float(), (nearest * s).float()
    err_near, err_ada = _error(x, target, w_near, bias, conv), _error(x, target, w_ada, bias, conv)
    kept = "adaround" if err_ada <= err_near else "nearest"
    return (w_ada if kept == "adaround" else w_near), LayerResult(err_near, err_ada, kept)


def _sim_bias(sim: nn.Module, path: str) -> torch.Tensor | None:
    """The int32-rounded bias the simulation's conv at ``path`` adds (float32 (O,)) or None."""
    qconv = sim.get_submodule(path)
    conv = qconv.conv
    if conv.bias is None:
        return None
    quantizer = qconv._input_quantizer[0]
    if quantizer is None:
        return conv.bias.detach()
    lo, hi = quantizer.bounds()
    with torch.no_grad():
        return fake_quant_bias(conv.bias, ((hi - lo) / 255.0) * weight_scales(conv.weight)).detach()


def adaround(deploy_module: nn.Module, ranges: dict[str, tuple[float, float]], patches, *, iters: int = 500,
             batch_size: int = 8, lam: float = 0.01, lr: float = 1e-2, seed: int = 0, activations: bool = True,
             ) -> tuple[nn.Module, dict[str, LayerResult]]:
    """AdaRound every conv of ``deploy_module``, in graph order, for the int8 simulation with ``ranges``.

    Args:
        deploy_module: plain deploy module (after ``collapse()``), float32, fx-traceable.
        ranges: ``{fx node: (min, max)}`` activation ranges of the simulation.
        activations: False: round for int8 weights with float activations and biases (a w8a16
            model, whose int16 activations come within 1/256 of an int8 step of float), each
            layer's inputs those of the already rounded layers before it; ``ranges`` unused.
        patches: float32 (N, C, P, P) calibration inputs in the contract's range.
        iters, batch_size, lam, lr, seed: see :func:`adaround_layer`.
    Returns:
        ``(module, report)``: a new module (eval mode) whose conv weights lie on TFLite's int8
        per-channel grid with the learned rounding, and ``{conv module path: LayerResult}``.

    Raises:
        EdgesrError: ``patches`` not (N, C, H, W) with N > 0.
    """
    x, reference, module, sim, targets = layerwise_setup(deploy_module, ranges, patches, "AdaRound", activations)
    report: dict[str, LayerResult] = {}
    for path in targets:
        if not isinstance(sim.get_submodule(path), QuantConv2d):
            continue
        conv = module.get_submodule(path)
        inputs = run_capture(sim, path, x, want="input")
        target = run_capture(reference, path, x, want="output")
        weight, report[path] = adaround_layer(conv, inputs, target, _sim_bias(sim, path), iters=iters,
                                              batch_size=batch_size, lam=lam, lr=lr, seed=seed)
        with torch.no_grad():
            conv.weight.copy_(weight)
    return module.eval(), report
