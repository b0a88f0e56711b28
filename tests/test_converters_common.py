"""Shared helpers for the converter and validation tests (no tests here).

A tiny seeded SESR deploy module (M3, expansion 16, x2) whose last conv is damped so the
network is a small learned-looking correction on top of SESR's own residual (nearest-neighbour
upsampling of the input, added to each sub-pixel channel): its outputs look like a photograph
(PSNR vs HR near nearest-neighbour's), so int8 / fp16 numbers on real photos are meaningful,
while every conv still contributes.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import torch

from edgesr.core.evaluate import model_input
from edgesr.core.models import create


def tiny_sesr(name: str = "sesr_m3_relu", seed: int = 0, damp: float = 0.1, scale: int = 2):
    """Collapsed ``create(name, scale=scale, expansion=16)`` with seeded weights, the last conv x ``damp``."""
    torch.manual_seed(seed)
    model = create(name, scale=scale, expansion=16)
    deploy = model.collapse()
    with torch.no_grad():
        deploy.last.weight.mul_(damp)
        deploy.last.bias.mul_(damp)
        for act in deploy.acts:  # distinct PReLU slopes per channel (they init equal)
            if isinstance(act, torch.nn.PReLU):
                act.weight.copy_(torch.linspace(0.05, 0.5, act.weight.numel()))
    return deploy.eval()


def photo_input(img: np.ndarray, contract, h: int, w: int, y: int = 0, x: int = 0) -> np.ndarray:
    """A (h, w) crop of a real photo as the model's float32 (1, C, h, w) input."""
    return model_input(np.ascontiguousarray(img[y : y + h, x : x + w]), contract)
