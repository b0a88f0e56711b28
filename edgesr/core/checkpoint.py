"""Checkpoints: atomic, pickle-free to load, self-describing and checksummed.

A checkpoint is a ``torch.save`` dict holding only tensors, numbers, strings, lists and
dicts, so it loads with ``torch.load(..., weights_only=True)``::

    {"format": "edgesr-checkpoint", "version": 1,
     "model": registry name, "scale": int, "kwargs": factory kwargs,
     "form": "train" | "deploy",        # deploy = after collapse()
     "state_dict": {...}, "optimizer": {...} | None, "step": int, "config": {...},
     "sha256": hex digest of everything else (:func:`state_digest`)}

Writes go to a temporary file in the same folder, then ``os.replace`` (atomic on POSIX),
so an interrupted save never leaves a truncated checkpoint.

Integrity: torch does not check the zip members' CRCs, so a flipped byte inside a tensor
would load silently. Every checkpoint edgesr writes stores ``sha256``, the SHA-256 of the
whole dict except that field, in a canonical order (:func:`state_digest`); loading
recomputes it and refuses a mismatch. A checkpoint written before the checksum existed
loads with a warning.

Metadata is validated before any model is built: the registry name must be known, the
scale an integer the model supports, the factory kwargs plain values, and the model is
first built on PyTorch's ``meta`` device (no memory) and its parameter shapes compared with
the stored tensors, so crafted metadata (a negative or absurd width) never allocates.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch

from edgesr.core.atomic import atomic_path
from edgesr.core.errors import EdgesrError
from edgesr.core.models import create, resolve

FORMAT = "edgesr-checkpoint"
DIGEST_KEY = "sha256"
FORMS = ("train", "deploy")


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu()
    if t.is_quantized:
        t = t.int_repr()
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _update(h, obj) -> None:
    """Feed ``obj`` to the hash in a canonical, type-tagged order (dict keys sorted)."""
    if isinstance(obj, torch.Tensor):
        h.update(f"T{obj.dtype}{tuple(obj.shape)}:".encode())
        h.update(_tensor_bytes(obj))
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}:".encode())
        for key in sorted(obj, key=repr):
            _update(h, key)
            _update(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}:".encode())
        for item in obj:
            _update(h, item)
    else:  # None, bool, int, float, str (what weights_only allows besides tensors)
        h.update(f"V{type(obj).__name__}:{obj!r};".encode())


def state_digest(state: dict) -> str:
    """SHA-256 (hex) of a checkpoint dict without its ``sha256`` field.

    Canonical order: dict keys sorted by ``repr``, lists in order, every value tagged with
    its type; a tensor contributes its dtype, shape and C-order bytes (int8 representation
    for quantized tensors). Equal for a dict before ``torch.save`` and after ``torch.load``.
    """
    h = hashlib.sha256()
    _update(h, {k: v for k, v in state.items() if k != DIGEST_KEY})
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, model, *, optimizer=None, step: int = 0, config: dict | None = None,
                    form: str | None = None, extra: dict | None = None) -> Path:
    """Save ``model`` (a registry-built module) atomically, with its SHA-256; returns the path.

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
    state[DIGEST_KEY] = state_digest(state)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:120]}" if lines else type(exc).__name__


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint dict with ``weights_only=True`` and verify its SHA-256.

    Raises:
        EdgesrError: missing, empty, truncated/corrupt, not an edgesr checkpoint, or a
        checksum mismatch (altered bytes). A checkpoint without a checksum (written by an
        older edgesr) loads with a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise EdgesrError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise EdgesrError(f"{path}: empty checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise EdgesrError(f"{path}: corrupt or unreadable checkpoint ({_first_line(exc)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise EdgesrError(f"{path}: not an edgesr checkpoint (use 'edgesr import-weights' for the authors' files)")
    stored = state.get(DIGEST_KEY)
    if stored is None:
        warnings.warn(f"{path}: checkpoint has no SHA-256 (written by an older edgesr); its integrity is not checked")
    else:
        try:
            actual = state_digest(state)
        except Exception as exc:  # an exotic object weights_only let through
            raise EdgesrError(f"{path}: corrupt checkpoint ({_first_line(exc)})") from None
        if stored != actual:
            raise EdgesrError(f"{path}: checkpoint checksum mismatch (the file was altered or is corrupt)")
    return state


def _plain(value) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def _checked_metadata(path: Path, state: dict) -> tuple[str, int, dict, str]:
    """(registry name, scale, kwargs, form) of a checkpoint, validated; EdgesrError otherwise."""
    name, scale, kwargs, form = state.get("model"), state.get("scale"), state.get("kwargs", {}), state.get("form", "train")
    if not isinstance(name, str):
        raise EdgesrError(f"{path}: bad checkpoint metadata: model name {name!r} is not a string")
    try:
        entry = resolve(name)
    except EdgesrError as exc:
        raise EdgesrError(f"{path}: {exc}") from None
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in entry.scales:
        raise EdgesrError(f"{path}: bad checkpoint metadata: scale {scale!r} is not one of {name}'s scales {entry.scales}")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) and _plain(v) for k, v in kwargs.items()):
        raise EdgesrError(f"{path}: bad checkpoint metadata: kwargs {str(kwargs)[:120]} are not plain values")
    if form not in FORMS:
        raise EdgesrError(f"{path}: bad checkpoint metadata: form {form!r} is not one of {FORMS}")
    if not isinstance(state.get("state_dict"), dict) or not all(isinstance(v, torch.Tensor) for v in state["state_dict"].values()):
        raise EdgesrError(f"{path}: bad checkpoint: state_dict is not a dict of tensors")
    return entry.name, scale, kwargs, form


def _build(path: Path, name: str, scale: int, kwargs: dict, form: str, device: str):
    try:
        with torch.device(device):
            model = create(name, scale=scale, **kwargs)
            if form == "deploy" and hasattr(model, "collapse"):
                model = model.collapse()
    except EdgesrError as exc:
        raise EdgesrError(f"{path}: {exc}") from None
    except (TypeError, ValueError, RuntimeError) as exc:
        raise EdgesrError(f"{path}: bad checkpoint metadata: cannot build {name!r} x{scale} with {kwargs} ({_first_line(exc)})") from None
    return model


def load_checkpoint(path: str | os.PathLike, *, expect_model: str | None = None, deploy: bool = False):
    """Rebuild the model stored in a checkpoint.

    Args:
        expect_model: refuse a checkpoint of another registry model.
        deploy: return the deploy form (``collapse()``d when the checkpoint is a training form).

    Returns:
        ``(model, state)``: the module in eval mode, and the checkpoint dict.

    Raises:
        EdgesrError: unreadable or altered file (see :func:`read_checkpoint`), unknown model,
        crafted metadata (scale, kwargs, form), other model than expected, or weights that
        do not fit the model (e.g. a checkpoint of another configuration).
    """
    path = Path(path)
    state = read_checkpoint(path)
    name, scale, kwargs, form = _checked_metadata(path, state)
    if expect_model is not None and name != expect_model:
        raise EdgesrError(f"{path}: checkpoint is for model {name!r}, not {expect_model!r}")
    # Shapes first, on the meta device: crafted sizes never allocate.
    expected = {k: tuple(v.shape) for k, v in _build(path, name, scale, kwargs, form, "meta").state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in state["state_dict"].items()}
    if expected != stored and form == "deploy":
        # A deploy checkpoint written before its model gained a deploy form of its own (eSR-TM,
        # -TR, -CNN were their own deploy form until they split their head conv): its weights
        # are the training form's, and collapse() gives today's deploy form.
        train_form = {k: tuple(v.shape) for k, v in _build(path, name, scale, kwargs, "train", "meta").state_dict().items()}
        if train_form == stored:
            form, expected, deploy = "train", train_form, True
    if expected != stored:
        diff = sorted(set(expected.items()) ^ set(stored.items()))[:1]
        raise EdgesrError(f"{path}: weights do not fit model {name!r} x{scale} (first difference: {diff[0][0] if diff else '?'})")
    model = _build(path, name, scale, kwargs, form, "cpu")
    try:
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise EdgesrError(f"{path}: weights do not fit model {name!r} x{scale} ({_first_line(exc)})") from None
    if deploy and hasattr(model, "collapse"):
        model = model.collapse()
    return model.eval(), state
