"""Bicubic interpolation as a weight-free "model" (the baseline of every SR table).

It upscales the LR RGB image with MATLAB-compatible bicubic (:func:`edgesr.core.imresize.upscale_bicubic_uint8`,
equal to ``imresize`` on uint8) in float64 and rounds to uint8, which is how the published bicubic baselines were computed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgesr.core.contract import IOContract
from edgesr.core.imresize import upscale_bicubic_uint8
from edgesr.core.registry import register_model


class Bicubic(nn.Module):
    """MATLAB-compatible bicubic upscaling by ``scale``.

    Input (N, C, H, W) float32 in [0, 1] (RGB, per channel); output (N, C, sH, sW) float32,
    rounded to multiples of 1/255 as MATLAB's uint8 ``imresize`` would. Not trainable.
    """

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale
        self.contract = IOContract(scale=scale, color="rgb", channels=1, per_channel=True)

    receptive_field = 5
    """side, in LR pixels, of the square input window centred on an LR pixel that its s x s output pixels depend on (the tiling halo is ``receptive_field // 2``; tested by perturbing one input pixel): Keys' cubic kernel spans 2 LR pixels either side when upscaling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().cpu().double().numpy()
        out = np.stack([np.stack([upscale_bicubic_uint8(np.round(c * 255.0).astype(np.uint8), self.scale) for c in img]) for img in arr])
        return torch.from_numpy(out.astype(np.float32) / 255.0)


@register_model(scales=(2, 3, 4))
def bicubic(scale: int = 2) -> Bicubic:
    """MATLAB-compatible bicubic interpolation (no weights)."""
    return Bicubic(scale)
