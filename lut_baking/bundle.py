"""The ``.lut`` bundle: LUT arrays + method, scale, sampling bits, I/O contract and a checksum.

File format: an ``.npz`` container (zip of ``.npy`` files), readable with
``numpy.load(path, allow_pickle=False)``:

* ``lut_000``, ``lut_001``, ...: int8 arrays in the order the engines take them
  (SR-LUT: one (L**4, s*s) array; SPLUT: the list documented in ``lut_engine.h``);
* ``meta``: a 0-d unicode array holding JSON: ``{"format": "edgesr-lut", "version": 1,
  "method": "srlut" | "splut", "scale", "bits", "variant", "contract": IOContract.to_dict(),
  "model", "sha256", "source"}`` where ``sha256`` is the SHA-256 of every array's dtype,
  shape and bytes, in order (:func:`arrays_digest`).

Loading checks the container, the metadata, the array shapes and the checksum; any
failure raises :class:`~edgesr.core.errors.EdgesrError` with one line naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from edgesr.lut_baking import engine_c, engine_numpy, engine_torch

from edgesr.core.atomic import write_bytes_atomic
from edgesr.core.contract import LUT_FORMAT as FORMAT
from edgesr.core.contract import IOContract, parse_lut_header
from edgesr.core.errors import EdgesrError
from edgesr.core.npyheader import check_npy_header
from edgesr.core.models.lut import SRLUTNet, splut_receptive_field

METHODS = ("srlut", "splut")


@dataclass
class LutBundle:
    """LUTs of one model. ``arrays``: int8 arrays (engine order); ``bits``: SR-LUT sampling
    bits k (interval 2**k), 4 for SPLUT's 16-level direct indexing; ``variant``: SPLUT's
    number of mixing stages (0 = S, 1 = M, 2 = L), 0 for SR-LUT."""

    method: str
    scale: int
    bits: int
    arrays: list[np.ndarray]
    contract: IOContract
    variant: int = 0
    model: str = ""
    source: dict = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Total size of the LUT entries in bytes (what a phone keeps in memory)."""
        return int(sum(a.nbytes for a in self.arrays))

    def validate(self, where: str = "LUT bundle") -> None:
        """Check the method, scale, bits and every array's dtype and shape.

        Raises:
            EdgesrError: one line naming ``where`` and the offending value.
        """
        if self.method not in METHODS:
            raise EdgesrError(f"{where}: unknown LUT method {self.method!r} (expected {', '.join(METHODS)})")
        for a in self.arrays:
            if a.dtype != np.int8 or a.ndim != 2:
                raise EdgesrError(f"{where}: LUT arrays must be 2-D int8, got {a.dtype} {a.shape}")
        if self.method == "srlut":
            if not (1 <= self.bits <= 8) or self.scale not in (1, 2, 3, 4):
                raise EdgesrError(f"{where}: SR-LUT needs bits in 1..8 and scale in 1..4, got bits {self.bits}, scale {self.scale}")
            expect = [(((256 >> self.bits) + 1) ** 4, self.scale**2)]
        else:
            if self.scale != 4 or self.bits != 4 or not (0 <= self.variant <= 8):
                raise EdgesrError(f"{where}: SPLUT needs scale 4, bits 4 and variant 0..8, got {self.scale}, {self.bits}, {self.variant}")
            branch = [(65536, 4)] * (1 + 4 * self.variant) + [(65536, 16)] * 4
            expect = branch * 2
        got = [a.shape for a in self.arrays]
        if got != expect:
            raise EdgesrError(f"{where}: {self.method} x{self.scale} bits {self.bits} expects LUT shapes {expect[:2]}... ({len(expect)} arrays), got {got[:2]}... ({len(got)})")


