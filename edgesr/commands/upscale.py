"""``edgesr upscale photo.png --checkpoint CKPT -o out.png``: upscale a real photo.

Luma models run on Y, chroma is upscaled by bicubic; RGBA keeps its alpha (bicubic);
gray, palette and 16-bit images are read as described in :mod:`edgesr.core.imageio`. Any size.
"""

from __future__ import annotations

from pathlib import Path

from edgesr.commands._args import (
    add_out_argument,
    add_progress_argument,
    existing_file,
    image_output,
)
from edgesr.commands.source import add_source_arguments, resolve_upscaler
from edgesr.core.evaluate import upscale_photo
from edgesr.core.imageio import read_image, write_image


def add_arguments(p) -> None:
    p.add_argument("image", type=existing_file, help="input image (PNG, JPEG, WebP, ...)")
    add_out_argument(p, "output image; the format follows the suffix (.png, .jpg, .webp, ...)", required=True,
                     type=image_output)
    add_source_arguments(p, engine=True)
    add_progress_argument(p)


def run(args) -> int:
    img = read_image(args.image, keep_alpha=True)
    upscaler = resolve_upscaler(args)
    out = upscale_photo(upscaler, img)
    write_image(args.out, out)
    print(f"{args.image} {img.shape[1]}x{img.shape[0]} -> {Path(args.out)} {out.shape[1]}x{out.shape[0]}")
    return 0
