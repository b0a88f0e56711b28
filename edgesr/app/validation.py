"""Validate an exported artifact against its float PyTorch reference, on whole real images.

Both run through the one evaluation path (:mod:`edgesr.core.evaluate`: ``model_input`` ->
Upscaler -> 8-bit output -> PSNR/SSIM on BT.601 Y with the scale as border crop). Per
artifact::

    {"artifact", "format", "precision",
     "max_abs_err": float,              # max |clip(artifact) - clip(reference)| of the float
                                        # outputs in [0, 1], over every pixel of every image
     "psnr_vs_reference_db": float,     # PSNR of the float outputs (x255, border crop s),
                                        # pooled over all images; null if bit-identical
     "p999_abs_err": float,             # 99.9th percentile of |clip(artifact) - clip(reference)|
     "eval": {SET: {"psnr_y", "ssim_y"}},            # artifact vs HR
     "reference_eval": {SET: {"psnr_y", "ssim_y"}},  # float reference vs HR
     "source_reference_eval": {SET: {...}},          # the source vs HR (only when it is not the reference)
     "independent_error_cost_db": float | null,      # dB an error of this size, independent of the
                                        # source's own, would cost vs the source on its best-scored set
     "passed": bool, "tolerance": {...}, "failed_checks": [str], "skipped": reason | null,
     "structure": {...} (Core ML only),
     "xnnpack": {"partitions", "delegated_ops", "ops_outside", ...} (.tflite only: what LiteRT's
                default XNNPACK delegate takes, :func:`edgesr.converters.partitions.xnnpack_partitions`)}

Tolerances: :mod:`edgesr.app.tolerances`, the one policy, two-sided: the PSNR drop vs HR
against the float reference (fp16 0.05 dB; int8, Core ML w8 / w8a8 ``int8_tolerance_db``,
default 0.15 dB), and the error against the artifact's own float reference (``source_reference``:
the module it was exported from, e.g. a quantized checkpoint's): fp32 max abs error <= 1e-4;
otherwise the 99.9th-percentile absolute error (``p999_abs_err``) and the PSNR vs the source
(at least what an error independent of the source's own would need to stay within ``max_drop_db``
of the float reference vs HR, :func:`edgesr.app.tolerances.min_psnr_vs_reference_db`). ``tolerance`` in the
result holds the bounds and ``failed_checks`` names the ones missed.
Core ML on Linux (no MIL interpreter): numbers null, ``skipped`` says why, ``passed``
reflects the structural checks (:func:`edgesr.converters.coreml.check_structure`).

Emulation matrix (issue 6, :func:`emulation_matrix`): what each phone engine would output for
the artifact, every engine scored through the same path on the same images::

    {"cpu_reference" | "xnnpack" | "gpu_fp16" | "npu_int8":
        {"psnr_y", "ssim_y",            # vs HR, mean over the images (BT.601 Y, border s)
         "psnr_vs_reference_db",        # as above: pooled PSNR vs the float reference; null if identical
         "max_abs_err",                 # as above: max |engine - reference| in [0, 1]
         "max_abs_err_vs_xnnpack",      # .tflite: max |engine - xnnpack row| of the raw outputs (what a
                                        # golden vector made by LiteRT's default CPU path is compared with)
         "arithmetic"}                  # what ran: the engine, its arithmetic and the source it follows
      | {"skipped": reason}}

``edgesr validate --emulation`` adds it as ``"emulation"`` (with ``"emulation_images"``: the
crop size and image names); ``edgesr run`` records it for every network artifact on
:data:`EMULATION_CROP`-pixel crops of its evaluation photographs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgesr.app.artifacts import LUT_SUFFIXES, NETWORK_SUFFIXES, open_artifact
from edgesr.app.tolerances import INT8_MAX_DROP_DB, POLICY, min_psnr_vs_reference_db
from edgesr.app.tolerances import tolerance as policy_tolerance
from edgesr.converters.coreml import check_structure
from edgesr.converters.gpu_emulation import GpuDelegateUpscaler
from edgesr.converters.mil_interpreter import MILUpscaler
from edgesr.converters.partitions import xnnpack_partitions
from edgesr.converters.runtime import (
    LiteRTModel,
    ONNXUpscaler,
    RuntimeUnavailable,
    TFLiteUpscaler,
)
from edgesr.core.contract import MissingMetadata, contract_of, read_artifact_metadata
from edgesr.core.data import eval_pairs
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import TorchUpscaler, evaluate
from edgesr.quantization.integer_ref import IntegerReference

FP32_MAX_ABS_ERR = POLICY["fp32"].max_abs_err
FP16_MAX_DROP_DB = POLICY["fp16"].max_drop_db


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
    module: object = None                          # the float module that produced them
    memo: dict = field(default_factory=dict)       # results that depend only on (module, sets)


def _run_sets(upscaler, sets: dict, progress: bool):
    """Score ``upscaler`` on every set; returns ({set: [raw outputs]}, {set: {psnr_y, ssim_y}})."""

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
    return ReferenceRun(sets, outputs, scores, ref.contract.scale, reference_module)


def _tolerance(precision: str, int8_tolerance_db: float) -> dict:
    """The policy's bounds for ``precision`` as a dict (``metric``/``max``: the primary bound)."""
    t = policy_tolerance(precision, int8_tolerance_db)
    metric = "max_abs_err" if t.max_abs_err is not None else "psnr_drop_db"
    return {"metric": metric, "max": t.max_abs_err if metric == "max_abs_err" else t.max_drop_db, **t.to_dict()}


