"""``edgesr eval``: PSNR/SSIM on BT.601 Y of a model, checkpoint or artifact.

    edgesr eval --model bicubic --scale 4 --data-root ../shared/data --sets Set5,Set14,B100,Urban100 -o out.json

Writes ``{"model", "scale", "eval": {SET: {"psnr_y", "ssim_y"}}}``. With no ``--data-root``
it scores the embedded validation photographs (set ``"embedded"``).
"""

from __future__ import annotations

import json

from edgesr.commands._args import (
    add_out_argument,
    add_progress_argument,
    existing_dir,
    output_file,
    show_progress,
)
from edgesr.commands.source import add_source_arguments, describe, resolve_upscaler
from edgesr.core.atomic import write_text_atomic
from edgesr.core.data import resolve_eval_sets
from edgesr.core.evaluate import evaluate_sets


def add_arguments(p) -> None:
    add_source_arguments(p, engine=True)
    p.add_argument("--data-root", type=existing_dir, help="folder holding Set5/HR, Set14/HR, ... (default: embedded photographs)")
    p.add_argument("--sets", help="comma-separated set names under --data-root, or image folders (default: Set5,Set14,B100,Urban100)")
    add_out_argument(p, "also write the results as JSON to OUT (.json)", type=output_file(".json"), aliases=("--json",))
    add_progress_argument(p)


def run(args) -> int:
    upscaler = resolve_upscaler(args)
    sets = resolve_eval_sets(args.data_root, args.sets.split(",") if args.sets else None)
    results = evaluate_sets(upscaler, sets, progress=show_progress(args))
    scale = upscaler.contract.scale
    print(f"{describe(args)}  x{scale}   (PSNR dB / SSIM on BT.601 Y, border {scale})")
    for name, r in results.items():
        print(f"  {name:<10} {r['psnr_y']:7.3f} / {r['ssim_y']:.4f}")
    if args.out:
        write_text_atomic(args.out, json.dumps({"model": describe(args), "scale": scale, "eval": results}, indent=2) + "\n")
    return 0
