"""The emulation matrix (issue 6 section 3, issue 13; edgesr.app.validation.emulation_matrix, `edgesr
validate --emulation`): each artifact as each phone engine would run it, on small crops of real
photographs. TFLite int8 (an SESR export: the GPU row runs its graph dequantized, the NPU row its
integer graph with single-rounding requantization), TFLite fp32/fp16, ONNX and Core ML, skipped
rows with reasons, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import crop
from edgesr.converters import export_coreml, export_onnx, export_tflite
from test_converters_common import tiny_sesr
from test_integer_ref_models import zoo_int8

from edgesr.app.validation import (
    EMULATION_ENGINES,
    FLOAT_NO_INT8,
    FP32_MAX_ABS_ERR,
    emulation_images,
    emulation_matrix,
    validate_artifact,
)
from edgesr.cli import main
from edgesr.core.checkpoint import save_checkpoint
from edgesr.core.data import embedded_image
from edgesr.core.errors import EdgesrError
from edgesr.core.imageio import write_image

ROW = {"psnr_y", "ssim_y", "psnr_vs_reference_db", "max_abs_err", "arithmetic"}
TFLITE_ROW = ROW | {"max_abs_err_vs_xnnpack"}


@pytest.fixture(scope="module")
def photos():
    """Two small real crops, one colour, one gray (odd sizes)."""
    return [("chelsea", crop(embedded_image("chelsea"), 71, 93, 60, 150)), ("camera", crop(embedded_image("camera"), 65, 77, 120, 200))]


@pytest.fixture(scope="module")
def sesr_int8():
    return zoo_int8("sesr_m3")


@pytest.fixture(scope="module")
def int8_matrix(sesr_int8, photos):
    path, module = sesr_int8
    return emulation_matrix(path, module, photos)


def _numbers(row, tflite=False):
    assert set(row) == (TFLITE_ROW if tflite else ROW), row
    assert 15 < row["psnr_y"] < 60 and 0 < row["ssim_y"] <= 1 and 0 <= row["max_abs_err"] <= 1
    if tflite:
        assert 0 <= row["max_abs_err_vs_xnnpack"] <= 1


def test_int8_tflite_has_four_engines_with_numbers(int8_matrix):
    assert tuple(int8_matrix) == EMULATION_ENGINES
    for row in int8_matrix.values():
        _numbers(row, tflite=True)
    assert int8_matrix["xnnpack"]["max_abs_err_vs_xnnpack"] == 0
    assert "TFLITE_SINGLE_ROUNDING" in int8_matrix["npu_int8"]["arithmetic"]
    assert "GPU delegate" in int8_matrix["gpu_fp16"]["arithmetic"]


def test_npu_single_rounding_is_within_a_few_lsb_of_the_reference_kernels(int8_matrix, sesr_int8, photos):
    """The npu_int8 row runs the artifact's int8 graph with one rounding per requantization
    (TFLITE_SINGLE_ROUNDING), where LiteRT's reference kernels (bit-exact with the integer
    reference's double rounding) round twice: on real photos some output codes move, by at most
    a few LSBs, and the scores stay close."""
    from edgesr.quantization.integer_ref import IntegerReference, quantize_input

    from edgesr.core.evaluate import model_input

    path, module = sesr_int8
    double, single = IntegerReference(path), IntegerReference(path, rounding="single")
    lsb, moved, total = [], 0, 0
    for _, img in photos:
        q = quantize_input(model_input(img, module.contract).transpose(0, 2, 3, 1), double.input_tensor)
        d = np.abs(single.run_quantized(q).astype(int) - double.run_quantized(q).astype(int))
        lsb.append(int(d.max()))
        moved, total = moved + int((d > 0).sum()), total + d.size
    assert 0 < moved < total / 4 and max(lsb) <= 2
    npu, ref = int8_matrix["npu_int8"], int8_matrix["cpu_reference"]
    step = double.output_tensor.s
    assert npu != ref and abs(npu["psnr_y"] - ref["psnr_y"]) < 0.05 and npu["max_abs_err_vs_xnnpack"] <= 3 * step + 1e-9


def test_single_rounding_needs_the_reference_kernels(sesr_int8):
    from edgesr.quantization.integer_ref import IntegerReference

    with pytest.raises(EdgesrError, match="'single' with reference kernels"):
        IntegerReference(sesr_int8[0], kernels="xnnpack", rounding="single")
    with pytest.raises(EdgesrError, match="rounding 'triple'"):
        IntegerReference(sesr_int8[0], rounding="triple")


def test_int8_xnnpack_within_a_few_lsb_of_the_reference_kernels(int8_matrix, sesr_int8):
    """XNNPACK requantizes in fp32 (round half to even) where the reference kernels use gemmlowp
    double rounding: outputs differ by at most a few LSBs, so the scores agree closely."""
    from edgesr.converters.runtime import TFLiteUpscaler

    xnn, ref = int8_matrix["xnnpack"], int8_matrix["cpu_reference"]
    lsb = TFLiteUpscaler(sesr_int8[0], sesr_int8[1].contract).interpreter.get_output_details()[0]["quantization"][0]
    assert abs(xnn["max_abs_err"] - ref["max_abs_err"]) <= 3 * lsb
    assert abs(xnn["psnr_y"] - ref["psnr_y"]) < 0.05 and abs(xnn["psnr_vs_reference_db"] - ref["psnr_vs_reference_db"]) < 1.0


def test_int8_gpu_fp16_runs_the_int8_graph_dequantized(int8_matrix, sesr_int8):
    """The GPU row runs the int8 file (not the float model): its error against the float model is
    the int8 error (the old float-model-at-fp16 row was 50+ dB, hiding the quantization), and it
    differs from LiteRT's XNNPACK output by whole output steps, a few at most."""
    gpu, xnn = int8_matrix["gpu_fp16"], int8_matrix["xnnpack"]
    assert abs(gpu["psnr_vs_reference_db"] - xnn["psnr_vs_reference_db"]) < 2 and gpu["psnr_vs_reference_db"] < 55
    step = _output_step(sesr_int8[0])
    codes = gpu["max_abs_err_vs_xnnpack"] / step
    assert 1 <= round(codes) <= 4 and abs(codes - round(codes)) < 1e-3


