"""The portable C engine (``lut_engine.c``), compiled here with the system C compiler, via ctypes.

The shared library is built once per source version with
``cc -O3 -std=c99 -shared -fPIC`` into a cache folder (``$EDGESR_CACHE`` or
``~/.cache/edgesr``), under a name that contains the SHA-256 of the source, so an edited
engine is rebuilt and concurrent processes never load a half-written file (atomic rename).
The Android app compiles the same two files through the NDK and calls them over JNI.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgesr.core.errors import EdgesrError

HERE = Path(__file__).resolve().parent
SOURCE, HEADER = HERE / "lut_engine.c", HERE / "lut_engine.h"
CFLAGS = ("-O3", "-std=c99", "-shared", "-fPIC")


def cache_dir() -> Path:
    return Path(os.environ.get("EDGESR_CACHE", Path.home() / ".cache" / "edgesr"))


def compile_engine(extra_flags: tuple[str, ...] = ()) -> Path:
    """Compile ``lut_engine.c`` (if not cached) and return the shared library's path.

    Raises:
        EdgesrError: no C compiler (``$CC`` or ``cc``), an unwritable cache folder, or a
        failed compilation.
    """
    src = SOURCE.read_bytes() + HEADER.read_bytes() + " ".join(CFLAGS + extra_flags).encode()
    digest = hashlib.sha256(src).hexdigest()[:16]
    out = cache_dir() / f"lut_engine_{digest}.so"
    if out.exists():
        return out
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        raise EdgesrError(f"C compiler {cc!r} not found (set $CC) to build {SOURCE}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".lut_engine.", suffix=".so", dir=out.parent)
    except OSError as exc:
        raise EdgesrError(f"{out.parent}: cannot write the compiled LUT engine here ({exc.strerror}); set $EDGESR_CACHE") from None
    os.close(fd)
    try:
        res = subprocess.run([cc, *CFLAGS, *extra_flags, str(SOURCE), "-o", tmp], capture_output=True, text=True)
        if res.returncode != 0:
            first = (res.stderr.strip().splitlines() or ["?"])[0]
            raise EdgesrError(f"{SOURCE}: compilation failed: {first}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    """The loaded engine with argument types declared."""
    lib = ctypes.CDLL(str(compile_engine()))
    i8p, u8p, c_int = ctypes.POINTER(ctypes.c_int8), ctypes.POINTER(ctypes.c_uint8), ctypes.c_int
    lib.edgesr_srlut_upscale.argtypes = [i8p, c_int, c_int, u8p, c_int, c_int, u8p]
    lib.edgesr_srlut_upscale.restype = c_int
    lib.edgesr_splut_upscale.argtypes = [ctypes.POINTER(i8p), c_int, c_int, u8p, c_int, c_int, u8p]
    lib.edgesr_splut_upscale.restype = c_int
    return lib


def _ptr(a: np.ndarray, ctype):
    return a.ctypes.data_as(ctypes.POINTER(ctype))


def srlut_upscale(lut: np.ndarray, bits: int, scale: int, img: np.ndarray) -> np.ndarray:
    """C SR-LUT: uint8 (h, w) -> uint8 (h*s, w*s); same contract as the numpy engine.

    Raises:
        EdgesrError: the engine rejected the arguments (message gives its status).
    """
    lut = np.ascontiguousarray(lut, dtype=np.int8)
    img = np.ascontiguousarray(img, dtype=np.uint8)
    if not (isinstance(bits, int) and 1 <= bits <= 8) or lut.shape != (((256 >> bits) + 1) ** 4, scale * scale) or img.ndim != 2:
        raise EdgesrError(f"SR-LUT arguments do not fit: LUT {lut.shape}, bits {bits}, scale {scale}, image {img.shape}")
    out = np.empty((img.shape[0] * scale, img.shape[1] * scale), dtype=np.uint8)
    status = library().edgesr_srlut_upscale(_ptr(lut, ctypes.c_int8), bits, scale, _ptr(img, ctypes.c_uint8),
                                            img.shape[0], img.shape[1], _ptr(out, ctypes.c_uint8))
    if status != 0:
        raise EdgesrError(f"edgesr_srlut_upscale rejected its arguments (status {status}, bits {bits}, scale {scale}, image {img.shape})")
    return out


def splut_upscale(luts: list[np.ndarray], variant: int, img: np.ndarray) -> np.ndarray:
    """C SPLUT x4: uint8 (h, w) -> uint8 (4h, 4w); same contract as the numpy engine."""
    arrays = [np.ascontiguousarray(a, dtype=np.int8) for a in luts]
    expect = ([(65536, 4)] * (1 + 4 * variant) + [(65536, 16)] * 4) * 2
    if [a.shape for a in arrays] != expect or img.ndim != 2:
        raise EdgesrError(f"SPLUT arguments do not fit: {len(arrays)} LUTs for variant {variant}, image {img.shape}")
    table = (ctypes.POINTER(ctypes.c_int8) * len(arrays))(*[_ptr(a, ctypes.c_int8) for a in arrays])
    img = np.ascontiguousarray(img, dtype=np.uint8)
    out = np.empty((img.shape[0] * 4, img.shape[1] * 4), dtype=np.uint8)
    status = library().edgesr_splut_upscale(table, len(arrays), variant, _ptr(img, ctypes.c_uint8),
                                            img.shape[0], img.shape[1], _ptr(out, ctypes.c_uint8))
    if status != 0:
        raise EdgesrError(f"edgesr_splut_upscale rejected its arguments (status {status}, {len(arrays)} LUTs, variant {variant})")
    return out
