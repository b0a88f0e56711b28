"""The one validation layer of the CLI: argparse ``type=`` functions and shared flags.

Every command declares its arguments with these types, so a bad value is refused while
the command line is parsed, before any file is read or any work starts: argparse prints
one line (``edgesr: error: argument --steps: expected an integer >= 1, got '0'``) and the
process exits with status 2 (see :mod:`edgesr.cli`). No value is ever replaced silently.

Each type function takes the text the user typed and returns the converted value, or
raises :class:`argparse.ArgumentTypeError` whose message quotes that text. Paths are
checked with :func:`os.stat`, so a symbolic-link loop, a missing file and a folder given
where a file is expected each get their own words.

Environment variables read by edgesr (:data:`ENVIRONMENT`) are checked the same way by
:func:`check_environment`, which :func:`edgesr.cli.main` calls before loading any command.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import stat
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from PIL import Image

from edgesr.core import imageio
from edgesr.core.errors import EdgesrError

#: upscaling factors any edgesr model may have; each model narrows this to its own scales
SCALES = range(2, 9)


def _int(text: str) -> int:
    try:
        return int(text, 10)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def int_at_least(low: int) -> Callable[[str], int]:
    """A type for integers ``>= low`` (e.g. ``int_at_least(1)`` for steps, batch, patch size)."""

    def parse(text: str) -> int:
        value = _int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    parse.__name__ = f"int_at_least_{low}"
    return parse


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def int_range(low: int, high: int) -> Callable[[str], int]:
    """A type for integers from ``low`` to ``high`` inclusive (e.g. LUT sampling bits 1..8)."""

    def parse(text: str) -> int:
        value = _int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {text!r}")
        return value

    parse.__name__ = f"int_range_{low}_{high}"
    return parse


def scale(text: str) -> int:
    """An upscaling factor: an integer from 2 to 8 (the model checks its own scales later)."""
    value = _int(text)
    if value not in SCALES:
        raise argparse.ArgumentTypeError(f"expected an upscaling factor from {SCALES.start} to {SCALES.stop - 1}, got {text!r}")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rate, tolerance in dB, ...)."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def percentile(text: str) -> float:
    """A percentile in (50, 100] (the observer's clipping percentile, e.g. 99.99)."""
    value = _float(text)
    if not 50 < value <= 100:
        raise argparse.ArgumentTypeError(f"expected a percentile in (50, 100], got {text!r}")
    return value


def csv_choice(choices: Iterable[str]) -> Callable[[str], list[str]]:
    """A type for a comma-separated list of names from ``choices`` (order kept, no duplicates)."""
    allowed = tuple(dict.fromkeys(choices))

    def parse(text: str) -> list[str]:
        names = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
        if not names:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(allowed)}, got {text!r}")
        bad = [n for n in names if n not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad[0]!r} (expected a comma-separated list of {', '.join(allowed)})")
        return names

    parse.__name__ = "csv_choice"
    return parse


def csv_ints(low: int) -> Callable[[str], list[int]]:
    """A type for a comma-separated list of integers ``>= low`` (e.g. thread counts ``1,2``)."""
    one = int_at_least(low)

    def parse(text: str) -> list[int]:
        parts = [t.strip() for t in text.split(",")]
        if not all(parts):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of integers >= {low}, got {text!r}")
        try:
            return [one(t) for t in parts]
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of integers >= {low}, got {text!r}") from None

    parse.__name__ = "csv_ints"
    return parse


def checked_by(check: Callable[[str], object], name: str) -> Callable[[str], str]:
    """A type that keeps the text when ``check(text)`` passes and turns its EdgesrError into a parse error.

    For values whose rules live with the code that uses them (e.g. frame sizes ``720p`` /
    ``HxW`` in :func:`edgesr.app.profiling.parse_size`), so the rule is written once.
    """

    def parse(text: str) -> str:
        try:
            check(text)
        except EdgesrError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    parse.__name__ = name
    return parse


def csv_of(one: Callable[[str], object]) -> Callable[[str], list]:
    """A type for a comma-separated list whose items each pass the type ``one``."""

    def parse(text: str) -> list:
        parts = [t.strip() for t in text.split(",")]
        if not all(parts):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        return [one(t) for t in parts]

    parse.__name__ = f"csv_of_{getattr(one, '__name__', 'item')}"
    return parse


def input_sizes(text: str) -> list[tuple[int, int]]:
    """``--input-size``: one or more LR input sizes ``HxW`` (height x width, comma-separated),
    e.g. ``360x640`` or ``360x640,720x1280``.

    Each side is a positive integer and each size at most ``EDGESR_MAX_PIXELS`` pixels (the
    largest image edgesr decodes, :data:`edgesr.core.imageio.MAX_PIXELS`); no size twice.
    Whether a size fits the model (bigger than its tiling halo) and the formats (one size
    for TFLite and ONNX) is checked by the exporter before any conversion.
    """
    limit = imageio.MAX_PIXELS
    parts = [t.strip() for t in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"expected HxW sizes (e.g. 360x640 or 360x640,720x1280), got {text!r}")
    sizes = []
    for part in parts:
        hw = part.lower().split("x")
        try:
            h, w = (int(v, 10) for v in hw) if len(hw) == 2 else (None, None)
        except ValueError:
            h = w = None
        if h is None or h < 1 or w < 1:
            raise argparse.ArgumentTypeError(f"expected an input size HxW of positive integers (e.g. 360x640), got {part!r}")
        if h * w > limit:
            raise argparse.ArgumentTypeError(f"input size {part!r} is {h * w} pixels, more than the limit of {limit} (EDGESR_MAX_PIXELS)")
        if (h, w) in sizes:
            raise argparse.ArgumentTypeError(f"input size {part!r} is given twice in {text!r}")
        sizes.append((h, w))
    return sizes