def _compare(art_outputs: dict, ref: ReferenceRun) -> tuple[float, float | None, float]:
    """Max abs error, pooled PSNR (dB) and 99.9th-percentile abs error of artifact vs reference
    float outputs in [0, 1]."""
    s, max_err, sq, count, diffs = ref.scale, 0.0, 0.0, 0, []
    for name, outs in art_outputs.items():
        for a, r in zip(outs, ref.outputs[name], strict=True):
            if a.shape != r.shape:
                raise EdgesrError(f"artifact output {a.shape} differs from the reference's {r.shape} on set {name}")
            d = np.clip(a.astype(np.float64), 0, 1) - np.clip(r.astype(np.float64), 0, 1)
            max_err = max(max_err, float(np.abs(d).max()))
            diffs.append(np.abs(d).astype(np.float32).ravel())
            crop = d[..., s:-s, s:-s] * 255.0 if s > 0 else d * 255.0
            sq, count = sq + float(np.sum(crop * crop)), count + crop.size
    mse = sq / max(count, 1)
    p999 = float(np.percentile(np.concatenate(diffs), 99.9)) if diffs else 0.0
    return max_err, (None if mse == 0 else 10.0 * math.log10(255.0**2 / mse)), p999


def _checks(tol: dict, max_err: float, psnr_ref: float | None, p999: float, drops: dict, ref_eval: dict,
            source_eval: dict | None = None) -> list[str]:
    """Names of the policy checks the numbers miss (empty: within tolerance); fills ``tol``'s
    ``drop_db`` and ``min_psnr_vs_reference_db`` (the strictest set's bound; ``source_eval``: the
    source's scores when it is not the float reference)."""
    failed = []
    if tol["max_abs_err"] is not None and max_err > tol["max_abs_err"]:
        failed.append("max_abs_err")
    if tol["max_drop_db"] is not None:
        tol["drop_db"] = drops
        if any(d > tol["max_drop_db"] for d in drops.values()):
            failed.append("psnr_drop_db")
    if tol["max_p999_abs_err"] is not None and p999 > tol["max_p999_abs_err"]:
        failed.append("p999_abs_err")
    if tol["psnr_margin"] and tol["max_drop_db"] and tol["max_drop_db"] > 0 and ref_eval:
        need = max(min_psnr_vs_reference_db(tol["max_drop_db"], e["psnr_y"],
                                            None if source_eval is None else source_eval[name]["psnr_y"])
                   for name, e in ref_eval.items())
        tol["min_psnr_vs_reference_db"] = need if math.isfinite(need) else None  # None: no error allowed
        if not math.isfinite(need) or (psnr_ref is not None and psnr_ref < need):
            failed.append("psnr_vs_reference_db")
    return failed


