"""``edgesr android-export``: a synthetic run folder with real small artifacts -> the app's assets.

The run holds an fp32 and an int8 TFLite model built here with TensorFlow (conv 3x3 ->
depth-to-space x2, dynamic H x W, edgesr metadata in a legacy sidecar, or embedded in the
file as ``edgesr export`` writes it) and an SR-LUT x2 bundle written
with lut_baking; no training. The checks read the files back and recompute what they can
with independent code (the C LUT engine, a fresh LiteRT interpreter, edgesr's model_input).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgesr.commands.android_export import (
    ASSET_SUBDIR,
    CPU_FP32_TOLERANCE,
    DEFAULT_GPU_TOLERANCE,
    _device_tolerance,
    export,
)
from edgesr.core.contract import IOContract
from edgesr.core.errors import EdgesrError

ROOT = Path(__file__).resolve().parents[1]
Y2 = IOContract(scale=2, color="y")
Y2_JSON = json.loads(json.dumps(Y2.to_dict()))


def _tiny_tflite(precision: str) -> bytes:
    """conv 3x3 (1 -> 4) + clip + depth-to-space 2, input (1, H, W, 1) with dynamic H, W."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.normal(0, 0.3, (3, 3, 1, 4)).astype(np.float32) + np.float32(0.25))

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 1], tf.float32)])
    def model(x):
        y = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
        return tf.clip_by_value(tf.nn.depth_to_space(y, 2), 0.0, 1.0)

    conv = tf.lite.TFLiteConverter.from_concrete_functions([model.get_concrete_function()], model)
    if precision == "int8":
        patches = [rng.uniform(0.06, 0.92, (1, 16, 16, 1)).astype(np.float32) for _ in range(8)]
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([p] for p in patches)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
    return conv.convert()


@pytest.fixture(scope="module")
def tflite_models() -> dict[str, bytes]:
    return {p: _tiny_tflite(p) for p in ("fp32", "int8")}


def _sidecar(path: Path, contract: IOContract) -> None:
    meta = {"format": "edgesr-artifact", "version": 1, "contract": contract.to_dict(), "provenance": {}}
    path.with_name(path.name + ".json").write_text(json.dumps(meta))


