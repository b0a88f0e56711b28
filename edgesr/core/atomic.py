"""Atomic file writes: write to a temporary name in the target folder, then rename.

A reader never sees a half-written file, and an interrupted write leaves the previous
version (or nothing) in place. Used for checkpoints, images, artifacts and reports.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from edgesr.core.errors import EdgesrError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    ``suffix`` is the temporary file's extension (default: the target's), for writers that
    infer the format from the name (Pillow, TFLite, Core ML packages). Directories
    (``.mlpackage``) are supported: the block may create a folder at the yielded path.

    Raises:
        EdgesrError: the target folder cannot be created or written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix if suffix is not None else path.suffix, dir=path.parent)
    except OSError as exc:
        raise EdgesrError(f"{path.parent}: cannot write here ({exc.strerror})") from None
    os.close(fd)
    os.unlink(tmp)  # the writer creates it (file or folder)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if path.is_dir() and not path.is_symlink():
            import shutil

            shutil.rmtree(path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            if tmp_path.is_dir():
                import shutil

                shutil.rmtree(tmp_path, ignore_errors=True)
            else:
                tmp_path.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))
