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
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from edgesr.quantization.calibration import calibrate
from edgesr.quantization.fake_quant import fake_quant_module, quantizer_ranges, snap_weights_to_int8
from torch import nn

from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import calibration_patches, model_input
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


def val_border(hr: torch.Tensor) -> int:
    """HR pixels cropped on each side when scoring patches: a sixth of the patch side.

    Near a patch's edge the convolutions see zero padding instead of the image, and there
    int8 rounding moves outputs that no whole-image benchmark scores: measured on the
    authors' eSR-MAX x2, AdaRound lowered the Set5 int8 drop from 0.73 to 0.17 dB while the
    PSNR of 96 px T91 patches without a crop fell (27.88 -> 27.81 dB); with an 8 or 16 px
    crop it rose (28.00 -> 28.17, 27.84 -> 28.00 dB) as on Set5. Whole images
    (:func:`whole_images`) need no such crop: their edges are the image's, as in a benchmark.
    """
    return min(hr.shape[-2], hr.shape[-1]) // 6


def whole_images(images, contract) -> list[torch.Tensor]:
    """Photos whole, as HR targets in model space: the recipe's and QAT's validation set.

    Args:
        images: uint8 images (H, W) or (H, W, 3), or ``(name, image)`` pairs
            (:func:`edgesr.core.data.load_folder`).
        contract: the model's :class:`~edgesr.core.registry.IOContract`.
    Returns:
        one float32 tensor (B, C, H', W') in [0, 1] per image (:func:`edgesr.core.evaluate.model_input`
        of the photo: B = 1, or the colour planes of a per-channel RGB model), cropped to
        H', W' multiples of the scale; images under 4 x scale pixels on a side are left out.

    Raises:
        EdgesrError: no image is large enough.
    """
    s = contract.scale
    out = []
    for item in images:
        img = item[1] if isinstance(item, tuple) else item
        h, w = img.shape[0] // s * s, img.shape[1] // s * s
        if min(h, w) >= 4 * s:
            out.append(torch.from_numpy(model_input(np.ascontiguousarray(img[:h, :w]), contract)))
    if not out:
        raise EdgesrError(f"no validation photo is at least {4 * s}x{4 * s} pixels")
    return out


def degrade(hr, scale: int):
    """LR model inputs of HR targets by MATLAB bicubic 1/scale (:func:`edgesr.core.imresize.imresize_torch`):
    a batch (N, C, H, W) -> (N, C, H/s, W/s), or a list of such tensors (:func:`whole_images`) -> a list."""
    if isinstance(hr, torch.Tensor):
        return imresize_torch(hr, 1.0 / scale)
    return [imresize_torch(h, 1.0 / scale) for h in hr]


@dataclass(frozen=True)
class ValScore:
    """A module's score on validation targets: ``psnr`` pooled over all of them (dB, peak 1) and
    ``each``, float64 (M,), the PSNR of each image (or patch) on its own."""

    psnr: float
    each: np.ndarray

    def beats(self, other: "ValScore") -> bool:
        """Better on the whole and on more than half of the images, one by one.

        The pooled PSNR alone lets a few large images outvote the rest: on the headline SESR-M5
        (docs/recipe_stages.md, ``python bench/recipe_stages.py RUN_DIR``), LSQ QAT raised the 12
        held-out T91 photos' pooled PSNR by 0.004 dB while lowering 7 of them, and it cost Set5
        0.006 dB; in docs/quant.md every kept stage that lowered a Set5 drop by more than 0.01 dB
        raised at least 8 of the 12, 19 of those 22 stages 11 or 12.
        """
        return self.psnr > other.psnr and 2 * int((self.each > other.each).sum()) > len(self.each)


