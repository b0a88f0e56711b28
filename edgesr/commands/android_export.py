"""``edgesr android-export RUN_DIR --app android_demo``: fill the Android demo's assets from a run.

What lands in ``APP/app/src/main/assets/edgesr/`` (git-ignored, rebuilt on every export):

* ``models/<name>.tflite``: the run's TFLite artifacts, byte for byte;
* ``luts/<name>.bin``: each ``.lut`` bundle's int8 tables, raw and concatenated in engine
  order (the app memory-maps them into the JNI engine; no npz parsing on the phone);
* ``golden/``: ``RUN_DIR/golden/`` (written by ``edgesr golden``) copied as is; for every
  exported model without golden vectors there, ``golden/generated/<name>/`` is written here
  with :func:`edgesr.app.golden.write_golden` on an odd-sized crop of the sample photo;
* ``sample.png``: the photo the app opens first (scikit-image's 'chelsea');
* ``manifest.json``::

    {"format": "edgesr-android-assets", "version": 1, "run": {...}, "sample": "sample.png",
     "models": [{"name", "format": "tflite"|"lut", "precision", "source", "file", "sha256", "bytes",
                 "contract": IOContract dict,
                 "inputs"/"outputs": [{"name", "shape", "shape_signature", "dtype", "quantization"}],  # TFLite
                 "lut": {"method", "scale", "bits", "variant", "tables": [{"offset", "bytes", "shape"}]},  # LUT
                 "tiling": {"receptive_field", "halo", "tile", "source"},
                 "tolerance": {"cpu", "gpu", "gpu_source", "npu", "npu_source"}}],
     "cases": [{"model", "name", "source", "input": {"file", "shape", "dtype", "sha256"}, "output": {...}}],
     "golden": [{"dir", "manifest": the edgesr golden manifest as written}]}

  ``tiling``: how the app cuts a photo (``TilePlan.java``, the plan of
  :func:`edgesr.core.tiling.tile_plan`): ``receptive_field`` is the side, in LR pixels, of the
  input window one output pixel depends on (declared by the model the artifact was exported
  from, rebuilt on PyTorch's ``meta`` device from the provenance embedded in the ``.tflite``,
  or the LUT bundle's; null when none of these names one: the app then upscales in one piece),
  ``halo = max(receptive_field // 2, 2)`` and ``tile`` the tile side
  (:data:`edgesr.core.tiling.DEFAULT_TILE`); ``source`` says where the receptive field came from.

  Tolerances are max |diff| on [0, 1] outputs: CPU 0 for int8 and LUT (exact bytes), 1e-4 for
  fp32, 4e-3 for fp16 weights; GPU (and NPU, int8 models): ``--gpu-tolerance``, else the
  model's own golden manifest's ``device_tolerance`` (:mod:`edgesr.app.golden`: derived by
  :func:`edgesr.app.tolerances.device_tolerance` from the GPU-delegate / single-rounding
  emulations run on the golden inputs and, when the run recorded it, this artifact's emulation
  matrix, plus a margin of at least one output step for int8), else the same derivation from
  the artifact's emulation rows alone, else one 8-bit level; ``gpu_source`` / ``npu_source``
  say which.

The whole ``edgesr/`` folder is built beside the target and renamed onto it
(:func:`edgesr.core.atomic.atomic_path`), so the app never sees half an export, and an error leaves
the previous export in place.

The contract of an artifact is read from the artifact, never guessed, in this order: the
metadata embedded in the ``.tflite`` (or its legacy sidecar ``PATH.json``), its entry in
``report.json`` (a ``contract`` object), the LUT bundle itself; a model without one is
refused with an error naming it. The app itself reads the contract of a TFLite model from the
model file (``TfliteMetadata.java``); the manifest's copy serves the LUT models.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch

from edgesr.app.golden import write_golden
from edgesr.app.tolerances import (
    DEVICE_CPU_MAX_ABS,
    DEVICE_GPU_DEFAULT_MAX_ABS,
    device_tolerances,
)
from edgesr.commands._args import existing_dir, positive_float
from edgesr.core.atomic import atomic_path
from edgesr.core.contract import IOContract, MissingMetadata, read_artifact_metadata, read_contract
from edgesr.core.data import embedded_image
from edgesr.core.errors import EdgesrError
from edgesr.core.models import create
from edgesr.core.tiling import BICUBIC_HALO, DEFAULT_TILE
from edgesr.lut_baking.bundle import LutUpscaler, load_bundle

#: where the app reads its assets (``AssetManager.open("edgesr/manifest.json")``)
ASSET_SUBDIR = Path("app/src/main/assets/edgesr")
MANIFEST_FORMAT = "edgesr-android-assets"
MANIFEST_VERSION = 1
#: fp32 on the phone's CPU (XNNPACK) vs the golden fp32 outputs: max abs difference on [0, 1]
CPU_FP32_TOLERANCE = DEVICE_CPU_MAX_ABS["fp32"]
#: fp16-weight models on the CPU (XNNPACK may compute in fp16 on ARM): the golden fp16 tolerance
CPU_FP16_TOLERANCE = DEVICE_CPU_MAX_ABS["fp16"]
#: GPU delegate when nothing was measured for the model: one 8-bit level
DEFAULT_GPU_TOLERANCE = DEVICE_GPU_DEFAULT_MAX_ABS


def add_arguments(p) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", type=existing_dir, help="a run folder with report.json (from `edgesr run`)")
    p.add_argument("--app", default="android_demo", help="the Android project folder (default: android_demo)")
    p.add_argument("--gpu-tolerance", type=positive_float, default=None, help="max abs error allowed for the GPU delegate on [0, 1] (default: derived from the model's GPU-delegate emulation, see the golden manifest's device_tolerance)")


def run(args) -> int:
    manifest = export(args.run_dir, args.app, gpu_tolerance=args.gpu_tolerance)
    target = Path(args.app) / ASSET_SUBDIR
    print(f"{target}: {len(manifest['models'])} model(s), {len(manifest['cases'])} golden case(s)")
    for m in manifest["models"]:
        print(f"  {m['name']:<32} {m['format']:<7} {m['precision']:<5} {m['bytes']:>10} B  {m['sha256'][:12]}")
    return 0


# --------------------------------------------------------------------------- helpers


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgesrError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgesrError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise EdgesrError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _as_contract(d) -> dict | None:
    """A contract dict (``IOContract`` fields) found in ``d`` itself or under ``d["contract"]``."""
    if not isinstance(d, dict):
        return None
    if isinstance(d.get("contract"), dict):
        d = d["contract"]
    if "scale" in d and "color" in d:
        known = {k: d[k] for k in IOContract.__dataclass_fields__ if k in d}
        if "value_range" in known:
            known["value_range"] = tuple(known["value_range"])
        try:
            return IOContract(**known).to_dict()
        except TypeError as exc:
            raise EdgesrError(f"invalid I/O contract {d!r}: {exc}") from None
    return None


def _tflite_tensors(path: Path) -> tuple[list[dict], list[dict]]:
    """Input and output tensors of a TFLite model: name, shape, shape signature, dtype, quantization."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_path=str(path))
    except (ValueError, RuntimeError) as exc:
        raise EdgesrError(f"{path}: not a loadable TFLite model ({exc})") from None

    def describe(t: dict) -> dict:
        scale, zero_point = t["quantization"]
        return {
            "name": t["name"],
            "shape": [int(v) for v in t["shape"]],
            "shape_signature": [int(v) for v in t.get("shape_signature", t["shape"])],
            "dtype": t["dtype"].__name__,
            "quantization": {"scale": float(scale), "zero_point": int(zero_point)} if scale else None,
        }

    return [describe(t) for t in interp.get_input_details()], [describe(t) for t in interp.get_output_details()]


