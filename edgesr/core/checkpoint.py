"""Checkpoints: atomic, pickle-free to load, and self-describing.

A checkpoint is a ``torch.save`` dict holding only tensors, numbers, strings, lists and
dicts, so it loads with ``torch.load(..., weights_only=True)``::

    {"format": "edgesr-checkpoint", "version": 1,
     "model": registry name, "scale": int, "kwargs": factory kwargs,
     "form": "train" | "deploy",        # deploy = after collapse()
     "state_dict": {...}, "optimizer": {...} | None, "step": int, "config": {...}}

Writes go to a temporary file in the same folder, then ``os.replace`` (atomic on POSIX),
so an interrupted save never leaves a truncated checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from edgesr.core.atomic import atomic_path
from edgesr.core.errors import EdgesrError
from edgesr.core.models import create

FORMAT = "edgesr-checkpoint"


def save_checkpoint(path: str | os.PathLike, model, *, optimizer=None, step: int = 0, config: dict | None = None,
                    form: str | None = None, extra: dict | None = None) -> Path:
    """Save ``model`` (a registry-built module) atomically; returns the path.

    ``form`` defaults to ``"deploy"`` for modules without ``collapse`` and ``"train"`` otherwise.
    """
    name = getattr(model, "registry_name", None)
    if name is None:
        raise ValueError("save_checkpoint needs a model built by edgesr.core.registry.create")
    state = {
        "format": FORMAT,
        "version": 1,
        "model": name,
        "scale": int(model.scale),
        "kwargs": dict(getattr(model, "registry_kwargs", {})),
        "form": form or ("train" if hasattr(model, "collapse") else "deploy"),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": int(step),
        "config": config or {},
    }
    if extra:
        state.update(extra)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint dict with ``weights_only=True``.

    Raises:
        EdgesrError: missing, truncated/corrupt, or not an edgesr checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise EdgesrError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise EdgesrError(f"{path}: corrupt or unreadable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise EdgesrError(f"{path}: not an edgesr checkpoint (use 'edgesr import-weights' for the authors' files)")
    return state


def load_checkpoint(path: str | os.PathLike, *, expect_model: str | None = None, deploy: bool = False):
    """Rebuild the model stored in a checkpoint.

    Args:
        expect_model: refuse a checkpoint of another registry model.
        deploy: return the deploy form (``collapse()``d when the checkpoint is a training form).

    Returns:
        ``(model, state)``: the module in eval mode, and the checkpoint dict.

    Raises:
        EdgesrError: unreadable file, unknown model, other model than expected, or weights
        that do not fit the model (e.g. a checkpoint of another configuration).
    """

    state = read_checkpoint(path)
    name = state["model"]
    if expect_model is not None and name != expect_model:
        raise EdgesrError(f"{path}: checkpoint is for model {name!r}, not {expect_model!r}")
    model = create(name, scale=int(state["scale"]), **state.get("kwargs", {}))
    if state.get("form") == "deploy" and hasattr(model, "collapse"):
        model = model.collapse()
    try:
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:160]
        raise EdgesrError(f"{path}: weights do not fit model {name!r} x{state['scale']} ({first})") from None
    if deploy and hasattr(model, "collapse"):
        model = model.collapse()
    return model.eval(), state
