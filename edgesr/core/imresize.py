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
