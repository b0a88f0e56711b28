"""The ``edgesr`` command line: one sub-command per pipeline stage.

Each command lives in its own module, named in :data:`COMMANDS`, that defines
``add_arguments(parser)`` and ``run(args) -> int``. Only the module of the command being
run is imported, so ``edgesr eval`` never loads TensorFlow. Arguments are checked while
they are parsed, by the types of :mod:`edgesr.commands._args`, before any work starts.

Exit status (the one error boundary is :func:`main`):

* 0: done;
* 1: a check failed (``validate`` beyond tolerance, ``lint`` findings, ``golden --verify``);
* 2: bad input, printed on one line ``edgesr: error: ...`` without a traceback: a bad
  argument or environment variable, an :class:`~edgesr.core.errors.EdgesrError` (bad file,
  bad value), or an expected operating-system failure (missing file, permission denied,
  symbolic-link loop, full disk, ...), named with the file it concerns;
* 70 (``EX_SOFTWARE``): an unexpected exception, i.e. a bug in edgesr: its traceback, then one
  line asking for a bug report;
* 130: interrupted (Ctrl-C); finished work is kept.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
import traceback
import warnings

from edgesr.commands._args import check_environment
from edgesr.core.errors import EdgesrError

#: exit status of an unexpected exception (a bug): sysexits.h EX_SOFTWARE
EXIT_BUG = 70
#: operating-system failures that are the user's or the machine's, not edgesr's: one line, exit 2
EXPECTED_OS_ERRORS = {
    errno.ENOENT: "no such file or folder", errno.ELOOP: "symbolic link loop", errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted", errno.EISDIR: "is a folder", errno.ENOTDIR: "a part of the path is not a folder",
    errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system",
    errno.ENAMETOOLONG: "file name too long", errno.EEXIST: "already exists", errno.EMFILE: "too many open files",
    errno.EIO: "input/output error", errno.EFBIG: "file too large", errno.EXDEV: "cannot move across file systems",
}

#: command -> (module, one-line help). The module defines add_arguments(p) and run(args).
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("edgesr.commands.run", "The main job: data -> train -> collapse -> quantize/bake -> export -> validate -> report."),
    "list": ("edgesr.commands.list_models", "List the registered models."),
    "info": ("edgesr.commands.info", "Parameters and MACs per 720p frame of a model."),
    "train": ("edgesr.commands.train", "Train a model (resumable, torchrun-aware)."),
    "collapse": ("edgesr.commands.collapse", "Reparameterize a checkpoint into its deploy form."),
    "eval": ("edgesr.commands.eval", "PSNR/SSIM on Y of a model, checkpoint or artifact on benchmark sets."),
    "upscale": ("edgesr.commands.upscale", "Upscale a photo with a model, checkpoint or artifact."),
    "import-weights": ("edgesr.commands.import_weights", "Import the authors' published weights (eSR, SR-LUT)."),
    "quantize": ("edgesr.commands.quantize", "Int8 post-training quantization or QAT of a checkpoint."),
    "export": ("edgesr.commands.export", "Export a checkpoint to TFLite, Core ML and ONNX."),
    "validate": ("edgesr.commands.validate", "Compare an artifact with its float reference on real images."),
    "bake": ("edgesr.commands.bake", "Bake a LUT model's network into lookup tables."),
    "finetune-lut": ("edgesr.commands.finetune_lut", "Fine-tune a baked LUT through its interpolation."),
    "golden": ("edgesr.commands.golden", "Write golden input/output vectors for on-device tests."),
    "lint": ("edgesr.commands.lint", "Check an artifact against a delegate's constraints."),
    "profile": ("edgesr.commands.profile", "Measure latency on this machine or on a phone over adb."),
    "report": ("edgesr.commands.report", "Render a run folder's report page."),
    "android-export": ("edgesr.commands.android_export", "Copy a run's artifacts into the Android demo's assets."),
}


def _load(command: str):
    module_name, _ = COMMANDS[command]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise EdgesrError(f"command {command!r} is not available in this build ({module_name} missing)") from None
        raise


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``edgesr: error: COMMAND: MESSAGE (see edgesr COMMAND --help)``, exit 2."""

    def error(self, message: str):
        command = self.prog.split(" ", 1)[1] if " " in self.prog else None
        where = f"{command}: " if command else ""
        self.exit(2, f"edgesr: error: {where}{message} (see `{self.prog} --help`)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; with ``command`` given, only that sub-command is configured."""
    parser = _Parser(prog="edgesr", description="Super-resolution for phones: train, collapse, quantize, bake, export, validate.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _load(name).add_arguments(p)
    return parser


def _quiet_third_party() -> None:
    """Keep the terminal for edgesr's own output: silence the runtimes' start-up chatter."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("torchao", "coremltools", "tensorflow", "absl", "torch.onnx", "onnxscript", "torch._export", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(coremltools|torchao|onnxscript|tensorflow|keras|torch\.onnx).*")


def describe_os_error(exc: OSError) -> str:
    """One line for an expected OS failure, naming the file(s) it concerns."""
    what = EXPECTED_OS_ERRORS.get(exc.errno) or (exc.strerror or str(exc)).lower()
    names = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
    return f"{' -> '.join(names)}: {what}" if names else what


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edgesr`` script; returns the exit status (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_third_party()
    warnings.formatwarning = lambda message, category, *a, **k: f"edgesr: warning: {message}\n"
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is None:
        # `edgesr` alone runs the main job on the embedded photographs.
        command = "run" if not argv else None
        if command:
            argv = ["run"]
    try:
        check_environment()
        parser = build_parser(command if command in COMMANDS else None)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        status = _load(args.command).run(args)
        return int(status or 0)
    except SystemExit as exc:  # argparse (exit 2 after its one line) and --help (exit 0)
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)  # sys.exit("message"), as the interpreter would
        return 1
    except EdgesrError as exc:
        print(f"edgesr: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `edgesr list | head`: the reader left; not an error of ours
        _silence_stdout()
        return 141
    except OSError as exc:
        if exc.errno not in EXPECTED_OS_ERRORS:
            return _bug(exc)
        print(f"edgesr: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print("edgesr: error: out of memory (try a smaller image, batch or patch)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgesr: interrupted; finished work is kept, run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 (the boundary: anything else is a bug)
        return _bug(exc)


def _silence_stdout() -> None:
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (tests): nothing to flush
        pass


def _bug(exc: BaseException) -> int:
    traceback.print_exception(exc, file=sys.stderr)
    print(f"edgesr: internal error ({type(exc).__name__}): this is a bug in edgesr; please report it with the "
          "command line and the traceback above", file=sys.stderr)
    return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
