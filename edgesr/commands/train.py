"""``edgesr train``: train a registry model (resumable; data-parallel under torchrun).

    edgesr train --model sesr_m5 --scale 2 --data ../shared/data/T91/HR --steps 2000 -o runs/m5
    torchrun --nproc_per_node 2 -m edgesr.cli train --model sesr_m5 --steps 100 -o runs/ddp

The run folder is locked while training (``OUT/.lock``, :mod:`edgesr.app.run_lock`): a
second ``train`` or ``run`` on the same folder is refused with exit 2.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

from edgesr.app.run_lock import out_dir_lock
from edgesr.commands._args import (
    add_out_argument,
    add_progress_argument,
    existing_dir,
    nonnegative_int,
    positive_float,
    positive_int,
    scale,
    show_progress,
)
from edgesr.core.errors import EdgesrError
from edgesr.core.models import create
from edgesr.core.train import TrainConfig, train


def add_arguments(p) -> None:
    d = TrainConfig()
    p.add_argument("--model", default=d.model, help=f"registry name (default {d.model})")
    p.add_argument("--scale", type=scale, default=d.scale, help=f"upscaling factor (default {d.scale})")
    p.add_argument("--data", type=existing_dir, help="folder of HR training images (default: embedded photographs)")
    add_out_argument(p, f"run folder; checkpoints in OUT/checkpoints/ (default {d.out})", default=d.out)
    p.add_argument("--steps", type=positive_int, default=d.steps, help=f"optimizer steps in total (default {d.steps})")
    p.add_argument("--batch", type=positive_int, default=d.batch, help=f"patches per step (default {d.batch})")
    p.add_argument("--lr-patch", type=positive_int, default=d.lr_patch, help="LR patch side in pixels")
    p.add_argument("--lr", type=positive_float, default=d.lr, help="Adam learning rate (cosine-annealed)")
    p.add_argument("--seed", type=nonnegative_int, default=d.seed)
    p.add_argument("--val-every", type=nonnegative_int, default=d.val_every, help="validate every N steps (0: never)")
    p.add_argument("--checkpoint-every", type=positive_int, default=d.checkpoint_every)
    p.add_argument("--device", default=d.device, choices=("auto", "cpu", "cuda"))
    p.add_argument("--expansion", type=positive_int, help="SESR linear-block width p (default 256)")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT has a checkpoint")
    add_progress_argument(p)


def run(args) -> int:
    kwargs = {"expansion": args.expansion} if args.expansion is not None else {}
    cfg = TrainConfig(model=args.model, scale=args.scale, model_kwargs=kwargs, data=args.data, out=args.out,
                      steps=args.steps, batch=args.batch, lr_patch=args.lr_patch, lr=args.lr, seed=args.seed,
                      val_every=args.val_every, checkpoint_every=args.checkpoint_every, device=args.device,
                      resume=not args.no_resume, progress=show_progress(args))
    create(cfg.model, scale=cfg.scale, **cfg.model_kwargs)  # unknown model, scale or width: refused before OUT is made
    rank0 = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 holds the lock for every rank
    with _locked(Path(args.out)) if rank0 else nullcontext():
        path = train(cfg)
    if rank0:
        print(f"checkpoint: {path}")
    return 0


def _locked(out: Path):
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgesrError(f"{out}: cannot create the run folder ({exc.strerror})") from None
    return out_dir_lock(out)
