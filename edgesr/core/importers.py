"""Importers for the authors' published weights.

* :func:`import_esr`: the eSR files of Navarrete Michelini et al. (WACV 2022,
  github.com/pnavarre/eSR ``model-files/``): a plain PyTorch state_dict per file, named by
  its model id (``eSR-MAX_s2_K7_C13.model``). Keys: ``filter.weight`` (MAX/TM/TR);
  ``filter.0.weight/bias``, ``filter.2.weight/bias``, ``filter.4.weight`` (CNN, D > 0).
  The networks take full-range luma (PIL ``convert('L')``) in [0, 1]; the imported model's
  contract records that (``color="luma_full"``), so ``edgesr eval`` feeds it correctly.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgesr.core.checkpoint import save_checkpoint
from edgesr.core.errors import EdgesrError
from edgesr.core.models import create, esr


def _esr_registry_entry(model_id: str) -> tuple[str, int, dict]:
    """(registry name, scale, factory kwargs) for an eSR id: the registered configuration
    when one matches, else the generic factory of its kind with explicit sizes.

    Raises:
        ValueError: not an eSR id (from :func:`edgesr.core.models.esr.parse_model_id`).
    """

    kind, f = esr.parse_model_id(model_id)
    if model_id in esr.REGISTERED_IDS:
        return model_id.replace("eSR-", "esr_").lower(), f["s"], {}
    if kind == "CNN":
        return "esr_cnn", f["s"], {"channels": f["C"], "depth": f["D"], "size": f["S"]}
    return f"esr_{kind.lower()}", f["s"], {"kernel": f["K"], "channels": f["C"]}


def import_esr(model_file: str | os.PathLike, out_ckpt: str | os.PathLike) -> Path:
    """Convert one of the authors' eSR ``.model`` files into an edgesr checkpoint.

    The configuration comes from the file name (the authors' model id, e.g.
    ``eSR-TR_s3_K7_C13.model``); every tensor's shape is checked against it. The checkpoint
    (form ``"deploy"`` for eSR-MAX, its own deploy form; ``"train"`` for eSR-TM/TR/CNN, whose
    deploy form splits the head conv, :class:`edgesr.core.models.esr.ESRDeploy`) names the registered configuration
    when one matches (``esr_max_s2_k7_c13``) or the generic factory with explicit kwargs.

    Args:
        model_file: path to the authors' state_dict (read with ``weights_only=True``).
        out_ckpt: the checkpoint to write (atomically).

    Returns:
        ``out_ckpt`` as a Path.

    Raises:
        EdgesrError: missing or unreadable file, a name that is not an eSR id (the authors'
        D = 0 eSR-CNN variant included), or keys/shapes that do not fit the id.
    """
    import torch


    path = Path(model_file)
    if not path.is_file():
        raise EdgesrError(f"{path}: no such file")
    model_id = path.stem
    try:
        name, scale, kwargs = _esr_registry_entry(model_id)
    except ValueError as exc:
        raise EdgesrError(f"{path}: file name is not an eSR model id ({exc})") from None
    try:
        model = create(name, scale=scale, **kwargs)
    except (ValueError, EdgesrError) as exc:
        raise EdgesrError(f"{path}: unsupported eSR configuration {model_id!r} ({exc})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise EdgesrError(f"{path}: corrupt or unreadable eSR file ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EdgesrError(f"{path}: not a PyTorch state_dict of tensors")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise EdgesrError(f"{path}: keys do not match {model_id} (missing {missing}, unexpected {unexpected})")
    for key, ref in expected.items():
        if tuple(state[key].shape) != tuple(ref.shape):
            raise EdgesrError(f"{path}: {key} has shape {tuple(state[key].shape)}, {model_id} needs {tuple(ref.shape)}")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return save_checkpoint(out_ckpt, model, config={"imported_from": str(path), "model_id": model_id})
