"""The three ways ``eval``, ``upscale`` and ``validate`` take a model.

* ``--model NAME --scale S``: a weight-free registry model (``bicubic``; default scale 2);
* ``--checkpoint CKPT``: an edgesr checkpoint (run in its deploy form, PyTorch, CPU);
* ``--artifact FILE``: an exported model or LUT bundle, run by its own runtime
  (:func:`edgesr.app.artifacts.open_artifact`).

Checkpoints and artifacts carry their scale: ``--scale`` with them is accepted when it
agrees and refused (exit 2) when it conflicts.
"""

from __future__ import annotations

from edgesr.app.artifacts import open_artifact
from edgesr.commands._args import existing_file, existing_path, scale
from edgesr.core.checkpoint import load_checkpoint
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import TorchUpscaler
from edgesr.core.models import create


def add_source_arguments(p, engine: bool = False) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", help="weight-free registry model, e.g. bicubic")
    g.add_argument("--checkpoint", type=existing_file, help="edgesr checkpoint (.pt)")
    g.add_argument("--artifact", type=existing_path, help="exported model (.tflite, .onnx, .mlpackage) or LUT bundle (.lut)")
    p.add_argument("--scale", type=scale, default=None,
                   help="upscaling factor for --model (default 2); with --checkpoint/--artifact it must agree with theirs")
    if engine:
        p.add_argument("--engine", choices=("numpy", "torch", "c"), default=None, help="LUT engine for .lut artifacts (default numpy)")


def resolve_upscaler(args):
    """Build the :class:`~edgesr.core.evaluate.Upscaler` the arguments name.

    Raises:
        EdgesrError: a model with weights given as ``--model``, an unreadable checkpoint or
            artifact, or a ``--scale`` that conflicts with the checkpoint's or artifact's.
    """
    if args.model:
        model = create(args.model, scale=2 if args.scale is None else args.scale)
        if any(True for _ in model.parameters()):
            raise EdgesrError(f"model {args.model!r} has weights: pass --checkpoint CKPT (from `edgesr train`) instead")
        return TorchUpscaler(model)
    if args.checkpoint:
        model, _ = load_checkpoint(args.checkpoint, deploy=True)
        upscaler = TorchUpscaler(model)
    else:
        options = {"engine": args.engine} if getattr(args, "engine", None) else {}
        upscaler = open_artifact(args.artifact, **options)
    check_scale(args.scale, upscaler.contract.scale, describe(args))
    return upscaler


def check_scale(asked: int | None, actual: int, source: str) -> None:
    """Accept ``--scale`` when absent or equal to the scale ``source`` carries; else raise EdgesrError."""
    if asked is not None and asked != actual:
        raise EdgesrError(f"--scale {asked} conflicts with {source}, which upscales x{actual}; drop --scale or pass --scale {actual}")


def describe(args) -> str:
    return args.model or args.checkpoint or args.artifact
