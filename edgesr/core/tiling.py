"""Tiled upscaling of big photos: the same pixels as in one piece, in bounded memory.

A photo is cut into tiles of ``tile`` x ``tile`` LR pixels. Each tile is upscaled with a
*halo*: the LR pixels around it that its outputs depend on, ``receptive_field // 2`` of the
model (declared on every model as ``receptive_field`` and tested by perturbing one input
pixel), and at least 2 for the bicubic chroma and alpha (Keys' kernel reaches 2 LR pixels).
Only the tile's own s*tile x s*tile outputs are kept. Where a tile touches the photo's
edge, its window ends at the same edge, so the model pads exactly as it does on the whole
photo. Every step is local (convolutions, per-pixel colour conversion and rounding), so
the result equals :func:`edgesr.core.evaluate.upscale_photo` on the whole photo, pixel for
pixel (tested for every model family, LUTs and bicubic, at several tile sizes).

Memory: the uint8 result (s*H x s*W) plus one tile's working set, independent of the
photo's size. An upscaler that declares no receptive field (an exported artifact opened by
its runtime) runs in one piece.
"""

from __future__ import annotations

import warnings
from typing import Iterator

import numpy as np

from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import Upscaler, upscale_photo

DEFAULT_TILE = 256
"""Tile side in LR pixels: small enough for a phone's GPU delegate, big enough that the halo costs little."""

BICUBIC_HALO = 2
"""LR pixels either side that MATLAB bicubic upscaling reads (Keys' cubic kernel, support 2)."""


def halo_of(upscaler: Upscaler) -> int | None:
    """LR pixels of context a tile needs: ``max(receptive_field // 2, 2)``; None if undeclared."""
    rf = getattr(upscaler, "receptive_field", None)
    if rf is None:
        return None
    if isinstance(rf, bool) or not isinstance(rf, (int, np.integer)) or rf < 1:
        raise EdgesrError(f"receptive field must be a positive integer, got {rf!r}")
    return max(int(rf) // 2, BICUBIC_HALO)


MIN_TILE = 16
"""Smallest tile side (LR pixels)."""

MIN_WINDOW_PIXELS = 20481
"""Every window holds more than 20480 pixels (or is the whole photo). PyTorch runs a
convolution of one image with a kernel of at most 3 x 3 through oneDNN only when its input
holds more than 20480 values (``ConvParams::use_mkldnn`` in ATen), else through its own
im2col + GEMM; the two round float32 sums differently in the last bit, which can move a
value across a rounding boundary. Windows this big take the path the whole photo takes
(tested: tiles equal the whole photo pixel for pixel)."""

SQUARE_WINDOW = 144
"""Window side that alone exceeds :data:`MIN_WINDOW_PIXELS` (144 * 144 = 20736)."""


def _window_shape(h: int, w: int, tile: int, halo: int) -> tuple[int, int]:
    """One window shape for every tile: ``tile + 2 * halo`` per axis, grown to hold more than
    :data:`MIN_WINDOW_PIXELS` pixels, and capped at the photo."""
    side = max(tile + 2 * halo, SQUARE_WINDOW)
    win_h, win_w = min(h, side), min(w, side)
    if win_h * win_w < MIN_WINDOW_PIXELS:  # a thin photo: widen along its long side
        win_w = min(w, max(win_w, -(-MIN_WINDOW_PIXELS // win_h)))
        win_h = min(h, max(win_h, -(-MIN_WINDOW_PIXELS // win_w)))
    return win_h, win_w


def tile_grid(height: int, width: int, tile: int) -> Iterator[tuple[int, int, int, int]]:
    """Tiles ``(y0, y1, x0, x1)`` (LR pixels, end exclusive) covering ``height`` x ``width`` row by row."""
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            yield y0, min(y0 + tile, height), x0, min(x0 + tile, width)


def _window(start: int, size: int, length: int, halo: int) -> int:
    """Start of the window of ``size`` pixels that holds [start - halo, start + tile + halo) inside [0, length)."""
    return max(0, min(start - halo, length - size))


def tile_plan(height: int, width: int, tile: int, halo: int) -> tuple[tuple[int, int], list[tuple[int, int, int, int, int, int]]]:
    """The tiles of a ``height`` x ``width`` photo and the window each one is upscaled in.

    Returns:
        ``((win_h, win_w), [(y0, y1, x0, x1, wy0, wx0), ...])`` in LR pixels, row by row: the
        tile ``[y0, y1) x [x0, x1)`` (end exclusive) is cut out of the upscaled window whose
        top-left corner is ``(wy0, wx0)`` and whose shape, the same for every tile, is
        ``(win_h, win_w)`` (:func:`_window_shape`). The Android demo's ``TilePlan.java`` computes
        the same plan (tested against this function).
    """
    win_h, win_w = _window_shape(height, width, tile, halo)
    return (win_h, win_w), [(y0, y1, x0, x1, _window(y0, win_h, height, halo), _window(x0, win_w, width, halo))
                            for y0, y1, x0, x1 in tile_grid(height, width, tile)]


def upscale_tiled(upscaler: Upscaler, img: np.ndarray, tile: int = DEFAULT_TILE, progress: bool = False) -> np.ndarray:
    """:func:`~edgesr.core.evaluate.upscale_photo` tile by tile: the same uint8 result, bounded memory.

    Every window has the same shape (:func:`_window_shape`): a tile at the photo's edge takes
    its window inward rather than a thinner one, so that every window and the whole photo run
    the same convolution kernels (see :data:`MIN_WINDOW_PIXELS`).

    Args:
        upscaler: any :class:`~edgesr.core.evaluate.Upscaler`; its ``receptive_field``
            (side in LR pixels) sets the halo. Without one, the photo runs in one piece
            (with a warning when it is bigger than a tile).
        img: uint8 (H, W), (H, W, 2), (H, W, 3) or (H, W, 4).
        tile: tile side in LR pixels (>= :data:`MIN_TILE`).
        progress: show a tqdm bar over the tiles (on stderr).

    Returns:
        uint8 (s*H, s*W[, C]), equal to ``upscale_photo(upscaler, img)``.

    Raises:
        EdgesrError: ``tile`` is not an integer >= :data:`MIN_TILE`.
    """
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < MIN_TILE:
        raise EdgesrError(f"tile size must be an integer >= {MIN_TILE}, got {tile!r}")
    h, w = img.shape[:2]
    halo = halo_of(upscaler)
    if halo is None:
        if max(h, w) > tile:
            warnings.warn("this upscaler declares no receptive field; upscaling the photo in one piece")
        return upscale_photo(upscaler, img)
    from tqdm.auto import tqdm

    s = upscaler.contract.scale
    (win_h, win_w), plan = tile_plan(h, w, tile, halo)
    out = None
    for y0, y1, x0, x1, wy0, wx0 in tqdm(plan, disable=not progress, desc="upscale", unit="tile", leave=False):
        piece = upscale_photo(upscaler, img[wy0 : wy0 + win_h, wx0 : wx0 + win_w])
        if out is None:
            out = np.empty((s * h, s * w) + piece.shape[2:], dtype=np.uint8)
        oy, ox = s * (y0 - wy0), s * (x0 - wx0)
        out[s * y0 : s * y1, s * x0 : s * x1] = piece[oy : oy + s * (y1 - y0), ox : ox + s * (x1 - x0)]
    return out
