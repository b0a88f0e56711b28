"""4-D simplex (tetrahedral) interpolation: the 24 orderings, exactness at lattice points, affine reproduction."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from edgesr.lut_baking import engine_numpy, engine_torch


def test_24_orderings_each_give_the_simplex_holding_the_point():
    q = 16
    seen = set()
    for perm in itertools.permutations(range(4)):
        frac = np.zeros((1, 4), np.int64)
        frac[0, list(perm)] = [13, 9, 4, 1]  # dimension perm[0] largest, ...
        steps, weights = engine_numpy.simplex_weights(frac, q)
        w, st = weights[0], steps[0]
        assert (w >= 0).all() and w.sum() == q, (perm, w)
        # the weights reproduce the point: sum_j w_j * q * v_j == q * frac
        np.testing.assert_array_equal((w[:, None] * q * st).sum(0), q * frac[0], err_msg=str(perm))
        # a chain from the corner to the far corner adding the largest fraction's dimension first
        assert (st[0] == 0).all() and (st[4] == 1).all()
        added = [int(np.flatnonzero(st[j + 1] - st[j])[0]) for j in range(4)]
        assert added == list(perm), (perm, added)
        seen.add(tuple(added))
    assert len(seen) == 24


def test_ties_and_extremes():
    q = 16
    frac = np.array([[0, 0, 0, 0], [15, 15, 15, 15], [7, 7, 3, 3], [15, 0, 15, 0]])
    steps, weights = engine_numpy.simplex_weights(frac, q)
    assert (weights >= 0).all() and (weights.sum(1) == q).all()
    np.testing.assert_array_equal((weights[:, :, None] * q * steps).sum(1), q * frac)


def test_exact_at_lattice_points():
    rng = np.random.default_rng(0)
    bits, q, levels = 4, 16, 17
    lut = rng.integers(-128, 128, size=(levels**4, 4), dtype=np.int8)
    idx = rng.integers(0, 16, size=(500, 4))  # lattice points 0..240 (256 is not an 8-bit value)
    pix = (idx * q).astype(np.uint8)
    acc = engine_numpy.srlut_interpolate(lut, bits, *[pix[:, d] for d in range(4)])
    flat = ((idx[:, 0] * levels + idx[:, 1]) * levels + idx[:, 2]) * levels + idx[:, 3]
    np.testing.assert_array_equal(acc, q * lut[flat].astype(np.int32))


def test_reproduces_affine_functions_exactly():
    # simplex interpolation is exact for functions affine in the 4 inputs
    bits, levels = 4, 17  # interval q = 2**(8 - bits) = 16
    alpha = np.array([3, -2, 1, -1])
    grid = np.indices((levels,) * 4).reshape(4, -1).T
    lut = (grid @ alpha).astype(np.int8)[:, None]  # |values| <= 64
    rng = np.random.default_rng(1)
    pix = rng.integers(0, 256, size=(2000, 4))
    acc = engine_numpy.srlut_interpolate(lut, bits, *[pix[:, d].astype(np.uint8) for d in range(4)])
    np.testing.assert_array_equal(acc[:, 0], pix @ alpha)  # q * (alpha . pix / q)


def test_torch_interpolation_matches_numpy_and_has_gradients():
    rng = np.random.default_rng(2)
    lut = rng.integers(-128, 128, size=(9**4, 9), dtype=np.int8)  # bits 5
    pix = rng.integers(0, 256, size=(300, 4))
    ref = engine_numpy.srlut_interpolate(lut, 5, *[pix[:, d].astype(np.uint8) for d in range(4)])
    lut_t = torch.tensor(lut, dtype=torch.float32, requires_grad=True)
    out = engine_torch.srlut_interpolate(lut_t, 5, [torch.from_numpy(pix[:, d]) for d in range(4)])
    np.testing.assert_array_equal(out.detach().numpy().astype(np.int32), ref)
    out.sum().backward()
    # each point spreads its weight q = 32 over its 5 vertices, for each of the 9 outputs
    assert lut_t.grad.sum().item() == 300 * 32 * 9