def validate_artifact(path_or_upscaler, reference_module, sets: dict, precision: str | None = None,
                      int8_tolerance_db: float = INT8_MAX_DROP_DB, progress: bool = False,
                      source_reference=None, **options) -> dict:
    """Validate one artifact (module doc for the result and tolerances).

    Args:
        path_or_upscaler: an artifact path (``.tflite``, ``.onnx``, ``.mlpackage``, opened by
            :func:`edgesr.app.artifacts.open_artifact` with ``options``) or an Upscaler.
        reference_module: the float deploy ``nn.Module``, or a :class:`ReferenceRun` from
            :func:`reference_run` (reuse it across the artifacts of one model).
        sets: ``{set name: [(image name, uint8 HR image)]}`` (:func:`edgesr.core.data.resolve_eval_sets`).
        precision: fp32 | fp16 | int8 | w8a16 | w8 | w8a8; default: the artifact's metadata.
        int8_tolerance_db: allowed PSNR drop (dB) vs the reference for int8 / w8 / w8a8.
        source_reference: the float module the artifact was exported from (or its
            :class:`ReferenceRun` on ``sets``) when it is not ``reference_module`` (an int8
            artifact of a quantized checkpoint: its fine-tuned module); the errors against the
            reference (max abs, 99.9th percentile, PSNR) are measured against it. Default:
            ``reference_module``.

    Raises:
        EdgesrError: unreadable artifact, unknown precision, scale/contract mismatch.
    """

    is_path = isinstance(path_or_upscaler, (str, os.PathLike))
    is_lut = is_path and Path(path_or_upscaler).suffix.lower() in LUT_SUFFIXES
    network = is_path and Path(path_or_upscaler).suffix.lower() in NETWORK_SUFFIXES
    if is_lut:  # a LUT bundle carries its contract inside; its tables are int8
        meta = {"provenance": {"artifact_format": "lut", "precision": "int8"}}
    else:  # converters artifacts: their embedded metadata; bare Upscalers: none
        meta = read_artifact_metadata(path_or_upscaler) if network else {}
    prov = meta.get("provenance", {})
    precision = precision or prov.get("precision")
    if precision is None:
        raise EdgesrError(f"{path_or_upscaler}: give the precision (fp32, fp16, int8, w8a16, w8, w8a8); it has no edgesr artifact metadata")
    tolerance = _tolerance(precision, int8_tolerance_db)
    result = {"artifact": str(path_or_upscaler) if is_path else type(path_or_upscaler).__name__,
              "format": prov.get("artifact_format"), "precision": precision, "max_abs_err": None,
              "psnr_vs_reference_db": None, "p999_abs_err": None, "independent_error_cost_db": None,
              "eval": None, "reference_eval": None,
              "passed": False, "tolerance": tolerance, "failed_checks": [], "skipped": None}
    if is_path and Path(path_or_upscaler).suffix.lower() == ".mlpackage":
        result["structure"] = check_structure(path_or_upscaler, precision, meta["contract"]["channels"],
                                              meta["contract"].get("input_sizes"))
    if is_path and Path(path_or_upscaler).suffix.lower() == ".tflite":
        result["xnnpack"] = xnnpack_partitions(path_or_upscaler)
    try:
        upscaler = open_artifact(path_or_upscaler, **options) if is_path else path_or_upscaler
    except RuntimeUnavailable as exc:
        result["skipped"] = str(exc)
        result["passed"] = bool(result.get("structure", {}).get("passed", False))
        return result
    ref = reference_module if isinstance(reference_module, ReferenceRun) else reference_run(reference_module, sets, progress)
    if ref.scale != upscaler.contract.scale:
        raise EdgesrError(f"{result['artifact']}: scale x{upscaler.contract.scale} but the reference is x{ref.scale}")
    own = ref
    if source_reference is not None:
        own = source_reference if isinstance(source_reference, ReferenceRun) else reference_run(source_reference, ref.sets, progress)
        if set(own.sets) != set(ref.sets):
            raise EdgesrError(f"{result['artifact']}: the source reference ran on other sets than the reference")
    outputs, scores = _run_sets(upscaler, ref.sets, progress)
    max_err, psnr_ref, p999 = _compare(outputs, own)
    drops = {name: ref.eval[name]["psnr_y"] - scores[name]["psnr_y"] for name in scores}
    failed = _checks(tolerance, max_err, psnr_ref, p999, drops, ref.eval, None if own is ref else own.eval)
    if not result.get("structure", {}).get("passed", True):
        failed.append("structure")
    result.update(max_abs_err=max_err, psnr_vs_reference_db=psnr_ref, p999_abs_err=p999, eval=scores,
                  reference_eval=ref.eval, failed_checks=failed, passed=not failed)
    if own is not ref:
        result["source_reference_eval"] = own.eval
    best = max(e["psnr_y"] for e in own.eval.values())
    result["independent_error_cost_db"] = None if psnr_ref is None else 10.0 * math.log10(1.0 + 10.0 ** ((best - psnr_ref) / 10.0))
    return result


