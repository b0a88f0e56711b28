"""Read a ``.npy`` header and check it against the bytes that follow, before any allocation.

``numpy.load`` allocates ``prod(shape) * itemsize`` bytes as the header says, so a header
claiming 2**40 elements asks for terabytes before the file is found short. Every ``.npy``
edgesr reads (the SR-LUT importer, the members of a ``.lut`` bundle) goes through
:func:`check_npy_header` first. Format: NumPy's NEP 1 (``numpy.lib.format``), versions 1-3.
"""

from __future__ import annotations

import math
import tokenize
from typing import BinaryIO

import numpy as np

from edgesr.core.errors import EdgesrError


def check_npy_header(fp: BinaryIO, nbytes: int, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """Parse the header at ``fp``'s position; return ``(shape, dtype)``.

    Args:
        fp: binary stream at the start of a ``.npy`` (a file, or a zip member).
        nbytes: the total size in bytes of the ``.npy`` (file size, or the member's size).
        where: the name to put in error messages (the file, or file:member).

    Raises:
        EdgesrError: not a ``.npy``, a malformed header, an object dtype, negative sizes,
        or a header whose data size (``prod(shape) * itemsize``) is not what follows it.
    """
    try:
        major, _ = np.lib.format.read_magic(fp)
        reader = {1: np.lib.format.read_array_header_1_0, 2: np.lib.format.read_array_header_2_0}.get(major)
        if reader is None:
            raise ValueError(f"unsupported .npy version {major}")
        shape, _fortran, dtype = reader(fp, max_header_size=10_000)
        header_end = fp.tell()
    except (ValueError, OSError, EOFError, SyntaxError, TypeError, KeyError, AttributeError, UnicodeDecodeError,
            tokenize.TokenError) as exc:  # numpy parses the header's dict literal with tokenize + ast
        raise EdgesrError(f"{where}: not a .npy array ({type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''})") from None
    if dtype.hasobject:
        raise EdgesrError(f"{where}: .npy array of Python objects refused (pickle)")
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise EdgesrError(f"{where}: .npy header has an invalid shape {shape}")
    data = math.prod(shape) * dtype.itemsize
    if data != nbytes - header_end:
        raise EdgesrError(f"{where}: .npy header claims shape {shape} of {dtype} ({data} bytes) but the file holds {nbytes - header_end}")
    return tuple(shape), dtype
