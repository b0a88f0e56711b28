"""Golden input/output vectors for on-device tests (Android instrumented tests, C/C++ harnesses).

``write_golden(artifact, images, out)`` runs the artifact on real photographs and writes, per
image, the model's raw input and output tensors as little-endian ``.bin`` files plus one
``manifest.json``::

    {"format": "edgesr-golden", "version": 1,
     "artifact": file name, "artifact_sha256", "runtime", "contract": IOContract,
     "layout": "NHWC" (TFLite) | "NCHW" (ONNX, Core ML) | "PHW" (LUT: image planes, uint8),
         (for networks the tensors' layout is the contract's own ``layout``: one layout),
     "tolerance": {"kind": "exact"} | {"kind": "max_abs", "value": float, "why": str},
     "device_tolerance": {"gpu" | "npu": {"max_abs", "measured_max_abs", "margin", "why", "source"}},
     "pairs": [{"name", "input": TENSOR, "output": TENSOR}]}
    TENSOR = {"file", "dtype": "int8"|"uint8"|"float32", "shape", "sha256",
              "quantization": {"scale", "zero_point"} | null}

Contracts: int8 TFLite and LUT paths are integer end to end, so the phone must reproduce the
output bytes exactly (``exact``; for int8 TFLite this holds for the CPU/XNNPACK path, which
the integer reference reproduces bit for bit; NNAPI/GPU use other arithmetic). Float paths
get a stated ``max_abs`` tolerance (fp32: 1e-4; fp16: 4e-3, i.e. about one 8-bit level).

``device_tolerance`` (``.tflite`` only): the bound for the same pairs run on the phone's GPU
delegate and on an integer NPU, derived by :func:`edgesr.app.tolerances.device_tolerances` from
what their emulations measured against these golden outputs: the GPU delegate's arithmetic
(:mod:`edgesr.converters.gpu_emulation`, fp16) and single-rounding integer arithmetic (int8
models) run on the golden inputs themselves, and, when the caller passes them (``emulation=``,
e.g. a run's emulation matrix), the rows' ``max_abs_err_vs_xnnpack`` on the evaluation
photographs; the larger of the two, plus the stated margin (at least one output step for
integer outputs). ``source`` says which measurements it came from.
Every file is written atomically and the manifest last, so a folder with a manifest is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from edgesr.app.artifacts import open_artifact
from edgesr.app.tolerances import GOLDEN_MAX_ABS, device_tolerances
from edgesr.converters.gpu_emulation import GpuDelegateUpscaler
from edgesr.core.atomic import write_bytes_atomic, write_text_atomic
from edgesr.core.contract import MissingMetadata, read_artifact_metadata
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import model_input
from edgesr.quantization.arithmetic import dequantize
from edgesr.quantization.integer_ref import IntegerReference, quantize_input, read_model

FORMAT = "edgesr-golden"
FLOAT_TOLERANCE = GOLDEN_MAX_ABS  # the policy's golden bounds (edgesr.app.tolerances)


def sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _center_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    y, x = max((h - size) // 2, 0), max((w - size) // 2, 0)
    return np.ascontiguousarray(img[y : y + min(size, h), x : x + min(size, w)])


def _precision(path: Path) -> str:
    """``int8`` | ``fp16`` | ``fp32`` | ``lut`` from the artifact's embedded metadata, else from
    the tensors (a bare ``.tflite``)."""
    if path.suffix == ".lut":
        return "lut"
    try:
        prec = read_artifact_metadata(path).get("provenance", {}).get("precision")
    except MissingMetadata:
        prec = None
    if prec is not None:
        if prec in ("int8", "w8a8"):
            return "int8"
        if prec in ("fp16", "fp32", "w8", "w8a16"):  # w8a16: float I/O, a float-tolerance vector
            return "fp16" if prec == "fp16" else "fp32"
    if path.suffix == ".tflite":
        tensors, ops, _, _ = read_model(path)
        if any(t.dtype is np.int8 and t.data is None for t in tensors):
            return "int8"
        return "fp16" if any(t.dtype is np.float16 for t in tensors) else "fp32"
    return "fp32"


class _Runner:
    """Raw-tensor runner for one artifact opened with :func:`edgesr.app.artifacts.open_artifact`:
    ``run(img) -> (input array, output array, qin, qout)``; ``raw(x)`` runs a stored input."""

    def __init__(self, path: Path, kernels: str = "xnnpack"):
        self.path, self.kernels = path, kernels
        self.precision = _precision(path)
        self.upscaler = open_artifact(path, kernels=kernels, num_threads=1, engine="c")
        self.contract = self.upscaler.contract
        if path.suffix == ".tflite":
            import ai_edge_litert

            tensors, _, inputs, outputs = read_model(path)
            self.tin, self.tout = tensors[inputs[0]], tensors[outputs[0]]
            self.layout = "NHWC"
            self.runtime = f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')} ({kernels} kernels)"
        else:
            self.layout = "PHW" if self.precision == "lut" else "NCHW"
            self.runtime = type(self.upscaler).__module__ + "." + type(self.upscaler).__name__

    def run(self, img: np.ndarray):
        x = model_input(img, self.contract)
        if self.path.suffix == ".tflite":
            q = quantize_input(x.transpose(0, 2, 3, 1), self.tin)
            out = self.upscaler.run_quantized(q)
            qp = lambda t: {"scale": t.s, "zero_point": t.z} if t.dtype in (np.int8, np.uint8) else None  # noqa: E731
            return q, out, qp(self.tin), qp(self.tout)
        y = np.asarray(self.upscaler(x), np.float32)
        if self.precision == "lut":  # integer path: uint8 planes (P, h, w) in, uint8 planes (P, s*h, s*w) out
            return (np.round(x[:, 0] * 255).astype(np.uint8), np.round(np.clip(y[:, 0], 0, 1) * 255).astype(np.uint8), None, None)
        return x.astype(np.float32), y, None, None

    def tolerance(self) -> dict:
        if self.precision in ("int8", "lut"):
            return {"kind": "exact", "why": "integer arithmetic end to end"}
        tol = FLOAT_TOLERANCE[self.precision]
        return {"kind": "max_abs", "value": tol, "why": f"{self.precision} arithmetic differs across CPUs/GPUs"}


def _output_step(runner: _Runner) -> float | None:
    """The output quantization step of an integer-output ``.tflite`` (its scale), else None."""
    t = getattr(runner, "tout", None)
    return t.s if t is not None and t.dtype in (np.int8, np.uint8) else None


def _engines_on_pairs(runner: _Runner, stored: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """``{row name: {"max_abs_err_vs_xnnpack": float}}``: the GPU delegate emulation (fp16) and,
    for int8 models, the single-rounding integer arithmetic run on the golden inputs, compared
    with the golden outputs on [0, 1] (int8 outputs dequantized). An engine that cannot run the
    graph is left out."""
    t = runner.tout
    deq = (lambda y: dequantize(y, t.s, t.z).astype(np.float64)) if t.dtype in (np.int8, np.uint8) else (lambda y: y.astype(np.float64))
    engines = {"gpu_fp16": lambda: GpuDelegateUpscaler(runner.path, "fp16", runner.contract)}
    if runner.precision == "int8":
        engines["npu_int8"] = lambda: IntegerReference(runner.path, "reference", runner.contract, rounding="single")
    rows = {}
    for name, make in engines.items():
        try:
            engine = make()
            rows[name] = {"max_abs_err_vs_xnnpack": max(float(np.abs(deq(engine.run_quantized(x)) - deq(y)).max())
                                                        for x, y in stored)}
        except EdgesrError:
            continue
    return rows


def _device_tolerance(runner: _Runner, stored: list, emulation: dict | None, emulation_source: str) -> dict:
    """The manifest's ``device_tolerance`` (module doc): the larger of the emulation on the golden
    pairs and the given emulation rows, through :func:`edgesr.app.tolerances.device_tolerances`."""
    rows = _engines_on_pairs(runner, stored)
    sources = {name: f"emulation on these {len(stored)} golden input(s)" for name in rows}
    for name, row in (emulation or {}).items():
        m = row.get("max_abs_err_vs_xnnpack") if isinstance(row, dict) else None
        if isinstance(m, (int, float)) and name in ("gpu_fp16", "npu_int8"):
            mine = rows.get(name, {}).get("max_abs_err_vs_xnnpack")
            if mine is None or m >= mine:
                rows[name] = {"max_abs_err_vs_xnnpack": float(m)}
                sources[name] = f"{emulation_source}.{name}.max_abs_err_vs_xnnpack"
            sources[name] += " (the larger of it and the other measurement)" if mine is not None else ""
    out = device_tolerances(runner.precision, rows, _output_step(runner))
    for tol in out.values():
        tol["source"] = sources[tol["source"]]
    return out


def write_golden(artifact: str | os.PathLike, images: list[tuple[str, np.ndarray]], out: str | os.PathLike,
                 max_size: int = 128, kernels: str = "xnnpack", emulation: dict | None = None,
                 emulation_source: str = "emulation matrix") -> dict:
    """Write golden pairs for ``images`` (``[(name, uint8 image)]``, centre-cropped to
    ``max_size``) into ``out``; returns the manifest.

    ``emulation``: the artifact's emulation-matrix rows
    (:func:`edgesr.app.validation.emulation_matrix`), whose ``max_abs_err_vs_xnnpack`` join the
    device tolerances (module doc); ``emulation_source`` names where they come from.

    Raises:
        EdgesrError: missing artifact, no images, or an unwritable ``out``.
    """
    path = Path(artifact)
    if not path.exists():
        raise EdgesrError(f"{path}: no such artifact")
    if not images:
        raise EdgesrError("no images to make golden vectors from")
    out = Path(out)
    runner = _Runner(path, kernels)
    pairs, stored = [], []
    for name, img in images:
        x, y, qin, qout = runner.run(_center_crop(img, max_size))
        stored.append((x, y))
        entry = {"name": name}
        for role, arr, qp in (("input", x, qin), ("output", y, qout)):
            arr = np.ascontiguousarray(arr)
            file = f"{name}.{role}.bin"
            write_bytes_atomic(out / file, arr.astype(arr.dtype.newbyteorder("<")).tobytes())
            entry[role] = {"file": file, "dtype": arr.dtype.name, "shape": list(arr.shape),
                           "sha256": sha256(out / file), "quantization": qp}
        pairs.append(entry)
    manifest = {"format": FORMAT, "version": 1, "artifact": path.name,
                "artifact_sha256": sha256(path) if path.is_file() else None, "runtime": runner.runtime,
                "precision": runner.precision, "contract": runner.contract.to_dict(), "layout": runner.layout,
                "tolerance": runner.tolerance(), "pairs": pairs}
    if path.suffix == ".tflite":
        manifest["device_tolerance"] = _device_tolerance(runner, stored, emulation, emulation_source)
    text = json.dumps(manifest, indent=2) + "\n"
    write_text_atomic(out / "manifest.json", text)
    return json.loads(text)


def read_tensor(folder: Path, spec: dict) -> np.ndarray:
    """Load one ``.bin`` of a manifest, checking its SHA-256 and size.

    Raises:
        EdgesrError: missing file, wrong checksum or size (names the file).
    """
    path = folder / spec["file"]
    if not path.is_file():
        raise EdgesrError(f"{path}: golden file missing")
    if sha256(path) != spec["sha256"]:
        raise EdgesrError(f"{path}: SHA-256 differs from the manifest (file changed or corrupt)")
    arr = np.frombuffer(path.read_bytes(), dtype=np.dtype(spec["dtype"]).newbyteorder("<"))
    if arr.size != int(np.prod(spec["shape"])):
        raise EdgesrError(f"{path}: {arr.size} values, manifest says shape {spec['shape']}")
    return arr.reshape(spec["shape"])


def verify_golden(folder: str | os.PathLike, artifact: str | os.PathLike | None = None, kernels: str = "xnnpack") -> dict:
    """Re-run the artifact on every golden input and compare with the stored output under the
    manifest's tolerance. ``artifact`` defaults to the manifest's file name beside the folder.

    Returns ``{"pairs", "mismatched_elements", "max_abs_err", "tolerance", "ok"}``.
    """
    folder = Path(folder)
    man_path = folder / "manifest.json"
    if not man_path.is_file():
        raise EdgesrError(f"{folder}: no manifest.json (not a golden folder, or an interrupted write)")
    manifest = json.loads(man_path.read_text())
    if manifest.get("format") != FORMAT:
        raise EdgesrError(f"{man_path}: not an edgesr golden manifest")
    path = Path(artifact) if artifact is not None else folder.parent / manifest["artifact"]
    if manifest.get("artifact_sha256") and path.is_file() and sha256(path) != manifest["artifact_sha256"]:
        raise EdgesrError(f"{path}: not the artifact these vectors were made with (SHA-256 differs)")
    runner = _Runner(path, kernels)
    mismatched, max_err = 0, 0.0
    for pair in manifest["pairs"]:
        x = read_tensor(folder, pair["input"])
        want = read_tensor(folder, pair["output"])
        if path.suffix == ".tflite":
            got = runner.upscaler.run_quantized(x)
        elif runner.precision == "lut":
            got = np.round(np.clip(runner.upscaler(x[:, None].astype(np.float32) / 255)[:, 0], 0, 1) * 255).astype(np.uint8)
        else:
            got = np.asarray(runner.upscaler(x), np.float32)
        d = np.abs(got.astype(np.float64) - want.astype(np.float64))
        max_err = max(max_err, float(d.max()))
        tol = 0.0 if manifest["tolerance"]["kind"] == "exact" else manifest["tolerance"]["value"]
        mismatched += int((d > tol).sum())
    return {"pairs": len(manifest["pairs"]), "mismatched_elements": mismatched, "max_abs_err": max_err,
            "tolerance": manifest["tolerance"], "ok": mismatched == 0}
