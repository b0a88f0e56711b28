"""The PyTorch LUT engine: batched, differentiable in the LUT entries, bit-exact with numpy and C.

The LUTs are float tensors (so LUT-aware fine-tuning can train them); with integer-valued
LUTs every intermediate is an integer below 2**24, exact in float32, and the rounding
steps are those of ``lut_engine.h`` (SR-LUT: half up; SPLUT: ``floor((t + 2) / 4)``).
Rounding inside the forward uses a straight-through estimator (STE): the forward value is
the rounded one, the gradient that of the identity.
"""

from __future__ import annotations

import torch

from edgesr.core.models.lut import (
    depth_to_space,
    pad_bottom_right,
    reflect_pad_index,
    ste_floor,
    ste_round,
)


def lut_values(lut: torch.Tensor) -> torch.Tensor:
    """The int8 values a float LUT stands for: STE round of clamp(lut, -127, 127)."""
    return ste_round(torch.clamp(lut, -127.0, 127.0))


# --------------------------------------------------------------------------- SR-LUT


def srlut_interpolate(lut: torch.Tensor, bits: int, pix: list[torch.Tensor]) -> torch.Tensor:
    """4-D simplex interpolation of a float LUT (L**4, s*s) at pixels a, b, c, d (int64, shape S).

    Returns float S + (s*s,): ``sum_j w_j * lut[v_j]`` (q times the interpolated value);
    the vertices and weights are those of :func:`edgesr.lut_baking.engine_numpy.simplex_weights`.
    """
    q, levels = 1 << bits, (256 >> bits) + 1
    stride = (levels**3, levels**2, levels, 1)
    frac = [p & (q - 1) for p in pix]
    rank = [torch.zeros_like(frac[0]) for _ in range(4)]
    for d in range(4):
        for e in range(4):
            if e != d:
                rank[d] += (frac[e] >= frac[d]) if e < d else (frac[e] > frac[d])
    vertex = sum((p >> bits) * st for p, st in zip(pix, stride))
    sorted_f, steps = [], []
    for j in range(4):
        sorted_f.append(sum((rank[d] == j) * frac[d] for d in range(4)))
        steps.append(sum((rank[d] == j) * stride[d] for d in range(4)))
    weights = [q - sorted_f[0], sorted_f[0] - sorted_f[1], sorted_f[1] - sorted_f[2], sorted_f[2] - sorted_f[3], sorted_f[3]]
    out = 0
    for j in range(5):
        if j:
            vertex = vertex + steps[j - 1]
        out = out + weights[j].unsqueeze(-1).to(lut.dtype) * lut[vertex]
    return out


def srlut_total(lut: torch.Tensor, bits: int, scale: int, img: torch.Tensor) -> torch.Tensor:
    """The rotation-ensemble sum T: img int64 (N, h, w) in 0..255 -> float (N, h*s, w*s).

    T / (q * 255) is the SR image in [0, 1] before clipping; the 8-bit output is
    ``clamp(floor((T + q/2) / q), 0, 255)`` (see :func:`srlut_upscale`).
    """
    total = 0
    for r in range(4):
        rot = pad_bottom_right(torch.rot90(img, r, dims=(1, 2)))
        pix = [rot[:, :-1, :-1], rot[:, :-1, 1:], rot[:, 1:, :-1], rot[:, 1:, 1:]]
        acc = srlut_interpolate(lut, bits, pix)
        total = total + torch.rot90(depth_to_space(acc, scale), -r, dims=(1, 2))
    return total


