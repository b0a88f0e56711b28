"""LUT-aware fine-tuning of a baked bundle (the networks themselves train with :mod:`edgesr.core.train`).

LUT-aware fine-tuning treats the baked LUT entries as float parameters and trains them
through the differentiable PyTorch engine (simplex interpolation for SR-LUT, direct indexing
with STE floors for SPLUT). The forward uses the entries' int8 values (STE rounding), so the
loss is that of the deployed LUT; the result is rounded back to int8 in [-127, 127].

Data: random HR RGB crops (:class:`edgesr.core.data.PatchDataset`, flips and rotations), the
channels folded into the batch (the LUT models are per-channel), LR made on the fly with
MATLAB bicubic rounded to 8 bits between passes (:func:`edgesr.core.imresize.imresize_torch`),
the same LR as evaluation. Loss: MSE on [0, 1] (the SR-LUT authors' loss). Optimizer: Adam.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from edgesr.lut_baking import engine_torch as et
from edgesr.lut_baking.bundle import LutBundle

from edgesr.core.data import PatchDataset
from edgesr.core.errors import EdgesrError
from edgesr.core.imresize import imresize_torch


FINETUNE_STEPS = 300
"""The default LUT-aware fine-tuning budget of every entry point (``edgesr run``, ``edgesr bake``,
``edgesr finetune-lut``, bench/lut.py)."""


@dataclass
class FinetuneConfig:
    """Budget and optimizer of one LUT-aware fine-tuning run (HR patch = lr_patch * scale).

    ``lr`` is Adam's step size in int8 LUT units."""

    steps: int = FINETUNE_STEPS
    batch: int = 16
    lr_patch: int = 24
    lr: float = 0.1
    seed: int = 0


def batches(images, scale: int, cfg: FinetuneConfig):
    """Yield (lr, hr): float32 (B, 1, p, p) multiples of 1/255 and (B, 1, s*p, s*p), per channel."""
    data = PatchDataset(images, cfg.lr_patch * scale, color="rgb", seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    while True:
        hr = data.sample(cfg.batch, rng)  # (B, 3, P, P)
        hr = hr.reshape(-1, 1, *hr.shape[-2:])
        hr = torch.round(hr * 255.0) / 255.0
        yield imresize_torch(hr, 1.0 / scale, quantize=True), hr


def lut_forward(bundle: LutBundle, params: list[torch.Tensor], lr: torch.Tensor) -> torch.Tensor:
    """Differentiable LUT output for an LR batch (B, 1, h, w) in [0, 1] -> (B, 1, s*h, s*w)."""
    img = torch.round(lr[:, 0] * 255.0).long()
    if bundle.method == "srlut":
        return et.srlut_forward(params[0], bundle.bits, bundle.scale, img).unsqueeze(1)
    return et.splut_forward(params, bundle.variant, img).unsqueeze(1)


def finetune(bundle: LutBundle, images, cfg: FinetuneConfig, log=None) -> LutBundle:
    """LUT-aware fine-tuning: returns a new bundle with the trained int8 entries.

    ``cfg.lr`` is in int8 units per Adam step (e.g. 0.1). ``images``: [(name, uint8 HR)].

    Raises:
        EdgesrError: no training image is large enough for the patch size.
    """
    if cfg.steps < 0:
        raise EdgesrError(f"--steps must be >= 0, got {cfg.steps}")
    torch.manual_seed(cfg.seed)
    params = [torch.nn.Parameter(torch.from_numpy(a.astype(np.float32))) for a in bundle.arrays]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    it = batches(images, bundle.scale, cfg)
    for step in range(cfg.steps):
        lr, hr = next(it)
        loss = torch.mean((lut_forward(bundle, params, lr) - hr) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log and (step % 200 == 0 or step == cfg.steps - 1):
            log(f"finetune step {step}: mse {loss.item():.6f}")
    arrays = [torch.clamp(torch.round(p.detach()), -127, 127).to(torch.int8).numpy() for p in params]
    source = dict(bundle.source, finetune_steps=int(bundle.source.get("finetune_steps", 0)) + cfg.steps)
    return LutBundle(bundle.method, bundle.scale, bundle.bits, arrays, bundle.contract, bundle.variant, bundle.model, source)