def _output_step(path) -> float:
    from edgesr.quantization.integer_ref import IntegerReference

    return IntegerReference(path).output_tensor.s


def test_xnnpack_row_is_what_validate_measures(sesr_int8, photos):
    """One evaluation path: the xnnpack row equals validate_artifact's numbers on the same images."""
    path, module = sesr_int8
    m = emulation_matrix(path, module, {"photos": photos})
    v = validate_artifact(path, module, {"photos": photos}, num_threads=1)
    assert m["xnnpack"]["max_abs_err"] == v["max_abs_err"]
    assert m["xnnpack"]["psnr_vs_reference_db"] == pytest.approx(v["psnr_vs_reference_db"], abs=1e-9)
    assert m["xnnpack"]["psnr_y"] == pytest.approx(v["eval"]["photos"]["psnr_y"], abs=1e-9)


def test_a_shared_reference_run_gives_the_same_rows(sesr_int8, photos, int8_matrix):
    """A ReferenceRun over several sets (reused across artifacts) pools them: same rows as the module
    on the flattened images (up to the rounding of the pooled mean)."""
    from edgesr.app.validation import reference_run

    path, module = sesr_int8
    ref = reference_run(module, {"a": photos[:1], "b": photos[1:]})
    m = emulation_matrix(path, ref)
    for engine, row in int8_matrix.items():
        assert m[engine].pop("arithmetic") == row["arithmetic"]
        assert m[engine] == pytest.approx({k: v for k, v in row.items() if k != "arithmetic"}, rel=1e-12)
    with pytest.raises(EdgesrError, match="not both"):
        emulation_matrix(path, ref, photos)


def test_engine_that_cannot_run_the_graph_is_a_skipped_row(sesr_int8, photos, monkeypatch):
    """The integer reference raises EdgesrError for ops it lacks (e.g. SOFTMAX with reference kernels):
    that row is skipped with the first line of the reason; the others still run."""
    from edgesr.app import validation

    def refuse(*a, **k):
        raise EdgesrError("SOFTMAX: no reference-kernel emulation\nsecond line")

    monkeypatch.setattr(validation, "IntegerReference", refuse)
    path, module = sesr_int8
    m = emulation_matrix(path, module, photos[:1])
    assert m["npu_int8"] == {"skipped": "SOFTMAX: no reference-kernel emulation"}
    _numbers(m["cpu_reference"], tflite=True)


