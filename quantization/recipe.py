"""The int8 recipe: post-training techniques in AIMET's order, then short LSQ QAT, chosen per model.

Stages, in order (:data:`STAGES`), each applied to the result of the ones kept before it:

1. ``minmax``: min/max calibration (:func:`~edgesr.quantization.calibrate`), the starting point;
2. ``cle``: cross-layer equalization (:func:`~edgesr.quantization.equalization.equalize`), then
   min/max calibration of the equalized model;
3. ``range_search``: activation ranges searched on the output (:func:`~edgesr.quantization.range_search.search_ranges`);
4. ``adaround``: learned weight rounding (:func:`~edgesr.quantization.adaround.adaround`);
5. ``bias_correction``: empirical bias correction (:func:`~edgesr.quantization.bias_correction.correct_bias`);
6. ``lsq_qat``: LSQ quantization-aware fine-tuning with keep-best (:func:`~edgesr.quantization.qat.qat`
   with ``range_mode="lsq"``).

The choice per model is measured, not guessed: a stage is kept only if it raises the int8
simulation's PSNR on held-out photos (``val``, never the benchmark sets), pooled and on more than
half of them one by one (:meth:`~edgesr.quantization.qat.ValScore.beats`); otherwise the model
and ranges before it go on to the next stage. Every stage's outcome (kept or not, validation
PSNR, how many photos it raised, seconds) is recorded, for ``report.json`` and ``docs/quant.md``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from edgesr.quantization.adaround import adaround
from edgesr.quantization.bias_correction import correct_bias
from edgesr.quantization.calibration import calibrate
from edgesr.quantization.equalization import equalize
from edgesr.quantization.fake_quant import fake_quant_module
from edgesr.quantization.qat import ValScore, degrade, qat, sim_psnr, sim_scores
from edgesr.quantization.range_search import search_ranges
from torch import nn

from edgesr.core.errors import EdgesrError

STAGES = ("minmax", "cle", "range_search", "adaround", "bias_correction", "lsq_qat")
RECIPES = {"minmax": STAGES[:1], "ptq": STAGES[:5], "default": STAGES}
"""Recipes by name: the stages they run (each kept only where it helps on validation)."""


def split_photos(images: list) -> tuple[list, list]:
    """``(fit, val)``: the photos to calibrate and fine-tune on, and the held-out ones to decide on.

    Every 8th photo (at least one) is held out when there are two or more, so that no
    decision rewards fitting the training photos themselves (measured: with validation crops
    cut from the QAT photos, LSQ QAT "improved" PKN's validation PSNR while its Set5 int8 drop
    rose from 0.212 to 0.251 dB). A single photo serves both.
    """
    if len(images) < 2:
        return list(images), list(images)
    val_idx = set(range(0, len(images), 8)) if len(images) >= 8 else {len(images) - 1}
    return [im for i, im in enumerate(images) if i not in val_idx], [im for i, im in enumerate(images) if i in val_idx]


@dataclass
class RecipeConfig:
    """Settings of the recipe's stages (defaults suit the zoo's tiny models on CPU).

    ``adaround_iters``: AdaRound schedules to try (Adam steps per conv, batches of
    ``adaround_batch`` calibration patches), each one after the first only while its
    steps times the model's int8 convs stay within ``adaround_budget``; the validation photos
    pick among them (pooled PSNR). One schedule is not best for every model, and the layer loss
    AdaRound minimises does not rank them: on the T91-trained models of an earlier docs/quant.md
    (min/max ranges, ``bench/quant.py``'s calibration), 200/1000/2000 steps gave Set5 drops of
    0.098/0.035/0.033 dB on the authors' eSR-MAX and 0.336/0.453/0.356 dB on eSR-CNN, in the order
    of the held-out crops' drops then used for validation (0.064/0.035/0.034 and
    0.265/0.326/0.255 dB) but not of the layer losses. The 3000-step schedule fits the budget
    only for one-conv models (eSR-MAX): on that run's T91-trained eSR-MAX it was chosen, and its
    Set5 drop after the recipe went from 0.048 to 0.032 dB, w8a16 from 0.032 to 0.015 dB;
    ``search_patches``: calibration patches the output-driven range search scores; ``qat_steps``: LSQ QAT steps (batch ``qat_batch``
    HR patches), weights at ``qat_lr`` and range bounds at ``qat_range_lr``, cosine decay,
    validated every ``qat_eval_every`` steps; ``seed`` fixes every random choice.

    ``qat_steps`` 1000 at ``qat_lr`` 1e-3 (before: 200 at 1e-4): on the zoo's T91-trained
    checkpoints (docs/zoo.md, ``python bench/zoo.py ... --reprofile``) the Set5 drop of the
    shipped TFLite int8 model went from 0.522 to 0.166 dB on eSR-TR x2, 0.340 to 0.196 on eSR-CNN
    x2, 0.553 to -0.373 on SplitSR-S x2, 0.224 to 0.007 on PKN x2, and on the headline SESR-M5
    job from 0.088 to -0.002 dB (the earlier QAT was rejected there); keep-best picked steps
    near the end, so the models were still improving. QAT trains on HR targets, so part of what it recovers on briefly
    trained models is further training, not quantization: ``python bench/qat_control.py``
    (docs/qat_control.md) puts the float model fine-tuned the same way, and QAT towards the
    float model's output (``qat(teacher=...)``), beside it.
    """

    adaround_iters: tuple[int, ...] = (200, 1000, 3000)
    adaround_budget: int = 5000
    adaround_batch: int = 4
    search_patches: int = 16
    qat_steps: int = 1000
    qat_batch: int = 8
    qat_lr: float = 1e-3
    qat_range_lr: float = 1e-3
    qat_eval_every: int = 20
    seed: int = 0


@dataclass
class RecipeResult:
    """``module``, ``ranges``: the quantized model (float deploy module + activation ranges);
    ``stages``: one dict per stage run (technique, kept, val_psnr_db, seconds, details)."""

    module: nn.Module
    ranges: dict[str, tuple[float, float]]
    stages: list[dict] = field(default_factory=list)

    def techniques(self) -> list[str]:
        """The stages kept, in order (``minmax`` always)."""
        return [s["technique"] for s in self.stages if s["kept"]]


def _summary(report) -> dict | list | str:
    """A JSON-friendly digest of a technique's report."""
    if hasattr(report, "pairs"):
        return {"pairs": [list(p) for p in report.pairs], "skipped": report.skipped}
    if isinstance(report, dict):
        return {k: (asdict(v) if hasattr(v, "__dataclass_fields__") else v) for k, v in report.items()}
    return str(report)


