"""The three ways ``eval``, ``upscale`` and ``validate`` take a model.

* ``--model NAME --scale S``: a weight-free registry model (``bicubic``);
* ``--checkpoint CKPT``: an edgesr checkpoint (run in its deploy form, PyTorch, CPU);
* ``--artifact FILE``: an exported model or LUT bundle, run by its own runtime
  (:func:`edgesr.app.artifacts.open_artifact`).
"""

from __future__ import annotations

from edgesr.app.artifacts import open_artifact
from edgesr.core.checkpoint import load_checkpoint
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import TorchUpscaler
from edgesr.core.models import create


def add_source_arguments(p, engine: bool = False) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", help="weight-free registry model, e.g. bicubic")
    g.add_argument("--checkpoint", help="edgesr checkpoint (.pt)")
    g.add_argument("--artifact", help="exported model (.tflite, .onnx, .mlpackage) or LUT bundle (.lut)")
    p.add_argument("--scale", type=int, default=None, help="upscaling factor for --model (default 2)")
    if engine:
        p.add_argument("--engine", choices=("numpy", "torch", "c"), default=None, help="LUT engine for .lut artifacts (default numpy)")


def resolve_upscaler(args):
    """Build the :class:`~edgesr.core.evaluate.Upscaler` the arguments name. Raises EdgesrError."""

    if args.model:
        model = create(args.model, scale=args.scale or 2)
        if any(True for _ in model.parameters()):
            raise EdgesrError(f"model {args.model!r} has weights: pass --checkpoint CKPT (from `edgesr train`) instead")
        return TorchUpscaler(model)
    if args.scale is not None:
        raise EdgesrError("--scale applies to --model only; checkpoints and artifacts carry their scale")
    if args.checkpoint:
        model, _ = load_checkpoint(args.checkpoint, deploy=True)
        return TorchUpscaler(model)

    options = {"engine": args.engine} if getattr(args, "engine", None) else {}
    return open_artifact(args.artifact, **options)


def describe(args) -> str:
    return args.model or args.checkpoint or args.artifact