def test_contract_embedded_in_the_model_travels_to_the_app(tmp_path, tflite_models):
    """Models exported with their contract inside (no sidecar, none in report.json): the
    manifest states it, and the asset copied into the app still carries it (what the app's
    TfliteMetadata reads), with the TFLite tensor layout NHWC."""
    import warnings

    from edgesr.converters.tflite import embed_metadata

    from edgesr.core.contract import read_contract

    nhwc = IOContract(scale=2, color="y", layout="NHWC")
    meta = {"format": "edgesr-artifact", "version": 1, "contract": nhwc.to_dict(), "provenance": {"precision": "fp32"}}
    run = _run_dir(tmp_path, {"fp32": embed_metadata(tflite_models["fp32"], meta)}, lut=False)
    (run / "artifacts" / "tiny_x2_fp32.tflite.json").unlink()
    app = _app(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # read from the file, not from a sidecar
        manifest = export(run, app)
    assert manifest["models"][0]["contract"] == nhwc.to_dict() | {"value_range": [0.0, 1.0]}
    asset = app / ASSET_SUBDIR / manifest["models"][0]["file"]
    assert read_contract(asset) == nhwc


def _lut_bundle(path: Path) -> np.ndarray:
    from edgesr.lut_baking.bundle import LutBundle, save_bundle

    lut = np.random.default_rng(1).integers(-127, 128, (17**4, 4), dtype=np.int8)
    save_bundle(LutBundle("srlut", 2, 4, [lut], IOContract(scale=2, color="rgb", per_channel=True), model="srlut_test"), path)
    return lut


def _run_dir(tmp: Path, models: dict[str, bytes], lut: bool = True) -> Path:
    run = tmp / "run"
    (run / "artifacts").mkdir(parents=True)
    artifacts = []
    for precision, data in models.items():
        p = run / "artifacts" / f"tiny_x2_{precision}.tflite"
        p.write_bytes(data)
        _sidecar(p, Y2)
        artifacts.append({"format": "tflite", "precision": precision, "path": f"artifacts/{p.name}", "bytes": len(data)})
    artifacts.append({"format": "onnx", "precision": "fp32", "path": "artifacts/not_exported.onnx"})
    if lut:
        _lut_bundle(run / "artifacts" / "srlut_x2.lut")
        artifacts.append({"format": "lut", "precision": "int8", "path": "artifacts/srlut_x2.lut"})
    (run / "report.json").write_text(json.dumps({"model": "tiny", "scale": 2, "artifacts": artifacts}))
    return run


def _app(tmp: Path) -> Path:
    (tmp / "app_proj" / "app").mkdir(parents=True)
    return tmp / "app_proj"


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_export_fills_assets_with_manifest(tmp_path, tflite_models):
    run, app = _run_dir(tmp_path, tflite_models), _app(tmp_path)
    manifest = export(run, app)
    assets = app / ASSET_SUBDIR
    on_disk = json.loads((assets / "manifest.json").read_text())
    assert on_disk == manifest
    assert [m["name"] for m in manifest["models"]] == ["tiny_x2_fp32", "tiny_x2_int8", "srlut_x2"]  # onnx not exported
    for m in manifest["models"]:
        f = assets / m["file"]
        assert m["sha256"] == _sha(f) and m["bytes"] == f.stat().st_size
    fp32, int8, lut = manifest["models"]
    assert (assets / fp32["file"]).read_bytes() == tflite_models["fp32"]
    assert fp32["contract"] == Y2_JSON and int8["contract"] == Y2_JSON
    assert fp32["inputs"][0]["dtype"] == "float32" and fp32["inputs"][0]["shape_signature"] == [1, -1, -1, 1]
    assert int8["inputs"][0]["dtype"] == "int8" and int8["inputs"][0]["quantization"]["scale"] > 0
    assert fp32["tolerance"]["cpu"] == CPU_FP32_TOLERANCE and int8["tolerance"]["cpu"] == 0.0
    # GPU (and NPU for int8): the generated golden manifest's device tolerance, from the emulations on its pair
    golden = {g["manifest"]["artifact"]: g["manifest"].get("device_tolerance") for g in manifest["golden"]}
    for m in (fp32, int8):
        dt = golden[Path(m["source"]).name]
        assert m["tolerance"]["gpu"] == dt["gpu"]["max_abs"] and "manifest.json device_tolerance" in m["tolerance"]["gpu_source"]
    step = int8["outputs"][0]["quantization"]["scale"]
    assert int8["tolerance"]["gpu"] >= step and int8["tolerance"]["npu"] >= step and "npu" not in fp32["tolerance"]
    assert 2**-10 <= fp32["tolerance"]["gpu"] < 4e-3
    # LUT: the bundle's tables as raw int8, described for the JNI engine
    table = np.fromfile(assets / lut["file"], dtype=np.int8).reshape(17**4, 4)
    assert np.array_equal(table, _lut_bundle(tmp_path / "again.lut"))
    assert lut["lut"] == {"method": "srlut", "scale": 2, "bits": 4, "variant": 0, "tables": [{"offset": 0, "bytes": table.nbytes, "shape": [17**4, 4]}]}
    assert lut["contract"]["color"] == "rgb" and lut["contract"]["per_channel"] is True
    assert (assets / "sample.png").is_file() and manifest["sample"] == "sample.png"


def test_generated_golden_cases_recompute_independently(tmp_path, tflite_models):
    """The golden vectors written for a run without golden/ match an independent recomputation."""
    from ai_edge_litert.interpreter import Interpreter
    from edgesr.lut_baking import engine_c

    from edgesr.core.data import embedded_image
    from edgesr.core.evaluate import model_input

    run, app = _run_dir(tmp_path, tflite_models), _app(tmp_path)
    manifest = export(run, app)
    assets = app / ASSET_SUBDIR
    cases = {c["model"]: c for c in manifest["cases"]}
    assert set(cases) == {"tiny_x2_fp32", "tiny_x2_int8", "srlut_x2"}
    for c in cases.values():
        for t in ("input", "output"):
            assert c[t]["sha256"] == _sha(assets / c[t]["file"])
    crop = embedded_image("chelsea")[101:138, 150:195]
    # fp32 input = edgesr's model input (Y/255), NHWC, bit for bit
    fp32 = cases["tiny_x2_fp32"]
    x = np.fromfile(assets / fp32["input"]["file"], dtype="<f4").reshape(fp32["input"]["shape"])
    assert np.array_equal(x[..., 0], model_input(crop, Y2)[:, 0])
    # each TFLite output = a fresh interpreter on the stored input
    for name in ("tiny_x2_fp32", "tiny_x2_int8"):
        c = cases[name]
        it = Interpreter(model_content=tflite_models[name.split("_")[-1]])
        dtype = np.dtype(c["input"]["dtype"]).newbyteorder("<")
        inp = np.fromfile(assets / c["input"]["file"], dtype=dtype).reshape(c["input"]["shape"])
        it.resize_tensor_input(0, list(inp.shape))
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], inp.astype(dtype.newbyteorder("=")))
        it.invoke()
        want = it.get_tensor(it.get_output_details()[0]["index"])
        got = np.fromfile(assets / c["output"]["file"], dtype=np.dtype(c["output"]["dtype"]).newbyteorder("<")).reshape(c["output"]["shape"])
        assert list(want.shape) == [1, 74, 90, 1] and np.array_equal(got, want), name
    # LUT: the R, G, B planes (per-channel contract) each through the C engine (not the engine that wrote them)
    c = cases["srlut_x2"]
    planes = np.fromfile(assets / c["input"]["file"], dtype=np.uint8).reshape(c["input"]["shape"])
    assert np.array_equal(planes, crop.transpose(2, 0, 1))
    out = np.fromfile(assets / c["output"]["file"], dtype=np.uint8).reshape(c["output"]["shape"])
    table = np.fromfile(assets / manifest["models"][2]["file"], dtype=np.int8).reshape(17**4, 4)
    assert np.array_equal(out, np.stack([engine_c.srlut_upscale(table, 4, 2, p) for p in planes]))


