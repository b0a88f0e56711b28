"""The app's order "input shape first, then the delegate" (``TfliteShape.java``,
``InterpreterPerShape.java``, plain Java) on the host JVM, checked with LiteRT itself.

LiteRT's Java ``Interpreter`` applies its delegates in the constructor, on the input shape
stored in the model (``[1, 1, 1, 1]`` in edgesr's exports); resizing afterwards undoes and
re-applies a GPU or NNAPI delegate. The app therefore writes the shape it will feed into a copy
of the model and builds one interpreter per shape. Checked here on models exported by edgesr
(fp32 and int8): the copy declares the shape (shape and signature, read by LiteRT), runs without
any resize, and gives exactly the outputs of the original model resized to that shape, on a
real photo; bad requests are refused; and a session is built once per shape.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from edgesr.converters import export_tflite
from test_converters_common import tiny_sesr

from edgesr.core.contract import IOContract
from edgesr.core.data import embedded_image
from edgesr.core.evaluate import calibration_patches, model_input

ROOT = Path(__file__).resolve().parents[1]
JAVA_SRC = ROOT / "android_demo/app/src/main/java/dev/edgesr/demo"
HOST_DRIVER = ROOT / "android_demo/host/HostDriver.java"


@pytest.fixture(scope="module")
def java(tmp_path_factory):
    javac, java_bin = shutil.which("javac"), shutil.which("java")
    if not (javac and java_bin):
        pytest.skip(f"needs javac and java (found javac={javac}, java={java_bin})")
    classes = tmp_path_factory.mktemp("classes")
    res = subprocess.run([javac, "-Xlint:all", "-Werror", "-d", str(classes), *map(str, sorted(JAVA_SRC.glob("*.java"))),
                          str(HOST_DRIVER)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr

    def run(*args) -> subprocess.CompletedProcess:
        return subprocess.run([java_bin, "-cp", str(classes), "HostDriver", *map(str, args)],
                              capture_output=True, text=True, timeout=60)

    return run


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    module = tiny_sesr("sesr_m3", scale=2)
    d = tmp_path_factory.mktemp("tfl")
    calib = calibration_patches(None, module.contract, count=8, patch=32)
    return {"fp32": Path(export_tflite(module, d / "m_fp32.tflite", "fp32")["path"]),
            "int8": Path(export_tflite(module, d / "m_int8.tflite", "int8", calib)["path"])}


def _feed(detail: dict, x: np.ndarray) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x
    scale, zero_point = detail["quantization"]
    return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(detail["dtype"])


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_model_with_the_shape_written_in_runs_as_the_resized_original(java, models, tmp_path, precision):
    from ai_edge_litert.interpreter import Interpreter

    h, w = 37, 45
    x = model_input(embedded_image("chelsea")[101 : 101 + h, 150 : 150 + w], IOContract(scale=2))  # (1, 1, h, w)
    x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # NHWC
    res = java("reshape", models[precision], f"1,{h},{w},1", tmp_path / "shaped.tflite")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split() == ["shape", "1,1,1,1", "signature", "1,-1,-1,1"]  # as exported: the 1 x 1 graph

    shaped = Interpreter(model_path=str(tmp_path / "shaped.tflite"))
    shaped.allocate_tensors()
    inp = shaped.get_input_details()[0]
    assert list(inp["shape"]) == [1, h, w, 1] and list(inp["shape_signature"]) == [1, h, w, 1]
    shaped.set_tensor(inp["index"], _feed(inp, x))
    shaped.invoke()
    got = shaped.get_tensor(shaped.get_output_details()[0]["index"])

    original = Interpreter(model_path=str(models[precision]))
    original.resize_tensor_input(original.get_input_details()[0]["index"], [1, h, w, 1])
    original.allocate_tensors()
    original.set_tensor(original.get_input_details()[0]["index"], _feed(original.get_input_details()[0], x))
    original.invoke()
    ref = original.get_tensor(original.get_output_details()[0]["index"])
    assert got.shape == ref.shape == (1, 2 * h, 2 * w, 1)
    assert np.array_equal(got, ref), f"max |diff| {np.abs(got.astype(np.float64) - ref).max()}"
    # the copy is the original with 8 int32 changed (input shape and signature), nothing else
    a, b = np.frombuffer(models[precision].read_bytes(), np.uint8), np.frombuffer((tmp_path / "shaped.tflite").read_bytes(), np.uint8)
    assert a.size == b.size and 0 < int((a != b).sum()) <= 8 * 4


def test_refused_shapes_and_files(java, models, tmp_path):
    model = models["fp32"]
    cases = {"1,5,5": "has rank 4", "1,5,5,3": "fixes dimension 3 to 1", "2,5,5,1": "fixes dimension 0 to 1",
             "1,0,5,1": "dimension below 1"}
    for shape, message in cases.items():
        res = java("reshape", model, shape, tmp_path / "x.tflite")
        assert res.returncode == 3 and message in res.stdout, (shape, res.stdout, res.stderr)
    fixed = tmp_path / "fixed.tflite"
    assert java("reshape", model, "1,8,9,1", fixed).returncode == 0
    res = java("reshape", fixed, "1,8,10,1", tmp_path / "x.tflite")  # a fixed H x W stays fixed
    assert res.returncode == 3 and "fixes dimension 2 to 9" in res.stdout, res.stdout
    assert java("reshape", fixed, "1,8,9,1", tmp_path / "x.tflite").returncode == 0
    (tmp_path / "not.tflite").write_bytes(b"PK\x03\x04 not a model at all")
    res = java("reshape", tmp_path / "not.tflite", "1,8,9,1", tmp_path / "x.tflite")
    assert res.returncode == 3 and "not a TFLite model" in res.stdout
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(model.read_bytes()[:200])
    res = java("reshape", truncated, "1,8,9,1", tmp_path / "x.tflite")
    assert res.returncode == 3 and "malformed TFLite model" in res.stdout, res.stdout + res.stderr


def test_one_session_per_shape_closed_before_the_next(java):
    res = java("pershape", "1,40,40,1", "1,40,40,1", "1,40,41,1", "1,40,41,1", "1,40,40,1")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "build 1,40,40,1", "use 1,40,40,1", "use 1,40,40,1",
        "close 1,40,40,1", "build 1,40,41,1", "use 1,40,41,1", "use 1,40,41,1",
        "close 1,40,41,1", "build 1,40,40,1", "use 1,40,40,1", "builds 3", "close 1,40,40,1"]
