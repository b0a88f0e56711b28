"""MATLAB-compatible bicubic ``imresize``, in numpy (the reference) and torch (batched).

Follows MATLAB's ``imresize(I, scale, 'bicubic')`` (Image Processing Toolbox):

* cubic convolution kernel with a = -0.5 (Keys 1981);
* antialiasing when downscaling: the kernel is stretched by 1/scale and its height
  multiplied by scale;
* coordinate mapping ``u = x / scale + 0.5 * (1 - 1 / scale)`` (1-based x, pixel centres);
* symmetric (mirror, edge pixel repeated) boundary;
* the output size is ``ceil(in * scale)``;
* the two dimensions are resized one after the other, the one with the smaller scale
  first (rows first when equal).

Rounding: MATLAB on a ``uint8`` image returns ``uint8`` *after each pass*, rounding half
away from zero and clamping to [0, 255]. ``imresize(..., round_between_passes=True)`` with
a uint8 input reproduces that (it is how the EDSR/BasicSR benchmark LR images were made,
and edgesr's default LR). With ``round_between_passes=False`` the intermediate stays in
float64 and only the result is rounded (SR-LUT's LR files were made that way).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.ndimage import correlate1d

from edgesr.core.errors import EdgesrError


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``), float64."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    return (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1) + (
        -0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0
    ) * ((absx > 1) & (absx <= 2))


@lru_cache(maxsize=256)
def contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's ``contributions``: for each output pixel, source indices and weights.

    Returns:
        ``(indices, weights)``: int64 and float64 arrays of shape (out_len, P), 0-based
        indices already folded by the symmetric boundary; zero-weight columns removed.
    """
    kernel_width = 4.0
    if scale < 1:  # antialiasing
        kernel = lambda x: scale * cubic(scale * x)  # noqa: E731
        kernel_width = kernel_width / scale
    else:
        kernel = cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    weights = kernel(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(weights != 0, axis=0)
    return indices[:, keep], weights[:, keep]


def _round_uint8(x: np.ndarray) -> np.ndarray:
    # MATLAB's uint8 cast: round half away from zero, saturate.
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float) -> np.ndarray:
    idx, w = contributions(img.shape[axis], out_len, scale)
    moved = np.moveaxis(img.astype(np.float64, copy=False), axis, 0)
    out = np.einsum("op,op...->o...", w, moved[idx])
    return np.moveaxis(out, 0, axis)


def output_size(in_hw: tuple[int, int], scale: float) -> tuple[int, int]:
    """MATLAB's output size: ``ceil(in * scale)`` per dimension."""
    return tuple(int(math.ceil(n * scale - 1e-9)) for n in in_hw)  # type: ignore[return-value]


def imresize(img: np.ndarray, scale: float, *, round_between_passes: bool = True) -> np.ndarray:
    """Resize an image like MATLAB's ``imresize(img, scale, 'bicubic')``.

    Args:
        img: (H, W) or (H, W, C) array; uint8 (values 0-255) or floating point.
        scale: resize factor, e.g. 1/4 to make an x4 LR image, 4 to upscale.
        round_between_passes: for uint8 input, round to uint8 after the first pass as
            MATLAB does (default); otherwise keep float64 until the end.

    Returns:
        uint8 for uint8 input (rounded half away from zero, clamped), else float64;
        shape (ceil(H*scale), ceil(W*scale)[, C]).

    Raises:
        EdgesrError: empty image or non-positive scale.
    """
    if img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise EdgesrError(f"imresize needs an (H, W) or (H, W, C) image, got shape {img.shape}")
    if not scale > 0:
        raise EdgesrError(f"imresize scale must be positive, got {scale}")
    is_uint8 = img.dtype == np.uint8
    out_h, out_w = output_size(img.shape[:2], scale)
    out = img.astype(np.float64)
    # MATLAB orders dimensions by scale; with one scale for both, rows (H) go first.
    out = _resize_axis(out, 0, out_h, scale)
    if is_uint8 and round_between_passes:
        out = _round_uint8(out).astype(np.float64)
    out = _resize_axis(out, 1, out_w, scale)
    return _round_uint8(out) if is_uint8 else out


