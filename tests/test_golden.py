"""Golden vectors: written from real photos, re-verified against the runtime, tamper-evident."""

from __future__ import annotations

import json

import numpy as np
import pytest
from edgesr.quantization.integer_ref import IntegerGraph
from test_integer_ref_models import int8_model

from edgesr.app.golden import read_tensor, verify_golden, write_golden
from edgesr.cli import main
from edgesr.core.data import embedded_image
from edgesr.core.errors import EdgesrError
from edgesr.core.imageio import write_image


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    out = tmp_path_factory.mktemp("golden")
    images = [("chelsea", embedded_image("chelsea")), ("camera", embedded_image("camera"))]
    manifest = write_golden(int8_model("sesr_like"), images, out / "vectors", max_size=48)
    return out / "vectors", manifest


def test_manifest_describes_exact_int8_pairs(golden):
    folder, manifest = golden
    assert manifest["tolerance"]["kind"] == "exact" and manifest["precision"] == "int8"
    assert manifest["layout"] == "NHWC" and manifest["contract"]["scale"] == 2
    assert manifest["contract"]["layout"] == manifest["layout"]  # one layout: the TFLite tensors'
    pair = manifest["pairs"][0]
    assert pair["input"]["dtype"] == "int8" and pair["input"]["shape"] == [1, 48, 48, 1]
    assert pair["output"]["shape"] == [1, 96, 96, 1]
    assert set(pair["output"]["quantization"]) == {"scale", "zero_point"}
    assert json.loads((folder / "manifest.json").read_text()) == manifest


def test_outputs_equal_the_integer_reference(golden):
    folder, manifest = golden
    g = IntegerGraph(int8_model("sesr_like"), kernels="xnnpack")
    for pair in manifest["pairs"]:
        x, y = read_tensor(folder, pair["input"]), read_tensor(folder, pair["output"])
        np.testing.assert_array_equal(g.run(x)[0], y)


def test_verify_passes_then_detects_tampering(golden, tmp_path):
    folder, manifest = golden
    res = verify_golden(folder, int8_model("sesr_like"))
    assert res == {"pairs": 2, "mismatched_elements": 0, "max_abs_err": 0.0, "tolerance": manifest["tolerance"], "ok": True}
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in folder.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    out_file = bad / manifest["pairs"][0]["output"]["file"]
    data = bytearray(out_file.read_bytes())
    data[100] = (data[100] + 1) % 256
    out_file.write_bytes(bytes(data))
    with pytest.raises(EdgesrError, match="SHA-256"):
        verify_golden(bad, int8_model("sesr_like"))
    man = json.loads((bad / "manifest.json").read_text())  # a consistent forgery: checksum updated
    import hashlib

    man["pairs"][0]["output"]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (bad / "manifest.json").write_text(json.dumps(man))
    res = verify_golden(bad, int8_model("sesr_like"))
    assert res["ok"] is False and res["mismatched_elements"] == 1 and res["max_abs_err"] == 1.0


