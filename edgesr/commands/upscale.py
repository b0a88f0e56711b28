"""``edgesr upscale photo.png --checkpoint CKPT -o out.png``: upscale a real photo.

Luma models run on Y, chroma is upscaled by bicubic; RGBA keeps its alpha (bicubic);
gray, palette and 16-bit images are read as described in :mod:`edgesr.core.imageio`. Any size.
"""

from __future__ import annotations

from pathlib import Path

from edgesr.commands.source import add_source_arguments, resolve_upscaler
from edgesr.core.evaluate import upscale_photo
from edgesr.core.imageio import read_image, write_image


def add_arguments(p) -> None:
    p.add_argument("image", help="input image (PNG, JPEG, WebP, ...)")
    p.add_argument("-o", "--output", required=True, help="output image; the format follows the suffix")
    add_source_arguments(p, engine=True)


def run(args) -> int:
    img = read_image(args.image, keep_alpha=True)
    upscaler = resolve_upscaler(args)
    out = upscale_photo(upscaler, img)
    write_image(args.output, out)
    print(f"{args.image} {img.shape[1]}x{img.shape[0]} -> {Path(args.output)} {out.shape[1]}x{out.shape[0]}")
    return 0
