"""Import the SR-LUT authors' published LUTs (yhjo09/SR-LUT, ``3_Test_using_LUT/``).

Their file is a numpy int8 array (L**4, 1, r, r), L = 2**(8-k) + 1 samples per input
(k = 4: 17), entry index a*L**3 + b*L**2 + c*L + d over the 2x2 receptive field
a = (y, x), b = (y, x+1), c = (y+1, x), d = (y+1, x+1), values round(clamp(net, -1, 1) * 127),
last axes (dy, dx). That is exactly edgesr's SR-LUT layout after a reshape to (L**4, r*r);
the authors apply it per RGB channel with the rotation ensemble and score Y (BT.601).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from edgesr.lut_baking.bundle import LutBundle, save_bundle

from edgesr.core.contract import IOContract
from edgesr.core.errors import EdgesrError
from edgesr.core.npyheader import check_npy_header


def read_srlut_npy(npy_path: str | os.PathLike, scale: int) -> LutBundle:
    """Read the authors' ``.npy`` LUT as a :class:`LutBundle` (not saved).

    Raises:
        EdgesrError: unreadable file, not int8, or a shape that is not (L**4, 1, r, r) /
        (L**4, r*r) with L = 2**(8-k) + 1 and r == scale.
    """
    path = Path(npy_path)
    if not path.is_file():
        raise EdgesrError(f"{path}: no such file")
    with open(path, "rb") as fp:  # shape and dtype from the header, before numpy allocates
        shape, dtype = check_npy_header(fp, path.stat().st_size, str(path))
    if dtype != np.int8:
        raise EdgesrError(f"{path}: expected an int8 LUT, got {dtype}")
    if len(shape) not in (2, 4) or shape[0] > 257**4:
        raise EdgesrError(f"{path}: expected shape (L**4, 1, r, r) with L <= 257, got {shape}")
    try:
        lut = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise EdgesrError(f"{path}: not a readable .npy array ({type(exc).__name__})") from None
    if lut.ndim == 4 and lut.shape[1] == 1:
        rr = lut.shape[2] * lut.shape[3]
    elif lut.ndim == 2:
        rr = lut.shape[1]
    else:
        raise EdgesrError(f"{path}: expected shape (L**4, 1, r, r), got {lut.shape}")
    if rr != scale * scale:
        raise EdgesrError(f"{path}: LUT has {rr} outputs per entry, which is not scale {scale} squared")
    levels = round(lut.shape[0] ** 0.25)
    bits = round(math.log2(256 / (levels - 1))) if levels > 1 else -1
    if levels**4 != lut.shape[0] or not 1 <= bits <= 8 or (256 >> bits) + 1 != levels:
        raise EdgesrError(f"{path}: {lut.shape[0]} entries is not (2**(8-k) + 1)**4 for a sampling k in 1..8")
    contract = IOContract(scale=scale, color="rgb", channels=1, per_channel=True)
    return LutBundle("srlut", scale, bits, [np.ascontiguousarray(lut.reshape(lut.shape[0], rr))], contract, 0,
                     "srlut_s", {"imported_from": path.name, "authors": "yhjo09/SR-LUT"})


def import_srlut(npy_path: str | os.PathLike, scale: int, out_path: str | os.PathLike) -> Path:
    """Convert the authors' ``.npy`` LUT into an edgesr ``.lut`` bundle at ``out_path``; returns it."""
    return save_bundle(read_srlut_npy(npy_path, scale), out_path)


def srlut_scale(npy_path: str | os.PathLike) -> int:
    """The upscaling factor r an SR-LUT ``.npy`` holds, read from its header (the array is not loaded).

    The authors' table is (L**4, 1, r, r); edgesr's layout (L**4, r*r) is accepted too.

    Raises:
        EdgesrError: unreadable file, not a .npy header, or a shape that names no scale.
    """
    path = Path(npy_path)
    if not path.is_file():
        raise EdgesrError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            shape, _ = check_npy_header(f, path.stat().st_size, str(path))
    except OSError as exc:
        raise EdgesrError(f"{path}: cannot read ({exc.strerror})") from None
    if len(shape) == 4 and shape[1] == 1 and shape[2] == shape[3]:
        r = shape[2]
    elif len(shape) == 2 and math.isqrt(shape[1]) ** 2 == shape[1]:
        r = math.isqrt(shape[1])
    else:
        raise EdgesrError(f"{path}: expected an SR-LUT of shape (L**4, 1, r, r), got {shape}")
    if r < 1:
        raise EdgesrError(f"{path}: an SR-LUT of shape {shape} has no upscaling factor")
    return int(r)