def failure_message(result: dict) -> str:
    """One line naming the artifact and the numbers that put it beyond tolerance."""
    tol, parts, failed = result["tolerance"], [], set(result.get("failed_checks") or [])
    if "max_abs_err" in failed:
        parts.append(f"max abs error {result['max_abs_err']:.3g} > {tol['max_abs_err']:g}")
    for name, drop in (tol.get("drop_db") or {}).items():
        if drop > tol["max_drop_db"]:
            parts.append(f"PSNR {result['eval'][name]['psnr_y']:.3f} dB on {name} is {drop:.3f} dB below the "
                         f"reference's {result['reference_eval'][name]['psnr_y']:.3f} dB (> {tol['max_drop_db']:g} dB)")
    if "p999_abs_err" in failed:
        parts.append(f"99.9th-percentile error vs its float reference {result['p999_abs_err'] * 255:.2f} 8-bit levels "
                     f"> {tol['max_p999_abs_err'] * 255:.2f}")
    if "psnr_vs_reference_db" in failed and tol.get("min_psnr_vs_reference_db") is None:
        parts.append(f"its source scores more than {tol['max_drop_db']:g} dB below the float reference, "
                     "so no error against the source is within tolerance")
    elif "psnr_vs_reference_db" in failed:
        parts.append(f"PSNR vs its float reference {result['psnr_vs_reference_db']:.2f} dB < "
                     f"{tol['min_psnr_vs_reference_db']:.2f} dB")
    parts += result.get("structure", {}).get("problems", [])
    return f"{result['artifact']} ({result['precision']}): beyond tolerance: {'; '.join(parts) or 'not validated'}"


# --------------------------------------------------------------------------- emulation matrix

EMULATION_ENGINES = ("cpu_reference", "xnnpack", "gpu_fp16", "npu_int8")
EMULATION_CROP = 128
"""HR side (pixels) of the centre crops ``edgesr run`` computes the emulation matrix on."""
FLOAT_NO_INT8 = "float artifact: no int8 graph"

ARITHMETIC = {
    "tflite_cpu_reference": "LiteRT BUILTIN_REF kernels on the artifact, 1 thread",
    "tflite_xnnpack": "LiteRT default interpreter (XNNPACK delegate) on the artifact, 1 thread",
    "tflite_gpu_fp16": ("the artifact's graph as the TFLite GPU delegate runs it with precision loss allowed "
                        "(Android's default): CalculationsPrecision F16, half storage and half accumulation; an int8 "
                        "graph dequantized with QUANTIZE_AND_DEQUANTIZE after every quantized output "
                        "(edgesr.converters.gpu_emulation)"),
    "tflite_npu_int8": ("the artifact's int8 graph in integer arithmetic with single-rounding requantization "
                        "(TFLITE_SINGLE_ROUNDING, kernels/internal/common.h; CMSIS-NN's arm_nn_requantize under "
                        "CMSIS_NN_USE_SINGLE_ROUNDING): edgesr.quantization.integer_ref, rounding='single'"),
    "module_fp16": ("the float reference module with weights, input and every layer output rounded to fp16 "
                    "(Fp16Module), not the artifact's graph: edgesr has no {fmt} graph interpreter"),
}
"""What each emulation row ran (its ``arithmetic`` field), per format and engine."""


