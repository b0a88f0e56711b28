"""The one trainer of every registered network, LUT networks included: L1 (or MSE) loss, Adam, random HR crops with flips and 90-degree rotations, LR made on
the fly with the evaluation's MATLAB bicubic; seeded, resumable, and data-parallel under
``torchrun``.

The batch of step ``t`` on replica ``r`` is drawn from ``np.random.default_rng([seed, r, t])``,
so a resumed run sees exactly the batches an uninterrupted one would (reproducible on the
same device and thread count). Checkpoints (``OUT/checkpoints/last.pt``) are written
atomically every ``checkpoint_every`` steps and at the end, with the model, optimizer, step
and config.

Data parallel: run under ``torchrun --nproc_per_node N -m edgesr.cli train ...``; the trainer
initializes ``torch.distributed`` (gloo on CPU, nccl on CUDA), wraps the model in
``DistributedDataParallel``, gives each replica its own batches, and lets rank 0 validate and
write checkpoints. At the end all replicas exchange a checksum of their weights; they are
stored in the checkpoint as ``replica_checksums`` (identical when the replicas agree).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgesr.core.checkpoint import load_checkpoint, save_checkpoint
from edgesr.core.data import PatchDataset, embedded_images, eval_pairs, training_images
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import TorchUpscaler, evaluate
from edgesr.core.imresize import imresize_torch
from edgesr.core.models import create


@dataclass
class TrainConfig:
    """One training run; a JSON/YAML config block maps 1:1 onto these fields.

    Attributes:
        model, scale, model_kwargs: what :func:`edgesr.core.registry.create` builds.
        data: folder of HR training images; None = the embedded photographs.
        out: run folder; the checkpoint is ``out/checkpoints/last.pt``.
        steps: optimizer steps in total (a resumed run continues up to it).
        batch: patches per step and replica.
        lr_patch: LR patch side in pixels (the HR crop is ``lr_patch * scale``).
        lr: Adam learning rate, cosine-annealed to ``lr * 0.01`` over ``steps``.
        seed: seeds the model initialization and the batches.
        val_every: validation period in steps (0 = only at the end).
        checkpoint_every: checkpoint period in steps.
        device: "cpu", "cuda" or "auto" (CUDA when present).
        resume: continue from ``out/checkpoints/last.pt`` when it exists.
        loss: ``"l1"`` (mean absolute error, the SESR/eSR papers' choice and the default) or
            ``"mse"`` (mean squared error on [0, 1], the SR-LUT and SPLUT authors' loss).
        progress: show a progress bar.
    """

    model: str = "sesr_m5"
    scale: int = 2
    model_kwargs: dict = field(default_factory=dict)
    data: str | None = None
    out: str = "runs/train"
    steps: int = 1000
    batch: int = 16
    lr_patch: int = 32
    lr: float = 5e-4
    seed: int = 0
    val_every: int = 250
    checkpoint_every: int = 100
    device: str = "auto"
    resume: bool = True
    loss: str = "l1"
    progress: bool = True

    def checkpoint_path(self) -> Path:
        return Path(self.out) / "checkpoints" / "last.pt"


LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}
"""Training losses by name, on outputs and HR targets in [0, 1] (mean over every element)."""


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world


def _device(name: str, rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise EdgesrError("--device cuda requested but CUDA is not available")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    return torch.device(name)


def weights_checksum(model: torch.nn.Module) -> str:
    """SHA-256 (hex, 16 chars) of the model's parameters and buffers, in state_dict order."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def make_lr_batch(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """LR batch from an HR batch (N, C, sP, sP) in [0, 1] with MATLAB bicubic, 8-bit rounded."""

    return imresize_torch(hr, 1.0 / scale, quantize=True)


def validate(model: torch.nn.Module, pairs) -> float:
    """Mean PSNR on Y of ``model`` (train form, output clipped) over evaluation pairs."""

    class _Clipped(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m, self.contract, self.scale = m, m.contract, m.scale

        def forward(self, x):
            return torch.clamp(self.m(x), 0, 1)

    was_training = model.training
    result = evaluate(TorchUpscaler(_Clipped(model), device=str(next(model.parameters()).device)), pairs)
    model.train(was_training)
    return result["psnr_y"]


def train(config: TrainConfig, on_step=None) -> Path:
    """Train (or resume) per ``config``; returns the path of the last checkpoint.

    ``on_step(step)`` is called after every optimizer step (progress reporting; an
    exception raised there interrupts training like Ctrl-C would: the last periodic
    checkpoint stays, and the next call resumes from it).

    Raises:
        EdgesrError: bad data folder (no image as large as the crop), unknown model or
            scale, a checkpoint in ``out`` from another model, unusable device.
    """
    from tqdm.auto import tqdm


    if config.loss not in LOSSES:
        raise EdgesrError(f"unknown training loss {config.loss!r} (expected {', '.join(LOSSES)})")
    loss_fn = LOSSES[config.loss]
    rank, world = _distributed()
    device = _device(config.device, rank)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")

    torch.manual_seed(config.seed)
    model = create(config.model, scale=config.scale, **config.model_kwargs)
    if not any(p.requires_grad for p in model.parameters()):
        raise EdgesrError(f"model {config.model!r} has no trainable weights")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    step = 0
    ckpt = config.checkpoint_path()
    if config.resume and ckpt.exists():
        restored, state = load_checkpoint(ckpt, expect_model=config.model)
        if int(state["scale"]) != config.scale:
            raise EdgesrError(f"{ckpt}: checkpoint is for scale {state['scale']}, not {config.scale}")
        model.load_state_dict(restored.state_dict())
        if state.get("optimizer"):
            optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        if step >= config.steps:  # finished earlier: nothing to redo, the checkpoint stays as it is
            return ckpt
    model.to(device).train()
    for group in optimizer.param_groups:  # after .to(device)
        for p in group["params"]:
            for v in optimizer.state.get(p, {}).values():
                if torch.is_tensor(v):
                    v.data = v.data.to(device)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    hr_patch = config.lr_patch * config.scale
    dataset = PatchDataset(training_images(config.data), hr_patch, color=model.contract.color)
    val_pairs = eval_pairs(embedded_images("val"), config.scale) if rank == 0 else []
    cfg_dict = dataclasses.asdict(config)
    history: list[dict] = []

    def checkpoint(extra: dict | None = None) -> None:
        if rank == 0:
            save_checkpoint(ckpt, model, optimizer=optimizer, step=step, config=cfg_dict,
                            extra={"history": history, **(extra or {})})

    bar = tqdm(total=config.steps, initial=step, disable=not (config.progress and rank == 0), desc=f"train {config.model} x{config.scale}", unit="step")
    t0, n0, loss_ema = time.perf_counter(), step, None
    while step < config.steps:
        rng = np.random.default_rng([config.seed, rank, step])
        hr = dataset.sample(config.batch, rng).to(device)
        if model.contract.per_channel or model.contract.channels == 1:
            hr = hr.reshape(-1, 1, hr_patch, hr_patch)
        lr_img = make_lr_batch(hr, config.scale)
        for g in optimizer.param_groups:
            g["lr"] = config.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / config.steps)))
        loss = loss_fn(net(lr_img), hr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        loss_v = float(loss.detach())
        if not math.isfinite(loss_v):
            raise EdgesrError(f"training diverged at step {step} (loss {loss_v}); lower --lr")
        loss_ema = loss_v if loss_ema is None else 0.98 * loss_ema + 0.02 * loss_v
        rate = (step - n0) * config.batch * world / max(time.perf_counter() - t0, 1e-9)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_ema:.4f}", patches_per_s=f"{rate:.0f}")
        if rank == 0 and config.val_every and step % config.val_every == 0 and step < config.steps:
            history.append({"step": step, "loss": loss_ema, "val_psnr_y": validate(model, val_pairs)})
            bar.write(f"step {step}: loss {loss_ema:.4f}, validation PSNR-Y {history[-1]['val_psnr_y']:.2f} dB")
        if step % config.checkpoint_every == 0 and step < config.steps:
            checkpoint()
        if on_step is not None:
            on_step(step)
    bar.close()

    extra = {}
    if world > 1:
        sums = [None] * world
        torch.distributed.all_gather_object(sums, weights_checksum(model))
        extra["replica_checksums"] = sums
    if rank == 0 and val_pairs and (not history or history[-1]["step"] != step):
        history.append({"step": step, "loss": loss_ema, "val_psnr_y": validate(model, val_pairs)})
    checkpoint(extra)
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return ckpt
