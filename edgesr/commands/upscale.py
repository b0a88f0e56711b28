"""``edgesr upscale photo.png --checkpoint CKPT -o out.png``: upscale a real photo.

Luma models run on Y, chroma is upscaled by bicubic; RGBA keeps its alpha (bicubic);
gray, palette and 16-bit images are read as described in :mod:`edgesr.core.imageio`. Any
size: the photo is upscaled in tiles with a halo of the model's receptive field
(:mod:`edgesr.core.tiling`), which gives the same pixels as one piece in bounded memory.
"""

from __future__ import annotations

from pathlib import Path

from edgesr.commands._args import (
    add_out_argument,
    add_progress_argument,
    existing_file,
    image_output,
    show_progress,
)
from edgesr.commands.source import add_source_arguments, resolve_upscaler
from edgesr.core.imageio import read_image, write_image
from edgesr.core.tiling import DEFAULT_TILE, MIN_TILE, upscale_tiled


def _tile_size(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < MIN_TILE:
        raise argparse.ArgumentTypeError(f"tile size must be an integer >= {MIN_TILE}, got {text!r}")
    return value


def add_arguments(p) -> None:
    p.add_argument("image", type=existing_file, help="input image (PNG, JPEG, WebP, ...)")
    add_out_argument(p, "output image; the format follows the suffix (.png, .jpg, .webp, ...)", required=True,
                     type=image_output)
    add_source_arguments(p, engine=True)
    p.add_argument("--tile", type=_tile_size, default=DEFAULT_TILE,
                   help=f"tile side in input pixels, >= {MIN_TILE} (default {DEFAULT_TILE}); the result does not depend on it, the memory does")
    add_progress_argument(p)


def run(args) -> int:
    img = read_image(args.image, keep_alpha=True)
    upscaler = resolve_upscaler(args)
    out = upscale_tiled(upscaler, img, tile=args.tile, progress=show_progress(args))
    write_image(args.out, out)
    print(f"{args.image} {img.shape[1]}x{img.shape[0]} -> {Path(args.out)} {out.shape[1]}x{out.shape[0]}")
    return 0
