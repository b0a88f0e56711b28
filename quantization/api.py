"""Quantize a checkpoint: calibrate (or QAT), score the int8 simulation, save the result.

The quantized checkpoint is the one carrier of quantization in edgesr: it holds the deploy
weights (after QAT, when it ran), ``activation_ranges`` (``{fx node name: [min, max]}`` for
every tensor that is int8 in TFLite, :func:`edgesr.quantization.graph.tensor_nodes`; learned
parameters such as LSQ step sizes are stored as the ranges they stand for) and
``quantization`` (the settings and scores). Every exporter reads it through
:func:`read_quantized` (TFLite int8, Core ML W8A8), so an artifact made from a quantized
checkpoint is the model its simulation (:func:`edgesr.quantization.fake_quant_module`) scored;
nothing recalibrates at export.
"""

from __future__ import annotations

import copy

import os
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from edgesr.quantization.calibration import (
    calibrate,
    make_observer,
)
from edgesr.quantization.fake_quant import fake_quant_module
from edgesr.quantization.graph import quant_plan, tensor_nodes, trace
from edgesr.quantization.qat import hr_patches, qat, whole_images
from edgesr.quantization.recipe import RECIPES, RecipeConfig, choose_w8a16_weights, run_recipe, split_photos

from edgesr.core.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from edgesr.core.data import embedded_images, load_folder, resolve_eval_sets
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import TorchUpscaler, calibration_patches, evaluate_sets

WIDE_ACTIVATION_PRECISIONS = ("w8a16", "w8")
"""Precisions with int8 weights and activations wider than int8 (TFLite 16x8: int16; Core ML W8:
float16): their exports carry :meth:`QuantizedCheckpoint.module_for`'s weights for them."""

DEFAULT_PATCH = 64
DEFAULT_COUNT = 64


def default_out_path(ckpt_path: str | os.PathLike) -> Path:
    """``NAME_int8.pt`` beside the checkpoint ``NAME.pt``."""
    p = Path(ckpt_path)
    return p.with_name(f"{p.stem}_int8{p.suffix or '.pt'}")


def recipe_data(images, contract, patch: int = DEFAULT_PATCH, count: int = DEFAULT_COUNT, seed: int = 0):
    """``(calib, hr, val)``: what :func:`quantize_module` runs a recipe on, from one photo list.

    The photos are split by :func:`~edgesr.quantization.recipe.split_photos`. ``calib``: float32
    (count, C, patch, patch) LR crops of the fit photos; ``hr``: float32 (max(count, 64), C, P, P)
    HR crops of them for QAT, P = patch x scale; ``val``: the held-out photos whole
    (:func:`~edgesr.quantization.qat.whole_images`). Deterministic in (images, patch, count, seed).
    """
    fit, held_out = split_photos(images)
    return (calibration_patches(fit, contract, patch, count, seed),
            hr_patches(fit, contract, patch * contract.scale, max(count, 64), seed),
            whole_images(held_out, contract))


