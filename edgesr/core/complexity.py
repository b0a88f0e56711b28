"""Parameter and MAC counts, the two numbers every mobile SR table reports.

MACs are the multiply-accumulates of convolutions (``nn.Conv2d`` / ``F.conv2d``, counted by
forward hooks as output elements x (C_in / groups) x k_h x k_w) plus any a model declares
through ``extra_macs_per_lr_pixel()`` (e.g. PKN's kernel regression). Bias adds,
activations, residual adds and depth-to-space are not MACs. "Per 720p frame" means the MACs
to produce one 1280 x 720 output: the LR input is (720 / s) x (1280 / s), rounded up for
s = 3 (427 x 240 -> 1281 x 720). The counts are exact for fully convolutional models: the
hooks run on a small input and are scaled by the pixel ratio (MACs are linear in area).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def count_params(model: nn.Module) -> int:
    """Number of learned parameters: weights, biases, PReLU slopes, BN affine (not its running
    statistics), and not frozen constants (``requires_grad=False``, e.g. PKN's one-hot footprint)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lr_size_720p(scale: int) -> tuple[int, int]:
    """(H, W) of the LR input that produces a 1280 x 720 output at ``scale`` (rounded up)."""
    return math.ceil(720 / scale), math.ceil(1280 / scale)


def macs_per_lr_pixel(model: nn.Module, probe: int = 32) -> float:
    """Conv MACs per LR input pixel, measured on a (1, C, probe, probe) input."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        k = mod.weight.shape[1] * mod.weight.shape[2] * mod.weight.shape[3]
        total += out.numel() * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    functional = []
    orig_conv = F.conv2d

    def counting_conv(x, weight, *args, **kw):  # F.conv2d called directly (e.g. SESR's collapsed-forward form)
        out = orig_conv(x, weight, *args, **kw)
        functional.append(out.numel() * weight.shape[1] * weight.shape[2] * weight.shape[3])
        return out

    channels = getattr(getattr(model, "contract", None), "channels", 1)
    was_training = model.training
    model.eval()
    try:
        F.conv2d = counting_conv
        with torch.no_grad():
            model(torch.rand(1, channels, probe, probe))
    finally:
        F.conv2d = orig_conv
        for h in handles:
            h.remove()
        model.train(was_training)
    # nn.Conv2d.forward goes through F.conv2d, so the patch sees every conv; the hooks are
    # a fallback for convs that bypass it.
    macs = max(sum(functional), total) / (probe * probe)
    if hasattr(model, "extra_macs_per_lr_pixel"):
        macs += float(model.extra_macs_per_lr_pixel())
    return macs


def macs_per_frame_720p(model: nn.Module) -> int:
    """MACs to produce one 1280 x 720 output frame (see module doc)."""
    h, w = lr_size_720p(model.scale)
    return int(round(macs_per_lr_pixel(model) * h * w))


def model_info(model: nn.Module) -> dict:
    """``{"name", "scale", "params", "params_deploy", "macs_per_frame_720p"}``; MACs of the deploy form."""
    deploy = model.collapse() if hasattr(model, "collapse") else model
    return {
        "name": getattr(model, "registry_name", type(model).__name__),
        "scale": int(model.scale),
        "params": count_params(model),
        "params_deploy": count_params(deploy),
        "macs_per_frame_720p": macs_per_frame_720p(deploy),
    }
