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

QAT's hot path, so the function is fused by hand. The range parameters are 0-dim, and their
arithmetic (clamping to a valid range, TF's nudging, the gradients' combination) runs on NumPy
float32 scalars, the same IEEE float32 operations in the same order as the tensor version
(``255 / (hi - lo)`` as PyTorch evaluates it on a 0-dim tensor: reciprocal, then times 255;
a property test holds the two equal on arbitrary ranges), in microseconds instead of a dozen
autograd nodes per quantizer. On the tensor side the forward is
TF's float32 ops in TF's order, in place (bit-identical to
:func:`~edgesr.quantization.fake_quant.fake_quant_activation`): six passes; the backward is one
fused mask-and-multiply (``hardtanh_backward`` with bounds one float32 ulp outside [m, M], so
that it is inclusive) and four reductions, skipped when the range is not trained.
Measured in ``python bench/quant.py`` (docs/quant.md, "Cost of a QAT step").
"""

from __future__ import annotations

import numpy as np
import torch

_F32 = np.float32


def _nudged(rmin: float, rmax: float, min_width: float):
    """TF's nudged int8 grid of the raw range (float32 scalars) and which raw bound each end follows."""
    a, b = _F32(rmin), _F32(rmax)
    lo = min(a, _F32(0.0))
    hi_raw, hi_floor = max(b, _F32(0.0)), lo + _F32(min_width)
    hi = max(hi_raw, hi_floor)
    s = (hi - lo) / _F32(255.0)
    inv = (_F32(1.0) / (hi - lo)) * _F32(255.0)  # how PyTorch evaluates 255.0 / (0-dim tensor)
    z = -lo / s
    zp = min(max(np.sign(z) * np.floor(np.abs(z) + _F32(0.5)), _F32(0.0)), _F32(255.0))
    m = -zp * s
    top = (_F32(255.0) - zp) * s
    # where the gradients of lo and hi go (the clamps that made them): lo to rmin while rmin <= 0;
    # hi to rmax while rmax >= 0, to lo at the minimum width, else nowhere
    hi_to = "lo" if hi_floor > hi_raw else ("rmax" if b >= 0 else None)
    return s, inv, zp, m, top, bool(a <= 0), hi_to


class _LSQ(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, rmin, rmax, min_width: float, grad_scale: float):
        s, inv, zp, m, top, lo_to_rmin, hi_to = _nudged(float(rmin), float(rmax), min_width)
        # TF's FakeQuant, same float32 ops in the same order (Function.forward runs without grad)
        q = torch.clamp(x, float(m), float(top)).sub_(float(m)).mul_(float(inv))
        q.sub_(float(zp - _F32(0.5))).floor_()  # (t - zp) is exact, so this is (t - zp) + 0.5
        out = q.mul_(float(s))  # in place: one buffer per call (fresh ones cost page faults)
        ctx.save_for_backward(x, out)
        ctx.consts = (float(s), grad_scale, lo_to_rmin, hi_to,
                      float(np.nextafter(m, _F32(-np.inf))), float(np.nextafter(top, _F32(np.inf))))
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        s, grad_scale, lo_to_rmin, hi_to, below, above = ctx.consts
        grad_x = torch.ops.aten.hardtanh_backward(grad, x, below, above)  # grad on [m, top], else 0
        if not (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            return grad_x, None, None, None, None
        g, gx = grad.reshape(-1), grad_x.reshape(-1)
        g_out, g_x = torch.dot(g, out.reshape(-1)).item(), torch.dot(gx, x.reshape(-1)).item()
        g_all, g_in = g.sum().item(), gx.sum().item()
        grad_s = (g_out - g_x) / s * grad_scale  # sum g * q - sum_inside g * x / s, with q = out / s
        grad_m = (g_all - g_in) * grad_scale
        grad_hi = grad_s / 255.0
        grad_lo = grad_m - grad_hi
        if hi_to == "lo":
            grad_lo += grad_hi
        grad_rmin = grad_lo if lo_to_rmin else 0.0
        grad_rmax = grad_hi if hi_to == "rmax" else 0.0
        return grad_x, torch.tensor(grad_rmin, dtype=grad.dtype), torch.tensor(grad_rmax, dtype=grad.dtype), None, None


def lsq_fake_quant(x: torch.Tensor, rmin: torch.Tensor, rmax: torch.Tensor, min_width: float = 0.0) -> torch.Tensor:
    """Int8 fake quantization of ``x`` with LSQ gradients for the range bounds (see the module doc).

    Args:
        x: float32 activations (N, ...) (e.g. (N, C, H, W)); N is the batch.
        rmin, rmax: 0-dim float32 tensors, the raw range (trainable or not). The range used is
            ``lo = min(rmin, 0)``, ``hi = max(rmax, 0, lo + min_width)``, as
            :meth:`~edgesr.quantization.fake_quant.ActivationFakeQuant.bounds` makes it, and the
            gradients follow those clamps (``rmin`` gets none while it is above 0, ``rmax`` none
            while it is below 0 or the range is at its minimum width, which then moves with ``lo``).
        min_width: narrowest range; callers with ``hi - lo`` possibly 0 must pass one > 0.
    Returns:
        float32 tensor of ``x``'s shape on the int8 grid of [lo, hi] (TF's nudged grid).
    """
    features = max(1, x.numel() // max(1, x.shape[0])) if x.dim() else 1
    return _LSQ.apply(x, rmin, rmax, min_width, 1.0 / (features * 255.0) ** 0.5)