def test_cli_writes_and_verifies(tmp_path, capsys):
    imgs = tmp_path / "imgs"
    write_image(imgs / "coffee.png", embedded_image("coffee")[:40, :52])
    out = tmp_path / "g"
    assert main(["golden", str(int8_model("sesr_like")), "--images", str(imgs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "gpu tolerance: max abs" in printed and "npu tolerance: max abs" in printed
    assert (out / "coffee.input.bin").stat().st_size == 40 * 52
    assert main(["golden", str(int8_model("sesr_like")), "--out", str(out), "--verify"]) == 0
    assert main(["golden", str(tmp_path / "none.tflite"), "--out", str(out)]) == 2


def _random_lut(path):
    """An SR-LUT x2 bundle with seeded random int8 entries (the engines do not care how it was baked)."""
    from edgesr.lut_baking.bundle import LutBundle, save_bundle

    from edgesr.core.contract import IOContract

    arr = np.random.default_rng(0).integers(-128, 128, size=(17**4, 4), dtype=np.int8)
    save_bundle(LutBundle("srlut", 2, 4, [arr], IOContract(scale=2, color="rgb", channels=1, per_channel=True), model="srlut_s"), path)
    return path


def test_lut_golden_is_exact_uint8_planes(tmp_path):
    lut = _random_lut(tmp_path / "r.lut")
    man = write_golden(lut, [("coffee", embedded_image("coffee"))], tmp_path / "g", max_size=24)
    pair = man["pairs"][0]
    assert man["tolerance"]["kind"] == "exact" and man["layout"] == "PHW"
    assert pair["input"]["dtype"] == "uint8" and pair["input"]["shape"] == [3, 24, 24] and pair["output"]["shape"] == [3, 48, 48]
    assert verify_golden(tmp_path / "g", lut)["ok"]


def test_float_golden_states_a_tolerance(tmp_path):
    from edgesr.converters.export import export_tflite
    from test_integer_ref_models import zoo_int8

    _, module = zoo_int8("sesr_m3")
    art = export_tflite(module, tmp_path / "m_fp32.tflite", "fp32")
    man = write_golden(art["path"], [("camera", embedded_image("camera"))], tmp_path / "g", max_size=32)
    assert man["tolerance"] == {"kind": "max_abs", "value": 1e-4, "why": "fp32 arithmetic differs across CPUs/GPUs"}
    assert man["pairs"][0]["input"]["dtype"] == "float32" and man["pairs"][0]["output"]["shape"] == [1, 64, 64, 1]
    res = verify_golden(tmp_path / "g", art["path"])
    assert res["ok"] and res["max_abs_err"] <= 1e-4
    gpu = man["device_tolerance"]["gpu"]  # float: the GPU's half arithmetic, measured on the pair, doubled
    assert set(man["device_tolerance"]) == {"gpu"} and 0 < gpu["measured_max_abs"] < 4e-3
    assert gpu["max_abs"] == pytest.approx(gpu["measured_max_abs"] + max(gpu["measured_max_abs"], 2**-10))


def test_device_tolerance_is_derived_and_a_one_step_gpu_difference_passes(golden):
    """int8: the manifest states GPU and NPU bounds from their emulations run on these very golden
    inputs, at least one output step above what they measured; one output step of difference (the
    GPU delegate's fp16 fake quantization flips codes) is inside the GPU bound."""
    from edgesr.converters.gpu_emulation import GpuDelegateUpscaler

    folder, manifest = golden
    dt = manifest["device_tolerance"]
    step = manifest["pairs"][0]["output"]["quantization"]["scale"]
    assert set(dt) == {"gpu", "npu"}
    gpu = GpuDelegateUpscaler(int8_model("sesr_like"), "fp16")
    measured = max(float(np.abs(gpu.run_quantized(read_tensor(folder, p["input"])).astype(int)
                                - read_tensor(folder, p["output"]).astype(int)).max()) * step for p in manifest["pairs"])
    assert dt["gpu"]["measured_max_abs"] == pytest.approx(measured, rel=1e-5)  # float32 dequantization
    assert dt["gpu"]["max_abs"] >= measured + step - 1e-9 and dt["gpu"]["max_abs"] >= step
    assert "golden input" in dt["gpu"]["source"] and "plus one step" in dt["gpu"]["why"]


def test_device_tolerance_takes_the_larger_emulation_row(tmp_path):
    """Rows passed in (a run's emulation matrix on its evaluation photos) count when they measured
    more than the golden pairs did; the source names them."""
    img = embedded_image("camera")[200:229, 300:341]
    rows = {"gpu_fp16": {"max_abs_err_vs_xnnpack": 5 / 255}, "npu_int8": {"skipped": "x"}}
    m = write_golden(int8_model("sesr_like"), [("camera", img)], tmp_path / "g", emulation=rows, emulation_source="report.json artifacts[3].validation.emulation")
    step = m["pairs"][0]["output"]["quantization"]["scale"]
    assert m["device_tolerance"]["gpu"]["measured_max_abs"] == 5 / 255
    assert m["device_tolerance"]["gpu"]["source"].startswith("report.json artifacts[3].validation.emulation.gpu_fp16")
    assert m["device_tolerance"]["gpu"]["max_abs"] >= 5 / 255 + step - 1e-9
    assert "golden input" in m["device_tolerance"]["npu"]["source"]
