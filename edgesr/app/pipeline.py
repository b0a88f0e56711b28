"""``edgesr run``: the main job, data -> train -> collapse -> quantize (or bake) -> export ->
validate -> report, resumable at every step.

    edgesr run                                  # embedded photographs, SESR-M5 x2, < 10 min on 2 cores
    edgesr run --model sesr_m5 --scale 2 --data ../shared/data/T91/HR \\
               --data-root ../shared/data --sets Set5,Set14

OUT (default ``runs/<model>_x<scale>_<time>/``) holds::

    checkpoints/last.pt      training checkpoint (atomic; training resumes from it)
    checkpoints/deploy.pt    collapsed float model (the reference of every artifact)
    checkpoints/int8.pt      deploy weights after calibration/QAT + activation ranges
    artifacts/*.tflite|.onnx|.mlpackage|.pte|.lut  (each with its contract embedded)
    validation/<artifact>.json               one validation result per artifact (with the
                                             emulation matrix of every network artifact)
    report.json, report.md, report.png

Every file is written atomically and every stage skips work whose output exists, so a run
interrupted anywhere and started again with the same OUT loses no finished work.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from edgesr.app.run_lock import out_dir_lock
from edgesr.app.run_report import write_report
from edgesr.app.validation import (
    EMULATION_CROP,
    emulation_images,
    emulation_matrix,
    reference_run,
    validate_artifact,
)
from edgesr.converters.export import (
    RANGED_PRECISIONS,
    SUFFIX,
    default_formats,
    export_coreml,
    export_executorch,
    export_onnx,
    export_tflite,
    plan,
)
from edgesr.core.atomic import write_text_atomic
from edgesr.core.checkpoint import load_checkpoint, save_checkpoint
from edgesr.core.collapse import collapse_checked
from edgesr.core.complexity import model_info
from edgesr.core.contract import read_artifact_metadata
from edgesr.core.data import resolve_eval_sets, training_images
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import TorchUpscaler, calibration_patches, evaluate_sets
from edgesr.core.models import create, resolve
from edgesr.core.registry import ModelEntry
from edgesr.core.train import TrainConfig, train
from edgesr.lut_baking import bake_and_finetune
from edgesr.lut_baking.finetune import FINETUNE_STEPS
from edgesr.quantization.api import (
    WIDE_ACTIVATION_PRECISIONS,
    QuantizedCheckpoint,
    quantize_checkpoint,
    read_quantized,
)
from edgesr.quantization.recipe import RECIPES

DEFAULT_MODEL = "sesr_m5"
DEFAULT_STEPS = 3000
FROM_INT8_CHECKPOINT = (*RANGED_PRECISIONS, *WIDE_ACTIVATION_PRECISIONS)
"""Precisions exported from the run's ``int8.pt`` (its ranges, its module or its weights for wide
activations: :meth:`~edgesr.quantization.api.QuantizedCheckpoint.module_for`)."""
DEFAULT_RECIPE = "default"
"""The int8 recipe ``edgesr run`` applies (:data:`edgesr.quantization.recipe.RECIPES`; None: min/max + QAT)."""


def _json_write(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=float) + "\n")


@dataclass(frozen=True)
class RunConfig:
    """The settings of one ``edgesr run`` (a JSON or YAML block maps 1:1 onto these fields).

    Attributes:
        model, scale: a registry name (``edgesr list``) and its upscaling factor.
        data: folder of HR training photos; None: the embedded photographs.
        data_root, sets: the evaluation sets (``Set5/HR``, ... under ``data_root``; default
            Set5 and Set14 with a ``data_root``, else the embedded validation photographs).
        steps, batch, seed, device: training (:class:`edgesr.core.train.TrainConfig`).
        qat_steps, observer, recipe: int8 quantization (:func:`edgesr.quantization.api.quantize_module`).
        formats, precisions: the artifacts (:func:`edgesr.converters.export.plan`); formats None:
            :func:`edgesr.converters.export.default_formats`.
        lut_finetune_steps: LUT models: LUT-aware fine-tuning steps after baking.
        out: the run folder (default ``runs/<model>_x<scale>_<time>``); a finished or interrupted
            run's folder resumes it.
        progress: progress bars; force: resume although run.json records other settings.
    """

    model: str = DEFAULT_MODEL
    scale: int = 2
    data: str | None = None
    data_root: str | None = None
    sets: tuple[str, ...] | None = None
    steps: int = DEFAULT_STEPS
    batch: int = 16
    qat_steps: int = 1000
    observer: str = "minmax"
    recipe: str | None = DEFAULT_RECIPE
    formats: tuple[str, ...] | None = None
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")
    lut_finetune_steps: int = FINETUNE_STEPS
    out: str | None = None
    device: str = "auto"
    seed: int = 0
    progress: bool = True
    force: bool = False


STAGES = ("train", "collapse", "quantize", "export", "validate", "report")
"""The stages of ``edgesr run`` in order; each logs ``[edgesr run +T s] k/6 name ...``."""


@dataclass
class Run:
    """What the stages pass on: the settings, the folder and each stage's typed result."""

    config: RunConfig
    entry: ModelEntry
    out_dir: Path
    eval_sets: dict
    checkpoint: Path | None = None          # train: OUT/checkpoints/last.pt
    reference: nn.Module | None = None      # collapse: the float deploy module (None for LUT models)
    quantized: QuantizedCheckpoint | None = None  # quantize: OUT/checkpoints/int8.pt, read back
    artifacts: list[dict] = field(default_factory=list)  # export: {format, precision, path, bytes}
    started: float = field(default_factory=time.perf_counter)

    def stage(self, name: str, detail: str = "") -> None:
        """Log the start of stage ``name`` (one of :data:`STAGES`)."""
        k = STAGES.index(name) + 1
        print(f"[edgesr run +{time.perf_counter() - self.started:6.1f} s] {k}/{len(STAGES)} {name}"
              f"{': ' + detail if detail else ''}", flush=True)


