"""LSQ: learned step size (and offset) of int8 activations, as one fused autograd function.

Esser, McKinney, Bablani, Appuswamy, Modha, "Learned Step Size Quantization", ICLR 2020; the
learned offset of asymmetric quantizers follows Bhalgat et al., "LSQ+", CVPR-W 2020.

A tensor's TFLite parameters are its range [lo, hi] (the exporters read ranges): scale
``s = (hi - lo) / 255`` and zero point ``zp = round_half_away(-lo / s)`` clamped to [0, 255]
(TF's nudging, :func:`~edgesr.quantization.fake_quant.fake_quant_activation`), nudged minimum
``m = -zp * s``. With ``q = floor((clamp(x, m, m + 255 s) - m) / s - zp + 0.5)`` in [-zp, 255 - zp]::

    forward:   out = s * q                         (TF's FakeQuant output)
    d out/dx = 1 if m <= x <= m + 255 s else 0     (straight through inside the range)
    d out/ds = q - x / s inside, q outside         (LSQ's step-size gradient)
    d out/dm = 0 inside, 1 outside                 (LSQ+'s offset gradient)

and ``dL/dhi = dL/ds / 255``, ``dL/dlo = dL/dm - dL/ds / 255``; both parameter gradients are
multiplied by LSQ's ``grad_scale = 1 / sqrt(features * 255)`` (features = elements per sample),
which keeps the step size's updates in proportion to the weights' for any tensor size.

The forward is TF's float32 ops in TF's order, in place (bit-identical to
:func:`~edgesr.quantization.fake_quant.fake_quant_activation`), and the backward two
comparisons and two dot products, against about twenty autograd nodes for the composite
function with learnable bounds: QAT's hot path.
"""

from __future__ import annotations

import torch


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.floor(torch.abs(x) + 0.5)


class _LSQ(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lo, hi, grad_scale: float):
        with torch.no_grad():  # TF's FakeQuant, same float32 ops in the same order
            s = (hi - lo) / 255.0
            inv = 255.0 / (hi - lo)
            zp = torch.clamp(_round_half_away(-lo / s), 0.0, 255.0)
            m = -zp * s
            q = torch.clamp(x, m, (255.0 - zp) * s).sub_(m).mul_(inv).sub_(zp).add_(0.5).floor_()
            out = q * s
        ctx.save_for_backward(x, q, m, s)
        ctx.grad_scale = grad_scale
        return out

    @staticmethod
    def backward(ctx, grad):
        x, q, m, s = ctx.saved_tensors
        inside = (x >= m) & (x <= m + 255.0 * s)
        grad_x = grad * inside
        g, gx = grad.reshape(-1), grad_x.reshape(-1)
        grad_s = (torch.dot(g, q.reshape(-1)) - torch.dot(gx, x.reshape(-1)) / s) * ctx.grad_scale
        grad_m = (g.sum() - gx.sum()) * ctx.grad_scale
        return grad_x, grad_m - grad_s / 255.0, grad_s / 255.0, None


def lsq_fake_quant(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Int8 fake quantization of ``x`` with LSQ gradients for the range bounds (see the module doc).

    Args:
        x: float32 activations (N, ...) (e.g. (N, C, H, W)); N is the batch.
        lo, hi: 0-dim float32 tensors, lo <= 0 <= hi, hi > lo (trainable).
    Returns:
        float32 tensor of ``x``'s shape on the int8 grid of [lo, hi] (TF's nudged grid).
    """
    features = max(1, x.numel() // max(1, x.shape[0])) if x.dim() else 1
    return _LSQ.apply(x, lo, hi, 1.0 / (features * 255.0) ** 0.5)
