"""The ``edgesr`` command line: one sub-command per pipeline stage.

Each command lives in its own module, named in :data:`COMMANDS`, that defines
``add_arguments(parser)`` and ``run(args) -> int``. Only the module of the command being
run is imported, so ``edgesr eval`` never loads TensorFlow.

Errors a user can cause are :class:`~edgesr.core.errors.EdgesrError`: printed on one line as
``edgesr: error: ...`` with exit status 2, no traceback. Exit status 1 means a check
failed (e.g. ``validate`` beyond tolerance, ``lint`` findings).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from edgesr.core.errors import EdgesrError

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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; with ``command`` given, only that sub-command is configured."""
    parser = argparse.ArgumentParser(prog="edgesr", description="Super-resolution for phones: train, collapse, quantize, bake, export, validate.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _load(name).add_arguments(p)
    return parser


def _quiet_third_party() -> None:
    """Keep the terminal for edgesr's own output: silence the runtimes' start-up chatter."""
    import logging
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("torchao", "coremltools", "tensorflow", "absl", "torch.onnx", "onnxscript", "torch._export", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(coremltools|torchao|onnxscript|tensorflow|keras|torch\.onnx).*")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edgesr`` script; returns the exit status."""
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
        parser = build_parser(command if command in COMMANDS else None)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        status = _load(args.command).run(args)
        return int(status or 0)
    except EdgesrError as exc:
        print(f"edgesr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgesr: interrupted; finished work is kept, run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