def run_pipeline(config: RunConfig | None = None, **settings) -> dict:
    """Run (or resume) the main job and return the report dict (also written to OUT/report.json).

    Args:
        config: the settings; or give :class:`RunConfig`'s fields as keyword arguments.

    OUT is locked for the whole run (``OUT/.lock``, :mod:`edgesr.app.run_lock`), and a run
    that resumes in an existing OUT must have the settings its ``run.json`` records
    (:data:`RESUME_SETTINGS`), unless ``force``.

    Raises:
        EdgesrError: bad data folders or sets, unknown model, scale or setting, unwritable OUT,
            an OUT that belongs to another model or scale, an OUT in use by another run, or
            (without ``force``) an OUT whose run.json records other settings.
    """
    if config is None:
        known = {f.name for f in dataclasses.fields(RunConfig)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise EdgesrError(f"unknown run setting {unknown[0]!r}")
        config = RunConfig(**settings)
    entry = resolve(config.model)
    create(entry.name, scale=config.scale)  # validates the scale before any work
    if config.recipe is not None and config.recipe not in RECIPES:
        raise EdgesrError(f"unknown int8 recipe {config.recipe!r}; choose one of {', '.join(RECIPES)}")
    formats = tuple(default_formats() if config.formats is None else config.formats)
    config = dataclasses.replace(config, model=entry.name, formats=formats, precisions=tuple(config.precisions),
                                 sets=None if config.sets is None else tuple(config.sets))
    plan(config.formats, config.precisions)  # refuse unknown formats and precisions before any work
    out_dir = Path(config.out or f"runs/{entry.name}_x{config.scale}_{time.strftime('%Y%m%d-%H%M%S')}")
    settings = {k: getattr(config, k) for k in RESUME_SETTINGS}
    settings["sets"] = list(config.sets) if config.sets is not None else None
    with _claim_out_dir(out_dir, settings, config.force):
        sets = config.sets if config.sets is not None or config.data_root is None else ("Set5", "Set14")
        eval_sets = resolve_eval_sets(config.data_root, None if sets is None else list(sets))
        training_images(config.data)  # fail early on a bad --data folder
        run = Run(config, entry, out_dir, eval_sets)
        _train(run)
        if _is_lut(entry, config.scale):
            _lut_stages(run)
        else:
            _collapse(run)
            _quantize(run)
            _export(run)
        return _validate_and_report(run)


def _is_lut(entry: ModelEntry, scale: int) -> bool:
    return entry.family in ("srlut", "splut", "lut") or hasattr(create(entry.name, scale=scale), "bake")


def _train(run: Run) -> None:
    c = run.config
    run.stage("train", f"{run.entry.name} x{c.scale} for {c.steps} steps -> {run.out_dir / 'checkpoints/last.pt'}")
    run.checkpoint = train(TrainConfig(model=run.entry.name, scale=c.scale, data=c.data, out=str(run.out_dir),
                                       steps=c.steps, batch=c.batch, seed=c.seed, device=c.device, progress=c.progress,
                                       val_every=max(c.steps // 4, 1)))


#: settings recorded in OUT/run.json that a resumed run must repeat (model and scale always;
#: the others unless ``--force``). Formats and precisions may change: a resumed run may add artifacts.
RESUME_SETTINGS = ("model", "scale", "data", "data_root", "sets", "steps", "batch", "seed", "qat_steps", "observer",
                   "recipe", "lut_finetune_steps")


@contextmanager
def _claim_out_dir(out_dir: Path, settings: dict, force: bool = False):
    """Create and lock OUT for this run; check or write its ``run.json``; release the lock on exit.

    Raises:
        EdgesrError: OUT cannot be created, another run holds it, it belongs to another
            model or scale, or (without ``force``) its run.json records other settings.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgesrError(f"{out_dir}: cannot create the run folder ({exc.strerror})") from None
    with out_dir_lock(out_dir):
        marker = out_dir / "run.json"
        record = {**settings, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if marker.exists():
            record = _check_resume(marker, settings, force)
        _json_write(marker, record)
        yield


def _check_resume(marker: Path, settings: dict, force: bool) -> dict:
    """The run.json to keep when resuming in ``marker``'s folder with ``settings``."""
    out_dir = marker.parent
    try:
        prev = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EdgesrError(f"{marker}: unreadable run record ({exc}); choose another --out") from None
    if not isinstance(prev, dict):
        raise EdgesrError(f"{marker}: not a run record (a JSON object); choose another --out")
    if prev.get("model") != settings["model"] or prev.get("scale") != settings["scale"]:
        raise EdgesrError(f"{out_dir}: holds a run of {prev.get('model')} x{prev.get('scale')}, not "
                          f"{settings['model']} x{settings['scale']}; choose another --out")
    changed = [k for k in RESUME_SETTINGS if k in prev and prev[k] != settings[k]]  # older run.json: fewer keys
    if changed and not force:
        was = ", ".join(f"{k}={prev[k]!r}" for k in changed)
        now = ", ".join(f"{k}={settings[k]!r}" for k in changed)
        raise EdgesrError(f"{out_dir}: was run with {was}; this run has {now}. Resume with the same settings, "
                          "choose another --out, or pass --force")
    if changed:
        warnings.warn(f"{out_dir}: --force: resuming with {', '.join(f'{k}={settings[k]!r}' for k in changed)} "
                      f"(was {', '.join(f'{k}={prev[k]!r}' for k in changed)}); finished work is kept")
    return {**prev, **settings, "resumed": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _exported(path: Path) -> bool:
    """An artifact from an earlier (interrupted) run is complete: it exists (written atomically)
    and its embedded metadata reads back."""
    if not path.exists():
        return False
    try:
        read_artifact_metadata(path)
    except EdgesrError:
        return False
    return True


def _collapse(run: Run) -> None:
    deploy_path = run.out_dir / "checkpoints" / "deploy.pt"
    run.stage("collapse", str(deploy_path))
    if not deploy_path.exists():
        trained, state = load_checkpoint(run.checkpoint)
        deploy, info = collapse_checked(trained) if hasattr(trained, "collapse") else (trained, {})
        save_checkpoint(deploy_path, deploy, step=state["step"], config=state.get("config", {}), form="deploy",
                        extra={"collapse": info})
    run.reference, _ = load_checkpoint(deploy_path)


def _quantize(run: Run) -> None:
    c = run.config
    int8_path = run.out_dir / "checkpoints" / "int8.pt"
    precisions = {p for _, p in plan(c.formats, c.precisions)}
    if not precisions & set(FROM_INT8_CHECKPOINT):
        run.stage("quantize", "no int8 precision requested")
        return
    how = f"recipe {c.recipe!r}" if c.recipe else f"{c.observer} calibration"
    run.stage("quantize", f"{how}, {c.qat_steps} QAT steps -> {int8_path}")
    if not int8_path.exists():
        quantize_checkpoint(run.out_dir / "checkpoints" / "deploy.pt", c.data, observer=c.observer, qat_steps=c.qat_steps,
                            out_path=int8_path, progress=c.progress, recipe=c.recipe,
                            w8a16=bool(precisions & set(WIDE_ACTIVATION_PRECISIONS)))
    run.quantized = read_quantized(int8_path)  # weights and ranges of every int8 / w8a16 / w8a8 / w8 artifact


def _export(run: Run) -> None:
    c, deploy = run.config, run.reference
    pairs = plan(c.formats, c.precisions)
    run.stage("export", ", ".join(f"{f}/{p}" for f, p in pairs))
    deploy_path, int8_path = run.out_dir / "checkpoints" / "deploy.pt", run.out_dir / "checkpoints" / "int8.pt"
    art_dir = run.out_dir / "artifacts"
    stem = f"{deploy.registry_name}_x{deploy.scale}"
    run.artifacts = [{"format": "torch", "precision": "fp32", "path": str(deploy_path), "bytes": deploy_path.stat().st_size}]
    from tqdm.auto import tqdm

    for fmt, prec in tqdm(pairs, desc="export", disable=not c.progress, leave=False):
        path = art_dir / f"{stem}_{prec}{SUFFIX[fmt]}"
        if _exported(path):
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
            run.artifacts.append({"format": fmt, "precision": prec, "path": str(path), "bytes": size})
            continue
        int8 = prec in FROM_INT8_CHECKPOINT
        model = run.quantized if int8 else deploy
        source = str(int8_path if int8 else deploy_path)
        if fmt == "tflite":
            run.artifacts.append(export_tflite(model, path, prec, None, "int8", source))
        elif fmt == "onnx":
            run.artifacts.append(export_onnx(model, path, source))
        elif fmt.startswith("executorch"):  # PT2E int8 calibrates its own observers (docs/executorch.md)
            module = model.module if isinstance(model, QuantizedCheckpoint) else model
            patches = calibration_patches(c.data, deploy.contract) if prec == "int8" else None
            run.artifacts.append(export_executorch(module, path, prec, patches, source,
                                                   delegate="coreml" if fmt == "executorch-coreml" else "xnnpack"))
        else:
            run.artifacts.append(export_coreml(model, path, prec, None, source))


def _lut_stages(run: Run) -> None:
    c = run.config
    run.stage("collapse", "LUT models have no training-only form")
    run.stage("quantize", f"bake and fine-tune the lookup tables ({c.lut_finetune_steps} steps) -> {run.out_dir / 'artifacts'}")
    run.stage("export", "the .lut bundle is the artifact")
    run.artifacts = bake_and_finetune(run.checkpoint, run.out_dir / "artifacts", training_images(c.data), c.lut_finetune_steps)


def _validate_and_report(run: Run) -> dict:
    run.stage("validate", f"every artifact against the float reference (+ emulation matrices on {EMULATION_CROP} px crops)")
    out_dir, artifacts, reference, eval_sets = run.out_dir, run.artifacts, run.reference, run.eval_sets
    progress = run.config.progress
    trained, _ = load_checkpoint(run.checkpoint)
    ref_module = reference if reference is not None else trained
    ref = reference_run(ref_module, eval_sets, progress)
    val_dir = out_dir / "validation"
    int8_path, int8_refs = out_dir / "checkpoints" / "int8.pt", {}
    emulation_seconds, emulation_ref = 0.0, None
    for art in artifacts:
        cached = val_dir / (Path(art["path"]).name + ".json")
        if cached.exists():  # a finished validation (a restarted run): not recomputed
            v = json.loads(cached.read_text())
        elif art["format"] == "torch":
            v = {"max_abs_err": 0.0, "psnr_vs_reference_db": None, "eval": ref.eval, "passed": True, "skipped": None,
                 "note": "the float reference itself"}
            _json_write(cached, v)
        else:
            source = None  # int8 / w8a8 / w8a16 / w8 artifacts were exported from the int8 checkpoint's
            prec = art["precision"]  # module or its weights for wide activations (module_for)
            if prec in FROM_INT8_CHECKPOINT and int8_path.exists():
                if "checkpoint" not in int8_refs:
                    int8_refs["checkpoint"] = read_quantized(int8_path)
                module = int8_refs["checkpoint"].module_for(prec)
                if id(module) not in int8_refs:
                    int8_refs[id(module)] = reference_run(module, eval_sets, progress)
                source = int8_refs[id(module)]
            v = validate_artifact(art["path"], ref, eval_sets, precision=art["precision"], progress=progress,
                                  source_reference=source)
            _json_write(cached, v)
        if reference is not None and art["format"] != "torch" and "emulation" not in v:  # network artifacts
            t0 = time.perf_counter()
            if emulation_ref is None:  # the float reference on the crops, shared by every artifact
                images = emulation_images(eval_sets, EMULATION_CROP)
                emulation_ref = reference_run(reference, {"emulation": images})
            v["emulation"] = emulation_matrix(art["path"], emulation_ref, precision=art["precision"])
            v["emulation_images"] = {"crop_px": EMULATION_CROP, "images": [n for n, _ in images]}
            emulation_seconds += time.perf_counter() - t0
            _json_write(cached, v)
        art["validation"] = v
    if emulation_seconds:
        print(f"  emulation matrices: {emulation_seconds:.1f} s", flush=True)
    info = model_info(trained)
    bicubic = evaluate_sets(TorchUpscaler(_bicubic(trained.scale)), eval_sets)
    warnings = below_bicubic(ref.eval, bicubic)
    for w in warnings:
        print(f"  warning: {w}", flush=True)
    report = {
        "model": info["name"], "scale": info["scale"], "params": info["params"], "params_deploy": info["params_deploy"],
        "macs_per_frame_720p": info["macs_per_frame_720p"], "eval": ref.eval, "bicubic": bicubic,
        "artifacts": [{**a, "path": str(Path(a["path"]).resolve().relative_to(out_dir.resolve()))} for a in artifacts],
        "out": str(out_dir), "warnings": warnings,
    }
    if run.quantized is not None:
        report["int8"] = {k: run.quantized.settings.get(k) for k in ("observer", "qat_steps", "recipe")}
    run.stage("report", "report.json, report.md, report.png")

    write_report(out_dir, report, ref_module, artifacts, eval_sets)
    _json_write(out_dir / "report.json", report)
    return report


def below_bicubic(float_eval: dict, bicubic_eval: dict) -> list[str]:
    """One warning per set where the float model's PSNR (Y) is below bicubic interpolation's:
    a model that learned nothing useful (too few steps, a diverged run, wrong data) is not "ok"
    even when every artifact matches it."""
    return [f"the float model scores {float_eval[s]['psnr_y']:.2f} dB on {s}, below bicubic's "
            f"{bicubic_eval[s]['psnr_y']:.2f} dB" for s in float_eval if s in bicubic_eval
            and float_eval[s]["psnr_y"] < bicubic_eval[s]["psnr_y"]]


def _bicubic(scale: int):
    return create("bicubic", scale=scale)
