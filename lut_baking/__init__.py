"""lut_baking: SR-LUT and SPLUT, from trained networks to integer lookup tables.

Networks (registered in :mod:`edgesr.core.registry` from :mod:`edgesr.core.models.lut`): ``srlut_s``
(x2/x3/x4) and ``splut_s``/``splut_m``/``splut_l`` (x4). :func:`edgesr.lut_baking.bake.bake` turns a
trained network into a :class:`edgesr.lut_baking.bundle.LutBundle`; :func:`edgesr.lut_baking.finetune.finetune`
trains the LUT entries through the differentiable engine; :mod:`edgesr.lut_baking.bundle` saves,
verifies and runs ``.lut`` files with the numpy, PyTorch or C engine (bit-identical).
"""

from __future__ import annotations

import os
from pathlib import Path

from edgesr.lut_baking.bake import bake
from edgesr.lut_baking.bundle import save_bundle
from edgesr.lut_baking.finetune import FINETUNE_STEPS, FinetuneConfig, finetune

from edgesr.core.checkpoint import load_checkpoint


def bake_and_finetune(checkpoint_path: str | os.PathLike, out_dir: str | os.PathLike, data_images, finetune_steps: int = FINETUNE_STEPS,
                   bits: int = 4, log=None) -> list[dict]:
    """Bake a trained checkpoint, fine-tune the LUT, save both bundles (``edgesr run``'s LUT stage).

    Args:
        checkpoint_path: an edgesr checkpoint of ``srlut_s`` or ``splut_s/m/l``.
        out_dir: folder for ``MODEL_xS.lut`` (baked) and ``MODEL_xS_ft.lut`` (fine-tuned).
        data_images: [(name, uint8 HR image)] for fine-tuning (e.g. :func:`edgesr.core.data.training_images`).
        finetune_steps: LUT-aware fine-tuning steps (0: only bake).
        bits: SR-LUT sampling bits.

    Returns:
        ``[{"format": "lut", "precision": "int8", "path": str, "bytes": int, "stage": "baked" | "finetuned"}]``,
        the deployable one (fine-tuned when steps > 0) last.

    Raises:
        EdgesrError: unreadable checkpoint, or a model that is not a LUT model.
    """

    model, state = load_checkpoint(checkpoint_path)
    bundle = bake(model, bits=bits, name=state["model"])
    stem = f"{state['model']}_x{bundle.scale}"
    out_dir = Path(out_dir)
    baked = save_bundle(bundle, out_dir / f"{stem}.lut")
    results = [{"format": "lut", "precision": "int8", "path": str(baked), "bytes": baked.stat().st_size, "stage": "baked"}]
    if finetune_steps > 0:
        tuned = finetune(bundle, data_images, FinetuneConfig(steps=finetune_steps), log=log)
        path = save_bundle(tuned, out_dir / f"{stem}_ft.lut")
        results.append({"format": "lut", "precision": "int8", "path": str(path), "bytes": path.stat().st_size, "stage": "finetuned"})
    return results
