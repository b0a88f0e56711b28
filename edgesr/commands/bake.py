"""``edgesr bake CKPT --bits 4 -o LUT``: bake a trained SR-LUT / SPLUT checkpoint into a ``.lut`` bundle."""

from __future__ import annotations

import argparse

from edgesr.commands._args import (
    add_out_argument,
    existing_file,
    int_range,
    output_file,
)
from edgesr.core.checkpoint import load_checkpoint
from edgesr.lut_baking.bake import bake
from edgesr.lut_baking.bundle import save_bundle


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=existing_file, help="checkpoint of srlut_s or splut_s/m/l (edgesr train --model ...)")
    p.add_argument("--bits", type=int_range(1, 8), default=4,
                   help="SR-LUT sampling bits k from 1 to 8: inputs sampled every 2**k levels (default 4: 17**4 entries)")
    add_out_argument(p, "output bundle path (.lut)", required=True, type=output_file(".lut"))


def run(args) -> int:
    model, state = load_checkpoint(args.checkpoint)
    bundle = bake(model, bits=args.bits, name=state["model"])
    bundle.source["checkpoint"] = str(args.checkpoint)
    path = save_bundle(bundle, args.out)
    print(f"{path}: {bundle.method} x{bundle.scale}, {len(bundle.arrays)} LUT(s), {bundle.nbytes} bytes")
    return 0
