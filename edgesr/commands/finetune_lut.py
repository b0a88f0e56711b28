"""``edgesr finetune-lut LUT --data DIR [--steps N] [-o OUT.lut] [--overwrite]``: LUT-aware fine-tuning of a bundle.

Writes a new bundle (default ``LUT_finetuned.lut`` beside LUT); an existing file, the input
included, is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgesr.commands._args import (
    add_out_argument,
    existing_dir,
    existing_file,
    nonnegative_int,
    output_file,
    positive_float,
    positive_int,
)
from edgesr.core.data import training_images
from edgesr.core.errors import EdgesrError
from edgesr.lut_baking.bundle import load_bundle, save_bundle
from edgesr.lut_baking.finetune import FINETUNE_STEPS, FinetuneConfig, finetune


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("lut", type=existing_file, help="a .lut bundle (edgesr bake / import-weights)")
    p.add_argument("--data", type=existing_dir, default=None,
                   help="folder of HR training images (default: the embedded training photographs)")
    p.add_argument("--steps", type=positive_int, default=FINETUNE_STEPS, help=f"optimizer steps (default {FINETUNE_STEPS})")
    p.add_argument("--batch", type=positive_int, default=16, help="HR crops per step, each used for its 3 colour channels (default 16)")
    p.add_argument("--patch", type=positive_int, default=24, help="LR patch size (HR = patch * scale; default 24)")
    p.add_argument("--lr", type=positive_float, default=0.1, help="Adam step size in int8 LUT units (default 0.1)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    add_out_argument(p, "output bundle (.lut; default LUT_finetuned.lut beside LUT)", type=output_file(".lut"))
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (OUT may then be LUT itself)")


def output_path(args) -> Path:
    """Where the fine-tuned bundle goes; refuses to replace a file without ``--overwrite``."""
    src = Path(args.lut)
    out = Path(args.out) if args.out else src.with_name(f"{src.stem}_finetuned.lut")
    if out.exists() and not args.overwrite:
        same = " (the input bundle)" if out.resolve() == src.resolve() else ""
        raise EdgesrError(f"{out}: already exists{same}; pass --overwrite to replace it, or choose another -o")
    return out


def run(args) -> int:
    out = output_path(args)
    bundle = load_bundle(args.lut)
    cfg = FinetuneConfig(steps=args.steps, batch=args.batch, lr_patch=args.patch, lr=args.lr, seed=args.seed)
    tuned = finetune(bundle, training_images(args.data), cfg, log=print)
    path = save_bundle(tuned, out)
    print(f"{path}: fine-tuned {args.steps} steps, {tuned.nbytes} bytes")
    return 0
