"""``edgesr finetune-lut LUT --data DIR [--steps N] [--out LUT]``: LUT-aware fine-tuning of a bundle."""

from __future__ import annotations

import argparse

from edgesr.core.data import training_images
from edgesr.lut_baking.bundle import load_bundle, save_bundle
from edgesr.lut_baking.finetune import FINETUNE_STEPS, FinetuneConfig, finetune


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("lut", help="a .lut bundle (edgesr bake / import-weights)")
    p.add_argument("--data", default=None, help="folder of HR training images (default: the embedded training photographs)")
    p.add_argument("--steps", type=int, default=FINETUNE_STEPS, help=f"optimizer steps (default {FINETUNE_STEPS})")
    p.add_argument("--batch", type=int, default=16, help="HR crops per step, each used for its 3 colour channels (default 16)")
    p.add_argument("--patch", type=int, default=24, help="LR patch size (HR = patch * scale; default 24)")
    p.add_argument("--lr", type=float, default=0.1, help="Adam step size in int8 LUT units (default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output bundle (default: overwrite LUT)")


def run(args) -> int:
    bundle = load_bundle(args.lut)
    cfg = FinetuneConfig(steps=args.steps, batch=args.batch, lr_patch=args.patch, lr=args.lr, seed=args.seed)
    tuned = finetune(bundle, training_images(args.data), cfg, log=print)
    path = save_bundle(tuned, args.out or args.lut)
    print(f"{path}: fine-tuned {args.steps} steps, {tuned.nbytes} bytes")
    return 0
