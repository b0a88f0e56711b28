"""The numpy LUT engine: the readable, integer-exact reference of ``lut_engine.h``.

Every function takes uint8 images and int8 LUTs and computes in int32 (no floating point),
so the PyTorch and C engines can match it bit for bit. The formulas and their rounding are
stated in ``lut_baking/lut_engine.h``; this module follows them in the same order.

SR-LUT: Jo & Kim, "Practical Single-Image Super-Resolution Using Look-Up Table", CVPR 2021.
SPLUT: after Ma et al., "Learning Series-Parallel Lookup Tables for Efficient Image
Super-Resolution", ECCV 2022 (edgesr's variant, docs/lut.md).
"""

from __future__ import annotations

import numpy as np

from edgesr.core.models.lut import reflect_pad_index

# --------------------------------------------------------------------------- padding


def pad_bottom_right(img: np.ndarray) -> np.ndarray:
    """(h, w) -> (h+1, w+1): reflect padding by one pixel at the bottom and the right."""
    h, w = img.shape
    return img[reflect_pad_index(h, 0, 1)][:, reflect_pad_index(w, 0, 1)]


# --------------------------------------------------------------------------- SR-LUT


def simplex_ranks(frac: list[np.ndarray]) -> list[np.ndarray]:
    """Position of each of the 4 fractions in decreasing order (ties: a before b before c before d).

    ``frac``: four int arrays of one shape; returns four int8 arrays, a permutation of 0..3
    at every element. The 24 possible results are the 24 orderings of the 4-D cell's simplices.
    """
    rank = [np.zeros(frac[0].shape, dtype=np.int8) for _ in range(4)]
    for d in range(4):
        for e in range(4):
            if e < d:
                rank[d] += frac[e] >= frac[d]  # an earlier dimension wins a tie
            elif e > d:
                rank[d] += frac[e] > frac[d]
    return rank