def resize_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """Dense (out_len, in_len) float64 matrix equal to one resize pass along an axis."""
    idx, w = contributions(in_len, out_len, scale)
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(mat, (np.repeat(np.arange(out_len), idx.shape[1]), idx.ravel()), w.ravel())
    return mat


def imresize_torch(x, scale: float, *, quantize: bool = False):
    """Batched MATLAB-compatible bicubic resize in torch (for training on the fly).

    Args:
        x: float tensor (N, C, H, W), any range (edgesr uses [0, 1]).
        scale: resize factor (1/s for LR generation).
        quantize: emulate the uint8 path of :func:`imresize` for inputs in [0, 1]: values
            are rounded to multiples of 1/255 (half away from zero) after each pass.

    Returns:
        float tensor (N, C, ceil(H*scale), ceil(W*scale)), same dtype and device.
        It equals :func:`imresize` on float input to float32 precision (tested). With
        ``quantize`` it equals the uint8 path except where a value lies within rounding
        error of a .5 tie (the matmul sums in another order): a 1-level difference on
        well under 1 % of pixels, harmless for training data.
    """
    import torch

    n, c, h, w = x.shape
    out_h, out_w = output_size((h, w), scale)
    mh = torch.from_numpy(resize_matrix(h, out_h, scale)).to(x.device, x.dtype)
    mw = torch.from_numpy(resize_matrix(w, out_w, scale)).to(x.device, x.dtype)
    y = torch.matmul(mh, x)  # rows first, as MATLAB does
    if quantize:
        y = torch.clamp(torch.floor(y * 255 + 0.5), 0, 255) / 255
    y = torch.matmul(y, mw.T)
    if quantize:
        y = torch.clamp(torch.floor(y * 255 + 0.5), 0, 255) / 255
    return y


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom and right so that H and W are multiples of ``scale`` (top-left kept)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def make_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """The benchmark LR image: ``imresize(modcrop(hr, scale), 1/scale)`` on uint8, MATLAB rounding."""
    return imresize(modcrop(hr, scale), 1.0 / scale)


# --------------------------------------------------------------------------- fast integer upscaling
#
# For an integer factor s, output pixel o = s*i + phase (0-based) sits at input coordinate
# i + d with d = (phase + 0.5) / s - 0.5 (MATLAB's mapping above), so its weights depend on
# the phase only: one shifted slice per tap and phase replaces the gather of
# :func:`imresize`. The same taps, normalisation, symmetric boundary and pass order, computed
# once per phase instead of per pixel.


@lru_cache(maxsize=16)
def phase_taps(scale: int) -> tuple[tuple[tuple[int, float], ...], ...]:
    """Per output phase 0..s-1, the (input offset k, weight) pairs of upscaling by integer ``scale``.

    Offsets k in -2..2 relative to input pixel i = o // s; zero weights dropped; weights
    (float64) normalised to sum 1 as MATLAB's ``contributions`` does.
    """
    taps = []
    for phase in range(scale):
        d = (phase + 0.5) / scale - 0.5
        ks = np.arange(-2, 3)
        w = cubic(d - ks.astype(np.float64))
        w = w / w.sum()
        taps.append(tuple((int(k), float(v)) for k, v in zip(ks, w) if v != 0.0))
    return tuple(taps)


def _upscale_axis(img: np.ndarray, scale: int, axis: int, dtype) -> np.ndarray:
    n = img.shape[axis]
    pad = [(0, 0)] * img.ndim
    pad[axis] = (2, 2)
    padded = np.pad(img.astype(dtype, copy=False), pad, mode="symmetric")  # MATLAB's mirror boundary
    shape = list(img.shape)
    shape[axis] = n * scale
    out = np.empty(shape, dtype=dtype)
    term = np.empty(img.shape, dtype)
    window, target = [slice(None)] * img.ndim, [slice(None)] * img.ndim
    for phase, taps in enumerate(phase_taps(scale)):
        target[axis] = slice(phase, None, scale)
        dst = out[tuple(target)]  # every s-th output along the axis: a view, written in place
        for j, (k, w) in enumerate(taps):  # taps in increasing offset: the same order for every pixel
            window[axis] = slice(2 + k, 2 + k + n)
            if j == 0:
                np.multiply(padded[tuple(window)], dtype(w), out=dst)
            else:
                np.multiply(padded[tuple(window)], dtype(w), out=term)
                dst += term
    return out