def _lut_tables(path: Path) -> tuple[dict, list, dict, int]:
    """(method/scale/bits/variant, int8 tables in engine order, contract, receptive field) of a ``.lut`` bundle."""
    b = load_bundle(path)
    desc = {"method": b.method, "scale": b.scale, "bits": b.bits, "variant": b.variant}
    return desc, list(b.arrays), b.contract.to_dict(), int(LutUpscaler(b).receptive_field)


def _network_receptive_field(path: Path, report: dict) -> tuple[int | None, str]:
    """(receptive field, source) of the network a ``.tflite`` was exported from.

    The model named in the provenance embedded in the file (``model``, ``scale``, ``kwargs``),
    else the run's ``report.json`` (``model``, ``scale``), is rebuilt on PyTorch's ``meta``
    device (nothing allocated) and its declared ``receptive_field`` read. ``(None, reason)``
    when neither names a registered model that declares one: the app then upscales the photo
    in one piece, as ``edgesr upscale`` does with such a model.
    """
    try:
        provenance = read_artifact_metadata(path).get("provenance") or {}
    except MissingMetadata:
        provenance = {}
    candidates = [(provenance.get("model"), provenance.get("scale"), provenance.get("kwargs") or {}, "provenance embedded in the model"),
                  (report.get("model"), report.get("scale"), {}, "report.json model")]
    for name, scale, kwargs, source in candidates:
        if not isinstance(name, str) or not isinstance(scale, int) or not isinstance(kwargs, dict):
            continue
        try:
            with torch.device("meta"):
                rf = getattr(create(name, scale=scale, **kwargs), "receptive_field", None)
        except (EdgesrError, TypeError, ValueError, RuntimeError):
            continue
        if isinstance(rf, int) and rf >= 1:
            return rf, f"{source} ({name} x{scale})"
    return None, "none: no registered model in the embedded provenance or in report.json; the app upscales in one piece"


