"""The Android app's contract reader (``TfliteMetadata.java``, plain Java) on the host JVM,
against the metadata edgesr embeds in exported ``.tflite`` files.

The app reads a TFLite model's I/O contract from the model file itself (the FlatBuffer's
``Metadata`` entry named ``"edgesr"``); these tests run the very Java file the app compiles,
through ``android_demo/host/HostDriver.java``, on models written by ``edgesr``'s exporter.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from edgesr.converters import export_tflite
from edgesr.converters.tflite import convert
from test_converters_common import tiny_sesr

from edgesr.core.contract import KEY, metadata_text, read_artifact_metadata
from edgesr.core.evaluate import calibration_patches

ROOT = Path(__file__).resolve().parents[1]
JAVA_SRC = ROOT / "android_demo/app/src/main/java/dev/edgesr/demo"
HOST_DRIVER = ROOT / "android_demo/host/HostDriver.java"


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    javac, java = shutil.which("javac"), shutil.which("java")
    if not (javac and java):
        pytest.skip(f"needs javac and java (found javac={javac}, java={java})")
    classes = tmp_path_factory.mktemp("classes")
    sources = sorted(JAVA_SRC.glob("*.java")) + [HOST_DRIVER]  # every .java file of the app is plain Java
    res = subprocess.run([javac, "-Xlint:all", "-Werror", "-d", str(classes), *map(str, sources)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr

    def read(model: Path, name: str = KEY) -> tuple[int, str | None, str]:
        out = model.with_name(model.name + ".java.txt")
        r = subprocess.run([java, "-cp", str(classes), "HostDriver", "metadata", str(model), name, str(out)],
                           capture_output=True, text=True, timeout=60)
        return r.returncode, (out.read_text(encoding="utf-8") if r.returncode == 0 else None), r.stderr

    return read


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """fp32 and int8 .tflite files exported by edgesr (contract embedded), and a bare one."""
    module = tiny_sesr("sesr_m3")
    d = tmp_path_factory.mktemp("tfl")
    calib = calibration_patches(None, module.contract, count=8, patch=32)
    fp32 = export_tflite(module, d / "m_fp32.tflite", "fp32")["path"]
    int8 = export_tflite(module, d / "m_int8.tflite", "int8", calib)["path"]
    bare = d / "bare.tflite"
    bare.write_bytes(convert(module, 1, "fp32"))  # the converter's output, nothing embedded
    return {"fp32": Path(fp32), "int8": Path(int8), "bare": bare}


def _entry_with_tflite_package(path: Path, name: str) -> str:
    """The named metadata buffer read with the ``tflite`` package (Python's flatbuffer reader)."""
    import tflite

    m = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    entry = next(m.Metadata(i) for i in range(m.MetadataLength()) if m.Metadata(i).Name() == name.encode())
    return m.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode("utf-8")


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_java_reader_returns_the_embedded_contract(host, models, precision):
    rc, text, err = host(models[precision])
    assert rc == 0, err
    meta = read_artifact_metadata(models[precision])
    assert text == metadata_text(meta)  # the exact bytes edgesr embedded
    contract = json.loads(text)["contract"]
    assert contract["layout"] == "NHWC" and contract["scale"] == 2 and contract["color"] == "y"
    assert json.loads(text)["provenance"]["precision"] == precision


def test_java_reader_other_names_and_bare_model(host, models):
    assert host(models["bare"])[0] == 3  # no "edgesr" entry: null, not an error
    rc, text, err = host(models["fp32"], "min_runtime_version")  # the converter's own entry
    assert rc == 0 and text == _entry_with_tflite_package(models["fp32"], "min_runtime_version"), (text, err)
    assert host(models["fp32"], "no_such_entry")[0] == 3


def test_java_reader_rejects_malformed_files(host, models, tmp_path):
    data = models["int8"].read_bytes()
    cases = {"truncated": data[: len(data) // 3], "garbage": bytes(range(256)) * 8, "empty": b"",
             "bad_root": data[:4].replace(data[:4], b"\xff\xff\xff\x7f") + data[4:]}
    for name, blob in cases.items():
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(blob)
        rc, _, err = host(path)
        assert rc not in (0, 3), name
        assert "IllegalArgumentException" in err, (name, err)
