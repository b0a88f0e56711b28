"""Baking: evaluate a trained LUT network on every LUT index and store the int8 results.

* SR-LUT (Jo & Kim, CVPR 2021): each of the 4 inputs of the 2x2 receptive field is sampled
  every q = 2**bits levels, L = 256/q + 1 samples 0, q, ..., 256; as in the authors' code the
  last sample 256 is evaluated at 255 (the largest 8-bit value), the others at their value;
  the network input is sample / 255. Entry = round(clamp(core, -1, 1) * 127) (round half to
  even, torch.round), layout [((ia*L + ib)*L + ic)*L + id][dy*s + dx].
* SPLUT: every stage's network is evaluated on all 16**4 index tuples (index / 15 at its
  inputs) and stored with the same int8 quantizer the network form simulates
  (:meth:`edgesr.core.models.lut.SPLUTNet.quantize`), so the LUTs reproduce the network exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from edgesr.lut_baking.bundle import LutBundle

from edgesr.core.errors import EdgesrError
from edgesr.core.models.lut import SPLUTNet, SRLUTNet

CHUNK = 16384


def lattice_values(bits: int) -> np.ndarray:
    """The L sample values 0, q, ..., 256 of one SR-LUT input, with 256 evaluated as 255."""
    values = np.arange(0, 257, 1 << bits)
    values[-1] = 255
    return values


def all_indices(levels: int) -> np.ndarray:
    """int64 (levels**4, 4): every (i0, i1, i2, i3) in LUT index order ((i0*L + i1)*L + i2)*L + i3."""
    grid = np.indices((levels,) * 4).reshape(4, -1).T
    return grid.astype(np.int64)


def _to_int8(y: torch.Tensor) -> np.ndarray:
    return torch.round(127.0 * torch.clamp(y, -1.0, 1.0)).to(torch.int8).numpy()


@torch.no_grad()
def bake_srlut(model: SRLUTNet, bits: int = 4) -> np.ndarray:
    """int8 (L**4, s*s) SR-LUT of ``model.core`` sampled every 2**bits levels."""
    if not isinstance(bits, int) or not 1 <= bits <= 8:
        raise EdgesrError(f"sampling bits must be an integer in 1..8, got {bits!r}")
    values = lattice_values(bits)
    idx = all_indices(len(values))
    patches = torch.from_numpy(values[idx].astype(np.float32) / 255.0).reshape(-1, 1, 2, 2)
    out = [model.core(patches[i : i + CHUNK]).reshape(-1, model.scale**2) for i in range(0, len(patches), CHUNK)]
    return _to_int8(torch.cat(out))


@torch.no_grad()
def bake_splut(model: SPLUTNet) -> list[np.ndarray]:
    """The SPLUT LUT list in engine order (lut_engine.h): per branch spatial, mixing H0 H1 V0 V1, final H0 H1 V0 V1."""
    idx = torch.from_numpy(all_indices(16)).float() / 15.0  # (65536, 4)
    spatial_in = idx.reshape(-1, 1, 2, 2)  # [[i0, i1], [i2, i3]]
    # pair input for both groups: channel c0 = (i0 at the pixel, i2 at the neighbour), c1 = (i1, i3)
    pair = torch.stack([idx[:, [0, 2]], idx[:, [1, 3]]], dim=1).reshape(-1, 2, 1, 2).repeat(1, 2, 1, 1)
    luts = []
    for stages in model.branches:
        luts.append(_to_int8(torch.cat([stages[0](spatial_in[i : i + CHUNK]) for i in range(0, 65536, CHUNK)]).flatten(1)))
        for s in range(model.mixing + 1):
            c = 16 if s == model.mixing else 4
            per_orientation = []
            for k in range(2):  # horizontal, vertical
                net = stages[1 + 2 * s + k]
                out = torch.cat([net(pair[i : i + CHUNK]) for i in range(0, 65536, CHUNK)]).flatten(1)
                per_orientation.append((_to_int8(out[:, :c]), _to_int8(out[:, c:])))
            (h0, h1), (v0, v1) = per_orientation
            luts += [h0, h1, v0, v1]
    return [np.ascontiguousarray(a) for a in luts]


def bake(model, bits: int = 4, name: str | None = None) -> LutBundle:
    """Bake a trained :class:`SRLUTNet` or :class:`SPLUTNet` into a :class:`LutBundle`.

    Args:
        model: the network (eval mode is set here).
        bits: SR-LUT sampling bits k (interval 2**k; 4 gives 17**4 entries); SPLUT always
            indexes 16 levels directly and needs bits == 4.
        name: the registry name recorded in the bundle (default ``model.registry_name``).

    Raises:
        EdgesrError: a model that is not LUT-bakeable, or bits out of range.
    """
    model = model.eval()
    name = name or getattr(model, "registry_name", "")
    if isinstance(model, SRLUTNet):
        return LutBundle("srlut", model.scale, bits, [bake_srlut(model, bits)], model.contract, 0, name, {"baked_from": name})
    if isinstance(model, SPLUTNet):
        if bits != 4:
            raise EdgesrError(f"SPLUT indexes 16 levels directly (4 bits); --bits {bits} is not supported")
        return LutBundle("splut", 4, 4, bake_splut(model), model.contract, model.mixing, name, {"baked_from": name})
    raise EdgesrError(f"model {name or type(model).__name__!r} is not a LUT model (bake supports srlut_s, splut_s/m/l)")