def simplex_weights(frac: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """4-D simplex (tetrahedral) interpolation: the simplex that holds a point, and its weights.

    Args:
        frac: int (N, 4), the LSB fractions ``pixel % q`` of the inputs a, b, c, d, in [0, q).
        q: the sampling interval 2**bits.

    Returns:
        ``(steps, weights)``: ``steps`` int32 (N, 5, 4) in {0, 1}, the vertices v_0..v_4 as
        offsets from the cell's corner; ``weights`` int32 (N, 5),
        ``(q - f1, f1 - f2, f2 - f3, f3 - f4, f4)`` for the fractions sorted in decreasing
        order. The weights are >= 0, sum to q, and ``sum_j weights_j * q * steps_j == q * frac``.

    Derivation: the cell [0, q]^4 is cut into 24 simplices, one per ordering
    x_p1 >= x_p2 >= x_p3 >= x_p4 of the coordinates. Walking from the corner, vertex v_j adds
    the unit step of the j-th largest coordinate (so v_j holds the steps of every dimension
    ranked < j); the barycentric weights are the successive differences of the sorted
    coordinates, which reproduce the point and are >= 0 exactly inside that simplex.
    """
    frac = np.asarray(frac, dtype=np.int32)
    rank = np.stack(simplex_ranks([frac[:, d] for d in range(4)]), axis=1)
    steps = (rank[:, None, :] < np.arange(5)[None, :, None]).astype(np.int32)
    sorted_f = -np.sort(-frac, axis=1)
    weights = np.concatenate([q - sorted_f[:, :1], sorted_f[:, :3] - sorted_f[:, 1:], sorted_f[:, 3:]], axis=1)
    return steps, weights.astype(np.int32)


def srlut_interpolate(lut: np.ndarray, bits: int, a, b, c, d) -> np.ndarray:
    """Simplex-interpolate an SR-LUT at 2x2 receptive fields given as four uint8 arrays.

    Args:
        lut: int8 (L**4, s*s), L = 2**(8-bits) + 1, index ((ia*L + ib)*L + ic)*L + id.
        bits: sampling bits k (interval q = 2**k).
        a, b, c, d: uint8 arrays of one shape S: the pixels (y, x), (y, x+1), (y+1, x), (y+1, x+1).

    Returns:
        int16 S + (s*s,): ``sum_j w_j * lut[v_j]``, q times the interpolated value (exact,
        no rounding: |value| <= 127 * q <= 32512 fits int16).

    Same computation as :func:`simplex_weights`, on flat 1-D arrays for speed: the vertex
    v_j is v_{j-1} plus the stride of the dimension ranked j-1, and f_j (the j-th largest
    fraction) is the fraction of that dimension.
    """
    q, levels = 1 << bits, (256 >> bits) + 1
    stride = (levels**3, levels**2, levels, 1)
    pix = [np.asarray(v, dtype=np.int32).reshape(-1) for v in (a, b, c, d)]
    frac = [p & (q - 1) for p in pix]
    rank = simplex_ranks(frac)
    vertex = sum((p >> bits) * st for p, st in zip(pix, stride))
    sorted_f = [np.zeros_like(vertex) for _ in range(4)]
    steps = [np.zeros_like(vertex) for _ in range(4)]
    for j in range(4):
        for dim in range(4):
            is_j = rank[dim] == j
            sorted_f[j] += is_j * frac[dim]
            steps[j] += is_j * stride[dim]
    weights = [q - sorted_f[0], sorted_f[0] - sorted_f[1], sorted_f[1] - sorted_f[2], sorted_f[2] - sorted_f[3], sorted_f[3]]
    acc = np.zeros((vertex.size, lut.shape[1]), dtype=np.int16)
    term = np.empty_like(acc)
    for j in range(5):
        if j:
            vertex = vertex + steps[j - 1]
        np.multiply(np.take(lut, vertex, axis=0), weights[j].astype(np.int16)[:, None], out=term)
        acc += term
    return acc.reshape(np.shape(a) + (lut.shape[1],))


def _depth_to_space(blocks: np.ndarray, s: int) -> np.ndarray:
    """(h, w, s*s) with index dy*s+dx -> (h*s, w*s)."""
    h, w, _ = blocks.shape
    return blocks.reshape(h, w, s, s).transpose(0, 2, 1, 3).reshape(h * s, w * s)


def srlut_upscale(lut: np.ndarray, bits: int, scale: int, img: np.ndarray) -> np.ndarray:
    """SR-LUT on one uint8 channel (h, w) with the rotation ensemble -> uint8 (h*s, w*s).

    Per rotation r: rotate by r*90 degrees (numpy.rot90), reflect-pad bottom/right by one
    pixel, interpolate, depth-to-space, rotate back; T = the int32 sum over the rotations.
    Output ``0 if T < 0 else min(255, (T + q/2) >> bits)`` (rounding half up), the authors'
    ``round(clip(sum(127 * clamp(net, -1, 1)) / 255, 0, 1) * 255)``.
    """
    total = np.zeros((img.shape[0] * scale, img.shape[1] * scale), dtype=np.int32)
    for r in range(4):
        rot = pad_bottom_right(np.rot90(img, r))
        acc = srlut_interpolate(lut, bits, rot[:-1, :-1], rot[:-1, 1:], rot[1:, :-1], rot[1:, 1:])
        total += np.rot90(_depth_to_space(acc, scale), -r)
    q = 1 << bits
    return np.where(total < 0, 0, np.minimum(255, (total + q // 2) >> bits)).astype(np.uint8)


# --------------------------------------------------------------------------- SPLUT


def lut_index(i0, i1, i2, i3) -> np.ndarray:
    """Direct index of a 16**4 LUT: ((i0*16 + i1)*16 + i2)*16 + i3 (each in 0..15)."""
    return ((i0.astype(np.int64) * 16 + i1) * 16 + i2) * 16 + i3


def floor_quarter(t: np.ndarray) -> np.ndarray:
    """floor((t + 2) / 4) on int32: the rounding (half up) of SPLUT's average of 4 lookups."""
    return (t + 2) // 4  # numpy's // floors


def splut_neighbour(f: np.ndarray, axis: int, o: int) -> np.ndarray:
    """``f`` (h, w, C) shifted so that out[y, x] = f at (y, x) + o along ``axis``, reflect-padded."""
    n = f.shape[axis]
    idx = reflect_pad_index(n, 1, 1)[1 + o : 1 + o + n]
    return np.take(f, idx, axis=axis)


def splut_stage(stage: list[np.ndarray], feat: np.ndarray, o: int) -> np.ndarray:
    """One series stage: int32 features (h, w, 4) -> T (h, w, C), the sum of its 4 lookups.

    Levels ``(f + 128) >> 4``; ``stage`` = [H0, H1, V0, V1]; Hg reads channels (2g, 2g+1)
    at the pixel and at its horizontal neighbour (offset ``o``), Vg at its vertical one.
    """
    h0, h1, v0, v1 = stage
    lv = (feat + 128) >> 4
    hn, vn = splut_neighbour(lv, 1, o), splut_neighbour(lv, 0, o)
    t = np.zeros(feat.shape[:2] + (h0.shape[1],), dtype=np.int32)
    for g, (hl, vl) in enumerate(((h0, v0), (h1, v1))):
        c0, c1 = 2 * g, 2 * g + 1
        t += hl[lut_index(lv[..., c0], lv[..., c1], hn[..., c0], hn[..., c1])]
        t += vl[lut_index(lv[..., c0], lv[..., c1], vn[..., c0], vn[..., c1])]
    return t


def splut_branch(luts: list[np.ndarray], variant: int, part: np.ndarray) -> np.ndarray:
    """One SPLUT branch on part values (h, w) in 0..15 -> int32 (h, w, 16) final sums R.

    Spatial stage, then ``variant`` mixing stages ``F <- clamp(F + floor((T + 2) / 4), -127, 127)``
    with neighbour offsets -1, +1, -1, ..., then the final stage (its T is returned).
    """
    p = pad_bottom_right(part)
    feat = luts[0][lut_index(p[:-1, :-1], p[:-1, 1:], p[1:, :-1], p[1:, 1:])].astype(np.int32)
    for s in range(variant):
        t = splut_stage(luts[1 + 4 * s : 5 + 4 * s], feat, -1 if s % 2 == 0 else 1)
        feat = np.clip(feat + floor_quarter(t), -127, 127)
    return splut_stage(luts[1 + 4 * variant : 5 + 4 * variant], feat, -1 if variant % 2 == 0 else 1)


def splut_upscale(luts: list[np.ndarray], variant: int, img: np.ndarray) -> np.ndarray:
    """SPLUT x4 on one uint8 channel (h, w) -> uint8 (4h, 4w); formulas in lut_engine.h.

    ``luts``: 2 * (5 + 4 * variant) int8 arrays, MSB branch then LSB branch, each
    ``[spatial (65536, 4), (H0, H1, V0, V1) per mixing stage (65536, 4), final H0, H1, V0, V1 (65536, 16)]``.
    """
    img = img.astype(np.int32)
    n = 5 + 4 * variant
    r_msb = splut_branch(luts[:n], variant, img >> 4)
    r_lsb = splut_branch(luts[n:], variant, img & 15)
    up = _depth_to_space(img[..., None] + floor_quarter(r_msb + r_lsb), 4)
    return np.clip(up, 0, 255).astype(np.uint8)
