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
by training, in place of the CNN; it shows what the network adds. With one global kernel the
model is linear, and :class:`FixedPKN` (``pkn_fixed``) collapses to two k x k convolutions, a
multiply and an add (:class:`FixedKernelDeploy`): in int8 it runs as one XNNPACK partition,
where the traced kernel regression left two ADDs on builtin kernels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgesr.core.contract import IOContract
from edgesr.core.ops import channel_dot
from edgesr.core.registry import register_model

torch.fx.wrap("channel_dot")  # a leaf of fx traces here too (fx.wrap patches the calling module's globals)

_BASE_SIGMA = 1.0  # LR pixels: the fixed isotropic Gaussian of the detail gain
_INIT_SIGMA = 0.6  # LR pixels: the initial kernel (close to a smooth interpolator)


class PKN(nn.Module):
    """Procedural-kernel SR: per-LR-pixel anisotropic Gaussian kernel regression.

    Input (N, 1, H, W) float32 BT.601 Y / 255 in [0, 1]; output (N, 1, sH, sW) float32
    clipped to [0, 1]. The adaptive model has no training-only form (it is its own deploy
    form); the non-adaptive one is :class:`FixedPKN`, which collapses.

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
        sub = [channel_dot(w, samples) for w in self.kernel_weights(p)]  # int8: BATCH_MATMUL, int32 sums
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


class FixedPKN(PKN):
    """Non-adaptive PKN (``adaptive=False``): one global kernel, so the model is linear and
    :meth:`collapse` folds it into one convolution (see :class:`FixedKernelDeploy`).

    Args:
        scale: s (2, 3 or 4); radius: footprint radius r in LR pixels.
    """

    def __init__(self, scale: int, radius: int = 2):
        super().__init__(scale, adaptive=False, radius=radius)

    def collapse(self) -> FixedKernelDeploy:
        """The deploy form: the same function as ``forward`` (to float32 rounding, ~1e-6).

        Per sub-pixel j, the HR value is ``sum_k M_jk samples_k`` with
        ``M_j = (1 + p3) w_j - p3 b_j`` (w_j the Gaussian weights, b_j the base Gaussian), and
        the footprint gather is a one-hot conv, so ``M_j`` reshaped to (2r+1, 2r+1) is one
        conv kernel. Returns a new module; ``self`` is unchanged.
        """
        with torch.no_grad():
            p = self.params
            w = torch.cat(self.kernel_weights(p), dim=0)[:, :, 0, 0]  # (s*s, K)
            gain = p[0, 3, 0, 0]
            m = (1.0 + gain) * w - gain * self.base.weight[:, :, 0, 0]
        k = 2 * self.radius + 1
        deploy = FixedKernelDeploy(m.reshape(self.scale * self.scale, 1, k, k), self.scale)
        deploy.registry_name = getattr(self, "registry_name", None)  # a checkpoint of it names its model
        deploy.registry_kwargs = getattr(self, "registry_kwargs", {})
        return deploy


class FixedKernelDeploy(nn.Module):
    """A fixed sub-pixel kernel regression as convolutions: the deploy form of :class:`FixedPKN`.

    ``y = conv(x, W) + x * (sum(W) - conv(1, W))``, then depth-to-space and a clip to [0, 1]:
    the first conv is the kernel over the footprint with zero padding; the second term gives
    the weight of every out-of-image tap to the LR pixel itself (PKN's border rule, "samples
    outside take the centre value"), and is zero away from the border. ``conv(1, W)`` is a
    conv of the all-ones image ``x * 0 + 1``, with weights ``-W`` and bias ``sum(W)``.

    Input (N, 1, H, W) float32 Y in [0, 1]; output (N, 1, sH, sW) float32 in [0, 1].

    Args:
        weight: (s*s, 1, k, k) float32, one k x k kernel per sub-pixel (row-major), k odd.
        scale: s.
    """

    def __init__(self, weight: torch.Tensor, scale: int):
        super().__init__()
        taps, _, k, _ = weight.shape
        self.scale, self.radius = scale, k // 2
        self.contract = IOContract(scale=scale, color="y", channels=1)
        self.kernel = nn.Conv2d(1, taps, k, padding=k // 2, bias=False)
        self.ones = nn.Conv2d(1, 1, 1)
        self.border = nn.Conv2d(1, taps, k, padding=k // 2)
        with torch.no_grad():
            self.ones.weight.zero_()
            self.ones.bias.fill_(1.0)
            self.kernel.weight.copy_(weight)
            self.border.weight.copy_(-weight)
            self.border.bias.copy_(weight.sum(dim=(1, 2, 3)))

    @property
    def receptive_field(self) -> int:
        """Side of the LR input window an output pixel depends on: the kernel's, 2r + 1."""
        return 2 * self.radius + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.kernel(x) + x * self.border(self.ones(x))
        return torch.clamp(F.pixel_shuffle(y, self.scale), 0.0, 1.0)


@register_model(scales=(2, 3, 4), aliases=("PKN",))
def pkn(scale: int = 2) -> PKN:
    """PKN: 4-layer 16-wide CNN at LR predicting per-pixel anisotropic Gaussian kernels (5x5 LR footprint)."""
    return PKN(scale, adaptive=True, features=16, layers=4, radius=2)


@register_model(scales=(2, 3, 4), aliases=("PKN-fixed",))
def pkn_fixed(scale: int = 2) -> FixedPKN:
    """Non-adaptive PKN: one fitted global anisotropic Gaussian kernel and gain (4 parameters)."""
    return FixedPKN(scale, radius=2)
