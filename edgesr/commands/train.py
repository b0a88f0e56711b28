"""``edgesr train``: train a registry model (resumable; data-parallel under torchrun).

    edgesr train --model sesr_m5 --scale 2 --data ../shared/data/T91/HR --steps 2000 --out runs/m5
    torchrun --nproc_per_node 2 -m edgesr.cli train --model sesr_m5 --steps 100 --out runs/ddp
"""

from __future__ import annotations

from edgesr.core.train import TrainConfig, train


def add_arguments(p) -> None:
    d = TrainConfig()
    p.add_argument("--model", default=d.model, help=f"registry name (default {d.model})")
    p.add_argument("--scale", type=int, default=d.scale)
    p.add_argument("--data", help="folder of HR training images (default: embedded photographs)")
    p.add_argument("--out", default=d.out, help="run folder; checkpoints in OUT/checkpoints/")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--lr-patch", type=int, default=d.lr_patch, help="LR patch side in pixels")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (cosine-annealed)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--val-every", type=int, default=d.val_every)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--device", default=d.device, choices=("auto", "cpu", "cuda"))
    p.add_argument("--expansion", type=int, help="SESR linear-block width p (default 256)")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT has a checkpoint")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    kwargs = {"expansion": args.expansion} if args.expansion else {}
    cfg = TrainConfig(model=args.model, scale=args.scale, model_kwargs=kwargs, data=args.data, out=args.out,
                      steps=args.steps, batch=args.batch, lr_patch=args.lr_patch, lr=args.lr, seed=args.seed,
                      val_every=args.val_every, checkpoint_every=args.checkpoint_every, device=args.device,
                      resume=not args.no_resume, progress=not args.no_progress)
    import os

    path = train(cfg)
    if os.environ.get("RANK", "0") == "0":
        print(f"checkpoint: {path}")
    return 0
