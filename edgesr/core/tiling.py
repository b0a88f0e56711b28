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

Fixed input shapes: an artifact exported with ``--input-size`` takes only its own input
sizes. :class:`FixedShapeUpscaler` runs it on a model input of any size in windows of exactly
such a size, keeping of each window only the outputs whose ``receptive_field // 2`` halo lies
inside it (or at the input's own edge); a tensor-level version of the same argument, so
the result equals the dynamic model's on the whole input whenever the input is at least
one window in each dimension (tested on real photos against the dynamic artifacts).
"""

from __future__ import annotations

import warnings
from typing import Iterator

import numpy as np

from edgesr.core.contract import normalize_input_sizes
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


# --------------------------------------------------------------------------- fixed input shapes


def axis_windows(length: int, size: int, halo: int) -> list[tuple[int, int, int]]:
    """Windows of ``size`` pixels covering ``[0, length)`` along one axis, each output kept
    only where its ``halo`` pixels of context lie inside the window or beyond the axis' edge.

    Returns:
        ``[(window start, keep start, keep end)]`` (input pixels, end exclusive): the kept
        intervals tile ``[0, length)`` in order. ``length <= size`` gives one window
        ``(0, 0, length)`` (the caller pads the input up to ``size``).

    Raises:
        EdgesrError: ``size <= 2 * halo`` while ``length > size`` (no pixel would be kept).
    """
    if length <= size:
        return [(0, 0, length)]
    if size <= 2 * halo:
        raise EdgesrError(f"an input size of {size} pixels leaves nothing between two halos of {halo} pixels")
    out, kept, start = [], 0, 0
    while kept < length:
        start = min(start, length - size)
        end = length if start + size == length else start + size - halo
        out.append((start, kept, end))
        kept, start = end, end - halo
    return out


class FixedShapeUpscaler:
    """An :class:`~edgesr.core.evaluate.Upscaler` whose runtime takes only fixed input sizes
    (an artifact exported with ``--input-size``), run on inputs of any size.

    ``__call__(x)``: float32 (N, C, h, w) NCHW -> float32 (N, C, s*h, s*w). For each call one
    of ``sizes`` is chosen (:meth:`choose_size`); the input is cut into windows of exactly that
    size (:func:`axis_windows`, halo ``receptive_field // 2`` LR pixels), each window runs through
    ``inner``, and only the outputs whose receptive field lies inside their window (or at the
    input's edge, where the window ends at the same edge and the model pads as it does on the
    whole input) are kept. The model's ops are local, so on an input at least one window in
    each dimension the result equals a dynamic-shape model's on the whole input: the same
    values for integer (int8) graphs, the same float32 sums per output for float ones.

    An input smaller than every size in a dimension cannot be tiled exactly: no window fits
    inside it. With ``small`` (a callable running the same graph at any size, e.g. LiteRT's
    non-strict resize of the same file) it runs there in one piece, the same values as the
    dynamic model. Without, it is padded at the bottom/right by repeating its last row/column
    (``numpy.pad`` mode ``"edge"``, what a phone app does to fill a fixed tensor): the outputs
    within ``receptive_field // 2`` LR pixels of that edge then see the repeated pixels
    instead of the model's zero padding and can differ from a dynamic model's.

    ``inner``'s other attributes (``interpreter``, ``run_quantized``, ``session``, ...) are
    reachable through this object; they still take only the fixed sizes.

    Raises:
        EdgesrError: no sizes, a receptive field that is not a positive integer, or a size
            whose side is not bigger than two halos.
    """

    def __init__(self, inner: Upscaler, sizes, receptive_field: int, small=None):
        if isinstance(receptive_field, bool) or not isinstance(receptive_field, (int, np.integer)) or receptive_field < 1:
            raise EdgesrError(f"receptive field must be a positive integer, got {receptive_field!r}")
        try:
            self.sizes = normalize_input_sizes([tuple(int(v) for v in hw) for hw in sizes])
        except (ValueError, TypeError) as exc:
            raise EdgesrError(str(exc)) from None
        self.inner, self.contract, self.small = inner, inner.contract, small
        self.receptive_field, self.halo = int(receptive_field), int(receptive_field) // 2
        too_small = [hw for hw in self.sizes if min(hw) <= 2 * self.halo]
        if too_small:
            h, w = too_small[0]
            raise EdgesrError(f"input size {h}x{w} is too small to tile: each side must exceed twice the "
                              f"halo of {self.halo} pixels (receptive field {self.receptive_field})")

    def __getattr__(self, name):
        if name == "inner":  # not yet set (during unpickling/copy)
            raise AttributeError(name)
        return getattr(self.inner, name)

    def choose_size(self, h: int, w: int) -> tuple[int, int]:
        """The size to tile an h x w input with: among the sizes that fit inside it (no padding,
        exact), the one with the fewest pixels computed (windows x window pixels); if none fits,
        the one that computes the fewest pixels after padding. Ties: the first in ``sizes``."""

        def cost(hw):
            pad = hw[0] > h or hw[1] > w
            n = len(axis_windows(h, hw[0], self.halo)) * len(axis_windows(w, hw[1], self.halo))
            return (pad, n * hw[0] * hw[1])

        return min(self.sizes, key=cost)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4:
            raise ValueError(f"expected float32 (N, C, h, w), got shape {x.shape}")
        h, w = x.shape[2:]
        win_h, win_w = self.choose_size(h, w)
        if (h < win_h or w < win_w) and self.small is not None:
            return np.asarray(self.small(x), dtype=np.float32)
        if h < win_h or w < win_w:
            x = np.pad(x, ((0, 0), (0, 0), (0, max(0, win_h - h)), (0, max(0, win_w - w))), mode="edge")
        s, out = self.contract.scale, None
        for wy, ky0, ky1 in axis_windows(x.shape[2], win_h, self.halo):
            for wx, kx0, kx1 in axis_windows(x.shape[3], win_w, self.halo):
                piece = np.asarray(self.inner(x[:, :, wy : wy + win_h, wx : wx + win_w]), dtype=np.float32)
                if out is None:
                    out = np.empty(piece.shape[:2] + (s * x.shape[2], s * x.shape[3]), dtype=np.float32)
                out[:, :, s * ky0 : s * ky1, s * kx0 : s * kx1] = piece[:, :, s * (ky0 - wy) : s * (ky1 - wy),
                                                                        s * (kx0 - wx) : s * (kx1 - wx)]
        return out[:, :, : s * h, : s * w]