# ----------------------------------------------------------------------------- paths


def _describe_os_error(text: str, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return f"{text}: symbolic link loop"
    if exc.errno == errno.ENOENT:
        return f"{text}: no such file or folder"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{text}: permission denied"
    if exc.errno == errno.ENAMETOOLONG:
        return f"{text}: file name too long"
    if exc.errno == errno.ENOTDIR:
        return f"{text}: a part of the path is not a folder"
    return f"{text}: {(exc.strerror or str(exc)).lower()}"


def _stat(text: str) -> os.stat_result:
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got ''")
    try:
        return os.stat(text)
    except OSError as exc:
        raise argparse.ArgumentTypeError(_describe_os_error(text, exc)) from None


def existing_file(text: str) -> str:
    """A path to an existing regular file (checkpoint, image, ``.lut``, log, ...)."""
    if stat.S_ISDIR(_stat(text).st_mode):
        raise argparse.ArgumentTypeError(f"{text}: is a folder, expected a file")
    return text


def existing_dir(text: str) -> str:
    """A path to an existing folder (training images, calibration photos, a run folder)."""
    if not stat.S_ISDIR(_stat(text).st_mode):
        raise argparse.ArgumentTypeError(f"{text}: is not a folder")
    return text


def existing_path(text: str) -> str:
    """A path that exists, file or folder (an artifact: ``.mlpackage`` is a folder)."""
    _stat(text)
    return text


def output_file(*suffixes: str) -> Callable[[str], str]:
    """A type for a file to write: its suffix is one of ``suffixes`` and it is not a folder.

    The message names the user's path, never a temporary file.
    """
    allowed = tuple(s.lower() for s in suffixes)

    def parse(text: str) -> str:
        if not text:
            raise argparse.ArgumentTypeError("expected a file name, got ''")
        if Path(text).suffix.lower() not in allowed:
            raise argparse.ArgumentTypeError(f"{text}: expected a file name ending in {', '.join(allowed)}")
        if os.path.isdir(text):
            raise argparse.ArgumentTypeError(f"{text}: is a folder, expected a file name")
        return text

    parse.__name__ = "output_file"
    return parse


def image_output(text: str) -> str:
    """A file name whose suffix names an image format Pillow can write (``.png``, ``.jpg``, ...)."""
    Image.init()
    writable = sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE)
    suffix = Path(text).suffix.lower()
    if suffix not in writable:
        common = ", ".join(s for s in (".png", ".jpg", ".jpeg", ".webp", ".tif", ".bmp") if s in writable)
        shown = f"{suffix!r}" if suffix else "no suffix"
        raise argparse.ArgumentTypeError(f"{text}: cannot write an image with {shown} (use {common}, ...)")
    return output_file(suffix)(text)


# ----------------------------------------------------------------------------- shared flags


def add_out_argument(p: argparse.ArgumentParser, help: str, *, required: bool = False, default=None,
                     type=str, metavar: str = "OUT", aliases: tuple[str, ...] = ()) -> None:
    """``-o/--out``: where a command writes, the same flag on every command.

    ``aliases`` are older spellings kept working but hidden from ``--help``.
    """
    p.add_argument("-o", "--out", required=required, default=default, type=type, metavar=metavar, help=help)
    for alias in aliases:
        p.add_argument(alias, dest="out", type=type, metavar=metavar, help=argparse.SUPPRESS)


def add_progress_argument(p: argparse.ArgumentParser) -> None:
    """``--no-progress``; bars are off anyway when stderr is not a terminal (see :func:`show_progress`)."""
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (they are off anyway when stderr is not a terminal)")


def show_progress(args: argparse.Namespace) -> bool:
    """True when progress bars should be drawn: stderr is a terminal and ``--no-progress`` is absent."""
    return not getattr(args, "no_progress", False) and _stderr_is_terminal()


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


# ----------------------------------------------------------------------------- environment

#: environment variables edgesr reads -> the type their value must have
ENVIRONMENT: dict[str, Callable[[str], object]] = {
    "EDGESR_MAX_PIXELS": positive_int,  # largest image (width * height) edgesr decodes
    "WORLD_SIZE": positive_int,  # torchrun: number of training processes
    "RANK": nonnegative_int,  # torchrun: this process's rank
    "LOCAL_RANK": nonnegative_int,  # torchrun: this process's rank on its machine
}


def check_environment(environ: os._Environ | dict | None = None) -> None:
    """Check every variable of :data:`ENVIRONMENT` that is set.

    Raises:
        EdgesrError: one line naming the variable and its value.
    """
    environ = os.environ if environ is None else environ
    for name, kind in ENVIRONMENT.items():
        if name in environ:
            try:
                kind(environ[name])
            except argparse.ArgumentTypeError as exc:
                raise EdgesrError(f"environment variable {name}: {exc}") from None