def sim_scores(sim: nn.Module, lr_patches, hr, batch_size: int = 16, border: int | None = None) -> ValScore:
    """PSNR (dB, peak 1) of a module's output against HR targets inside a border crop: pooled over
    all of them, and of each.

    Two forms: patches, ``lr_patches`` (N, C, h, w) float32 model inputs and ``hr`` (N, C, sh, sw)
    float32 in [0, 1], run ``batch_size`` at a time, border default :func:`val_border`; or whole
    images, lists of such tensors (:func:`whole_images`, :func:`degrade`), each run alone, border
    default the scale (the benchmarks' crop). The model space (not Y of BT.601): a selection
    criterion, not a benchmark score.
    """
    if isinstance(hr, torch.Tensor):
        pairs = [(lr_patches[i : i + batch_size], hr[i : i + batch_size]) for i in range(0, hr.shape[0], batch_size)]
        b = val_border(hr) if border is None else int(border)
    else:
        pairs = list(zip(lr_patches, hr))
        b = hr[0].shape[-1] // lr_patches[0].shape[-1] if border is None else int(border)
    se, n = [], []
    with torch.no_grad():
        for lr, target in pairs:
            d = (sim(lr) - target)[..., b : target.shape[-2] - b, b : target.shape[-1] - b].double()
            if isinstance(hr, torch.Tensor):  # one entry per patch
                se.extend(d.pow(2).flatten(1).sum(1).tolist())
                n.extend([d[0].numel()] * d.shape[0])
            else:  # one entry per image (its planes together)
                se.append(float(d.pow(2).sum()))
                n.append(d.numel())
    se, n = np.asarray(se), np.asarray(n, dtype=np.float64)
    pooled = max(float(se.sum()) / max(float(n.sum()), 1.0), 1e-20)
    return ValScore(float(10.0 * np.log10(1.0 / pooled)), 10.0 * np.log10(n / np.maximum(se, 1e-20 * n)))


def sim_psnr(sim: nn.Module, lr_patches, hr, batch_size: int = 16, border: int | None = None) -> float:
    """The pooled PSNR (dB, peak 1) of :func:`sim_scores`: the same forms and border."""
    return sim_scores(sim, lr_patches, hr, batch_size, border).psnr


def qat_optimizer(sim: nn.Module, lr: float, range_lr: float | None = None) -> torch.optim.Adam:
    """Adam over a :func:`~edgesr.quantization.fake_quant_module`'s trainable parameters: the
    weights at ``lr``, the learned range bounds (``fq_*`` parameters, 0-dim) at ``range_lr``
    (default ``lr``). ``foreach``: one multi-tensor update for the many 0-dim bounds (PKN has
    about 100) instead of a Python loop of small ops per parameter."""
    weights = [p for n, p in sim.named_parameters() if p.requires_grad and not n.startswith("fq_")]
    bounds = [p for n, p in sim.named_parameters() if p.requires_grad and n.startswith("fq_")]
    groups = [{"params": weights, "lr": lr}] + ([{"params": bounds, "lr": range_lr or lr}] if bounds else [])
    return torch.optim.Adam(groups, foreach=True)


