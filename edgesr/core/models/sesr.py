"""SESR: Super-Efficient Super Resolution with collapsible linear blocks.

Bhardwaj et al., "Collapsible Linear Blocks for Super-Efficient Super Resolution",
MLSys 2022. https://arxiv.org/abs/2103.09404 (upstream: github.com/ARM-software/sesr).

Structure (Y channel in and out, [0, 1]):

    x -> LB5x5(1->f) = x0 -> m x [LB3x3(f->f) + identity, PReLU] -> + x0
      -> LB5x5(f->s*s) -> + x (added to each of the s*s channels) -> depth-to-space(s)

A linear block (LB) is a k x k conv to ``p`` channels followed by a 1 x 1 conv back, with no
nonlinearity between, so it collapses into one k x k conv. x4 uses one depth-to-space(4)
(not two depth-to-space(2)); the exporters keep that.

Training runs in the *collapsed-forward form* by default (Sec. 3.3 of the paper): each step
computes the collapsed kernels from the expanded parameters, differentiably, and runs the
small convs; it computes the same function, with the same gradients, as the expanded form
at a fraction of the cost. ``training_form="expanded"`` runs the two convs instead.

:meth:`SESR.collapse` returns :class:`SESRDeploy`, a plain module of k x k convs *with*
biases (the official code drops them) and each residual identity folded into the kernel
centre.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgesr.core.contract import IOContract
from edgesr.core.registry import register_model


class LinearBlock(nn.Module):
    """k x k conv (cin -> p) then 1 x 1 conv (p -> cout), no nonlinearity; optional identity.

    Args:
        cin, cout: input and output channels; ``residual`` needs cin == cout.
        kernel: k (odd); 'same' zero padding k // 2.
        expansion: p, the hidden width (256 in the paper).
        residual: add the input (folded into the kernel centre on collapse).
    """

    def __init__(self, cin: int, cout: int, kernel: int, expansion: int, residual: bool = False):
        super().__init__()
        if residual and cin != cout:
            raise ValueError("a residual linear block needs cin == cout")
        self.expand = nn.Conv2d(cin, expansion, kernel, padding=kernel // 2)
        self.squeeze = nn.Conv2d(expansion, cout, 1)
        self.residual = residual
        self.kernel = kernel

    def collapsed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single conv equal to this block: weight (cout, cin, k, k), bias (cout,). Differentiable."""
        w2 = self.squeeze.weight[:, :, 0, 0]  # (cout, p)
        weight = torch.einsum("op,pikl->oikl", w2, self.expand.weight)
        bias = w2 @ self.expand.bias + self.squeeze.bias
        if self.residual:
            c = self.kernel // 2
            eye = torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
            weight = weight.clone()
            weight[:, :, c, c] = weight[:, :, c, c] + eye
        return weight, bias

    def forward(self, x: torch.Tensor, collapsed: bool = False) -> torch.Tensor:
        if collapsed:
            w, b = self.collapsed()
            return F.conv2d(x, w, b, padding=self.kernel // 2)
        y = self.squeeze(self.expand(x))
        return y + x if self.residual else y


class SESR(nn.Module):
    """SESR in its training form.

    Input (N, 1, H, W) float32 BT.601 Y / 255; output (N, 1, sH, sW), unclipped while
    training (the deployed form clips to [0, 1]).

    Args:
        scale: 2, 3 or 4.
        features: f, the width of the residual blocks (16, or 32 for XL).
        blocks: m, the number of residual 3 x 3 linear blocks.
        expansion: p, the linear blocks' hidden width (256).
        activation: ``"prelu"`` (one slope per channel, the paper) or ``"relu"``
            (the int8-friendly variant the authors use for quantization).
        training_form: ``"collapsed"`` (default) or ``"expanded"``; see the module doc.
    """

    def __init__(self, scale: int, features: int = 16, blocks: int = 5, expansion: int = 256,
                 activation: str = "prelu", training_form: str = "collapsed"):
        super().__init__()
        if activation not in ("prelu", "relu"):
            raise ValueError(f"activation must be 'prelu' or 'relu', got {activation!r}")
        if training_form not in ("collapsed", "expanded"):
            raise ValueError(f"training_form must be 'collapsed' or 'expanded', got {training_form!r}")
        self.scale = scale
        self.activation = activation
        self.training_form = training_form
        self.contract = IOContract(scale=scale, color="y", channels=1)
        self.first = LinearBlock(1, features, 5, expansion)
        self.blocks = nn.ModuleList(LinearBlock(features, features, 3, expansion, residual=True) for _ in range(blocks))
        self.acts = nn.ModuleList(
            (nn.PReLU(features, init=0.25) if activation == "prelu" else nn.ReLU()) for _ in range(blocks)
        )
        self.last = LinearBlock(features, scale * scale, 5, expansion)

    @property
    def receptive_field(self) -> int:
        """side, in LR pixels, of the square input window centred on an LR pixel that its s x s output pixels depend on (the tiling halo is ``receptive_field // 2``; tested by perturbing one input pixel): 5x5, m 3x3, 5x5 convs."""
        return 2 * (2 + len(self.blocks) + 2) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.training_form == "collapsed"
        x0 = self.first(x, c)
        h = x0
        for block, act in zip(self.blocks, self.acts):
            h = act(block(h, c))
        h = self.last(h + x0, c) + x
        return F.pixel_shuffle(h, self.scale)

    def collapse(self) -> "SESRDeploy":
        """A new :class:`SESRDeploy` computing ``clip(self(x), 0, 1)``; self is unchanged."""
        deploy = SESRDeploy(self.scale, self.first.squeeze.out_channels, len(self.blocks), self.activation)
        with torch.no_grad():
            for src, dst in [(self.first, deploy.first), *zip(self.blocks, deploy.blocks), (self.last, deploy.last)]:
                w, b = src.collapsed()
                dst.weight.copy_(w)
                dst.bias.copy_(b)
            if self.activation == "prelu":
                for src, dst in zip(self.acts, deploy.acts):
                    dst.weight.copy_(src.weight)
        deploy.registry_name = getattr(self, "registry_name", None)
        deploy.registry_kwargs = getattr(self, "registry_kwargs", {})
        return deploy.eval()


class SESRDeploy(nn.Module):
    """Collapsed SESR: plain convs with bias, PReLU/ReLU, adds, depth-to-space, clip.

    Input (N, 1, H, W) float32 in [0, 1] (BT.601 Y / 255); output (N, 1, sH, sW) in [0, 1].
    """

    def __init__(self, scale: int, features: int = 16, blocks: int = 5, activation: str = "prelu"):
        super().__init__()
        self.scale = scale
        self.contract = IOContract(scale=scale, color="y", channels=1)
        self.first = nn.Conv2d(1, features, 5, padding=2)
        self.blocks = nn.ModuleList(nn.Conv2d(features, features, 3, padding=1) for _ in range(blocks))
        self.acts = nn.ModuleList((nn.PReLU(features) if activation == "prelu" else nn.ReLU()) for _ in range(blocks))
        self.last = nn.Conv2d(features, scale * scale, 5, padding=2)

    @property
    def receptive_field(self) -> int:
        """side, in LR pixels, of the square input window centred on an LR pixel that its s x s output pixels depend on (the tiling halo is ``receptive_field // 2``; tested by perturbing one input pixel): 5x5, m 3x3, 5x5 convs."""
        return 2 * (2 + len(self.blocks) + 2) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.first(x)
        h = x0
        for conv, act in zip(self.blocks, self.acts):
            h = act(conv(h))
        h = self.last(h + x0) + x
        return torch.clamp(F.pixel_shuffle(h, self.scale), 0.0, 1.0)


_CONFIGS = {"m3": (16, 3), "m5": (16, 5), "m7": (16, 7), "m11": (16, 11), "xl": (32, 11)}


def _factory(cfg: str, activation: str):
    features, blocks = _CONFIGS[cfg]
    suffix = "" if activation == "prelu" else "_relu"

    def fn(scale: int = 2, expansion: int = 256, training_form: str = "collapsed") -> SESR:
        return SESR(scale, features, blocks, expansion, activation, training_form)

    fn.__name__ = f"sesr_{cfg}{suffix}"
    fn.__doc__ = (f"SESR-{cfg.upper()} (f={features}, m={blocks}), {activation.upper()}"
                  f"{' (int8-friendly)' if activation == 'relu' else ''}; Bhardwaj et al., MLSys 2022.")
    aliases = (f"SESR-{cfg.upper()}{'-ReLU' if suffix else ''}",)
    return register_model(fn, scales=(2, 3, 4), aliases=aliases, family="sesr")


for _cfg in _CONFIGS:
    for _act in ("prelu", "relu"):
        globals()[f"sesr_{_cfg}{'' if _act == 'prelu' else '_relu'}"] = _factory(_cfg, _act)