def _tiling(receptive_field: int | None, source: str) -> dict:
    """The manifest's ``tiling`` entry (see the module docstring); ``halo`` None without a receptive field."""
    halo = None if receptive_field is None else max(receptive_field // 2, BICUBIC_HALO)
    return {"receptive_field": receptive_field, "halo": halo, "tile": DEFAULT_TILE, "source": source}


def _emulation_rows(artifact: dict) -> dict | None:
    """The artifact's own emulation matrix from report.json (``validation.emulation``), if recorded."""
    rows = (artifact.get("validation") or {}).get("emulation")
    return rows if isinstance(rows, dict) else None


def _device_tolerance(entry: dict, golden_sets: list[dict], rows: dict | None, index: int,
                      override: float | None) -> dict:
    """``{"gpu", "gpu_source"[, "npu", "npu_source"]}`` for one TFLite model (module doc): the
    override; else the ``device_tolerance`` of the golden manifest made for this artifact; else
    :func:`edgesr.app.tolerances.device_tolerances` of its emulation rows; else one 8-bit level."""
    if override is not None:
        if not override >= 0:
            raise EdgesrError(f"--gpu-tolerance must be >= 0, got {override}")
        return {"gpu": float(override), "gpu_source": "--gpu-tolerance"}
    name = Path(entry["source"]).name
    derived, where = {}, ""
    for gs in golden_sets:
        man = gs["manifest"]
        if man.get("artifact") == name and isinstance(man.get("device_tolerance"), dict) and man["device_tolerance"]:
            derived, where = man["device_tolerance"], f"{gs['dir']}/manifest.json device_tolerance"
            break
    if not derived and rows:
        q = entry["outputs"][0]["quantization"]
        derived = device_tolerances(entry["precision"], rows, q["scale"] if q else None,
                                    f"report.json artifacts[{index}].validation.emulation")
        where = "report.json emulation rows"
    out = {}
    for engine, tol in derived.items():
        out[engine], out[f"{engine}_source"] = float(tol["max_abs"]), f"{where}: {tol['source']} ({tol['why']})"
    if "gpu" not in out:
        out["gpu"], out["gpu_source"] = DEFAULT_GPU_TOLERANCE, "default (one 8-bit level); nothing measured for this model"
    return out


def _sample_image():
    return embedded_image(SAMPLE_IMAGE)


def _golden_sets(golden_dir: Path) -> list[dict]:
    """The golden manifests under ``golden_dir`` (``**/manifest.json``), folders relative to ``edgesr/``."""
    sets = []
    for manifest_path in sorted(golden_dir.rglob("manifest.json")):
        data = _read_json(manifest_path)
        rel = manifest_path.parent.relative_to(golden_dir)
        sets.append({"dir": str(Path("golden") / rel).replace("\\", "/"), "manifest": data})
    return sets


def _tensor_ref(d, base: str) -> dict | None:
    """``{"file", "shape", "dtype"}`` from a golden manifest's tensor entry (``file`` or ``path``)."""
    if isinstance(d, list) and len(d) == 1:
        d = d[0]
    if not isinstance(d, dict) or not all(k in d for k in ("shape", "dtype")):
        return None
    f = d.get("file") or d.get("path")
    if not isinstance(f, str):
        return None
    return {"file": f"{base}/{f}", "shape": [int(v) for v in d["shape"]], "dtype": str(d["dtype"])}


def _derive_cases(sets: list[dict], entries: list[dict]) -> list[dict]:
    """Golden cases found in ``edgesr golden`` manifests: any object with an input and an output
    tensor (file, shape, dtype) whose ``artifact``/``model`` (or its manifest's) names an exported model."""
    by_key = {}
    for e in entries:
        for key in (e["name"], Path(e["source"]).name, Path(e["source"]).stem):
            by_key.setdefault(key, e["name"])
    cases: list[dict] = []

    def walk(node, base: str, owner):
        if isinstance(node, dict):
            owner = node.get("artifact") or node.get("model") or owner
            inp = _tensor_ref(node.get("input", node.get("inputs")), base)
            out = _tensor_ref(node.get("output", node.get("outputs")), base)
            model = by_key.get(Path(str(owner)).name) or by_key.get(Path(str(owner)).stem) if owner else None
            if inp and out and model:
                name = str(node.get("name") or node.get("image") or f"case{len(cases)}")
                origin = "android-export (edgesr.app.golden)" if base.startswith("golden/generated/") else "RUN_DIR/golden"
                cases.append({"model": model, "name": name, "input": inp, "output": out, "source": origin})
                return
            for v in node.values():
                walk(v, base, owner)
        elif isinstance(node, list):
            for v in node:
                walk(v, base, owner)

    for gs in sets:
        walk(gs["manifest"], gs["dir"], None)
    return cases


#: golden vectors made by android-export itself when the run has none: an odd-sized crop
SAMPLE_IMAGE, GOLDEN_CROP, GOLDEN_AT = "chelsea", (37, 45), (101, 150)


def _generate_golden(artifact: Path, out: Path, rows: dict | None = None, rows_source: str = "") -> None:
    """Golden vectors for a model the run has none of, written with ``edgesr.app.golden.write_golden``
    (the code behind ``edgesr golden``: LiteRT's default CPU kernels, or the LUT engine) on an
    odd-sized crop of the sample photo; ``rows``: the artifact's emulation matrix (joins the
    manifest's device tolerance)."""

    (h, w), (y0, x0) = GOLDEN_CROP, GOLDEN_AT
    crop = _sample_image()[y0 : y0 + h, x0 : x0 + w]
    write_golden(artifact, [(f"{SAMPLE_IMAGE}_{h}x{w}", crop)], out, max_size=max(h, w), emulation=rows,
                 emulation_source=rows_source)


# --------------------------------------------------------------------------- export


def _embedded_contract(path: Path) -> dict | None:
    """The contract embedded in a ``.tflite`` (:func:`edgesr.core.contract.read_contract`; a
    legacy sidecar is read with a warning), or None when it carries none."""
    if path.suffix.lower() != ".tflite":
        return None
    try:
        return read_contract(path).to_dict()
    except MissingMetadata:
        return None


def _model_entry(run_dir: Path, report: dict, artifact: dict, index: int) -> tuple[dict, Path | bytes]:
    """One manifest entry and what to write for it (the artifact's path, or the LUT bytes)."""
    rel = artifact.get("path")
    if not isinstance(rel, str) or not rel:
        raise EdgesrError(f"{run_dir / 'report.json'}: artifacts[{index}] has no 'path'")
    path = run_dir / rel
    if not path.is_file():
        raise EdgesrError(f"{path}: artifact listed in report.json is missing")
    precision = str(artifact.get("precision", "fp32"))
    name = f"{path.stem}"
    contract = _embedded_contract(path) or _as_contract(artifact)
    entry: dict = {"name": name, "format": artifact["format"], "precision": precision, "source": rel}
    if artifact["format"] == "tflite":
        inputs, outputs = _tflite_tensors(path)
        payload: Path | bytes = path
        entry.update(file=f"models/{name}.tflite", inputs=inputs, outputs=outputs)
        entry["tiling"] = _tiling(*_network_receptive_field(path, report))
        int8 = precision == "int8" or inputs[0]["dtype"] in ("int8", "uint8")
        cpu = 0.0 if int8 else (CPU_FP16_TOLERANCE if precision == "fp16" else CPU_FP32_TOLERANCE)
        entry["tolerance"] = {"cpu": cpu}  # the GPU / NPU bounds follow once the golden vectors exist
    else:  # lut
        desc, tables, lut_contract, rf = _lut_tables(path)
        contract = contract or lut_contract
        entry["tiling"] = _tiling(rf, "the LUT bundle")
        payload = b"".join(t.astype("int8", copy=False).tobytes(order="C") for t in tables)
        offsets, pos = [], 0
        for t in tables:
            offsets.append({"offset": pos, "bytes": int(t.nbytes), "shape": list(t.shape)})
            pos += int(t.nbytes)
        entry.update(file=f"luts/{name}.bin", lut=desc | {"tables": offsets})
        entry["tolerance"] = {"cpu": 0.0}
    if contract is None:
        raise EdgesrError(f"{path}: no I/O contract (none embedded in the file or in a sidecar, none in report.json)")
    entry["contract"] = contract
    if contract["scale"] != report.get("scale", contract["scale"]):
        raise EdgesrError(f"{path}: contract scale {contract['scale']} differs from report.json scale {report['scale']}")
    return entry, payload


def export(run_dir, app, gpu_tolerance: float | None = None) -> dict:
    """Copy a run's TFLite and LUT artifacts, contracts and golden vectors into ``app``'s assets.

    Args:
        run_dir: folder with ``report.json`` (``{"model", "scale", "artifacts": [...]}``).
        app: the Android project folder (must contain ``app/``).
        gpu_tolerance: overrides the GPU delegate's tolerance for every model.

    Returns:
        The manifest written to ``APP/app/src/main/assets/edgesr/manifest.json``.

    Raises:
        EdgesrError: missing or invalid run folder, report, artifact or app folder.
    """
    run_dir, app = Path(run_dir), Path(app)
    if not run_dir.is_dir():
        raise EdgesrError(f"{run_dir}: no such run folder")
    if not (app / "app").is_dir():
        raise EdgesrError(f"{app}: not the Android demo project (no app/ folder)")
    report = _read_json(run_dir / "report.json")
    artifacts = report.get("artifacts")
    if not isinstance(artifacts, list):
        raise EdgesrError(f"{run_dir / 'report.json'}: no 'artifacts' list")
    for i, a in enumerate(artifacts):
        if not isinstance(a, dict) or "format" not in a:
            raise EdgesrError(f"{run_dir / 'report.json'}: artifacts[{i}] has no 'format'")
    chosen = [(i, a) for i, a in enumerate(artifacts) if a["format"] in ("tflite", "lut")]
    if not chosen:
        raise EdgesrError(f"{run_dir / 'report.json'}: no tflite or lut artifacts to export")

    if gpu_tolerance is not None and not gpu_tolerance >= 0:
        raise EdgesrError(f"--gpu-tolerance must be >= 0, got {gpu_tolerance}")
    entries, payloads, sources, indices = [], [], [], []
    for i, a in chosen:
        entry, payload = _model_entry(run_dir, report, a, i)
        if any(e["name"] == entry["name"] for e in entries):
            entry["name"] = f"{entry['name']}_{i}"
            entry["file"] = entry["file"].replace(Path(entry["file"]).stem, entry["name"])
        entries.append(entry)
        payloads.append(payload)
        sources.append(run_dir / a["path"])
        indices.append(i)
    golden_dir = run_dir / "golden"
    target = app / ASSET_SUBDIR
    with atomic_path(target, suffix="") as tmp:
        for entry, payload in zip(entries, payloads):
            dest = tmp / entry["file"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(payload, Path):
                shutil.copyfile(payload, dest)
            else:
                dest.write_bytes(payload)
            entry["sha256"] = _sha256(dest)
            entry["bytes"] = dest.stat().st_size
        # Golden vectors: the run's own (edgesr golden), else made here for each model lacking them.
        if golden_dir.is_dir():
            shutil.copytree(golden_dir, tmp / "golden")
        cases = _derive_cases(_golden_sets(tmp / "golden") if golden_dir.is_dir() else [], entries)
        for entry, src, i in zip(entries, sources, indices):
            if not any(c["model"] == entry["name"] for c in cases):
                _generate_golden(src, tmp / "golden" / "generated" / entry["name"], _emulation_rows(artifacts[i]),
                                 f"report.json artifacts[{i}].validation.emulation")
        golden_sets = _golden_sets(tmp / "golden") if (tmp / "golden").is_dir() else []
        for entry, i in zip(entries, indices):
            if entry["format"] == "tflite":
                entry["tolerance"].update(_device_tolerance(entry, golden_sets, _emulation_rows(artifacts[i]), i, gpu_tolerance))
        cases = _derive_cases(golden_sets, entries)
        for case in cases:
            for t in ("input", "output"):
                f = tmp / case[t]["file"]
                if not f.is_file():
                    raise EdgesrError(f"{golden_dir}: golden file {case[t]['file']} listed in a manifest is missing")
                case[t]["sha256"] = _sha256(f)
        from PIL import Image

        Image.fromarray(_sample_image()).save(tmp / "sample.png")
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "run": {"dir": run_dir.resolve().name, "model": report.get("model"), "scale": report.get("scale")},
            "sample": "sample.png",
            "models": entries,
            "cases": cases,
            "golden": golden_sets,
        }
        text = json.dumps(manifest, indent=2) + "\n"
        (tmp / "manifest.json").write_text(text, encoding="utf-8")
    return json.loads(text)  # exactly what the app reads (tuples become lists)
