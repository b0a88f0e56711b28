"""Image reading and writing with Pillow, with the checks a CLI needs.

Reading normalizes every supported file to uint8 arrays:

* RGB and RGB-like modes (``RGB``, ``CMYK``, ``YCbCr``, palette without transparency)
  -> (H, W, 3);
* grayscale (``L``, ``1``, 16-bit ``I;16``/``I``) -> (H, W);
* with alpha (``RGBA``, ``LA``, palette with transparency) -> (H, W, 4) RGBA, or (H, W, 2)
  for gray+alpha when ``keep_alpha=True``; with ``keep_alpha=False`` the alpha channel is
  dropped (evaluation scores colour only);
* 16-bit samples (gray, RGB, RGBA and gray+alpha PNGs) map to 8 bits by ``round(v / 257)``
  (so 65535 -> 255, 32896 -> 128), all 16 bits read (Pillow alone keeps ``v >> 8`` for colour);
* the EXIF orientation tag is applied (``PIL.ImageOps.exif_transpose``), as photo viewers do.

Refused with :class:`~edgesr.core.errors.EdgesrError` naming the file: a missing path, a file
that is not an image, an empty, truncated or corrupt image, and an image whose header claims
more than :data:`MAX_PIXELS` pixels (decompression-bomb guard; set the environment variable
``EDGESR_MAX_PIXELS`` to change it). A JPEG is also decoded by libjpeg-turbo in strict mode
(simplejpeg): any libjpeg warning ("Corrupt JPEG data: ...", "Premature end of JPEG file") is
an error, which Pillow alone would swallow. JPEG has no checksum, so damage that still decodes
to valid Huffman codes ending where the scan ends cannot be detected (see :func:`_check_jpeg_data`).

Writing is atomic; JPEG drops an alpha channel with a warning; a full disk or a
read-only destination is one line.
"""

from __future__ import annotations

import errno
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image, ImageOps

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
    # 16-bit (and 32-bit integer 'I' images holding 16-bit data): round(v / 257), half up
    return np.clip(np.floor(arr.astype(np.float64) / 257.0 + 0.5), 0, 255).astype(np.uint8)


# 16-bit colour PNGs: Pillow keeps only the high byte of each sample (``v >> 8``). The low
# byte is decoded by a second pass with a raw mode that unpacks it (``RGB;16L`` read on
# big-endian data takes byte 1 of each sample); 16-bit gray+alpha is unpacked whole as
# 8-bit RGBA (same bytes per pixel, so the PNG row filters decode identically).
_PNG16_LOW_BYTE = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}
_PNG16_GRAY_ALPHA = "LA;16B"


def _rawmode(im: Image.Image) -> str | None:
    if im.format != "PNG" or not im.tile:
        return None
    args = im.tile[0].args
    return args[0] if isinstance(args, tuple) else args


def _with_rawmode(im: Image.Image, rawmode: str) -> None:
    im.tile = [t._replace(args=rawmode if isinstance(t.args, str) else (rawmode, *t.args[1:])) for t in im.tile]


# JPEG: Pillow's libjpeg decoder swallows libjpeg's warnings ("Corrupt JPEG data: ...",
# "Premature end of JPEG file") and returns whatever it decoded. simplejpeg (libjpeg-turbo's
# TurboJPEG API) reports them: with ``strict=True`` every recoverable error raises ValueError.
# Pillow still decodes the pixels (same libjpeg-turbo arithmetic, EXIF orientation, modes);
# this second, checking decode only looks for libjpeg's complaints.
_TURBOJPEG_COLORSPACE = {"Gray": "GRAY", "CMYK": "CMYK", "YCCK": "CMYK"}


def _check_jpeg_data(path: Path) -> None:
    """Decode ``path`` once more with libjpeg-turbo in strict mode: a libjpeg warning is an error.

    Catches what breaks the entropy-coded data's structure or its Huffman codes (a stray or
    out-of-order marker, a bad Huffman code, data that ends early or runs on, no end-of-image
    marker). JPEG has no checksum: a bit flip that still decodes to valid
    Huffman codes which end where the scan ends is not detectable by any decoder (measured:
    176 of 200 single-bit flips in a photograph's entropy-coded data, see
    tests/test_imageio.py).

    Raises:
        EdgesrError: ``"PATH: corrupt JPEG data (libjpeg-turbo: MESSAGE)"``.
    """
    data = path.read_bytes()
    try:
        colorspace = simplejpeg.decode_jpeg_header(data)[2]
        simplejpeg.decode_jpeg(data, colorspace=_TURBOJPEG_COLORSPACE.get(colorspace, "RGB"), strict=True)
    except ValueError as exc:
        message = _first_line(exc).removeprefix("Corrupt JPEG data: ")
        raise EdgesrError(f"{path}: corrupt JPEG data (libjpeg-turbo: {message})") from None