def quantize_module(model: nn.Module, calibration=None, *, observer: str = "minmax", qat_steps: int = 0,
                    recipe: str | None = None, patch: int = DEFAULT_PATCH, count: int = DEFAULT_COUNT, seed: int = 0,
                    observer_kw: dict | None = None, progress: bool = False, w8a16: bool = True) -> "QuantizedCheckpoint":
    """Int8-quantize a float deploy module: its activation ranges and (after QAT/AdaRound) weights.

    Args:
        model: a deploy-form float module (plain convs; :func:`edgesr.core.collapse.collapse_checked`),
            float32 NCHW (N, C, H, W) -> (N, C, s*H, s*W) in [0, 1].
        calibration: real photos for calibration, QAT and the recipe: a folder, a list of uint8
            images (or ``(name, image)`` pairs), or None for the embedded training photographs.
        observer: ``"minmax"``, ``"percentile"`` or ``"mse"`` (``observer_kw`` configure it).
        qat_steps: QAT steps (0: post-training quantization only; LSQ QAT inside a recipe).
        recipe: None (calibrate with ``observer``, then ``qat_steps`` of QAT), or a name of
            :data:`edgesr.quantization.recipe.RECIPES` (``"default"``: CLE, range search,
            AdaRound, bias correction, then ``qat_steps`` of LSQ QAT, each stage kept where it
            raises the int8 PSNR on photos held out of ``calibration`` and scored whole, pooled
            and on most of them (:func:`~edgesr.quantization.recipe.split_photos`,
            :func:`~edgesr.quantization.qat.whole_images`, :meth:`~edgesr.quantization.qat.ValScore.beats`).
        patch, count, seed: calibration crops (:func:`edgesr.core.evaluate.calibration_patches`).
        w8a16: with a recipe, also choose the weights a w8a16 export carries
            (:func:`~edgesr.quantization.recipe.choose_w8a16_weights`: AdaRound for float
            activations and ``qat_steps`` of QAT through int8 weights and float activations
            among the candidates, seconds to a minute); False skips it (the
            checkpoint's w8a16 exports then carry the recipe's weights).

    Returns:
        a :class:`QuantizedCheckpoint` with ``path=None`` and ``settings`` recording the observer,
        QAT steps, calibration source and the recipe's stages (technique, kept, validation drop).

    Raises:
        EdgesrError: bad settings (refused before any work), no calibration photo large enough.
    """
    from tqdm.auto import tqdm

    if qat_steps < 0:
        raise EdgesrError(f"--qat-steps must be >= 0, got {qat_steps}")
    observer_kw = dict(observer_kw or {})
    make_observer(observer, **observer_kw)  # refuse bad settings before any work
    if recipe is not None and recipe not in RECIPES:
        raise EdgesrError(f"unknown int8 recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    model = model.eval()
    source = "embedded:train" if calibration is None else (str(calibration) if isinstance(calibration, (str, os.PathLike))
                                                          else f"{len(calibration)} images")
    if calibration is None:
        images = embedded_images("train")
    elif isinstance(calibration, (str, os.PathLike)):
        images = load_folder(calibration)
    else:
        images = list(calibration)
    patches = calibration_patches(images, model.contract, patch, count, seed)
    ranges = calibrate(model, patches, observer, **observer_kw)
    quantized, recipe_record, w8a16_module = model, None, None
    if recipe is not None:
        fit_patches, hr, val = recipe_data(images, model.contract, patch, count, seed)
        config = RecipeConfig(qat_steps=qat_steps, seed=seed)
        result = run_recipe(model, fit_patches, hr, val, recipe=recipe, config=config)
        quantized, ranges = result.module, result.ranges
        recipe_record = {"name": recipe, "techniques": result.techniques(),
                         "stages": [{k: s[k] for k in ("technique", "kept", "val_drop_db", "val_images_better", "seconds") if k in s}
                                    for s in result.stages]}
        if w8a16:  # which weights suit int16 activations?
            chosen, recipe_record["w8a16"] = choose_w8a16_weights(
                model, quantized, val, fit_patches, hr if "lsq_qat" in RECIPES[recipe] else None, config=config)
            w8a16_module = chosen if chosen is not quantized else None
    elif qat_steps > 0:
        with tqdm(total=qat_steps, desc="QAT", disable=not progress, leave=False) as bar:
            quantized, ranges = qat(model, images, qat_steps, ranges=ranges, patch=patch * model.scale,
                                    count=max(count, 64), seed=seed,
                                    on_step=lambda step, loss: (bar.update(1), bar.set_postfix(l1=f"{loss:.4f}")))
    settings = {"observer": observer, "observer_kw": observer_kw, "qat_steps": int(qat_steps), "calib": source,
                "patch": patch, "count": count, "seed": seed,
                "weights": "int8 per-channel symmetric [-127, 127]", "activations": "int8 per-tensor asymmetric, nudged",
                "recipe": recipe_record}
    quantized = quantized.eval()
    # w8a16's ranges: int16 steps are fine, clipping is what costs
    minmax = calibrate(w8a16_module if w8a16_module is not None else quantized, patches, "minmax")
    return QuantizedCheckpoint(quantized, {k: (float(lo), float(hi)) for k, (lo, hi) in ranges.items()}, None, settings,
                               minmax, w8a16_module)


def quantize_checkpoint(ckpt_path: str | os.PathLike, calib_dir: str | os.PathLike | None = None,
                        observer: str = "minmax", qat_steps: int = 0, out_path: str | os.PathLike | None = None, *,
                        data_root: str | None = None, sets: list[str] | None = None, patch: int = DEFAULT_PATCH,
                        count: int = DEFAULT_COUNT, seed: int = 0, observer_kw: dict | None = None,
                        progress: bool = False, recipe: str | None = None, w8a16: bool = True) -> dict:
    """Quantize a checkpoint (:func:`quantize_module`), score the int8 simulation, save the result.

    Args:
        ckpt_path: an edgesr checkpoint (train or deploy form; collapsed here).
        calib_dir: folder of real photos for calibration/QAT; None: the embedded training
            photographs (:data:`edgesr.core.data.EMBEDDED_TRAIN`).
        out_path: where to write the quantized checkpoint (default :func:`default_out_path`):
            deploy form, the (fine-tuned) float weights, plus ``activation_ranges``
            (``{node: [min, max]}``) and ``quantization`` (settings and scores).
        data_root, sets: evaluation sets as ``edgesr eval`` takes them; default the embedded
            validation photographs.
        observer, qat_steps, patch, count, seed, observer_kw, recipe, w8a16: as :func:`quantize_module`.
    Returns:
        ``{"checkpoint", "out", "observer", "qat_steps", "activation_ranges", "recipe",
        "eval": {set: {"float": {"psnr_y", "ssim_y"}, "int8_sim": {...}, "psnr_drop_db"}}}``;
        ``psnr_drop_db`` = float PSNR - int8-simulation PSNR on Y (edgesr.core.evaluate protocol),
        float = the checkpoint before quantization.

    Raises:
        EdgesrError: unreadable checkpoint, calibration folder without images, bad settings.
    """
    if qat_steps < 0:
        raise EdgesrError(f"--qat-steps must be >= 0, got {qat_steps}")
    make_observer(observer, **dict(observer_kw or {}))  # refuse bad settings before any work
    if recipe is not None and recipe not in RECIPES:
        raise EdgesrError(f"unknown int8 recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    model, state = load_checkpoint(ckpt_path, deploy=True)
    eval_sets = resolve_eval_sets(data_root, sets)
    q = quantize_module(model, calib_dir, observer=observer, qat_steps=qat_steps, recipe=recipe, patch=patch,
                        count=count, seed=seed, observer_kw=observer_kw, progress=progress, w8a16=w8a16)
    sim = fake_quant_module(q.module, q.activation_ranges).eval()
    float_scores = evaluate_sets(TorchUpscaler(model), eval_sets, progress)
    sim_scores = evaluate_sets(TorchUpscaler(sim), eval_sets, progress)
    scores = {
        name: {"float": float_scores[name], "int8_sim": sim_scores[name],
               "psnr_drop_db": float_scores[name]["psnr_y"] - sim_scores[name]["psnr_y"]}
        for name in eval_sets
    }
    out = Path(out_path) if out_path is not None else default_out_path(ckpt_path)
    settings = {**q.settings, "calib": str(calib_dir) if calib_dir is not None else "embedded:train"}
    save_checkpoint(out, q.module, step=int(state.get("step", 0)), config=state.get("config", {}), form="deploy",
                    extra={"activation_ranges": {k: [lo, hi] for k, (lo, hi) in q.activation_ranges.items()},
                           "minmax_ranges": {k: [lo, hi] for k, (lo, hi) in (q.minmax_ranges or {}).items()},
                           **({"w8a16_state_dict": {k: v.detach().cpu() for k, v in q.w8a16_module.state_dict().items()}}
                              if q.w8a16_module is not None else {}),
                           "quantization": {**settings, "eval": scores}})
    return {"checkpoint": str(ckpt_path), "out": str(out), "observer": observer, "qat_steps": int(qat_steps),
            "activation_ranges": q.activation_ranges, "eval": scores, "recipe": settings["recipe"]}


@dataclass(frozen=True)
class QuantizedCheckpoint:
    """A quantized checkpoint as the exporters use it.

    Attributes:
        module: the deploy-form float module (float32 NCHW (N, C, H, W) -> (N, C, s*H, s*W)),
            in eval mode; its weights are what QAT left (int8 per-channel symmetric at export).
        activation_ranges: ``{fx node name: (min, max)}`` in model units (inputs/outputs in the
            contract's [0, 1]), min <= 0 <= max, one entry per int8 tensor node of ``module``.
        path: the checkpoint file; None for ranges calibrated at export (not saved).
        settings: the checkpoint's ``quantization`` record (observer, QAT steps, scores...).
        minmax_ranges: the min/max ranges, on the calibration patches, of the module the w8a16
            export uses (``w8a16_module`` or ``module``; same keys), recorded by
            :func:`quantize_module`; None in checkpoints written before it. The w8a16 export uses them: the int8 ranges may clip on purpose (range search, QAT
            trade clipping for finer int8 steps), but int16 steps are 256x finer, so at int16
            the clipping is all that is left (measured on SESR-M5 x2 Set5: 0.030 dB at a
            recipe's clipped int8 ranges, 0.007 dB at min/max).
        w8a16_module: the weights the w8a16 export uses where they are not ``module``'s: the
            float model's own, those rounded by AdaRound for float activations, or the best of these
            after QAT through int8 weights and float activations, when they beat
            the recipe's with int8 weights and float activations on the held-out photos
            (:func:`~edgesr.quantization.recipe.choose_w8a16_weights`, which one in
            ``settings["recipe"]["w8a16"]["weights"]``; saved as ``w8a16_state_dict``); None:
            ``module``.
    """

    module: nn.Module
    activation_ranges: dict[str, tuple[float, float]]
    path: str | None
    settings: dict = field(default_factory=dict)
    minmax_ranges: dict[str, tuple[float, float]] | None = None
    w8a16_module: nn.Module | None = None

    def w8a16(self) -> nn.Module:
        """The weights for activations wider than int8 (``w8a16_module`` or ``module``)."""
        return self.w8a16_module if self.w8a16_module is not None else self.module

    def module_for(self, precision: str) -> nn.Module:
        """The module an export of ``precision`` converts: :meth:`w8a16` for the precisions of
        :data:`WIDE_ACTIVATION_PRECISIONS` (TFLite w8a16, Core ML W8: int8 weights, wider
        activations, the case :func:`~edgesr.quantization.recipe.choose_w8a16_weights` scores),
        ``module`` for every other (int8, w8a8, and float exports of the checkpoint)."""
        return self.w8a16() if precision in WIDE_ACTIVATION_PRECISIONS else self.module

    def weights_from(self, precision: str) -> str:
        """Which weights :meth:`module_for` gives ``precision``, as artifact metadata records it:
        ``"recipe"`` (``module``) or the chosen candidate of ``settings["recipe"]["w8a16"]``
        (:data:`~edgesr.quantization.recipe.W8A16_CANDIDATES`) with ``" (w8a16_state_dict)"``."""
        if precision not in WIDE_ACTIVATION_PRECISIONS or self.w8a16_module is None:
            return "recipe"
        chosen = ((self.settings.get("recipe") or {}).get("w8a16") or {}).get("weights", "float")
        return f"{chosen} (w8a16_state_dict)"

    def provenance(self) -> dict:
        """What an artifact made from it records in its metadata (``provenance["quantization"]``)."""
        keep = ("observer", "observer_kw", "qat_steps", "calib", "recipe")
        return {"ranges_from": "checkpoint" if self.path else "export calibration", "checkpoint": self.path,
                **{k: self.settings[k] for k in keep if k in self.settings},
                "activation_ranges": {k: [lo, hi] for k, (lo, hi) in self.activation_ranges.items()}}


def _ranges_of(state: dict, path) -> dict[str, tuple[float, float]]:
    ranges = state.get("activation_ranges")
    if not isinstance(ranges, dict) or not ranges:
        raise EdgesrError(f"{path}: no activation_ranges (run 'edgesr quantize' on it first)")
    try:
        out = {str(k): (float(v[0]), float(v[1])) for k, v in ranges.items()}
    except (TypeError, ValueError, IndexError, KeyError):
        raise EdgesrError(f"{path}: activation_ranges must map node names to [min, max]") from None
    bad = [k for k, (lo, hi) in out.items() if not (lo <= 0.0 <= hi and hi > lo)]
    if bad:
        raise EdgesrError(f"{path}: activation range of {bad[0]!r} is {list(out[bad[0]])}, not min <= 0 <= max with max > min")
    return out


def is_quantized(path: str | os.PathLike) -> bool:
    """True when the checkpoint at ``path`` carries ``activation_ranges`` (an ``edgesr quantize`` output).

    Raises:
        EdgesrError: unreadable checkpoint.
    """
    return "activation_ranges" in read_checkpoint(path)


def read_quantized(path: str | os.PathLike) -> QuantizedCheckpoint:
    """Load a quantized checkpoint and check that its ranges fit its model.

    The ranges must name exactly the int8 tensor nodes of the deploy module's traced graph
    (:func:`edgesr.quantization.graph.tensor_nodes`): a missing one would let an exporter fall
    back to its own statistics for that tensor, an extra one means the ranges belong to another
    graph.

    Raises:
        EdgesrError: unreadable checkpoint, no ranges (not quantized), ranges that are not
            ``[min, max]`` with min <= 0 <= max, or ranges that do not match the model's graph.
    """
    module, state = load_checkpoint(path, deploy=True)
    ranges = _ranges_of(state, path)
    want = set(tensor_nodes(quant_plan(trace(module))))
    missing, extra = sorted(want - set(ranges)), sorted(set(ranges) - want)
    if missing or extra:
        raise EdgesrError(f"{path}: activation_ranges do not fit the model's graph (missing: {', '.join(missing[:5]) or '-'}; "
                          f"unknown: {', '.join(extra[:5]) or '-'})")
    minmax = _ranges_of({"activation_ranges": state["minmax_ranges"]}, path) if state.get("minmax_ranges") else None
    if minmax is not None and set(minmax) != set(ranges):
        raise EdgesrError(f"{path}: minmax_ranges name other nodes than activation_ranges")
    w8a16_module = None
    if state.get("w8a16_state_dict") is not None:
        w8a16_module = copy.deepcopy(module)
        try:
            w8a16_module.load_state_dict(state["w8a16_state_dict"])
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise EdgesrError(f"{path}: w8a16_state_dict does not fit the model: {str(exc).splitlines()[0]}") from None
        w8a16_module.eval()
    return QuantizedCheckpoint(module, ranges, str(path), dict(state.get("quantization") or {}), minmax, w8a16_module)


def load_activation_ranges(path: str | os.PathLike) -> dict[str, tuple[float, float]]:
    """``activation_ranges`` of a quantized checkpoint written by :func:`quantize_checkpoint`.

    Raises:
        EdgesrError: unreadable file or a checkpoint without ranges (not quantized).
    """
    return _ranges_of(read_checkpoint(path), path)
