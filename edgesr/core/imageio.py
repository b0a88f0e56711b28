"""Image reading and writing with Pillow, with the checks a CLI needs.

Reading normalizes every supported file to uint8 arrays:

* RGB and RGB-like modes (``RGB``, ``CMYK``, ``YCbCr``, palette without transparency)
  -> (H, W, 3);
* grayscale (``L``, ``1``, 16-bit ``I;16``/``I``) -> (H, W); 16-bit values are mapped to
  8 bits by ``round(v / 257)`` (so 65535 -> 255);
* with alpha (``RGBA``, ``LA``, palette with transparency) -> (H, W, 4) RGBA, or (H, W, 2)
  for gray+alpha when ``keep_alpha=True``; with ``keep_alpha=False`` the alpha channel is
  dropped (evaluation scores colour only).

Refused with :class:`~edgesr.core.errors.EdgesrError` naming the file: a missing path, a file
that is not an image, an empty, truncated or corrupt image, and an image whose header
claims more than :data:`MAX_PIXELS` pixels (decompression-bomb guard; set the environment
variable ``EDGESR_MAX_PIXELS`` to change it).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from edgesr.core.atomic import atomic_path
from edgesr.core.errors import EdgesrError

MAX_PIXELS = int(os.environ.get("EDGESR_MAX_PIXELS", 8192 * 8192))
"""Largest accepted width x height (default 8192 x 8192 = 67.1 Mpix)."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    # 16-bit (and 32-bit integer 'I' images holding 16-bit data)
    return np.clip(np.floor(arr.astype(np.float64) / 257.0 + 0.5), 0, 255).astype(np.uint8)


def read_image(path: str | os.PathLike, keep_alpha: bool = False) -> np.ndarray:
    """Read an image file as uint8: (H, W) gray, (H, W, 3) RGB, or with alpha (see module doc).

    Raises:
        EdgesrError: the path is missing, not an image, corrupt/truncated/empty, or too large.
    """
    path = Path(path)
    if not path.exists():
        raise EdgesrError(f"{path}: no such file")
    if path.is_dir():
        raise EdgesrError(f"{path}: is a folder, expected an image file")
    if path.stat().st_size == 0:
        raise EdgesrError(f"{path}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise EdgesrError(f"{path}: image header claims {w}x{h} = {w * h} pixels, more than the limit of {MAX_PIXELS} (EDGESR_MAX_PIXELS)")
                if w == 0 or h == 0:
                    raise EdgesrError(f"{path}: image has no pixels ({w}x{h})")
                im.load()
                mode = im.mode
                if mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                elif mode == "PA":
                    im = im.convert("RGBA")
                elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
                    im = im.convert("RGB")
                elif mode == "1":
                    im = im.convert("L")
                elif mode == "F":
                    raise EdgesrError(f"{path}: floating-point images are not supported")
                arr = np.asarray(im)
    except EdgesrError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise EdgesrError(f"{path}: image header claims more pixels than the limit of {MAX_PIXELS} (EDGESR_MAX_PIXELS)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise EdgesrError(f"{path}: not a readable image ({exc})") from None
    arr = _to_uint8(arr)
    if arr.ndim == 3 and arr.shape[2] in (2, 4) and not keep_alpha:
        arr = arr[..., :-1]
        if arr.shape[2] == 1:
            arr = arr[..., 0]
    return np.ascontiguousarray(arr)


def write_image(path: str | os.PathLike, img: np.ndarray) -> Path:
    """Write a uint8 (H, W), (H, W, 2/3/4) image atomically; the format follows the suffix.

    Raises:
        EdgesrError: unwritable destination or unknown format.
    """
    path = Path(path)
    if img.dtype != np.uint8:
        raise EdgesrError(f"{path}: write_image needs uint8 pixels, got {img.dtype}")
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (2, 3, 4))):
        raise EdgesrError(f"{path}: cannot write an image of shape {img.shape}")
    try:
        with atomic_path(path) as tmp:
            Image.fromarray(img).save(tmp, format=Image.registered_extensions().get(path.suffix.lower()))
    except (KeyError, ValueError) as exc:
        raise EdgesrError(f"{path}: cannot write this format ({exc})") from None
    return path


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files (by suffix) directly in ``folder``.

    Raises:
        EdgesrError: the folder does not exist or holds no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgesrError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise EdgesrError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files