def _pixels(path: Path, rawmode: str | None = None) -> np.ndarray:
    """Decode one image file (optionally with another PNG raw mode), EXIF-orientated, as an array."""
    with Image.open(path) as im:
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise EdgesrError(f"{path}: image header claims {w}x{h} = {w * h} pixels, more than the limit of {MAX_PIXELS} (EDGESR_MAX_PIXELS)")
        if w == 0 or h == 0:
            raise EdgesrError(f"{path}: image has no pixels ({w}x{h})")
        if rawmode is not None:
            _with_rawmode(im, rawmode)
        im.load()
        if im.format == "JPEG":
            _check_jpeg_data(path)
        im = ImageOps.exif_transpose(im)  # phone photos: rotate/flip as the EXIF orientation says
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
        return np.asarray(im)


def _decode(path: Path) -> np.ndarray:
    """Pixels of ``path``: uint8, or uint16 for 16-bit PNGs (all 16 bits, gray, RGB(A), gray+alpha)."""
    with Image.open(path) as im:
        rawmode = _rawmode(im)
    if rawmode in _PNG16_LOW_BYTE:
        high = _pixels(path).astype(np.uint16)
        return (high << 8) | _pixels(path, _PNG16_LOW_BYTE[rawmode])
    if rawmode == _PNG16_GRAY_ALPHA:
        raw = _pixels(path, "RGBA").astype(np.uint16)  # bytes L_hi, L_lo, A_hi, A_lo
        return np.stack([(raw[..., 0] << 8) | raw[..., 1], (raw[..., 2] << 8) | raw[..., 3]], axis=-1)
    return _pixels(path)


def read_image(path: str | os.PathLike, keep_alpha: bool = False) -> np.ndarray:
    """Read an image file as uint8: (H, W) gray, (H, W, 3) RGB, or with alpha (see module doc).

    The EXIF orientation is applied (a phone photo comes upright); 16-bit samples map to
    8 bits by ``round(v / 257)``.

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
            arr = _decode(path)
    except EdgesrError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise EdgesrError(f"{path}: image header claims more pixels than the limit of {MAX_PIXELS} (EDGESR_MAX_PIXELS)") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError, ZeroDivisionError,
            MemoryError) as exc:  # Pillow's plugins raise these on malformed headers
        raise EdgesrError(f"{path}: not a readable image ({type(exc).__name__}: {_first_line(exc)})") from None
    arr = _to_uint8(arr)
    if arr.ndim == 3 and arr.shape[2] in (2, 4) and not keep_alpha:
        arr = arr[..., :-1]
        if arr.shape[2] == 1:
            arr = arr[..., 0]
    return np.ascontiguousarray(arr)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:160] if lines else ""


_NO_ALPHA_SUFFIXES = (".jpg", ".jpeg")
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)


def write_image(path: str | os.PathLike, img: np.ndarray) -> Path:
    """Write a uint8 (H, W), (H, W, 2/3/4) image atomically; the format follows the suffix.

    JPEG has no alpha: RGBA and LA written to ``.jpg``/``.jpeg`` lose the alpha channel
    with a warning. Nothing half-written is ever left at ``path`` (:mod:`edgesr.core.atomic`).

    Raises:
        EdgesrError: unwritable destination, full disk, or unknown format.
    """
    path = Path(path)
    if img.dtype != np.uint8:
        raise EdgesrError(f"{path}: write_image needs uint8 pixels, got {img.dtype}")
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (2, 3, 4))):
        raise EdgesrError(f"{path}: cannot write an image of shape {img.shape}")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise EdgesrError(f"{path}: unknown image format {path.suffix!r} (use one of {', '.join(IMAGE_SUFFIXES)})")
    if path.suffix.lower() in _NO_ALPHA_SUFFIXES and img.ndim == 3 and img.shape[2] in (2, 4):
        warnings.warn(f"{path}: JPEG has no alpha channel; the alpha is dropped")
        img = img[..., :-1] if img.shape[2] == 4 else img[..., 0]
    try:
        with atomic_path(path) as tmp:
            Image.fromarray(img).save(tmp, format=fmt)
    except (KeyError, ValueError) as exc:
        raise EdgesrError(f"{path}: cannot write this format ({exc})") from None
    except OSError as exc:
        if exc.errno in _WRITE_ERRNOS:
            raise EdgesrError(f"{path}: cannot write ({exc.strerror})") from None
        raise EdgesrError(f"{path}: cannot write this image ({_first_line(exc)})") from None
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
