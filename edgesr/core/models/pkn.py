"""PKN: Procedural Kernel Networks, applied to super-resolution.

Wronski, "Procedural Kernel Networks", arXiv 2112.09318 (2021).
https://arxiv.org/abs/2112.09318

A lightweight CNN at low resolution predicts, per LR pixel, the parameters of a
procedural, interpretable kernel; the kernel is then evaluated at output resolution, so
the network's cost does not grow with the output size. Here the kernel is an anisotropic
Gaussian kernel regression (an interpolation kernel) with a detail gain:

* Footprint: the (2r+1) x (2r+1) LR samples around LR pixel (i, j) (r = 2: 25 samples).
  HR sub-pixel (a, b), 0 <= a, b < s, of that LR pixel lies at LR offset
  ``o = ((a + 0.5) / s - 0.5, (b + 0.5) / s - 0.5)``; sample k sits at ``d_k - o``.
* Kernel: ``w_k = softmax_k(-0.5 * (d_k - o)^T Q (d_k - o))``, so the weights of every HR
  pixel sum to 1. The precision matrix is given by its Cholesky factor
  ``Q = L L^T``, ``L = [[exp(p0), 0], [p1, exp(p2)]]``: always positive definite, any
  orientation and pair of scales reachable, and evaluated with mul/add/exp only
  (``(d^T Q d) = (exp(p0) dx + p1 dy)^2 + (exp(p2) dy)^2``). :func:`kernel_geometry`
  turns (p0, p1, p2) into orientation and the two scales (sigma_major, sigma_minor).
* Detail gain p3: ``y = y_K + p3 * (y_K - y_B)`` where y_B is a fixed, broader isotropic
  Gaussian of the same footprint (unsharp masking of the kernel; weights still sum to 1).
* Borders: footprint samples outside the image take the LR pixel's own value
  (``samples + (1 - valid) * x``), so a constant image is reproduced exactly.

Export-friendly by construction: the footprint is gathered by a fixed conv with one-hot
kernels (no gather op), the sub-pixel offsets are constant (1, K, 1, 1) tensors, the
s*s sub-pixel outputs are concatenated at LR resolution and put in place by one
depth-to-space; ops are conv, mul, add, exp (inside softmax over dim 1), sum over dim 1,
concat, depth-to-space, clamp; every tensor has rank <= 4.

``adaptive=False`` is the non-adaptive version: one global parameter set (p0..p3), fitted
by training, in place of the CNN; it shows what the network adds.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgesr.core.contract import IOContract
from edgesr.core.registry import register_model

_BASE_SIGMA = 1.0  # LR pixels: the fixed isotropic Gaussian of the detail gain
_INIT_SIGMA = 0.6  # LR pixels: the initial kernel (close to a smooth interpolator)


class PKN(nn.Module):
    """Procedural-kernel SR: per-LR-pixel anisotropic Gaussian kernel regression.

    Input (N, 1, H, W) float32 BT.601 Y / 255 in [0, 1]; output (N, 1, sH, sW) float32
    clipped to [0, 1]. No training-only form (the module is its own deploy form).

    Args:
        scale: s (2, 3 or 4).
        adaptive: predict the kernel parameters with a CNN (True) or use one fitted global
            parameter set (False).
        features: the CNN's width; layers: its number of 3x3 convs (>= 2).
        radius: footprint radius r in LR pixels ((2r+1)^2 samples).

    Raises:
        ValueError: layers < 2, radius < 1 or features < 1.
    """

    def __init__(self, scale: int, adaptive: bool = True, features: int = 16, layers: int = 4, radius: int = 2):
        super().__init__()
        if layers < 2 or radius < 1 or features < 1:
            raise ValueError(f"PKN needs layers >= 2, radius >= 1, features >= 1; got {layers}, {radius}, {features}")
        self.scale, self.adaptive, self.radius = scale, adaptive, radius
        self.contract = IOContract(scale=scale, color="y", channels=1)
        k = 2 * radius + 1
        taps = k * k
        # Fixed footprint gather: one-hot k x k kernels, zero padding (validity handled in forward).
        self.footprint = nn.Conv2d(1, taps, k, padding=radius, bias=False)
        self.footprint.weight.requires_grad_(False)
        with torch.no_grad():
            self.footprint.weight.zero_()
            for t in range(taps):
                self.footprint.weight[t, 0, t // k, t % k] = 1.0
        grid = torch.arange(-radius, radius + 1, dtype=torch.float32)
        sy = grid.repeat_interleave(k)  # sample t = (t // k, t % k) -> offset (sy, sx)
        sx = grid.repeat(k)
        base = []
        for j in range(scale * scale):
            oy, ox = (j // scale + 0.5) / scale - 0.5, (j % scale + 0.5) / scale - 0.5
            dy, dx = sy - oy, sx - ox
            self.register_buffer(f"dy{j}", dy.view(1, taps, 1, 1))
            self.register_buffer(f"dx{j}", dx.view(1, taps, 1, 1))
            b = torch.exp(-0.5 * (dx * dx + dy * dy) / _BASE_SIGMA**2)
            base.append(b / b.sum())
        # Fixed broad Gaussian per sub-pixel over the footprint: a 1x1 conv taps -> s*s.
        self.base = nn.Conv2d(taps, scale * scale, 1, bias=False)
        self.base.weight.requires_grad_(False)
        with torch.no_grad():
            self.base.weight.copy_(torch.stack(base)[:, :, None, None])
        init = torch.tensor([math.log(1.0 / _INIT_SIGMA), 0.0, math.log(1.0 / _INIT_SIGMA), 0.0])
        if adaptive:
            convs = [nn.Conv2d(1, features, 3, padding=1)]
            convs += [nn.Conv2d(features, features, 3, padding=1) for _ in range(layers - 2)]
            body = []
            for c in convs:
                body += [c, nn.ReLU()]
            head = nn.Conv2d(features, 4, 3, padding=1)
            with torch.no_grad():
                head.weight.mul_(0.1)
                head.bias.copy_(init)
            self.net = nn.Sequential(*body, head)
        else:
            self.params = nn.Parameter(init.view(1, 4, 1, 1).clone())

    def kernel_parameters(self, x: torch.Tensor) -> torch.Tensor:
        """Raw parameters (p0, p1, p2, p3): (N, 4, H, W) if adaptive, else (1, 4, 1, 1)."""
        return self.net(x) if self.adaptive else self.params

    def kernel_weights(self, p: torch.Tensor) -> list[torch.Tensor]:
        """Per sub-pixel j (row-major), the Gaussian weights over the footprint: s*s tensors
        (N, (2r+1)^2, H, W) (broadcast shape for the global version), each summing to 1 over dim 1."""
        l11, l21, l22 = torch.exp(p[:, 0:1]), p[:, 1:2], torch.exp(p[:, 2:3])
        out = []
        for j in range(self.scale * self.scale):
            dy, dx = getattr(self, f"dy{j}"), getattr(self, f"dx{j}")
            t1 = l11 * dx + l21 * dy
            t2 = l22 * dy
            out.append(torch.softmax((t1 * t1 + t2 * t2) * -0.5, dim=1))
        return out

    @property
    def receptive_field(self) -> int:
        """side, in LR pixels, of the square input window centred on an LR pixel that its s x s output pixels depend on (the tiling halo is ``receptive_field // 2``; tested by perturbing one input pixel): the (2r+1)^2 footprint and, when adaptive, the CNN's 3x3 convs."""
        convs = sum(isinstance(m, nn.Conv2d) for m in self.net) if self.adaptive else 0
        return 2 * max(self.radius, convs) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        samples = self.footprint(x)  # (N, K, H, W), zero outside the image
        valid = self.footprint(x * 0.0 + 1.0)  # 1 inside, 0 outside
        samples = samples + (1.0 - valid) * x  # outside samples take the centre value
        p = self.kernel_parameters(x)
        sub = [torch.sum(w * samples, dim=1, keepdim=True) for w in self.kernel_weights(p)]
        y = torch.cat(sub, dim=1)  # (N, s*s, H, W)
        y = y + p[:, 3:4] * (y - self.base(samples))
        return torch.clamp(F.pixel_shuffle(y, self.scale), 0.0, 1.0)

    def extra_macs_per_lr_pixel(self) -> int:
        """Multiply-adds per LR pixel outside nn.Conv2d layers (the kernel regression).

        Per sub-pixel and footprint sample: 2 (l11 dx + l21 dy) + 1 (l22 dy) + 2 (squares,
        sum) + 1 (x -0.5) + 1 (exp) + 2 (softmax sum and divide) + 1 (weight * sample,
        summed) = 10; per sub-pixel 2 for the detail gain; per sample 2 for the border fix.
        The CNN, the footprint gather (counted twice: image and validity) and the fixed base
        Gaussian are nn.Conv2d layers, counted by the conv MAC counter.
        """
        taps = (2 * self.radius + 1) ** 2
        s2 = self.scale * self.scale
        return s2 * (taps * 10 + 2) + 2 * taps


def kernel_geometry(p: torch.Tensor) -> dict[str, torch.Tensor]:
    """Interpretable form of raw parameters ``p`` (N, 4, ...) (channels on dim 1).

    Returns ``{"theta": orientation of the major axis in radians, measured from the x axis
    towards y, in (-pi/2, pi/2]; "sigma_major", "sigma_minor": standard deviations in LR
    pixels; "gain": the detail gain}``, each shaped like ``p[:, 0]``, from the eigen-
    decomposition of Q = L L^T (x, y order).
    """
    a, c, d = torch.exp(p[:, 0]), p[:, 1], torch.exp(p[:, 2])
    q = torch.stack([torch.stack([a * a, a * c], -1), torch.stack([a * c, c * c + d * d], -1)], -2)
    lam, vec = torch.linalg.eigh(q)  # ascending: lam[..., 0] is the major (widest) axis
    vx, vy = vec[..., 0, 0], vec[..., 1, 0]
    theta = torch.atan2(vy, vx)
    theta = torch.where(theta > math.pi / 2, theta - math.pi, torch.where(theta <= -math.pi / 2, theta + math.pi, theta))
    return {"theta": theta, "sigma_major": lam[..., 0].rsqrt(), "sigma_minor": lam[..., 1].rsqrt(), "gain": p[:, 3]}


@register_model(scales=(2, 3, 4), aliases=("PKN",))
def pkn(scale: int = 2) -> PKN:
    """PKN: 4-layer 16-wide CNN at LR predicting per-pixel anisotropic Gaussian kernels (5x5 LR footprint)."""
    return PKN(scale, adaptive=True, features=16, layers=4, radius=2)


@register_model(scales=(2, 3, 4), aliases=("PKN-fixed",))
def pkn_fixed(scale: int = 2) -> PKN:
    """Non-adaptive PKN: one fitted global anisotropic Gaussian kernel and gain (4 parameters)."""
    return PKN(scale, adaptive=False, radius=2)
