"""Validate an exported artifact against its float PyTorch reference, on whole real images.

Both run through the one evaluation path (:mod:`edgesr.evaluate`: ``model_input`` ->
Upscaler -> 8-bit output -> PSNR/SSIM on BT.601 Y with the scale as border crop). Per
artifact::

    {"artifact", "format", "precision",
     "max_abs_err": float,              # max |clip(artifact) - clip(reference)| of the float
                                        # outputs in [0, 1], over every pixel of every image
     "psnr_vs_reference_db": float,     # PSNR of the float outputs (x255, border crop s),
                                        # pooled over all images; null if bit-identical
     "eval": {SET: {"psnr_y", "ssim_y"}},            # artifact vs HR
     "reference_eval": {SET: {"psnr_y", "ssim_y"}},  # float reference vs HR
     "passed": bool, "tolerance": {...}, "skipped": reason | null,
     "structure": {...} (Core ML only)}

Tolerances (issue 3): fp32 max abs error <= 1e-4; fp16 PSNR vs HR at most 0.05 dB below
the reference's on every set; int8 (and Core ML w8 / w8a8) at most ``int8_tolerance_db``
(default 0.15 dB, measured for SESR-M5 x2 ReLU on Set5; other models set their own) below.
Core ML on Linux (no MIL interpreter): numbers null, ``skipped`` says why, ``passed``
reflects the structural checks (:func:`converters.coreml.check_structure`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgesr.errors import EdgesrError
from edgesr.evaluate import TorchUpscaler, evaluate

FP32_MAX_ABS_ERR = 1e-4
FP16_MAX_DROP_DB = 0.05
INT8_MAX_DROP_DB = 0.15


class _Recorder:
    """An Upscaler that keeps every raw float output of the one it wraps (in call order)."""

    def __init__(self, inner):
        self.inner, self.contract, self.outputs = inner, inner.contract, []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = np.asarray(self.inner(x), dtype=np.float32)
        self.outputs.append(out)
        return out


@dataclass
class ReferenceRun:
    """The float reference's raw outputs and scores on the evaluation sets (computed once)."""

    sets: dict
    outputs: dict = field(default_factory=dict)  # set -> [float32 (N, C, sh, sw)]
    eval: dict = field(default_factory=dict)     # set -> {"psnr_y", "ssim_y"}
    scale: int = 0


def _run_sets(upscaler, sets: dict, progress: bool):
    """Score ``upscaler`` on every set; returns ({set: [raw outputs]}, {set: {psnr_y, ssim_y}})."""
    from edgesr.data import eval_pairs

    outputs, scores = {}, {}
    for name, images in sets.items():
        rec = _Recorder(upscaler)
        res = evaluate(rec, eval_pairs(images, upscaler.contract.scale), progress)
        outputs[name], scores[name] = rec.outputs, {"psnr_y": res["psnr_y"], "ssim_y": res["ssim_y"]}
    return outputs, scores


def reference_run(reference_module, sets: dict, progress: bool = False) -> ReferenceRun:
    """Run the float PyTorch deploy module once on ``sets`` ({name: [(image name, uint8 HR)]})."""
    ref = TorchUpscaler(reference_module)
    outputs, scores = _run_sets(ref, sets, progress)
    return ReferenceRun(sets, outputs, scores, ref.contract.scale)


def _tolerance(precision: str, int8_tolerance_db: float) -> dict:
    if precision == "fp32":
        return {"metric": "max_abs_err", "max": FP32_MAX_ABS_ERR}
    if precision == "fp16":
        return {"metric": "psnr_drop_db", "max": FP16_MAX_DROP_DB}
    if precision in ("int8", "w8", "w8a8"):
        return {"metric": "psnr_drop_db", "max": float(int8_tolerance_db)}
    raise EdgesrError(f"unknown artifact precision {precision!r} (expected fp32, fp16, int8, w8, w8a8)")


def _compare(art_outputs: dict, ref: ReferenceRun) -> tuple[float, float | None]:
    """Max abs error and pooled PSNR (dB) of artifact vs reference float outputs in [0, 1]."""
    s, max_err, sq, count = ref.scale, 0.0, 0.0, 0
    for name, outs in art_outputs.items():
        for a, r in zip(outs, ref.outputs[name], strict=True):
            if a.shape != r.shape:
                raise EdgesrError(f"artifact output {a.shape} differs from the reference's {r.shape} on set {name}")
            d = np.clip(a.astype(np.float64), 0, 1) - np.clip(r.astype(np.float64), 0, 1)
            max_err = max(max_err, float(np.abs(d).max()))
            crop = d[..., s:-s, s:-s] * 255.0 if s > 0 else d * 255.0
            sq, count = sq + float(np.sum(crop * crop)), count + crop.size
    mse = sq / max(count, 1)
    return max_err, (None if mse == 0 else 10.0 * math.log10(255.0**2 / mse))