def _round_fp16(module, inputs, output):
    import torch

    if isinstance(output, torch.Tensor) and output.is_floating_point():
        return output.half().float()
    return output


class Fp16Module:
    """GPU-style fp16 arithmetic of a float deploy module, as an Upscaler.

    A copy of ``module`` with its floating-point weights and buffers rounded to fp16; the
    input, the output of every leaf module and the final output are rounded to fp16 (what the
    GPU delegate stores). Arithmetic inside one op stays fp32: a GPU's own accumulation order
    (and fp16 accumulation on some GPUs) is not emulated. ``__call__``: float32 (N, C, h, w)
    -> float32 (N, C, s*h, s*w) holding fp16 values.
    """

    def __init__(self, module):
        import copy

        import torch

        self.module = copy.deepcopy(module).float().eval()
        self.contract = module.contract
        with torch.no_grad():
            for t in [*self.module.parameters(), *self.module.buffers()]:
                if t.is_floating_point():
                    t.copy_(t.half().float())
        for m in self.module.modules():
            if not list(m.children()):
                m.register_forward_hook(_round_fp16)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).half().float())
        return out.half().float().numpy()


def _as_images(images) -> list:
    """``[(name, HR)]`` from a list of pairs or from ``{set: [(name, HR)]}`` (names ``SET/NAME``)."""
    if isinstance(images, dict):
        return [(f"{s}/{n}", img) for s, items in images.items() for n, img in items]
    return list(images)


def emulation_images(sets, crop: int | None = EMULATION_CROP) -> list:
    """The photographs an emulation matrix runs on: every image of ``sets`` (``{set: [(name,
    uint8 HR)]}``, named ``SET/NAME``; or a list of pairs), centre-cropped to at most
    ``crop`` x ``crop`` HR pixels; ``crop`` None or 0: whole images.

    Raises:
        EdgesrError: a negative crop, or no images.
    """
    if crop is not None and crop < 0:
        raise EdgesrError(f"emulation crop must be >= 0 pixels, got {crop}")
    out = []
    for name, img in _as_images(sets):
        if crop:
            h, w = min(crop, img.shape[0]), min(crop, img.shape[1])
            y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
            img = np.ascontiguousarray(img[y : y + h, x : x + w])
        out.append((name, img))
    if not out:
        raise EdgesrError("no images for the emulation matrix")
    return out


W8A16_NO_GPU = ("w8a16 (int16 activations): not emulated; converters.gpu_emulation models the GPU delegate's "
                "int8 QUANTIZE_AND_DEQUANTIZE path only")


