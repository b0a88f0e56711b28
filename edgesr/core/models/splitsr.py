"""SplitSR: split convolutions with channel rotation for on-device super-resolution.

Liu, Li, Fan, Lane, Liu (et al.), "SplitSR: An End-to-End Approach to Super-Resolution on
Mobile Devices", Proc. ACM IMWUT 5(1), 2021. https://arxiv.org/abs/2101.07996

Structure (Y channel in and out, [0, 1]; RCAN-style body without channel attention):

    x -> conv3x3(1->C) = x0 -> G residual groups -> conv3x3(C->C) -> + x0
      -> conv3x3(C->s*s) -> depth-to-space(s)

* SplitSR block: of the C channels the first a = alpha*C (alpha = 0.25) go through
  conv3x3 + BN + ReLU, the other C - a pass untouched; the result is
  ``cat([passive, processed])``, so the processed channels rotate to the end and every
  channel is processed once every 1/alpha blocks. The block residual is on the processed
  channels, ``processed = ReLU(BN(conv(active)) + active)``, as in the authors' code
  (RCAN-based; its ``SplitSRBlock``). Issue 4 read "then a block residual"
  as ``cat(...) + x`` over all channels; that adds every passive channel to a rotated
  neighbour, doubling the signal each block, so a 36-block network's activations explode at
  initialization (measured: the paper configuration did not train). edgesr follows the authors.
* Standard residual block (the "hybrid" part): conv3x3 + BN + ReLU + conv3x3 + BN, ``+ x``.
* Residual group: B blocks, then conv3x3(C->C), then the group residual ``+ input``.
  Groups ``0 .. hybrid_index-1`` use SplitSR blocks, groups ``hybrid_index .. G-1``
  standard residual blocks (the paper's hybrid SplitSR, hybrid index 3 of 6 groups).
* Every block and group owns its weights (no module reused across repetitions).
* A group of SplitSR blocks carries its channels as a list of ``C / a`` chunks of ``a``
  channels, not as one tensor that is sliced and concatenated in every block: the same
  function (the same rotation), but each chunk is its own tensor. In int8 this matters: the
  inputs of a concatenation share one scale in TFLite, so with one stream tensor per block the
  head's outputs (about +-1.2 on the T91-trained SplitSR-S) shared a scale with the ReLU
  outputs they are concatenated with (0 to 7.3), about 36 of the 256 levels for the head. With
  chunks only the group's final concatenation remains, of processed chunks. Measured with
  min/max ranges on that model's Set5 x2 int8 drop: 2.72 dB one stream, 1.99 dB chunks.

:meth:`SplitSR.collapse` folds each BatchNorm (running statistics, i.e. eval mode) into
the conv before it and returns :class:`SplitSRDeploy`, a plain module of convs with bias,
ReLUs, slices, concatenations, adds, depth-to-space and the final clip to [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgesr.core.contract import IOContract
from edgesr.core.registry import register_model


def _norm(channels: int, bn: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if bn else nn.Identity()


class SplitBlock(nn.Module):
    """SplitSR block: ``ReLU(BN(conv3x3(a)) + a)`` on the first ``active`` channels a, then rotate.

    Input and output (N, C, H, W) float32.
    """

    def __init__(self, channels: int, active: int, bn: bool):
        super().__init__()
        self.active = active
        self.conv = nn.Conv2d(active, active, 3, padding=1, bias=not bn)
        self.norm = _norm(active, bn)

    def process(self, active: torch.Tensor) -> torch.Tensor:
        """``ReLU(BN(conv3x3(a)) + a)`` of the active channels a (N, active, H, W)."""
        return F.relu(self.norm(self.conv(active)) + active)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, self.active :], self.process(x[:, : self.active])], dim=1)


class ResBlock(nn.Module):
    """Standard residual block: conv3x3 + BN + ReLU + conv3x3 + BN, ``+ x``. (N, C, H, W)."""

    def __init__(self, channels: int, bn: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=not bn)
        self.norm1 = _norm(channels, bn)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=not bn)
        self.norm2 = _norm(channels, bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x))))) + x


class Group(nn.Module):
    """Residual group: blocks, conv3x3(C->C), ``+ input``. (N, C, H, W)."""

    def __init__(self, channels: int, blocks: int, split: bool, active: int, bn: bool):
        super().__init__()
        make = (lambda: SplitBlock(channels, active, bn)) if split else (lambda: ResBlock(channels, bn))
        self.blocks = nn.Sequential(*(make() for _ in range(blocks)))  # a new module per block
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = list(self.blocks)
        if not (blocks and isinstance(blocks[0], SplitBlock)) or self.conv.in_channels % blocks[0].active:
            return self.conv(self.blocks(x)) + x  # residual blocks, or chunks that would not tile C
        # SplitSR blocks on a list of chunks (module doc): block i processes the first chunk
        # and puts the result last, which is cat([passive, processed]) without the concatenation
        a = blocks[0].active
        chunks = [x[:, i : i + a] for i in range(0, self.conv.in_channels, a)]
        for block in blocks:
            chunks = chunks[1:] + [block.process(chunks[0])]
        return self.conv(torch.cat(chunks, dim=1)) + x


def _most_convolutions(channels: int, active: int, blocks: int) -> int:
    """The most split blocks, of ``blocks`` in a row, that convolve any one channel."""
    order, count = list(range(channels)), [0] * channels
    for _ in range(blocks):
        for c in order[:active]:
            count[c] += 1
        order = order[active:] + order[:active]
    return max(count)


class _SplitSRBase(nn.Module):
    def __init__(self, scale: int, channels: int, groups: int, blocks: int, hybrid_index: int,
                 alpha: float, bn: bool):
        super().__init__()
        active = int(round(channels * alpha))
        if not 0 < active < channels:
            raise ValueError(f"alpha={alpha} gives {active} active channels of {channels}; need 0 < alpha*C < C")
        if not 0 <= hybrid_index <= groups:
            raise ValueError(f"hybrid_index must lie in [0, groups={groups}], got {hybrid_index}")
        self.scale = scale
        self.config = dict(channels=channels, groups=groups, blocks=blocks, hybrid_index=hybrid_index, alpha=alpha)
        self.contract = IOContract(scale=scale, color="y", channels=1)
        self.head = nn.Conv2d(1, channels, 3, padding=1)
        self.groups = nn.ModuleList(
            Group(channels, blocks, g < hybrid_index, active, bn) for g in range(groups)
        )
        self.body_end = nn.Conv2d(channels, channels, 3, padding=1)
        self.upsample = nn.Conv2d(channels, scale * scale, 3, padding=1)

    @property
    def receptive_field(self) -> int:
        """Side, in LR pixels, of the square input window centred on an LR pixel that its s x s
        output pixels depend on (the tiling halo is ``receptive_field // 2``; tested by perturbing
        one input pixel).

        Each 3x3 conv on the longest path adds 1 to the radius: the head, per group its blocks
        and its conv, the body end and the upsampling conv. A residual block has two convs; a
        split block convolves only its ``active`` channels and rotates them to the end, so a
        channel is convolved only in some of a split group's blocks: the group adds the most
        times any one channel is convolved, plus its conv.
        """
        radius = 1 + 2  # head; body_end and upsample
        for group in self.groups:
            blocks = list(group.blocks)
            if blocks and isinstance(blocks[0], SplitBlock):
                radius += _most_convolutions(self.config["channels"], blocks[0].active, len(blocks)) + 1
            else:
                radius += 2 * len(blocks) + 1
        return 2 * radius + 1

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.head(x)
        h = x0
        for group in self.groups:
            h = group(h)
        return F.pixel_shuffle(self.upsample(self.body_end(h) + x0), self.scale)


class SplitSR(_SplitSRBase):
    """SplitSR in its training form (with BatchNorm).

    Input (N, 1, H, W) float32 BT.601 Y / 255 in [0, 1]; output (N, 1, sH, sW) float32,
    unclipped (the deploy form clips).

    Args:
        scale: 2, 3 or 4.
        channels: C (64 in the paper).
        groups: residual groups G (6); blocks: blocks per group B (6).
        hybrid_index: the first group made of standard residual blocks (3); G means none.
        alpha: the processed fraction of channels (0.25).

    Raises:
        ValueError: alpha*C not in (0, C) or hybrid_index outside [0, G].
    """

    def __init__(self, scale: int, channels: int = 64, groups: int = 6, blocks: int = 6,
                 hybrid_index: int = 3, alpha: float = 0.25):
        super().__init__(scale, channels, groups, blocks, hybrid_index, alpha, bn=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(x)

    def collapse(self) -> "SplitSRDeploy":
        """A new :class:`SplitSRDeploy` computing ``clip(self.eval()(x), 0, 1)``.

        Each BN (its running mean/var, eps, affine weight and bias) is folded into the conv
        before it: ``w' = w * g / sqrt(var + eps)``, ``b' = (b - mean) * g / sqrt(var + eps) + beta``.
        ``self`` is unchanged; the new module has self's dtype and device.
        """
        ref = self.head.weight
        deploy = SplitSRDeploy(self.scale, **self.config).to(device=ref.device, dtype=ref.dtype)
        src = dict(self.named_modules())
        with torch.no_grad():
            for name, dst in deploy.named_modules():
                if not isinstance(dst, nn.Conv2d):
                    continue
                conv = src[name]
                norm = src.get(name.replace("conv", "norm")) if name.split(".")[-1].startswith("conv") else None
                w = conv.weight
                b = conv.bias if conv.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
                if isinstance(norm, nn.BatchNorm2d):
                    g = norm.weight / torch.sqrt(norm.running_var + norm.eps)
                    w = w * g[:, None, None, None]
                    b = (b - norm.running_mean) * g + norm.bias
                dst.weight.copy_(w)
                dst.bias.copy_(b)
        deploy.registry_name = getattr(self, "registry_name", None)
        deploy.registry_kwargs = getattr(self, "registry_kwargs", {})
        return deploy.eval()


class SplitSRDeploy(_SplitSRBase):
    """SplitSR with BN folded: convs with bias only. Input (N, 1, H, W) float32 Y / 255 in
    [0, 1]; output (N, 1, sH, sW) float32 clipped to [0, 1]."""

    def __init__(self, scale: int, channels: int = 64, groups: int = 6, blocks: int = 6,
                 hybrid_index: int = 3, alpha: float = 0.25):
        super().__init__(scale, channels, groups, blocks, hybrid_index, alpha, bn=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self._features(x), 0.0, 1.0)


@register_model(scales=(2, 3, 4), aliases=("SplitSR",))
def splitsr(scale: int = 2) -> SplitSR:
    """SplitSR, the paper's configuration: C=64, 6 groups of 6 blocks, hybrid index 3, alpha 0.25."""
    return SplitSR(scale, channels=64, groups=6, blocks=6, hybrid_index=3, alpha=0.25)


@register_model(scales=(2, 3, 4), aliases=("SplitSR-S",))
def splitsr_s(scale: int = 2) -> SplitSR:
    """SplitSR-S, a small configuration for phones and tests: C=32, 2 groups of 4 blocks, hybrid index 1."""
    return SplitSR(scale, channels=32, groups=2, blocks=4, hybrid_index=1, alpha=0.25)
