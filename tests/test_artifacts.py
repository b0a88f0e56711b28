"""One artifact path: the contract read from inside the file (edgesr.core.contract), and
:func:`edgesr.app.artifacts.open_artifact` for every kind.

Exported .tflite, .onnx and .mlpackage (MIL interpreter on Linux) evaluate and validate with no
sidecar; a tampered contract and a garbage file give one line naming the file (CLI exit 2);
old artifacts with only a sidecar still open, with a warning.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import crop
from edgesr.converters import export_coreml, export_onnx, export_tflite
from edgesr.converters.metadata import build_metadata, write_sidecar
from edgesr.converters.runtime import coreml_runtime_status
from edgesr.converters.tflite import convert, embed_metadata
from test_converters_common import photo_input, tiny_sesr

from edgesr.app.artifacts import OPENERS, open_artifact
from edgesr.cli import main
from edgesr.core.checkpoint import save_checkpoint
from edgesr.core.contract import (
    KEY,
    IOContract,
    LegacySidecarWarning,
    MissingMetadata,
    read_artifact_metadata,
    read_contract,
    sidecar_path,
)
from edgesr.core.errors import EdgesrError
from edgesr.core.imageio import write_image


@pytest.fixture(scope="module")
def model():
    return tiny_sesr("sesr_m3_relu")


@pytest.fixture(scope="module")
def ckpt(model, tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt", model)


@pytest.fixture(scope="module")
def arts(model, tmp_path_factory):
    d = tmp_path_factory.mktemp("arts")
    out = {"tflite": export_tflite(model, d / "m_fp32.tflite", "fp32")["path"],
           "onnx": export_onnx(model, d / "m_fp32.onnx")["path"],
           "mlpackage": export_coreml(model, d / "m_fp32.mlpackage", "fp32")["path"]}
    for p in out.values():
        assert not sidecar_path(p).exists()  # the default export writes the model file alone
    return out


@pytest.fixture(scope="module")
def photo_dir(photo, gray_photo, tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    write_image(d / "chelsea.png", crop(photo, 91, 123, 60, 120))
    write_image(d / "camera.png", crop(gray_photo, 83, 101, 100, 200))
    return d


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err
    assert err.startswith("edgesr: error:") and err.count("\n") == 1, err
    for w in words:
        assert w in err, err


# --------------------------------------------------------------------------- IOContract.from_dict

GOOD = IOContract(scale=3, color="luma_full", channels=1, layout="NHWC").to_dict()


def test_from_dict_round_trips_json():
    c = IOContract.from_dict(json.loads(json.dumps(GOOD)), "m.tflite")
    assert c == IOContract(scale=3, color="luma_full", channels=1, layout="NHWC")
    assert c.value_range == (0.0, 1.0) and isinstance(c.value_range, tuple)
    assert IOContract.from_dict({"scale": 2}, "x") == IOContract(scale=2)  # missing fields: defaults


@pytest.mark.parametrize("field,value", [
    ("scale", 0), ("scale", 9), ("scale", "2"), ("scale", 2.0), ("scale", True),
    ("color", "ycbcr"), ("channels", 2), ("channels", "1"), ("per_channel", "yes"),
    ("layout", "HWC"), ("dtype", "float64"), ("value_range", [0, float("inf")]),
    ("value_range", [1, 0]), ("value_range", "01"), ("value_range", [0, 1, 2]), ("bogus", 1),
])
def test_from_dict_rejects_nonsense_naming_the_file(field, value):
    with pytest.raises(EdgesrError, match=r"^m\.tflite: .*" + field):
        IOContract.from_dict({**GOOD, field: value}, "m.tflite")


def test_from_dict_rejects_non_objects():
    for bad in (None, [], "scale=2"):
        with pytest.raises(EdgesrError, match="m.onnx"):
            IOContract.from_dict(bad, "m.onnx")


# --------------------------------------------------------------------------- embedded contract


def test_every_export_embeds_its_contract(arts, model):
    for kind, path in arts.items():
        files = sorted(Path(path).rglob("*")) if kind == "mlpackage" else [Path(path)]
        stamps = [f.stat().st_mtime_ns for f in files]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no legacy-sidecar fallback
            meta = read_artifact_metadata(path)
        assert [f.stat().st_mtime_ns for f in files] == stamps, kind  # reading never rewrites the artifact
        layout = "NHWC" if kind == "tflite" else "NCHW"
        assert read_contract(path) == IOContract(**{**model.contract.to_dict(), "layout": layout}), kind
        assert meta["provenance"]["model"] == "sesr_m3_relu" and meta["provenance"]["precision"] == "fp32"


def test_open_artifact_without_sidecar_matches_torch(arts, model, photo):
    import torch

    x = photo_input(photo, model.contract, 29, 37, 40, 60)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    for kind, path in arts.items():
        if kind == "mlpackage" and coreml_runtime_status() is not None:
            continue
        up = open_artifact(path, precision="fp32", num_threads=1)
        np.testing.assert_allclose(up(x), ref, atol=1e-4, err_msg=kind)


@pytest.mark.parametrize("kind", ["tflite", "onnx", "mlpackage"])
def test_cli_eval_and_validate_without_sidecar(kind, arts, ckpt, photo_dir, tmp_path, capsys):
    if kind == "mlpackage" and coreml_runtime_status() is not None:
        pytest.skip(coreml_runtime_status())
    out = tmp_path / "e.json"
    assert main(["eval", "--artifact", arts[kind], "--sets", str(photo_dir), "--json", str(out)]) == 0, capsys.readouterr().err
    scores = json.loads(out.read_text())
    assert json.dumps(scores).count("psnr_y") >= 1
    v = tmp_path / "v.json"
    assert main(["validate", arts[kind], "--reference", str(ckpt), "--sets", str(photo_dir), "--json", str(v)]) == 0, \
        capsys.readouterr().err
    assert json.loads(v.read_text())["passed"] is True


def test_embedding_keeps_the_tflite_model_bit_identical(model, photo, tmp_path):
    """fp32 and int8 flatbuffers before and after :func:`embed_metadata`: same outputs bit for
    bit on LiteRT's XNNPACK and reference kernels, every weight buffer 16-byte aligned, and
    only the metadata list and one buffer added."""
    import tflite

    from edgesr.core.evaluate import calibration_patches
    from edgesr.converters.runtime import LiteRTModel
    from edgesr.quantization.integer_ref import quantize_input, read_model

    calib = calibration_patches(None, model.contract, count=8, patch=32)
    x = photo_input(photo, model.contract, 27, 33, 50, 70).transpose(0, 2, 3, 1)
    for precision in ("fp32", "int8"):
        raw = convert(model, 1, precision, calib if precision == "int8" else None)
        emb = embed_metadata(raw, build_metadata(model, "tflite", precision))
        (tmp_path / "raw.tflite").write_bytes(raw)
        (tmp_path / "emb.tflite").write_bytes(emb)
        tensors, _, ins, _ = read_model(tmp_path / "raw.tflite")
        q = quantize_input(x, tensors[ins[0]])
        for kernels in ("xnnpack", "reference"):
            a = LiteRTModel(tmp_path / "raw.tflite", kernels, 1).run(q)
            b = LiteRTModel(tmp_path / "emb.tflite", kernels, 1).run(q)
            assert a.dtype == b.dtype and np.array_equal(a, b), (precision, kernels)
        before, after = tflite.Model.GetRootAsModel(raw, 0), tflite.Model.GetRootAsModel(emb, 0)
        assert after.BuffersLength() == before.BuffersLength() + 1
        assert after.MetadataLength() == before.MetadataLength() + 1
        for i in range(before.BuffersLength()):
            old, new = before.Buffers(i), after.Buffers(i)
            assert np.array_equal(old.DataAsNumpy(), new.DataAsNumpy()) if old.DataLength() else not new.DataLength()
            if new.DataLength():
                assert new._tab.Vector(new._tab.Offset(4)) % 16 == 0, i  # Buffer.data start in the file


def _tamper_tflite(src, dst, **contract):
    meta = read_artifact_metadata(src)
    meta["contract"].update(contract)
    dst.write_bytes(embed_metadata(Path(src).read_bytes(), meta))
    return dst


def test_tampered_contract_is_one_line_exit_2(arts, photo_dir, tmp_path, capsys):
    bad = _tamper_tflite(arts["tflite"], tmp_path / "tampered.tflite", scale=99)
    assert main(["eval", "--artifact", str(bad), "--sets", str(photo_dir)]) == 2
    _one_line_error(capsys, "tampered.tflite", "scale", "99")
    model = onnx.load(arts["onnx"])
    prop = next(p for p in model.metadata_props if p.key == KEY)
    meta = json.loads(prop.value)
    meta["contract"]["color"] = "cmyk"
    prop.value = json.dumps(meta)
    onnx.save(model, str(tmp_path / "tampered.onnx"))
    assert main(["eval", "--artifact", str(tmp_path / "tampered.onnx"), "--sets", str(photo_dir)]) == 2
    _one_line_error(capsys, "tampered.onnx", "color", "cmyk")


def test_reembedding_replaces_the_entry(arts, tmp_path):
    twice = _tamper_tflite(arts["tflite"], tmp_path / "a.tflite", color="luma_full")
    again = _tamper_tflite(twice, tmp_path / "b.tflite", color="rgb", channels=1, per_channel=True)
    assert read_contract(again).color == "rgb"
    import tflite

    m = tflite.Model.GetRootAsModel(again.read_bytes(), 0)
    assert [m.Metadata(i).Name() for i in range(m.MetadataLength())].count(KEY.encode()) == 1


# --------------------------------------------------------------------------- garbage and legacy files


def test_open_artifact_on_garbage_is_one_line(arts, tmp_path, capsys):
    rng = np.random.default_rng(0)
    junk = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    for suffix in (".tflite", ".onnx", ".lut"):
        path = tmp_path / f"junk{suffix}"
        path.write_bytes(junk)
        with pytest.raises(EdgesrError) as err:
            open_artifact(path)
        assert str(err.value).startswith(str(path)) and "\n" not in str(err.value), str(err.value)
    data = Path(arts["tflite"]).read_bytes()
    for n in (0, 7, 40, 200, len(data) // 2, len(data) - 4096, len(data) - 1):
        trunc = tmp_path / f"trunc{n}.tflite"
        trunc.write_bytes(data[:n])
        with pytest.raises(EdgesrError) as err:
            open_artifact(trunc)
        assert str(err.value).startswith(str(trunc)) and "\n" not in str(err.value), str(err.value)
    pkg = tmp_path / "cut.mlpackage"
    shutil.copytree(arts["mlpackage"], pkg)
    weights = pkg / "Data/com.apple.CoreML/weights/weight.bin"
    weights.write_bytes(weights.read_bytes()[:200])
    if coreml_runtime_status() is None:
        with pytest.raises(EdgesrError) as err:
            open_artifact(pkg)(np.zeros((1, 1, 8, 8), np.float32))
        assert str(err.value).startswith(str(pkg)) and "\n" not in str(err.value), str(err.value)
    with pytest.raises(EdgesrError, match="unknown artifact type"):
        (tmp_path / "m.pte").write_bytes(b"x")
        open_artifact(tmp_path / "m.pte")
    assert set(OPENERS) >= {".tflite", ".onnx", ".mlpackage", ".lut"}
    (tmp_path / "junk.onnx").write_bytes(junk)
    assert main(["eval", "--artifact", str(tmp_path / "junk.onnx")]) == 2
    _one_line_error(capsys, "junk.onnx")


def test_legacy_sidecar_is_read_with_a_warning_and_bare_tflite_is_inferred(model, tmp_path):
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(convert(model, 1, "fp32"))  # no embedded metadata (an old or foreign export)
    with pytest.raises(MissingMetadata, match="bare.tflite"):
        read_artifact_metadata(bare)
    up = open_artifact(bare)  # a foreign .tflite: contract inferred (1 channel -> Y, scale by probe)
    assert up.contract == IOContract(scale=2, color="y", channels=1, layout="NHWC")
    meta = build_metadata(model, "tflite", "fp32")
    write_sidecar(bare, meta)
    with pytest.warns(LegacySidecarWarning, match="bare.tflite.json"):
        assert read_artifact_metadata(bare) == json.loads(json.dumps(meta))
    sidecar_path(bare).write_text('{"format": "edgesr-artifact", "contract": {"scale": -1}}')
    with pytest.raises(EdgesrError, match="bare.tflite.json.*scale"), warnings.catch_warnings():
        warnings.simplefilter("ignore", LegacySidecarWarning)
        read_artifact_metadata(bare)
