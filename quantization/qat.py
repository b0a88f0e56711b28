"""Quantization-aware fine-tuning (QAT) of a deploy module through its int8 simulation.

The module is wrapped by :func:`~edgesr.quantization.fake_quant.fake_quant_module` (TFLite's
quantization points, per-channel weights, nudged int8 activations, straight-through
gradients) and fine-tuned with L1 against HR patches for ``steps`` Adam steps. LR inputs
are made from the HR patches by MATLAB bicubic (:func:`edgesr.core.imresize.imresize_torch`),
the training path's degradation. Activation ranges start from a calibration and then follow
an exponential moving average of each batch's min/max (``range_mode="ema"``) or are trained
by their gradient (``"learn"``).
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from edgesr.quantization.calibration import calibrate
from edgesr.quantization.fake_quant import fake_quant_module, quantizer_ranges
from torch import nn

from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import calibration_patches
from edgesr.core.imresize import imresize_torch


def hr_patches(patches_or_images, contract, patch: int, count: int, seed: int) -> torch.Tensor:
    """HR training patches (N, C, P, P) float32 in model space, P a multiple of the scale.

    ``patches_or_images``: a float array/tensor (N, C, H, W) of HR patches in [0, 1] (cropped to
    a multiple of the scale), or images / (name, image) pairs cropped by
    :func:`~edgesr.quantization.calibration.calibration_patches` to ``patch`` pixels.
    """
    s = contract.scale
    if isinstance(patches_or_images, (np.ndarray, torch.Tensor)):
        hr = torch.as_tensor(np.asarray(patches_or_images, dtype=np.float32))
        if hr.ndim != 4 or hr.shape[1] != contract.channels or min(hr.shape[2:]) < s:
            raise EdgesrError(f"QAT patches must be (N, {contract.channels}, H, W) with H, W >= {s}, got {tuple(hr.shape)}")
        return hr[:, :, : hr.shape[2] // s * s, : hr.shape[3] // s * s].contiguous()
    p = patch // s * s
    return torch.from_numpy(calibration_patches(patches_or_images, contract, patch=p, count=count, seed=seed))


def qat(deploy_module: nn.Module, patches_or_images, steps: int, *, ranges: dict | None = None,
        observer: str = "minmax", range_mode: str = "ema", lr: float = 1e-4, batch_size: int = 8,
        patch: int = 64, count: int = 256, seed: int = 0,
        on_step: Callable[[int, float], None] | None = None) -> tuple[nn.Module, dict[str, tuple[float, float]]]:
    """Fine-tune ``deploy_module`` through its int8 simulation.

    Args:
        deploy_module: plain deploy module (after ``collapse()``), not modified.
        patches_or_images: HR patches (N, C, H, W) float32 in [0, 1], or real photos
            (uint8 arrays or ``(name, image)`` pairs) from which ``count`` HR crops of
            ``patch`` pixels are drawn (seeded).
        steps: optimiser steps (0 returns a copy of the module and the calibrated ranges).
        ranges: initial activation ranges; default: :func:`calibrate` with ``observer`` on
            the LR patches.
        range_mode: ``"ema"`` (default) or ``"learn"``; see
            :class:`~edgesr.quantization.fake_quant.ActivationFakeQuant`.
        lr, batch_size, seed: Adam learning rate, patches per step, batch order seed.
        on_step: called as ``on_step(step, l1_loss)`` after every step (progress, tests).
    Returns:
        ``(module, ranges)``: the fine-tuned float deploy module (a new module of the same
        class, in eval mode) and its ``{fx node name: (min, max)}``;
        ``fake_quant_module(module, ranges)`` is the model QAT trained.

    Raises:
        EdgesrError: negative steps or unusable patches.
    """
    if steps < 0:
        raise EdgesrError(f"QAT steps must be >= 0, got {steps}")
    contract = deploy_module.contract
    hr = hr_patches(patches_or_images, contract, patch, count, seed)
    lr_patches = imresize_torch(hr, 1.0 / contract.scale)
    module = copy.deepcopy(deploy_module).float().eval()
    if ranges is None:
        ranges = calibrate(module, lr_patches, observer)
    sim = fake_quant_module(module, ranges, range_mode=range_mode, share_weights=True)
    if steps == 0:
        return module, quantizer_ranges(sim)
    sim.train()
    opt = torch.optim.Adam([p for p in sim.parameters() if p.requires_grad], lr=lr)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        idx = torch.from_numpy(rng.choice(hr.shape[0], size=min(batch_size, hr.shape[0]), replace=False))
        loss = torch.nn.functional.l1_loss(sim(lr_patches[idx]), hr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(step, float(loss.detach()))
    sim.eval()
    return module.eval(), quantizer_ranges(sim)