def arrays_digest(arrays: list[np.ndarray]) -> str:
    """SHA-256 over each array's dtype, shape and C-order bytes, in order."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def save_bundle(bundle: LutBundle, path: str | os.PathLike) -> Path:
    """Write ``bundle`` to ``path`` (``.lut``) atomically; returns the path."""
    bundle.validate(str(path))
    meta = {
        "format": FORMAT, "version": 1, "method": bundle.method, "scale": bundle.scale, "bits": bundle.bits,
        "variant": bundle.variant, "contract": bundle.contract.to_dict(), "model": bundle.model,
        "source": bundle.source, "sha256": arrays_digest(bundle.arrays),
    }
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), **{f"lut_{i:03d}": a for i, a in enumerate(bundle.arrays)})
    return write_bytes_atomic(path, buf.getvalue())


def load_bundle(path: str | os.PathLike) -> LutBundle:
    """Read and verify a ``.lut`` bundle (no pickle).

    Raises:
        EdgesrError: missing file, not a zip/npz, truncated, bad metadata, wrong shapes, or
        a checksum mismatch (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise EdgesrError(f"{path}: no such LUT bundle")
    try:
        _check_members(path)
        with np.load(path, allow_pickle=False) as z:
            text = str(z["meta"][()])
            names = sorted(n for n in z.files if n.startswith("lut_"))
            arrays = [np.asarray(z[n]) for n in names]
    except (zipfile.BadZipFile, ValueError, OSError, KeyError, EOFError, zipfile.LargeZipFile,
            NotImplementedError, UnicodeDecodeError, zlib.error) as exc:
        msg = str(exc).splitlines()[0][:100] if str(exc) else ""
        raise EdgesrError(f"{path}: corrupt or truncated LUT bundle ({type(exc).__name__}: {msg})") from None
    meta = parse_lut_header(text, str(path))
    if arrays_digest(arrays) != meta.get("sha256"):
        raise EdgesrError(f"{path}: LUT checksum mismatch (the file is corrupt)")
    try:
        contract = IOContract.from_dict(meta["contract"], str(path))
        scale, bits, variant = (_plain_int(meta[k] if k != "variant" else meta.get(k, 0), k) for k in ("scale", "bits", "variant"))
        bundle = LutBundle(str(meta["method"]), scale, bits, arrays, contract,
                           variant, str(meta.get("model", "")), dict(meta.get("source", {})))
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgesrError(f"{path}: bad LUT bundle metadata ({type(exc).__name__}: {str(exc)[:120]})") from None
    bundle.validate(str(path))
    _check_contract(bundle, str(path))
    return bundle


MAX_MEMBER_BYTES = 1 << 30
"""Largest LUT array accepted in a bundle (1 GiB; SR-LUT x4 at k=4 is 1.3 MB, SPLUT-L 5 MB)."""


def _plain_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value


def _check_members(path: Path) -> None:
    """Every ``.npy`` member's header against its size, before numpy allocates (see :mod:`edgesr.core.npyheader`)."""
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.file_size > MAX_MEMBER_BYTES:
                raise EdgesrError(f"{path}: member {info.filename} claims {info.file_size} bytes, more than a LUT bundle holds")
            with zf.open(info) as fp:
                check_npy_header(fp, info.file_size, f"{path}:{info.filename}")


def _check_contract(bundle: LutBundle, where: str) -> None:
    """A LUT bundle's contract must describe what the engines do: 8-bit planes, one channel at a time.

    Raises:
        EdgesrError: one line naming ``where`` and the first field that does not fit.
    """
    c = bundle.contract
    problems = [
        (c.scale == bundle.scale and not isinstance(c.scale, bool), f"contract scale {c.scale!r} is not the bundle's scale {bundle.scale}"),
        (c.color in ("y", "luma_full", "rgb"), f"contract colour {c.color!r} is not one of y, luma_full, rgb"),
        (c.channels == 1 and not isinstance(c.channels, bool), f"contract channels {c.channels!r}: LUT engines take 1 channel"),
        (isinstance(c.per_channel, bool), f"contract per_channel {c.per_channel!r} is not a boolean"),
        (c.layout == "NCHW", f"contract layout {c.layout!r} is not NCHW"),
        (isinstance(c.dtype, str), f"contract dtype {c.dtype!r} is not a string"),
        (len(c.value_range) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in c.value_range)
         and c.value_range[0] < c.value_range[1], f"contract value range {c.value_range!r} is not (low, high)"),
    ]
    for ok, message in problems:
        if not ok:
            raise EdgesrError(f"{where}: nonsensical LUT contract: {message}")


ENGINES = ("numpy", "torch", "c")


def upscale_planes(bundle: LutBundle, planes: np.ndarray, engine: str = "numpy") -> np.ndarray:
    """Run the bundle on 8-bit planes: uint8 (P, h, w) -> uint8 (P, s*h, s*w), identical for every engine.

    Raises:
        EdgesrError: unknown engine.
    """
    if engine == "torch":
        import torch

        x = torch.from_numpy(np.ascontiguousarray(planes))
        if bundle.method == "srlut":
            return engine_torch.srlut_upscale(torch.from_numpy(bundle.arrays[0]), bundle.bits, bundle.scale, x).numpy()
        return engine_torch.splut_upscale([torch.from_numpy(a) for a in bundle.arrays], bundle.variant, x).numpy()
    mod = {"numpy": engine_numpy, "c": engine_c}.get(engine)
    if mod is None:
        raise EdgesrError(f"unknown LUT engine {engine!r} (expected {', '.join(ENGINES)})")
    if bundle.method == "srlut":
        return np.stack([mod.srlut_upscale(bundle.arrays[0], bundle.bits, bundle.scale, p) for p in planes])
    return np.stack([mod.splut_upscale(bundle.arrays, bundle.variant, p) for p in planes])


class LutUpscaler:
    """A LUT bundle as an :class:`edgesr.core.evaluate.Upscaler` (open a ``.lut`` file with
    :func:`edgesr.app.artifacts.open_artifact`, option ``engine``).

    ``__call__(x)``: float32 (N, C, h, w) in [0, 1] -> float32 (N, C, s*h, s*w), values
    k/255. The input is converted to 8 bits with ``round(clip(x, 0, 1) * 255)`` (exact for
    8-bit images); each (n, c) plane runs through the engine.
    """

    def __init__(self, bundle: LutBundle, engine: str = "numpy"):
        if engine not in ENGINES:
            raise EdgesrError(f"unknown LUT engine {engine!r} (expected {', '.join(ENGINES)})")
        self.bundle, self.engine = bundle, engine
        self.contract = bundle.contract

    @property
    def receptive_field(self) -> int:
        """Side, in LR pixels, of the input window one output pixel depends on: that of the
        network the LUTs were baked from (SR-LUT: 3; SPLUT: :func:`splut_receptive_field`)."""
        if self.bundle.method == "srlut":
            return SRLUTNet.receptive_field
        return splut_receptive_field(self.bundle.variant)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        n, c, h, w = x.shape
        planes = np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8).reshape(n * c, h, w)
        out = upscale_planes(self.bundle, planes, self.engine)
        s = self.bundle.scale
        return (out.astype(np.float32) / 255.0).reshape(n, c, s * h, s * w)