# --------------------------------------------------------------------------- float and other formats


@pytest.fixture(scope="module")
def tiny():
    return tiny_sesr("sesr_m3_relu")


@pytest.fixture(scope="module")
def float_arts(tiny, tmp_path_factory):
    d = tmp_path_factory.mktemp("emu_float")
    return {"tflite_fp32": export_tflite(tiny, d / "m_fp32.tflite", "fp32")["path"],
            "tflite_fp16": export_tflite(tiny, d / "m_fp16.tflite", "fp16")["path"],
            "onnx_fp32": export_onnx(tiny, d / "m_fp32.onnx")["path"]}


@pytest.mark.parametrize("key", ["tflite_fp32", "tflite_fp16"])
def test_float_tflite_runs_the_artifact_and_skips_npu(key, float_arts, tiny, photos):
    m = emulation_matrix(float_arts[key], tiny, photos)
    assert m["npu_int8"] == {"skipped": FLOAT_NO_INT8}
    for engine in ("cpu_reference", "xnnpack", "gpu_fp16"):
        _numbers(m[engine], tflite=True)
    tol = FP32_MAX_ABS_ERR if key == "tflite_fp32" else 1e-3  # fp16 weights, fp32 arithmetic
    assert m["cpu_reference"]["max_abs_err"] <= tol and m["xnnpack"]["max_abs_err"] <= tol
    assert m["gpu_fp16"]["max_abs_err"] > m["xnnpack"]["max_abs_err"]  # fp16 activations add error
    assert 0 < m["gpu_fp16"]["max_abs_err_vs_xnnpack"] < 2e-3  # the artifact's graph in half: under one 8-bit level


def test_bare_tflite_takes_the_reference_contract_and_its_own_precision(float_arts, sesr_int8, tiny, photos, tmp_path):
    """A .tflite without its edgesr sidecar: precision read from its tensors, contract from the reference."""
    from pathlib import Path

    fp16 = tmp_path / "bare_fp16.tflite"
    fp16.write_bytes(Path(float_arts["tflite_fp16"]).read_bytes())
    m = emulation_matrix(fp16, tiny, photos[:1])
    assert m["npu_int8"] == {"skipped": FLOAT_NO_INT8} and m["cpu_reference"]["max_abs_err"] < 1e-3
    int8 = tmp_path / "bare_int8.tflite"
    int8.write_bytes(Path(sesr_int8[0]).read_bytes())
    m = emulation_matrix(int8, sesr_int8[1], photos[:1])
    assert "skipped" not in m["npu_int8"] and abs(m["npu_int8"]["psnr_y"] - m["cpu_reference"]["psnr_y"]) < 0.05


def test_onnx_rows(float_arts, tiny, photos):
    import onnxruntime as ort

    m = emulation_matrix(float_arts["onnx_fp32"], tiny, photos)
    assert m["cpu_reference"]["max_abs_err"] <= FP32_MAX_ABS_ERR
    _numbers(m["gpu_fp16"])
    assert "not the artifact's graph" in m["gpu_fp16"]["arithmetic"] and "ONNX" in m["gpu_fp16"]["arithmetic"]
    assert m["npu_int8"] == {"skipped": FLOAT_NO_INT8}
    if "XnnpackExecutionProvider" not in ort.get_available_providers():
        assert "XnnpackExecutionProvider" in m["xnnpack"]["skipped"]


def test_coreml_rows_run_the_mil_interpreter(tiny, photos, tmp_path):
    fp16 = export_coreml(tiny, tmp_path / "m_fp16.mlpackage", "fp16")["path"]
    m = emulation_matrix(fp16, tiny, photos)
    _numbers(m["cpu_reference"])
    _numbers(m["gpu_fp16"])
    assert 0 < m["cpu_reference"]["max_abs_err"] < 2e-3 and 0 < m["gpu_fp16"]["max_abs_err"] < 2e-3
    assert "XNNPACK" in m["xnnpack"]["skipped"] and m["npu_int8"] == {"skipped": FLOAT_NO_INT8}