def validate_artifact(path_or_upscaler, reference_module, sets: dict, precision: str | None = None,
                      int8_tolerance_db: float = INT8_MAX_DROP_DB, progress: bool = False, **options) -> dict:
    """Validate one artifact (module doc for the result and tolerances).

    Args:
        path_or_upscaler: an artifact path (``.tflite``, ``.onnx``, ``.mlpackage``, opened by
            :func:`edgesr.artifacts.load_upscaler` with ``options``) or an Upscaler.
        reference_module: the float deploy ``nn.Module``, or a :class:`ReferenceRun` from
            :func:`reference_run` (reuse it across the artifacts of one model).
        sets: ``{set name: [(image name, uint8 HR image)]}`` (:func:`edgesr.data.resolve_eval_sets`).
        precision: fp32 | fp16 | int8 | w8 | w8a8; default: the artifact's metadata.
        int8_tolerance_db: allowed PSNR drop (dB) vs the reference for int8 / w8 / w8a8.

    Raises:
        EdgesrError: unreadable artifact, unknown precision, scale/contract mismatch.
    """
    from converters.runtime import RuntimeUnavailable, artifact_metadata

    from edgesr.artifacts import LUT_SUFFIXES

    is_path = isinstance(path_or_upscaler, (str, os.PathLike))
    is_lut = is_path and Path(path_or_upscaler).suffix.lower() in LUT_SUFFIXES
    network = is_path and Path(path_or_upscaler).suffix.lower() in (".tflite", ".onnx", ".mlpackage")
    if is_lut:  # a LUT bundle carries its contract inside; its tables are int8
        meta = {"provenance": {"artifact_format": "lut", "precision": "int8"}}
    else:  # converters artifacts: embedded metadata or sidecar; bare Upscalers: none
        meta = artifact_metadata(path_or_upscaler) if network else {}
    prov = meta.get("provenance", {})
    precision = precision or prov.get("precision")
    if precision is None:
        raise EdgesrError(f"{path_or_upscaler}: give the precision (fp32, fp16, int8, w8, w8a8); it has no edgesr artifact metadata")
    tolerance = _tolerance(precision, int8_tolerance_db)
    result = {"artifact": str(path_or_upscaler) if is_path else type(path_or_upscaler).__name__,
              "format": prov.get("artifact_format"), "precision": precision, "max_abs_err": None,
              "psnr_vs_reference_db": None, "eval": None, "reference_eval": None, "passed": False,
              "tolerance": tolerance, "skipped": None}
    if is_path and Path(path_or_upscaler).suffix.lower() == ".mlpackage":
        from converters.coreml import check_structure

        result["structure"] = check_structure(path_or_upscaler, precision, meta["contract"]["channels"])
    try:
        from edgesr.artifacts import load_upscaler

        upscaler = load_upscaler(path_or_upscaler, **options) if is_path else path_or_upscaler
    except RuntimeUnavailable as exc:
        result["skipped"] = str(exc)
        result["passed"] = bool(result.get("structure", {}).get("passed", False))
        return result
    ref = reference_module if isinstance(reference_module, ReferenceRun) else reference_run(reference_module, sets, progress)
    if ref.scale != upscaler.contract.scale:
        raise EdgesrError(f"{result['artifact']}: scale x{upscaler.contract.scale} but the reference is x{ref.scale}")
    outputs, scores = _run_sets(upscaler, ref.sets, progress)
    max_err, psnr_ref = _compare(outputs, ref)
    drops = {name: ref.eval[name]["psnr_y"] - scores[name]["psnr_y"] for name in scores}
    if tolerance["metric"] == "max_abs_err":
        passed = max_err <= tolerance["max"]
    else:
        tolerance["drop_db"] = drops
        passed = all(d <= tolerance["max"] for d in drops.values())
    passed = passed and result.get("structure", {}).get("passed", True)
    result.update(max_abs_err=max_err, psnr_vs_reference_db=psnr_ref, eval=scores, reference_eval=ref.eval,
                  passed=bool(passed))
    return result


def failure_message(result: dict) -> str:
    """One line naming the artifact and the numbers that put it beyond tolerance."""
    tol, parts = result["tolerance"], []
    if result["max_abs_err"] is not None and tol["metric"] == "max_abs_err" and result["max_abs_err"] > tol["max"]:
        parts.append(f"max abs error {result['max_abs_err']:.3g} > {tol['max']:g}")
    for name, drop in (tol.get("drop_db") or {}).items():
        if drop > tol["max"]:
            parts.append(f"PSNR {result['eval'][name]['psnr_y']:.3f} dB on {name} is {drop:.3f} dB below the "
                         f"reference's {result['reference_eval'][name]['psnr_y']:.3f} dB (> {tol['max']:g} dB)")
    parts += result.get("structure", {}).get("problems", [])
    return f"{result['artifact']} ({result['precision']}): beyond tolerance: {'; '.join(parts) or 'not validated'}"
