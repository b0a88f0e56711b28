"""LUT-bakeable networks: SR-LUT and SPLUT, registered in edgesr's one model registry.

* SR-LUT: Jo & Kim, "Practical Single-Image Super-Resolution Using Look-Up Table", CVPR 2021.
  https://github.com/yhjo09/SR-LUT
* SPLUT: Ma et al., "Learning Series-Parallel Lookup Tables for Efficient Image
  Super-Resolution", ECCV 2022. edgesr's variant (stages, orientations, rounding) is
  specified in ``lut_engine.h`` and motivated in ``docs/lut.md``.

Both are ordinary ``nn.Module`` s: forward takes (N, 1, H, W) float32 in [0, 1] (one colour
channel; the contract is RGB applied per channel, as the SR-LUT authors do) and returns
(N, 1, sH, sW), clipped to [0, 1] in eval mode (unclipped while training). Train them with
an L1/MSE loss on RGB patches with the channels folded into the batch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgesr.core.contract import IOContract

# --------------------------------------------------------------------------- shared by the LUT engines
from edgesr.core.registry import register_model

# --------------------------------------------------------------------------- shared by the LUT engines


def reflect_pad_index(n: int, before: int, after: int) -> np.ndarray:
    """Source indices of a reflect padding of a length-``n`` axis (-1 -> 1, n -> n-2).

    Only pads of 0 or 1 are used; a length-1 axis repeats its single pixel.
    """
    idx = np.arange(-before, n + after)
    idx = np.where(idx < 0, min(1, n - 1), idx)
    return np.where(idx >= n, max(n - 2, 0), idx)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """round(x) (half to even, as torch.round) in the forward, identity gradient."""
    return x + (torch.round(x) - x).detach()


def ste_floor(x: torch.Tensor) -> torch.Tensor:
    """floor(x) in the forward, identity gradient."""
    return x + (torch.floor(x) - x).detach()


def pad_bottom_right(x: torch.Tensor) -> torch.Tensor:
    """(..., h, w) -> (..., h+1, w+1) reflect padding (index -1 -> 1, n -> n-2; length 1 repeats)."""
    h, w = x.shape[-2:]
    rows = torch.as_tensor(reflect_pad_index(h, 0, 1), device=x.device)
    cols = torch.as_tensor(reflect_pad_index(w, 0, 1), device=x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def depth_to_space(blocks: torch.Tensor, s: int) -> torch.Tensor:
    """(N, h, w, s*s) with index dy*s+dx -> (N, h*s, w*s)."""
    n, h, w, _ = blocks.shape
    return blocks.reshape(n, h, w, s, s).permute(0, 1, 3, 2, 4).reshape(n, h * s, w * s)



def _mlp(cin: int, cout: int, kernel, width: int, hidden: int, act, groups: int = 1, stride=1) -> nn.Sequential:
    """A kernel conv (cin -> width) then ``hidden`` 1x1 convs and a 1x1 conv to cout, with act between."""
    layers = [nn.Conv2d(cin, width, kernel, stride=stride, groups=groups)]
    for _ in range(hidden):
        layers += [act(), nn.Conv2d(width, width, 1, groups=groups)]
    layers += [act(), nn.Conv2d(width, cout, 1, groups=groups)]
    return nn.Sequential(*layers)


class SRLUTNet(nn.Module):
    """SR-LUT's network: receptive field 2x2 on one channel, rotation ensemble (3x3 effective).

    ``core``: conv 2x2 (1 -> 64), four 1x1 convs (64 -> 64), 1x1 conv (64 -> s*s), ReLU
    between consecutive convs. Forward (the authors' training form): for r = 0..3, rotate
    the input by r*90 degrees, reflect-pad by one pixel at the bottom and right, run
    ``core``, pixel-shuffle by s, rotate back; output = sum_r 127 * clamp(core, -1, 1) / 255.

    Input (N, 1, H, W) float32 in [0, 1] (multiples of 1/255 for 8-bit images);
    output (N, 1, sH, sW); clipped to [0, 1] in eval mode.
    """

    def __init__(self, scale: int, width: int = 64, hidden: int = 4):
        super().__init__()
        self.scale = scale
        self.contract = IOContract(scale=scale, color="rgb", channels=1, per_channel=True)
        self.core = _mlp(1, scale * scale, 2, width, hidden, nn.ReLU)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """One rotation: (N, 1, H, W) -> 127 * clamp(core(pad(x)), -1, 1), (N, s*s, H, W)."""
        return 127.0 * torch.clamp(self.core(pad_bottom_right(x)), -1.0, 1.0)

    receptive_field = 3
    """side, in LR pixels, of the square input window centred on an LR pixel that its s x s output pixels depend on (the tiling halo is ``receptive_field // 2``; tested by perturbing one input pixel): the 2x2 kernel under the four rotations covers the 3x3 window."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = 0
        for r in range(4):
            y = F.pixel_shuffle(self.branch(torch.rot90(x, r, dims=(2, 3))), self.scale)
            out = out + torch.rot90(y, -r, dims=(2, 3))
        out = out / 255.0
        return out if self.training else torch.clamp(out, 0.0, 1.0)


class SPLUTNet(nn.Module):
    """SPLUT x4's network form, with the LUT quantizers in place (STE), two parallel branches.

    The 8-bit input x is split into MSB (x >> 4) and LSB (x & 15); each branch sees its part
    / 15 and computes, with every LUT output simulated as int8 = round(127 * clamp(., -1, 1)):
    a 2x2 spatial stage (1 -> 4 features), ``mixing`` channel-mixing stages and a final stage
    (-> 16), each made of a horizontal (1x2) and a vertical (2x1) pair net per channel pair
    (features re-quantized to 16 levels by ``floor((f + 128) / 16)``, STE). Stage formulas
    (residuals, averages, rounding) are those of ``lut_engine.h``; in eval mode the forward
    equals the baked LUT's output exactly, up to float ties in the rounding.

    Input (N, 1, H, W) float32 in [0, 1] (rounded to 8 bits); output (N, 1, 4H, 4W).
    """

    def __init__(self, scale: int = 4, mixing: int = 0, width: int = 64, hidden: int = 1):
        super().__init__()
        if scale != 4:
            raise ValueError("SPLUT is defined at x4")
        self.scale, self.mixing = scale, mixing
        self.contract = IOContract(scale=scale, color="rgb", channels=1, per_channel=True)
        self.branches = nn.ModuleList()
        for _ in range(2):  # MSB, LSB
            stages = nn.ModuleList([_mlp(1, 4, 2, width, hidden, nn.GELU)])
            for s in range(mixing + 1):
                c = 16 if s == mixing else 4
                for _orientation in ("h", "v"):  # pair nets: 2 groups of 2 channels at 2 pixels
                    stages.append(_mlp(4, 2 * c, (1, 2), 2 * width, hidden, nn.GELU, groups=2, stride=(1, 2)))
            self.branches.append(stages)

    @property
    def receptive_field(self) -> int:
        """side, in LR pixels, of the square input window centred on an LR pixel that its s x s output pixels depend on (the tiling halo is ``receptive_field // 2``; tested by perturbing one input pixel): see :func:`splut_receptive_field`."""
        return splut_receptive_field(self.mixing)

    @staticmethod
    def quantize(y: torch.Tensor) -> torch.Tensor:
        """Network output -> the int8 value a LUT stores: round(127 * clamp(y, -1, 1)) (STE)."""
        return ste_round(127.0 * torch.clamp(y, -1.0, 1.0))

    @staticmethod
    def pair(here: torch.Tensor, nb: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) x 2 -> (N, C, H, 2W): each pixel followed by its neighbour (kernel (1, 2), stride 2)."""
        return torch.stack([here, nb], dim=-1).flatten(-2)

    def stage(self, stages: nn.ModuleList, s: int, feat: torch.Tensor) -> torch.Tensor:
        """Series stage s: features (N, 4, H, W) -> T (N, C, H, W), the sum of its 4 simulated lookups."""
        o = -1 if s % 2 == 0 else 1
        lv = ste_floor((feat + 128.0) / 16.0) / 15.0  # 16 levels, fed to the pair nets as level / 15
        h, w = lv.shape[-2:]
        c = 16 if s == self.mixing else 4
        t = 0
        for k, nb in enumerate((lv.index_select(3, _shift_index(w, o, lv.device)), lv.index_select(2, _shift_index(h, o, lv.device)))):
            out = self.quantize(stages[1 + 2 * s + k](self.pair(lv, nb)))  # horizontal, then vertical
            t = t + out[:, :c] + out[:, c:]  # channel pairs (0, 1) and (2, 3)
        return t

    def branch(self, stages: nn.ModuleList, part: torch.Tensor) -> torch.Tensor:
        """part (N, 1, H, W) in 0..15 -> final sums R (N, 16, H, W) (integer-valued)."""
        feat = self.quantize(stages[0](pad_bottom_right(part / 15.0)))
        for s in range(self.mixing):
            feat = torch.clamp(feat + ste_floor((self.stage(stages, s, feat) + 2.0) / 4.0), -127.0, 127.0)
        return self.stage(stages, self.mixing, feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x255 = torch.round(torch.clamp(x, 0.0, 1.0) * 255.0).detach()
        msb, lsb = torch.floor(x255 / 16.0), torch.remainder(x255, 16.0)
        r = self.branch(self.branches[0], msb) + self.branch(self.branches[1], lsb)
        up = depth_to_space(ste_floor((r + 2.0) / 4.0).permute(0, 2, 3, 1), 4).unsqueeze(1)
        out = (F.interpolate(x255, scale_factor=4, mode="nearest") + up) / 255.0
        return torch.clamp(out, 0.0, 1.0)


def splut_receptive_field(mixing: int) -> int:
    """SPLUT's receptive field side in LR pixels, for ``mixing`` channel-mixing stages.

    The 2x2 spatial stage reads offsets 0..+1; series stage s pairs each pixel with its
    neighbour at offset -1 (s even) or +1 (s odd), horizontally and vertically. The window
    is the union of those offsets, made symmetric: side 2 * max(|lowest|, highest) + 1.
    """
    low = -sum(1 for s in range(mixing + 1) if s % 2 == 0)
    high = 1 + sum(1 for s in range(mixing + 1) if s % 2 == 1)
    return 2 * max(-low, high) + 1


def _shift_index(n: int, o: int, device) -> torch.Tensor:
    """Indices i + o (i < n) with reflect padding: the neighbour at offset o along an axis."""
    return torch.as_tensor(reflect_pad_index(n, 1, 1)[1 + o : 1 + o + n], device=device)


@register_model(scales=(2, 3, 4), aliases=("SR-LUT-S",), family="lut")
def srlut_s(scale: int = 4, width: int = 64, hidden: int = 4) -> SRLUTNet:
    """SR-LUT (S: 2x2 receptive field, rotation ensemble), baked to a 4-D LUT; Jo & Kim, CVPR 2021."""
    return SRLUTNet(scale, width, hidden)


def _splut(mixing: int, label: str):
    def fn(scale: int = 4, width: int = 64, hidden: int = 1) -> SPLUTNet:
        return SPLUTNet(scale, mixing, width, hidden)

    fn.__name__ = f"splut_{label.lower()}"
    fn.__doc__ = f"SPLUT-{label} x4 ({mixing} channel-mixing stage(s)), series-parallel LUTs; after Ma et al., ECCV 2022."
    return register_model(fn, scales=(4,), aliases=(f"SPLUT-{label}",), family="lut")


splut_s = _splut(0, "S")
splut_m = _splut(1, "M")
splut_l = _splut(2, "L")