def test_golden_from_run_dir_is_copied_and_used(tmp_path, tflite_models):
    """Golden vectors in RUN_DIR/golden (written by ``edgesr golden``) are copied and become the cases."""
    from edgesr.app.golden import write_golden
    from edgesr.core.data import embedded_image

    run, app = _run_dir(tmp_path, {"int8": tflite_models["int8"]}, lut=False), _app(tmp_path)
    g = run / "golden" / "tiny_x2_int8"
    img = embedded_image("camera")[200:229, 300:341]
    written = write_golden(run / "artifacts" / "tiny_x2_int8.tflite", [("camera", img)], g)
    manifest = export(run, app, gpu_tolerance=0.02)
    assets = app / ASSET_SUBDIR
    pair = written["pairs"][0]
    assert manifest["cases"] == [{
        "model": "tiny_x2_int8", "name": "camera", "source": "RUN_DIR/golden",
        "input": {"file": "golden/tiny_x2_int8/" + pair["input"]["file"], "shape": [1, 29, 41, 1], "dtype": "int8", "sha256": pair["input"]["sha256"]},
        "output": {"file": "golden/tiny_x2_int8/" + pair["output"]["file"], "shape": [1, 58, 82, 1], "dtype": "int8", "sha256": pair["output"]["sha256"]},
    }]
    assert (assets / "golden/tiny_x2_int8" / pair["input"]["file"]).read_bytes() == (g / pair["input"]["file"]).read_bytes()
    assert manifest["golden"][0]["dir"] == "golden/tiny_x2_int8" and manifest["golden"][0]["manifest"] == written
    assert not (assets / "golden/generated").exists()
    assert manifest["models"][0]["tolerance"]["gpu"] == 0.02


def test_gpu_tolerance_comes_from_the_models_own_emulation(tmp_path, tflite_models):
    """Each model's GPU bound comes from its own emulation rows (report.json) and its golden pair,
    never from another artifact's measurement (the old rule gave an int8 model the fp16 error of a
    float model: 6.7e-4, below one output step)."""
    run, app = _run_dir(tmp_path, tflite_models, lut=False), _app(tmp_path)
    report = json.loads((run / "report.json").read_text())
    report["artifacts"][0]["validation"] = {"emulation": {"gpu_fp16": {"max_abs_err_vs_xnnpack": 0.01}}}  # fp32
    (run / "report.json").write_text(json.dumps(report))
    fp32, int8 = export(run, app)["models"]
    assert fp32["tolerance"]["gpu"] == pytest.approx(0.02) and "artifacts[0].validation.emulation.gpu_fp16" in fp32["tolerance"]["gpu_source"]
    assert int8["tolerance"]["gpu"] >= int8["outputs"][0]["quantization"]["scale"] and "artifacts[0]" not in int8["tolerance"]["gpu_source"]
    with pytest.raises(EdgesrError, match="--gpu-tolerance must be >= 0"):
        export(run, app, gpu_tolerance=-1.0)


def test_export_replaces_previous_assets_atomically(tmp_path, tflite_models):
    app = _app(tmp_path)
    export(_run_dir(tmp_path / "a", tflite_models), app)
    export(_run_dir(tmp_path / "b", {"fp32": tflite_models["fp32"]}, lut=False), app)
    assets = app / ASSET_SUBDIR
    assert sorted(p.name for p in (assets / "models").iterdir()) == ["tiny_x2_fp32.tflite"]
    assert not (assets / "luts").exists()
    assert [p.name for p in assets.parent.iterdir()] == ["edgesr"]  # no temporary folder left