def _correlate_axis(planes: np.ndarray, scale: int, axis: int, dtype) -> np.ndarray:
    """One float pass: per phase, a 5-tap correlation (SciPy, accumulated in float64,
    ``mode="reflect"`` = MATLAB's symmetric boundary) written into every s-th output."""
    shape = list(planes.shape)
    shape[axis] *= scale
    out = np.empty(shape, dtype=dtype)
    target = [slice(None)] * planes.ndim
    for phase, taps in enumerate(phase_taps(scale)):
        weights = np.zeros(5)
        for k, w in taps:
            weights[k + 2] = w
        target[axis] = slice(phase, None, scale)
        correlate1d(planes, weights, axis=axis, mode="reflect", output=out[tuple(target)])
    return out


def upscale_bicubic(img: np.ndarray, scale: int, dtype=np.float32) -> np.ndarray:
    """MATLAB bicubic *upscaling* by an integer factor, fast: (H, W[, C]) -> (s*H, s*W[, C]).

    The same kernel, weights (:func:`phase_taps`), symmetric boundary and pass order (rows
    first) as :func:`imresize`, computed per output phase by one 5-tap correlation
    (``scipy.ndimage.correlate1d``, which accumulates in float64) instead of a gather. Each
    output pixel is the same sum in the same order wherever it lies, so a tile of the image
    gives bit-identical values (what :mod:`edgesr.core.tiling` relies on).

    Args:
        img: (H, W) or (H, W, C), any real dtype; values as they are (no rescaling).
        scale: integer factor s >= 1.
        dtype: ``np.float32`` (default; for photo chroma: each pass is rounded to float32,
            a relative error of about 1e-7, under 1e-4 of a level on a 0-255 scale) or
            ``np.float64``.

    Returns:
        ``dtype`` array, unrounded; equals ``imresize(img.astype(float64), scale)`` to float
        rounding (tested).

    Raises:
        EdgesrError: an empty image or a scale that is not a positive integer.
    """
    if img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise EdgesrError(f"upscale_bicubic needs an (H, W) or (H, W, C) image, got shape {img.shape}")
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise EdgesrError(f"upscale_bicubic needs a positive integer scale, got {scale!r}")
    planar = np.ascontiguousarray(img[None] if img.ndim == 2 else np.moveaxis(img, 2, 0), dtype=dtype)  # (C, H, W)
    out = _correlate_axis(_correlate_axis(planar, int(scale), 1, dtype), int(scale), 2, dtype)
    return out[0] if img.ndim == 2 else np.moveaxis(out, 0, 2)


def upscale_bicubic_uint8(img: np.ndarray, scale: int) -> np.ndarray:
    """:func:`imresize` of a uint8 image by an integer factor (MATLAB's uint8 path), fast.

    Float64 passes, rows first, each rounded half away from zero and clamped to uint8 as
    MATLAB does; equal to ``imresize(img, scale)`` (tested on real photos at x2, x3, x4).

    Args:
        img: uint8 (H, W) or (H, W, C). scale: integer s >= 1.

    Returns:
        uint8 (s*H, s*W[, C]).
    """
    if img.dtype != np.uint8:
        raise EdgesrError(f"upscale_bicubic_uint8 needs uint8 pixels, got {img.dtype}")
    planar = img[None] if img.ndim == 2 else np.moveaxis(img, 2, 0)
    rows = _round_uint8(_upscale_axis(planar, int(scale), 1, np.float64))
    out = _round_uint8(_upscale_axis(rows, int(scale), 2, np.float64))
    return out[0] if img.ndim == 2 else np.ascontiguousarray(np.moveaxis(out, 0, 2))