def srlut_upscale(lut: torch.Tensor, bits: int, scale: int, img: torch.Tensor) -> torch.Tensor:
    """Exact SR-LUT: uint8 (N, h, w) -> uint8 (N, h*s, w*s), rounding half up (lut_engine.h)."""
    q = 1 << bits
    with torch.no_grad():
        total = srlut_total(lut.float(), bits, scale, img.long())
        return torch.clamp(torch.floor((total + q // 2) / q), 0, 255).to(torch.uint8)


def srlut_forward(lut: torch.Tensor, bits: int, scale: int, img: torch.Tensor) -> torch.Tensor:
    """Differentiable SR-LUT for fine-tuning: int64 (N, h, w) -> float (N, h*s, w*s) in [0, 1].

    Uses the int8 values of ``lut`` (STE rounding) and returns ``clamp(T / (q * 255), 0, 1)``
    without the final 8-bit rounding (the loss sees the unrounded value).
    """
    q = 1 << bits
    return torch.clamp(srlut_total(lut_values(lut), bits, scale, img) / (q * 255.0), 0.0, 1.0)


# --------------------------------------------------------------------------- SPLUT


def _index(i0, i1, i2, i3) -> torch.Tensor:
    return ((i0 * 16 + i1) * 16 + i2) * 16 + i3


def _neighbour(f: torch.Tensor, dim: int, o: int) -> torch.Tensor:
    n = f.shape[dim]
    idx = torch.as_tensor(reflect_pad_index(n, 1, 1)[1 + o : 1 + o + n], device=f.device)
    return f.index_select(dim, idx)


def splut_stage(stage: list[torch.Tensor], feat: torch.Tensor, o: int) -> torch.Tensor:
    """One series stage: features (N, h, w, 4) -> T (N, h, w, C), the sum of its 4 lookups."""
    h0, h1, v0, v1 = stage
    lv = torch.floor((feat.detach() + 128) / 16).long()
    hn, vn = _neighbour(lv, 2, o), _neighbour(lv, 1, o)
    t = 0
    for g, (hl, vl) in enumerate(((h0, v0), (h1, v1))):
        c0, c1 = 2 * g, 2 * g + 1
        t = t + hl[_index(lv[..., c0], lv[..., c1], hn[..., c0], hn[..., c1])]
        t = t + vl[_index(lv[..., c0], lv[..., c1], vn[..., c0], vn[..., c1])]
    return t


def splut_branch(luts: list[torch.Tensor], variant: int, part: torch.Tensor) -> torch.Tensor:
    """One branch on part values int64 (N, h, w) in 0..15 -> float (N, h, w, 16) final sums R."""
    p = pad_bottom_right(part)
    feat = luts[0][_index(p[:, :-1, :-1], p[:, :-1, 1:], p[:, 1:, :-1], p[:, 1:, 1:])]  # (N, h, w, 4)
    for s in range(variant):
        t = splut_stage(luts[1 + 4 * s : 5 + 4 * s], feat, -1 if s % 2 == 0 else 1)
        feat = torch.clamp(feat + ste_floor((t + 2) / 4), -127, 127)
    return splut_stage(luts[1 + 4 * variant : 5 + 4 * variant], feat, -1 if variant % 2 == 0 else 1)


def splut_total(luts: list[torch.Tensor], variant: int, img: torch.Tensor) -> torch.Tensor:
    """SPLUT x4 before clipping, in 8-bit units: int64 (N, h, w) -> float (N, 4h, 4w).

    ``img + floor((R_msb + R_lsb + 2) / 4)`` per sub-pixel (STE floor); LUTs as given.
    """
    n = 5 + 4 * variant
    r = splut_branch(luts[:n], variant, img >> 4) + splut_branch(luts[n:], variant, img & 15)
    return depth_to_space(img.unsqueeze(-1).to(r.dtype) + ste_floor((r + 2) / 4), 4)


def splut_upscale(luts: list[torch.Tensor], variant: int, img: torch.Tensor) -> torch.Tensor:
    """Exact SPLUT x4: uint8 (N, h, w) -> uint8 (N, 4h, 4w) (lut_engine.h)."""
    with torch.no_grad():
        total = splut_total([lut.float() for lut in luts], variant, img.long())
        return torch.clamp(total, 0, 255).to(torch.uint8)


def splut_forward(luts: list[torch.Tensor], variant: int, img: torch.Tensor) -> torch.Tensor:
    """Differentiable SPLUT x4 for fine-tuning: int64 (N, h, w) -> float (N, 4h, 4w) in [0, 1].

    Uses the int8 values of the LUTs (STE rounding); every floor is an STE floor, so the
    forward equals the integer engines' output / 255.
    """
    return torch.clamp(splut_total([lut_values(lut) for lut in luts], variant, img), 0.0, 255.0) / 255.0