def _emulation_engines(path: Path, precision: str, contract, module) -> dict:
    """``{engine: () -> Upscaler, or the reason (str) it is skipped}`` for the artifact (see
    :func:`emulation_matrix` for what each engine is, per format)."""
    suffix = path.suffix.lower()
    is_float = precision in ("fp32", "fp16")

    def fp16():
        return Fp16Module(module)

    if suffix == ".tflite":
        def npu():
            if precision not in ("int8", "w8a16"):  # w8a16: the 16x8 integer reference (int16 activations)
                return FLOAT_NO_INT8

            return IntegerReference(path, kernels="reference", contract=contract, rounding="single")

        return {"cpu_reference": lambda: TFLiteUpscaler(path, contract, num_threads=1, kernels="reference"),
                "xnnpack": lambda: TFLiteUpscaler(path, contract, num_threads=1, kernels="xnnpack"),
                "gpu_fp16": lambda: (W8A16_NO_GPU if precision == "w8a16" else GpuDelegateUpscaler(path, "fp16", contract)),
                "npu_int8": npu}
    if suffix == ".onnx":
        def xnnpack():
            import onnxruntime as ort

            if "XnnpackExecutionProvider" not in ort.get_available_providers():
                return ("ONNX Runtime here has no XnnpackExecutionProvider (the pip build is CPU-only); "
                        "cpu_reference is its CPU execution provider")
            up = ONNXUpscaler(path, contract, num_threads=1)
            up.session = ort.InferenceSession(str(path), providers=["XnnpackExecutionProvider", "CPUExecutionProvider"])
            return up

        return {"cpu_reference": lambda: ONNXUpscaler(path, contract, num_threads=1), "xnnpack": xnnpack,
                "gpu_fp16": fp16,
                "npu_int8": lambda: FLOAT_NO_INT8 if is_float else "ONNX: no integer reference for ONNX Runtime's int8 kernels"}

    if suffix == ".pte":
        return {"cpu_reference": lambda: ("ExecuTorch program lowered to XNNPACK: its ops run in the delegate "
                                          "(the xnnpack row); the portable kernels run only what is left outside"),
                "xnnpack": lambda: open_artifact(path),
                "gpu_fp16": fp16,
                "npu_int8": lambda: FLOAT_NO_INT8 if is_float else
                ("ExecuTorch int8: no integer reference for XNNPACK's int8 kernels; the xnnpack row is the program itself")}

    def mil(prec):
        return MILUpscaler(path, prec, contract)

    npu = {"w8": "w8 Core ML: int8 weights only; the Neural Engine computes in fp16 (the gpu_fp16 row)",
           "w8a8": ("w8a8 Core ML: no integer reference for the Neural Engine's int8 arithmetic; the gpu_fp16 "
                    "row runs the program's quantize/dequantize ops in fp16")}.get(precision, FLOAT_NO_INT8)
    gpu = ("fp32-typed Core ML program: Core ML runs it in fp32 (GPU and CPU; the cpu_reference row); "
           "an fp16 export is what runs in fp16") if precision == "fp32" else None
    return {"cpu_reference": lambda: mil("fp32"),
            "xnnpack": lambda: "Core ML has no XNNPACK engine (TFLite's CPU delegate); its CPU is the cpu_reference row",
            "gpu_fp16": lambda: gpu or mil("fp16"), "npu_int8": lambda: npu}


def _tflite_precision(path: Path) -> str:
    """int8 (integer input), w8a16 (int16 activations), fp16 (fp16 tensors) or fp32, read from a
    ``.tflite``'s tensors.

    Raises:
        EdgesrError: not a readable TFLite model.
    """

    model = LiteRTModel(path, "xnnpack", 1)
    if model.input_details()["dtype"] in (np.int8, np.uint8):
        return "int8"
    if any(t["dtype"] == np.int16 for t in model.interpreter.get_tensor_details()):
        return "w8a16"
    return "fp16" if any(t["dtype"] == np.float16 for t in model.interpreter.get_tensor_details()) else "fp32"


def _arithmetic(suffix: str, engine: str, upscaler) -> str:
    """The ``arithmetic`` field of a row (:data:`ARITHMETIC`; MIL and ExecuTorch rows name their runner)."""
    if isinstance(upscaler, Fp16Module):
        return ARITHMETIC["module_fp16"].format(fmt={".onnx": "ONNX", ".pte": "ExecuTorch"}.get(suffix, suffix))
    if suffix == ".tflite":
        return ARITHMETIC[f"tflite_{engine}"]
    if isinstance(upscaler, MILUpscaler):
        return f"edgesr's MIL interpreter on the Core ML program, {upscaler.precision} activations"
    return f"{type(upscaler).__name__} on the artifact"


def _max_abs_diff(a: dict, b: dict) -> float:
    """Max |a - b| over the raw outputs of two engines ({set: [arrays]}) on the same images."""
    return max(float(np.abs(x.astype(np.float64) - y).max()) for k in a for x, y in zip(a[k], b[k], strict=True))


def _emulation_row(upscaler, ref: ReferenceRun, progress: bool, outputs_out: dict | None = None) -> dict:
    """One engine's row on ``ref``'s images: scores vs HR (mean over every image of every set)
    and vs the reference's outputs; ``outputs_out`` (if given) receives the raw outputs."""
    outputs, scores = _run_sets(upscaler, ref.sets, progress)
    if outputs_out is not None:
        outputs_out.update(outputs)
    max_err, psnr_ref, _ = _compare(outputs, ref)
    if len(scores) == 1:
        (s,) = scores.values()
        psnr_y, ssim_y = s["psnr_y"], s["ssim_y"]
    else:  # per-set means -> the mean over all images
        n = {k: len(v) for k, v in ref.sets.items()}
        psnr_y = sum(scores[k]["psnr_y"] * n[k] for k in n) / sum(n.values())
        ssim_y = sum(scores[k]["ssim_y"] * n[k] for k in n) / sum(n.values())
    return {"psnr_y": psnr_y, "ssim_y": ssim_y, "psnr_vs_reference_db": psnr_ref, "max_abs_err": max_err}