def qat(deploy_module: nn.Module, patches_or_images, steps: int, *, ranges: dict | None = None,
        observer: str = "minmax", range_mode: str = "ema", lr: float = 1e-4, range_lr: float | None = None,
        batch_size: int = 8, patch: int = 64, count: int = 256, seed: int = 0, val=None, eval_every: int = 25,
        cosine: bool = False, activations: bool = True, teacher: nn.Module | None = None,
        on_step: Callable[[int, float], None] | None = None,
        on_eval: Callable[[int, float], None] | None = None) -> tuple[nn.Module, dict[str, tuple[float, float]]]:
    """Fine-tune ``deploy_module`` through its int8 simulation.

    Args:
        deploy_module: plain deploy module (after ``collapse()``), not modified.
        patches_or_images: HR patches (N, C, H, W) float32 in [0, 1], or real photos
            (uint8 arrays or ``(name, image)`` pairs) from which ``count`` HR crops of
            ``patch`` pixels are drawn (seeded).
        steps: optimiser steps (0 returns a copy of the module and the calibrated ranges).
        ranges: initial activation ranges; default: :func:`calibrate` with ``observer`` on
            the LR patches.
        range_mode: ``"ema"`` (default), ``"learn"`` or ``"lsq"`` (learned step sizes and
            offsets, Esser et al. 2020, with the fused :func:`~edgesr.quantization.lsq.lsq_fake_quant`);
            see :class:`~edgesr.quantization.fake_quant.ActivationFakeQuant`.
        lr, batch_size, seed: Adam learning rate of the weights, patches per step, batch order seed.
        range_lr: Adam learning rate of learned range bounds (default ``lr``).
        val: held-out HR targets: whole images (a list of tensors, :func:`whole_images`), HR
            patches (N, C, H, W) float32 in [0, 1], or photos (cropped like the training patches
            with ``seed + 1``); scored by :func:`sim_psnr`. Given, the int8 simulation (exact arithmetic)
            is scored on them before training and every ``eval_every`` steps and after the last,
            and the best weights and ranges are returned: QAT never ends worse than its start
            on ``val`` (keep the best).
        cosine: decay both learning rates to 0 over ``steps`` (cosine schedule).
        activations: False trains through int8 weights with float activations (and float
            biases): the w8a16 model, whose int16 activations come within a few int16 steps of
            float (:func:`~edgesr.quantization.fake_quant.fake_quant_module`); ``ranges`` are
            then still returned (calibrated, untrained) but nothing quantizes with them.
        teacher: None (default): the L1 loss is against the HR patches. A module: against
            ``teacher(lr_patches)`` (the float model's output, computed once), i.e. distillation:
            QAT then learns to reproduce that model in int8 rather than to fit the photos, which
            separates the quantization error from further training (``bench/qat_control.py``).
        on_step: called as ``on_step(step, l1_loss)`` after every step (progress, tests).
        on_eval: called as ``on_eval(step, val_psnr_db)`` at every validation (step 0: the start).
    Returns:
        ``(module, ranges)``: the fine-tuned deploy module (a new module of the same class, in
        eval mode) and its ``{fx node name: (min, max)}``; ``fake_quant_module(module, ranges)``
        is the model QAT trained (the best on ``val``). The module's conv weights and PReLU
        slopes are their int8 values (:func:`~edgesr.quantization.fake_quant.snap_weights_to_int8`):
        QAT's latent float weights are trained for what they round to, not for their own float
        function, so the module in float is the int8 weights with float activations (a
        meaningful reference and fp32 export), and the int8 export is unchanged.

    Raises:
        EdgesrError: negative steps or unusable patches.
    """
    if steps < 0:
        raise EdgesrError(f"QAT steps must be >= 0, got {steps}")
    contract = deploy_module.contract
    hr = hr_patches(patches_or_images, contract, patch, count, seed)
    lr_patches = degrade(hr, contract.scale)
    module = copy.deepcopy(deploy_module).float().eval()
    if ranges is None:
        ranges = calibrate(module, lr_patches, observer)
    sim = fake_quant_module(module, ranges, range_mode=range_mode, share_weights=True, activations=activations)

    def sim_ranges() -> dict:
        return quantizer_ranges(sim) if activations else dict(ranges)

    if steps == 0:
        return module, sim_ranges()
    if val is None or (isinstance(val, list) and val and isinstance(val[0], torch.Tensor)):
        val_hr = val  # None, or whole images (:func:`whole_images`)
    else:
        val_hr = hr_patches(val, contract, patch, count, seed + 1)
    val_lr = None if val_hr is None else degrade(val_hr, contract.scale)
    target = hr
    if teacher is not None:
        with torch.no_grad():
            target = torch.cat([teacher.eval()(lr_patches[i : i + 64]) for i in range(0, lr_patches.shape[0], 64)])
    best = None

    def validate(step: int):
        nonlocal best
        sim.eval()
        score = sim_psnr(sim, val_lr, val_hr)
        sim.train()
        if on_eval is not None:
            on_eval(step, score)
        if best is None or score > best[0]:
            best = (score, copy.deepcopy(module.state_dict()), sim_ranges())

    if val_hr is not None:
        validate(0)
    sim.train()
    opt = qat_optimizer(sim, lr, range_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if cosine else None
    rng = np.random.default_rng(seed)
    for step in range(steps):
        idx = torch.from_numpy(rng.choice(hr.shape[0], size=min(batch_size, hr.shape[0]), replace=False))
        loss = torch.nn.functional.l1_loss(sim(lr_patches[idx]), target[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if on_step is not None:
            on_step(step, float(loss.detach()))
        if val_hr is not None and ((step + 1) % max(1, eval_every) == 0 or step + 1 == steps):
            validate(step + 1)
    sim.eval()
    if best is not None:
        module.load_state_dict(best[1])
        return snap_weights_to_int8(module.eval()), best[2]
    return snap_weights_to_int8(module.eval()), sim_ranges()