def run_recipe(deploy_module: nn.Module, calib, hr, val_hr, *, recipe: str = "default",
               config: RecipeConfig | None = None, score: Callable[[nn.Module, dict], float] | None = None,
               ablation: bool = False, on_stage: Callable[[dict], None] | None = None) -> RecipeResult:
    """Quantize ``deploy_module`` for int8 with the stages of ``recipe``, each kept where it helps.

    Args:
        deploy_module: plain deploy module (after ``collapse()``), float32, fx-traceable; not modified.
        calib: float32 (N, C, P, P) calibration inputs (LR model inputs in the contract's range).
        hr: float32 (N, C, H, W) HR training patches in [0, 1] for QAT (H, W multiples of the scale).
        val_hr: held-out HR targets in [0, 1] from photos that ``calib`` and ``hr`` do not come
            from (:func:`split_photos`): the photos whole (a list of float32 (B, C, H, W) tensors,
            :func:`~edgesr.quantization.qat.whole_images`; what ``edgesr quantize`` passes), or
            float32 (M, C, H, W) patches. Every keep/skip decision and QAT's keep-best are made
            on them (LR by MATLAB bicubic; :func:`~edgesr.quantization.qat.sim_psnr`).
        recipe: a key of :data:`RECIPES`.
        config: stage settings (:class:`RecipeConfig`).
        score: optional ``score(module, ranges) -> float`` recorded for every stage as
            ``score`` (the benchmark passes the Set5 drop; never used for decisions).
        ablation: also record ``score`` of each stage's candidate when it is not kept.
        on_stage: called with each stage's record as it finishes (progress).
    Returns:
        :class:`RecipeResult`; ``stages[i]`` = ``{"technique", "kept", "val_psnr_db",
        "val_drop_db", "seconds", "details"[, "val_images_better", "score"]}`` where ``val_drop_db``
        is the float model's validation PSNR minus the int8 simulation's (model space, peak 1) and
        ``val_images_better`` how many validation images the stage raised (``"k/n"``).

    Raises:
        EdgesrError: unknown recipe or empty patches.
    """
    if recipe not in RECIPES:
        raise EdgesrError(f"unknown int8 recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    cfg = config or RecipeConfig()
    calib = torch.as_tensor(calib, dtype=torch.float32)
    hr, val_hr = torch.as_tensor(hr, dtype=torch.float32), _as_targets(val_hr)
    if min(calib.shape[0], hr.shape[0], len(val_hr)) == 0:
        raise EdgesrError("the int8 recipe needs calibration, training and validation patches")
    val_lr = degrade(val_hr, deploy_module.contract.scale)
    float_val = sim_psnr(deploy_module.eval(), val_lr, val_hr)

    def evaluate(module, ranges) -> ValScore:
        return sim_scores(fake_quant_module(module, ranges).eval(), val_lr, val_hr)

    techniques = {
        "cle": lambda m, r: _cle(m, calib),
        "range_search": lambda m, r: (m, *search_ranges(m, calib[: cfg.search_patches], r)),
        "adaround": lambda m, r: _adaround(m, r, calib, cfg, evaluate),
        "bias_correction": lambda m, r: _bias_correction(m, r, calib),
        "lsq_qat": lambda m, r: _lsq_qat(m, r, hr, val_hr, cfg),
    }
    t0 = time.perf_counter()
    module, ranges = deploy_module, calibrate(deploy_module, calib)
    best = evaluate(module, ranges)
    result = RecipeResult(module, ranges)
    record = {"technique": "minmax", "kept": True, "val_psnr_db": best.psnr, "val_drop_db": float_val - best.psnr,
              "seconds": time.perf_counter() - t0, "details": {}}
    if score is not None:
        record["score"] = score(module, ranges)
    result.stages.append(record)
    if on_stage is not None:
        on_stage(record)
    for name in RECIPES[recipe][1:]:
        t0 = time.perf_counter()
        cand_module, cand_ranges, details = techniques[name](module, ranges)
        seconds = time.perf_counter() - t0
        value = evaluate(cand_module, cand_ranges)
        kept = value.beats(best)
        record = {"technique": name, "kept": kept, "val_psnr_db": value.psnr, "val_drop_db": float_val - value.psnr,
                  "val_images_better": f"{int((value.each > best.each).sum())}/{len(value.each)}",
                  "seconds": seconds, "details": _summary(details)}
        if score is not None and (kept or ablation):
            record["score"] = score(cand_module, cand_ranges)
        if kept:
            module, ranges, best = cand_module, cand_ranges, value
        result.stages.append(record)
        if on_stage is not None:
            on_stage(record)
    result.module, result.ranges = module.eval(), ranges
    return result


W8A16_CANDIDATES = ("recipe", "float", "adaround_w8a16", "qat_w8a16")
"""The weights a w8a16 export may carry (:func:`choose_w8a16_weights`)."""


def choose_w8a16_weights(float_module: nn.Module, recipe_module: nn.Module, val_hr, calib=None, hr=None, *,
                         adaround_iters: int = 500, config: RecipeConfig | None = None) -> tuple[nn.Module, dict]:
    """The weights a w8a16 export should carry: the recipe's result, the float model's own, the
    float model's with AdaRound fitted to float activations, or the best of these fine-tuned
    through int8 weights and float activations.

    The recipe's weights are chosen for int8 activations (AdaRound and bias correction on the
    int8 simulation's inputs, LSQ QAT through it); at int16 activations what is left is the int8
    weights' own error, and QAT's adaptation to int8 noise can cost more than it saves (measured
    on the 12-minute SplitSR-S of an earlier docs/quant.md: w8a16 Set5 drop 0.072 dB with the recipe's
    weights, 0.005 dB with the float model's). With ``calib``, a third candidate rounds the float
    model's weights by AdaRound for int8 weights and float activations
    (:func:`~edgesr.quantization.adaround.adaround` with ``activations=False``): the rounding that
    minimises each layer's output error at w8a16 (on the T91-trained eSR-TR of an earlier docs/quant.md,
    Set5 w8a16 drop 0.011 dB against 0.201 with nearest rounding). With ``hr``, a fourth
    fine-tunes the best of those for ``config.qat_steps`` steps through int8 weights and float
    activations (:func:`~edgesr.quantization.qat.qat` with ``activations=False``, cosine decay,
    keep-best on ``val_hr``): the w8a16 model's own QAT, which moves weights onto the int8 grid
    where no rounding alone gets them (eSR-MAX's coarse per-channel grids, docs/quant.md).
    Each candidate is scored with int8 weights and float activations
    (:func:`~edgesr.quantization.fake_quant.fake_quant_module` with ``activations=False``) on
    ``val_hr``; starting from the recipe's, a candidate replaces the one chosen so far only if it
    beats it (:meth:`~edgesr.quantization.qat.ValScore.beats`), in the order of
    :data:`W8A16_CANDIDATES`.

    Args:
        float_module, recipe_module: deploy modules of one architecture (the same graph), float32.
        val_hr: held-out HR targets, whole images or patches (:func:`run_recipe`'s ``val_hr``).
        calib: float32 (N, C, P, P) calibration patches for the AdaRound candidate; None: no such
            candidate.
        hr: float32 (N, C, H, W) HR training patches in [0, 1] (:func:`run_recipe`'s ``hr``) for
            the QAT candidate; None (or ``config.qat_steps == 0``): no such candidate.
        adaround_iters: AdaRound's steps per conv.
        config: QAT steps, batch, learning rate, validation interval and seed
            (:class:`RecipeConfig`; default ``RecipeConfig()``).
    Returns:
        ``(module, record)``: the chosen module (the recipe's or float module itself, or a new
        module) and ``{"weights": one of W8A16_CANDIDATES, "val_psnr_db": {candidate: dB}``
        plus ``"adaround_seconds"`` (with ``calib``) and ``"qat_seconds"``, ``"qat_from"``,
        ``"qat_best_step"`` (with ``hr``)``}``.
    """
    cfg = config or RecipeConfig()
    val_hr = _as_targets(val_hr)
    val_lr = degrade(val_hr, float_module.contract.scale)
    candidates = {"recipe": recipe_module, "float": float_module}
    record: dict = {}
    if calib is not None:
        t0 = time.perf_counter()
        candidates["adaround_w8a16"], _ = adaround(float_module, {}, calib, iters=adaround_iters, seed=cfg.seed,
                                                   activations=False)
        record["adaround_seconds"] = round(time.perf_counter() - t0, 1)

    def score(module) -> ValScore:
        return sim_scores(fake_quant_module(module, {}, activations=False).eval(), val_lr, val_hr)

    scores = {name: score(m) for name, m in candidates.items()}
    choice = "recipe"
    for name in W8A16_CANDIDATES[1:3]:
        if name in scores and scores[name].beats(scores[choice]):
            choice = name
    if hr is not None and cfg.qat_steps > 0:
        t0 = time.perf_counter()
        history: list[tuple[int, float]] = []
        candidates["qat_w8a16"], _ = qat(candidates[choice], torch.as_tensor(hr, dtype=torch.float32), cfg.qat_steps,
                                         lr=cfg.qat_lr, batch_size=cfg.qat_batch, seed=cfg.seed, val=val_hr,
                                         eval_every=cfg.qat_eval_every, cosine=True, activations=False,
                                         on_eval=lambda step, psnr: history.append((step, psnr)))
        record.update(qat_seconds=round(time.perf_counter() - t0, 1), qat_from=choice,
                      qat_best_step=max(history, key=lambda h: h[1])[0])
        scores["qat_w8a16"] = score(candidates["qat_w8a16"])
        if scores["qat_w8a16"].beats(scores[choice]):
            choice = "qat_w8a16"
    return candidates[choice].eval(), {
        "weights": choice, "val_psnr_db": {k: round(v.psnr, 4) for k, v in scores.items()}, **record}


def _as_targets(val_hr):
    """Validation targets as :func:`~edgesr.quantization.qat.sim_psnr` takes them: a list of whole
    images stays a list of float32 tensors, anything else becomes one float32 batch of patches."""
    if isinstance(val_hr, (list, tuple)):
        return [torch.as_tensor(v, dtype=torch.float32) for v in val_hr]
    return torch.as_tensor(val_hr, dtype=torch.float32)


def _cle(module, calib):
    equalized, report = equalize(module)
    return equalized, calibrate(equalized, calib), report


def _bias_correction(module, ranges, calib):
    corrected, report = correct_bias(module, ranges, calib)
    return corrected, ranges, report


def _adaround(module, ranges, calib, cfg: RecipeConfig, evaluate):
    """AdaRound with each schedule of ``cfg.adaround_iters`` the budget allows; the best on validation."""
    convs = sum(isinstance(m, nn.Conv2d) for m in module.modules())
    schedules = [it for i, it in enumerate(cfg.adaround_iters) if i == 0 or it * convs <= cfg.adaround_budget]
    best = None
    tried = {}
    for iters in schedules:
        rounded, report = adaround(module, ranges, calib, iters=iters, batch_size=cfg.adaround_batch, seed=cfg.seed)
        tried[iters] = round(evaluate(rounded, ranges).psnr, 4)
        if best is None or tried[iters] > best[0]:
            best = (tried[iters], iters, rounded, report)
    _, iters, rounded, report = best
    return rounded, ranges, {"iters": iters, "val_psnr_db_by_iters": tried, "layers": _summary(report)}


def _lsq_qat(module, ranges, hr, val_hr, cfg: RecipeConfig):
    history: list[tuple[int, float]] = []
    tuned, tuned_ranges = qat(module, hr, cfg.qat_steps, ranges=ranges, range_mode="lsq", lr=cfg.qat_lr,
                              range_lr=cfg.qat_range_lr, batch_size=cfg.qat_batch, seed=cfg.seed, val=val_hr,
                              eval_every=cfg.qat_eval_every, cosine=True,
                              on_eval=lambda step, psnr: history.append((step, psnr)))
    best_step = max(history, key=lambda h: h[1])[0] if history else 0
    return tuned, tuned_ranges, {"steps": cfg.qat_steps, "best_step": best_step,
                                 "val_psnr_db": [[s, round(p, 4)] for s, p in history]}