def test_user_errors_are_one_line_edgesr_errors(tmp_path, tflite_models, capsys):
    from edgesr.cli import main

    app = _app(tmp_path)
    with pytest.raises(EdgesrError, match="no such run folder"):
        export(tmp_path / "missing", app)
    run = _run_dir(tmp_path, {"fp32": tflite_models["fp32"]}, lut=False)
    with pytest.raises(EdgesrError, match="not the Android demo project"):
        export(run, tmp_path)
    (run / "artifacts" / "tiny_x2_fp32.tflite.json").unlink()
    with pytest.raises(EdgesrError, match=r"tiny_x2_fp32\.tflite: no I/O contract"):
        export(run, app)
    report = json.loads((run / "report.json").read_text())
    report["artifacts"][0]["contract"] = Y2.to_dict()  # a contract in report.json is used too
    (run / "report.json").write_text(json.dumps(report))
    assert export(run, app)["models"][0]["contract"] == Y2_JSON
    (run / "report.json").write_text("{not json")
    assert main(["android-export", str(run), "--app", str(app)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgesr: error: ") and "report.json: not valid JSON" in err and err.count("\n") == 1
    (run / "report.json").write_text(json.dumps({"scale": 2, "artifacts": [{"format": "tflite", "path": "artifacts/gone.tflite"}]}))
    with pytest.raises(EdgesrError, match=r"gone\.tflite: artifact listed in report.json is missing"):
        export(run, app)
    assert json.loads((app / ASSET_SUBDIR / "manifest.json").read_text())["models"][0]["name"] == "tiny_x2_fp32"  # the last good export stays


def test_generated_assets_are_git_ignored():
    res = subprocess.run(["git", "check-ignore", "-q", "android_demo/app/src/main/assets/edgesr/manifest.json"], cwd=ROOT)
    assert res.returncode == 0, "android_demo/.gitignore must ignore the exported assets"


def test_manifest_carries_each_models_receptive_field_and_tile(tmp_path, tflite_models):
    """``tiling`` per model: the receptive field declared by the network the .tflite was exported
    from (read from its embedded provenance), by the LUT bundle, or null (one piece) for a model
    edgesr cannot name; the halo and tile size of ``edgesr.core.tiling``."""
    from edgesr.converters import export_tflite
    from test_converters_common import tiny_sesr

    from edgesr.core.tiling import DEFAULT_TILE, halo_of

    module = tiny_sesr("sesr_m5", scale=2)
    run = _run_dir(tmp_path, tflite_models)
    export_tflite(module, run / "artifacts" / "sesr_m5_x2_fp32.tflite", "fp32")
    report = json.loads((run / "report.json").read_text())
    report["artifacts"].append({"format": "tflite", "precision": "fp32", "path": "artifacts/sesr_m5_x2_fp32.tflite"})
    (run / "report.json").write_text(json.dumps(report))
    manifest = export(run, _app(tmp_path))
    tiling = {m["name"]: m["tiling"] for m in manifest["models"]}
    rf = module.receptive_field
    assert tiling["sesr_m5_x2_fp32"] == {"receptive_field": rf, "halo": halo_of(module), "tile": DEFAULT_TILE,
                                         "source": "provenance embedded in the model (sesr_m5 x2)"}
    assert rf == 2 * (2 + 5 + 2) + 1  # 5x5, five 3x3, 5x5 convs
    assert tiling["srlut_x2"]["receptive_field"] == 3 and tiling["srlut_x2"]["halo"] == 2
    assert tiling["tiny_x2_fp32"]["receptive_field"] is None and tiling["tiny_x2_fp32"]["source"].startswith("none:")


def test_gpu_tolerance_default_when_nothing_was_measured():
    entry = {"source": "artifacts/m.tflite", "precision": "int8", "outputs": [{"quantization": {"scale": 0.004}}]}
    tol = _device_tolerance(entry, [], None, 0, None)
    assert tol == {"gpu": DEFAULT_GPU_TOLERANCE, "gpu_source": "default (one 8-bit level); nothing measured for this model"}
    rows = {"gpu_fp16": {"max_abs_err_vs_xnnpack": 0.004}, "npu_int8": {"max_abs_err_vs_xnnpack": 0.0}}
    tol = _device_tolerance(entry, [], rows, 2, None)
    assert tol["gpu"] == pytest.approx(0.008) and tol["npu"] == pytest.approx(0.004) and "report.json" in tol["npu_source"]
