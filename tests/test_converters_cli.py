"""``edgesr export``: artifacts (contract embedded; sidecars on request) written atomically; bad input exits 2 with one line
and leaves no file behind (corrupt checkpoint, unwritable --out, calibration folder without images)."""

from __future__ import annotations

import json
import warnings

import pytest
from edgesr.app.artifacts import open_artifact
from test_converters_common import tiny_sesr

from edgesr.cli import main
from edgesr.core.checkpoint import save_checkpoint
from edgesr.core.contract import contract_of, read_artifact_metadata


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt", tiny_sesr("sesr_m3_relu"))


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err
    assert err.startswith("edgesr: error:") and err.count("\n") == 1, err
    for w in words:
        assert w in err, err


def test_export_tflite_onnx(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["export", str(ckpt), "--formats", "tflite,onnx", "--precisions", "fp32", "--out", str(out), "--json",
               "--sidecar"])
    assert rc == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(a["format"], a["precision"]) for a in listed] == [("tflite", "fp32"), ("onnx", "fp32")]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["sesr_m3_relu_x2_fp32.onnx", "sesr_m3_relu_x2_fp32.onnx.json",
                     "sesr_m3_relu_x2_fp32.tflite", "sesr_m3_relu_x2_fp32.tflite.json"]  # no temporaries left
    for a in listed:
        meta = json.loads((out / (a["path"].rsplit("/", 1)[1] + ".json")).read_text())
        assert meta["provenance"]["source"] == str(ckpt) and meta["provenance"]["model"] == "sesr_m3_relu"
        assert open_artifact(a["path"]).contract == contract_of(meta)
        assert a["bytes"] > 1000
        assert read_artifact_metadata(a["path"]) == meta  # the sidecar is a copy of the embedded metadata


def test_export_default_embeds_without_sidecar(ckpt, tmp_path, capsys):
    """The default export writes the model files alone; each carries its own contract, with the
    artifact's tensor layout (NHWC for TFLite, NCHW for ONNX)."""
    out = tmp_path / "out"
    assert main(["export", str(ckpt), "--formats", "tflite,onnx", "--precisions", "fp32", "--out", str(out)]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["sesr_m3_relu_x2_fp32.onnx", "sesr_m3_relu_x2_fp32.tflite"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no legacy-sidecar warning: the metadata is embedded
        tfl = read_artifact_metadata(out / "sesr_m3_relu_x2_fp32.tflite")
        onx = read_artifact_metadata(out / "sesr_m3_relu_x2_fp32.onnx")
    assert tfl["contract"]["layout"] == "NHWC" and onx["contract"]["layout"] == "NCHW"
    assert tfl["provenance"]["model"] == onx["provenance"]["model"] == "sesr_m3_relu"
    assert {k: v for k, v in tfl["contract"].items() if k != "layout"} == {k: v for k, v in onx["contract"].items() if k != "layout"}


def test_export_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02 not a checkpoint")
    out = tmp_path / "out"
    assert main(["export", str(bad), "--formats", "onnx", "--precisions", "fp32", "--out", str(out)]) == 2
    _one_line_error(capsys, "bad.pt")
    assert not out.exists() or not any(out.iterdir())


def test_export_unwritable_out(ckpt, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    assert main(["export", str(ckpt), "--formats", "onnx", "--precisions", "fp32", "--out", str(blocker / "sub")]) == 2
    _one_line_error(capsys, str(blocker))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_export_calibration_folder_without_images(ckpt, tmp_path, capsys):
    calib = tmp_path / "calib"
    calib.mkdir()
    (calib / "notes.txt").write_text("no photographs here")
    out = tmp_path / "out"
    rc = main(["export", str(ckpt), "--formats", "tflite", "--precisions", "int8", "--out", str(out), "--calib", str(calib)])
    assert rc == 2
    _one_line_error(capsys, "calib", "no image")
    assert not out.exists() or not any(out.iterdir())


def test_export_unknown_precision(ckpt, tmp_path, capsys):
    assert main(["export", str(ckpt), "--formats", "tflite", "--precisions", "int4", "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "int4")