def emulation_matrix(artifact, reference, images=None, precision: str | None = None, progress: bool = False) -> dict:
    """What each phone engine would output for ``artifact``: ``{engine: row}`` (module doc).

    Engines, per format (every one scored by :mod:`edgesr.core.evaluate` on the same images and
    compared with the float reference's outputs as :func:`validate_artifact` does):

    * ``.tflite`` (fp32, fp16, int8; int8 artifacts: every engine gets the same int8 input,
      quantized as TFLite's QUANTIZE does): ``cpu_reference`` LiteRT's reference kernels
      (``BUILTIN_REF``) and ``xnnpack`` the default interpreter (XNNPACK delegate), both on
      the artifact, one thread; ``gpu_fp16`` the artifact's own graph as the TFLite GPU
      delegate runs it with precision loss allowed, Android's default
      (:class:`edgesr.converters.gpu_emulation.GpuDelegateUpscaler`, precision ``"fp16"``: the
      delegate's F16, half storage and half accumulation; an int8 graph runs dequantized, with the
      delegate's QUANTIZE_AND_DEQUANTIZE after every quantized output; the sources are in that
      module's docstring); ``npu_int8`` the artifact's int8 graph in the integer arithmetic of an
      accelerator that requantizes with one rounding, half up (``TFLITE_SINGLE_ROUNDING``,
      ``tensorflow/lite/kernels/internal/common.h`` ``MultiplyByQuantizedMultiplier``; CMSIS-NN's
      ``arm_nn_requantize`` under ``CMSIS_NN_USE_SINGLE_ROUNDING``), where LiteRT's reference
      kernels round twice (gemmlowp): :class:`edgesr.quantization.integer_ref.IntegerReference`
      with ``rounding="single"``; it differs from ``cpu_reference`` by a few LSBs (tested on
      SESR); skipped for float artifacts (``"float artifact: no int8 graph"``) and where the
      integer reference lacks a kernel. Every row also has ``max_abs_err_vs_xnnpack``: what the
      engine's raw output differs from the ``xnnpack`` row's (the golden vectors' runtime;
      :func:`edgesr.app.tolerances.device_tolerances` derives the on-device tolerances from it).
    * ``.onnx`` (fp32): ``cpu_reference`` ONNX Runtime's CPU execution provider on the
      artifact; ``xnnpack`` its XNNPACK execution provider where this ONNX Runtime has one
      (the pip build has not: skipped); ``gpu_fp16`` the float reference module at fp16
      (:class:`Fp16Module`; its ``arithmetic`` says so: edgesr has no ONNX graph interpreter to
      run the artifact's graph in fp16); ``npu_int8`` skipped.
    * ``.mlpackage``: edgesr's MIL interpreter on the artifact (:mod:`edgesr.converters.mil_interpreter`,
      on every platform, so the numbers do not depend on the Mac): ``cpu_reference`` with
      fp32 activations (Core ML's fp32 CPU path on the stored weights), ``gpu_fp16`` with
      every fp16-typed value rounded to fp16 (GPU / Neural Engine storage; skipped for an
      fp32-typed program, which Core ML runs in fp32); ``xnnpack`` and ``npu_int8`` skipped
      with the reason (no XNNPACK in Core ML; no integer reference of the Neural Engine).
    * ``.pte`` (ExecuTorch, lowered to XNNPACK): ``xnnpack`` the program on the ExecuTorch
      runtime; ``gpu_fp16`` the float module at fp16 as for ONNX (no ExecuTorch graph
      interpreter here); ``cpu_reference`` and ``npu_int8`` skipped with the reason (the
      delegate runs the ops; no integer reference of XNNPACK's int8 kernels).

    A row is ``{"psnr_y", "ssim_y", "psnr_vs_reference_db", "max_abs_err", "arithmetic"}`` (plus
    ``"max_abs_err_vs_xnnpack"`` for ``.tflite``; null when the xnnpack row is skipped) or
    ``{"skipped": reason}`` (also when the engine cannot run the graph: its first error line).

    Args:
        artifact: a ``.tflite``, ``.onnx`` or ``.mlpackage`` path with edgesr metadata (a
            ``.tflite`` without edgesr metadata gets the reference's contract and the precision
            its tensors show: int8 input -> int8, fp16 tensors -> fp16, else fp32).
        reference: the float deploy ``nn.Module`` (with ``.contract``) the artifact came from,
            or a :class:`ReferenceRun` of it from :func:`reference_run` on the images (reuse
            one across the artifacts of a model: the reference and the ``gpu_fp16`` row of
            the float module (ONNX, ExecuTorch) are then computed once).
        images: with a module: HR photographs ``[(name, uint8 image)]`` or ``{set: [(name,
            image)]}`` (:func:`emulation_images` crops them); with a ReferenceRun: None (its
            sets are the images). Scores are means over all of them.
        precision: fp32 | fp16 | int8 | w8 | w8a8; default: the artifact's metadata.

    Raises:
        EdgesrError: a missing, unreadable or LUT artifact, no precision, a scale that is
            not the reference's, no images (or images and a ReferenceRun both).
    """

    if isinstance(reference, ReferenceRun):
        if images is not None:
            raise EdgesrError("give the emulation images or a ReferenceRun made on them, not both")
        if reference.module is None:
            raise EdgesrError("this ReferenceRun has no module (make it with reference_run)")
        ref, module = reference, reference.module
    else:
        ref, module = None, reference
    path = Path(artifact)
    if not path.exists():
        raise EdgesrError(f"{path}: no such artifact")
    if path.suffix.lower() not in NETWORK_SUFFIXES:
        raise EdgesrError(f"{path}: the emulation matrix is for {', '.join(NETWORK_SUFFIXES)} artifacts")
    try:
        meta = read_artifact_metadata(path)
    except MissingMetadata:
        if path.suffix.lower() != ".tflite":
            raise
        meta = None  # a bare .tflite (no edgesr metadata)
    if meta is None:
        contract, precision = module.contract, precision or _tflite_precision(path)
    else:
        contract = contract_of(meta, str(path))
        precision = precision or meta.get("provenance", {}).get("precision")
    if precision is None:
        raise EdgesrError(f"{path}: give the precision (fp32, fp16, int8, w8, w8a8); it has no edgesr artifact metadata")
    if contract.scale != module.contract.scale:
        raise EdgesrError(f"{path}: scale x{contract.scale} but the reference is x{module.contract.scale}")
    if ref is None:
        imgs = _as_images(images if images is not None else [])
        if not imgs:
            raise EdgesrError("no images for the emulation matrix")
        ref = reference_run(module, {"emulation": imgs}, progress)
    out, raw, suffix = {}, {}, path.suffix.lower()
    for name, make in _emulation_engines(path, precision, contract, module).items():
        try:
            up = make()
            if isinstance(up, str):
                out[name] = {"skipped": up}
            elif isinstance(up, Fp16Module):  # depends only on the module and the images
                if "fp16_module_row" not in ref.memo:
                    ref.memo["fp16_module_row"] = _emulation_row(up, ref, progress)
                out[name] = dict(ref.memo["fp16_module_row"])
            else:
                raw[name] = {}
                out[name] = _emulation_row(up, ref, progress, raw[name])
            if not isinstance(up, str):
                out[name]["arithmetic"] = _arithmetic(suffix, name, up)
        except (EdgesrError, ValueError, RuntimeError, ImportError) as exc:  # the engine cannot run this graph
            raw.pop(name, None)
            out[name] = {"skipped": ((str(exc).splitlines() or [type(exc).__name__])[0])[:200]}
    if suffix == ".tflite":
        for name, row in out.items():
            if "skipped" not in row:
                row["max_abs_err_vs_xnnpack"] = _max_abs_diff(raw[name], raw["xnnpack"]) if "xnnpack" in raw else None
    return out
