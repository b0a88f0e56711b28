"""``edgesr export``: artifacts + sidecars written atomically; bad input exits 2 with one line
and leaves no file behind (corrupt checkpoint, unwritable --out, calibration folder without images)."""

from __future__ import annotations

import json

import pytest
from edgesr.converters.runtime import load_upscaler
from test_converters_common import tiny_sesr

from edgesr.cli import main
from edgesr.core.checkpoint import save_checkpoint
from edgesr.core.contract import contract_of


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
    rc = main(["export", str(ckpt), "--formats", "tflite,onnx", "--precisions", "fp32", "--out", str(out), "--json"])
    assert rc == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(a["format"], a["precision"]) for a in listed] == [("tflite", "fp32"), ("onnx", "fp32")]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["sesr_m3_relu_x2_fp32.onnx", "sesr_m3_relu_x2_fp32.onnx.json",
                     "sesr_m3_relu_x2_fp32.tflite", "sesr_m3_relu_x2_fp32.tflite.json"]  # no temporaries left
    for a in listed:
        meta = json.loads((out / (a["path"].rsplit("/", 1)[1] + ".json")).read_text())
        assert meta["provenance"]["source"] == str(ckpt) and meta["provenance"]["model"] == "sesr_m3_relu"
        assert load_upscaler(a["path"]).contract == contract_of(meta)
        assert a["bytes"] > 1000


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