def test_emulation_images_crop_and_name(photos):
    imgs = emulation_images({"photos": photos}, 48)
    assert [n for n, _ in imgs] == ["photos/chelsea", "photos/camera"]
    assert [i.shape[:2] for _, i in imgs] == [(48, 48), (48, 48)]
    assert emulation_images(photos, 0)[0][1].shape == photos[0][1].shape
    assert emulation_images(photos, 1000)[1][1].shape == photos[1][1].shape
    with pytest.raises(EdgesrError, match=">= 0"):
        emulation_images(photos, -1)
    with pytest.raises(EdgesrError, match="no images"):
        emulation_images({}, 48)


def test_bad_input_raises(float_arts, tiny, photos, tmp_path):
    lut = tmp_path / "m.lut"
    lut.write_bytes(b"x")
    with pytest.raises(EdgesrError, match=r"\.tflite, \.onnx, \.mlpackage, \.pte"):
        emulation_matrix(lut, tiny, photos)
    with pytest.raises(EdgesrError, match="no such artifact"):
        emulation_matrix(tmp_path / "nope.tflite", tiny, photos)
    with pytest.raises(EdgesrError, match="reference is x4"):
        emulation_matrix(float_arts["tflite_fp32"], tiny_sesr("sesr_m3_relu", scale=4), photos)
    with pytest.raises(EdgesrError, match="no images"):
        emulation_matrix(float_arts["tflite_fp32"], tiny, [])


# --------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def cli(sesr_int8, photos, tmp_path_factory):
    path, module = sesr_int8
    d = tmp_path_factory.mktemp("validate_emulation")
    ckpt = save_checkpoint(d / "deploy.pt", module, form="deploy")
    for name, img in photos:
        write_image(d / "imgs" / f"{name}.png", img)
    return d, ["validate", str(path), "--reference", str(ckpt), "--sets", str(d / "imgs"), "--int8-tolerance-db", "100"]


def test_cli_emulation_json_and_summary(cli, capsys):
    d, args = cli
    out = d / "v.json"
    assert main(args + ["--emulation", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    r = json.loads(out.read_text())
    assert set(r["emulation"]) == set(EMULATION_ENGINES)
    for row in r["emulation"].values():
        _numbers(row, tflite=True)
    assert "skipped" not in r["emulation"]["npu_int8"]
    assert r["emulation_images"] == {"crop_px": None, "images": ["imgs/camera", "imgs/chelsea"]}
    assert r["emulation"]["xnnpack"]["max_abs_err"] == r["max_abs_err"]  # whole images: the validation's own numbers
    assert "emulation matrix (whole images" in printed and "npu_int8" in printed
    assert main(args + ["--json", str(out)]) == 0 and "emulation" not in json.loads(out.read_text())  # opt-in


def test_cli_emulation_crop_on_a_float_artifact(cli, tiny, float_arts, capsys):
    d, _ = cli
    ckpt = save_checkpoint(d / "tiny.pt", tiny)
    out = d / "f.json"
    assert main(["validate", float_arts["tflite_fp32"], "--reference", str(ckpt), "--sets", str(d / "imgs"),
                 "--emulation", "--emulation-crop", "40", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["emulation"]["npu_int8"] == {"skipped": FLOAT_NO_INT8} and r["emulation_images"]["crop_px"] == 40
    assert f"skipped: {FLOAT_NO_INT8}" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [(["--emulation", "--emulation-crop", "-3"], "--emulation-crop: expected an integer >= 0, got '-3'"),
                                            (["--emulation-crop", "32"], "needs --emulation")])
def test_cli_emulation_bad_flags_exit_2(cli, capsys, extra, message):
    _, args = cli
    assert main(args + extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_emulation_of_a_lut_exits_2(cli, tmp_path, capsys):
    _, args = cli
    lut = tmp_path / "m.lut"
    lut.write_bytes(b"x")
    assert main(["validate", str(lut), *args[2:], "--emulation"]) == 2
    err = capsys.readouterr().err
    assert "m.lut" in err and "--emulation" in err and err.count("\n") == 1
