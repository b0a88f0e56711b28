"""``edgesr quantize``: a quantized checkpoint and the PSNR drop; bad input exits 2 on one line."""

from __future__ import annotations

import pytest
import torch
from edgesr.quantization import fake_quant_module, load_activation_ranges
from test_quantization_common import one_thread  # noqa: F401 (fixture)

from edgesr.cli import main
from edgesr.core.checkpoint import load_checkpoint, save_checkpoint
from edgesr.core.data import embedded_image
from edgesr.core.imageio import write_image
from edgesr.core.models import create

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "tiny.pt", create("sesr_m3_relu", scale=2, expansion=16))


@pytest.fixture
def calib_dir(tmp_path):
    d = tmp_path / "calib"
    write_image(d / "cat.png", embedded_image("chelsea")[40:200, 100:300])
    write_image(d / "camera.png", embedded_image("camera")[100:260, 100:260])
    return d


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgesr: error: "), err
    return err[0]


def test_quantize_writes_ranges_and_reports_the_psnr_drop(ckpt, calib_dir, tmp_path, capsys):
    out = tmp_path / "q" / "tiny_int8.pt"
    status = main(["quantize", str(ckpt), "--calib", str(calib_dir), "--recipe", "none",
                   "--observer", "percentile", "--percentile", "99.9",
                   "--qat-steps", "3", "--patches", "8", "--patch-size", "32", "--out", str(out),
                   "--sets", str(calib_dir)])  # score on the two small photos: keeps the test short
    assert status == 0
    text = capsys.readouterr().out
    assert "PSNR drop" in text and str(out) in text
    model, state = load_checkpoint(out)
    ranges = load_activation_ranges(out)
    assert state["form"] == "deploy" and state["quantization"]["observer"] == "percentile"
    assert state["quantization"]["qat_steps"] == 3
    scores = state["quantization"]["eval"]["calib"]
    assert scores["psnr_drop_db"] == pytest.approx(scores["float"]["psnr_y"] - scores["int8_sim"]["psnr_y"])
    fake_quant_module(model, ranges)  # the saved ranges cover the saved model's int8 tensors
    assert not list(out.parent.glob(".*"))  # no temporary file left behind


def test_empty_calibration_folder_exits_2(ckpt, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    assert main(["quantize", str(ckpt), "--calib", str(empty), "--out", str(tmp_path / "o.pt")]) == 2
    assert str(empty) in _one_error_line(capsys)
    assert not (tmp_path / "o.pt").exists()


def test_corrupt_checkpoint_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    assert main(["quantize", str(bad), "--out", str(tmp_path / "o.pt")]) == 2
    assert "bad.pt" in _one_error_line(capsys)


def test_bad_options_exit_2(ckpt, tmp_path, capsys):
    assert main(["quantize", str(ckpt), "--qat-steps", "-1"]) == 2
    assert "--qat-steps" in _one_error_line(capsys)
    assert main(["quantize", str(ckpt), "--percentile", "99"]) == 2
    assert "--percentile" in _one_error_line(capsys)
    assert main(["quantize", str(ckpt), "--recipe", "none", "--observer", "percentile", "--percentile", "20"]) == 2
    assert "percentile" in _one_error_line(capsys)
    assert main(["quantize", str(ckpt), "--observer", "mse"]) == 2  # the recipe picks its own ranges
    assert "--observer applies to --recipe none" in _one_error_line(capsys)
    assert main(["quantize", str(ckpt), "--recipe", "ptq", "--qat-steps", "5"]) == 2
    assert "--recipe ptq runs no QAT" in _one_error_line(capsys)
    assert main(["quantize", str(ckpt), "--recipe", "aimet"]) == 2
    assert "--recipe" in _one_error_line(capsys)
    assert not list(tmp_path.glob("*_int8.pt"))


@pytest.mark.parametrize("argv, recipe, qat_steps, observer", [
    ([], "default", 1000, "minmax"),  # what edgesr run applies, with its QAT steps
    (["--qat-steps", "0"], "default", 0, "minmax"),
    (["--recipe", "ptq"], "ptq", 0, "minmax"),
    (["--recipe", "none"], None, 0, "minmax"),  # min/max post-training quantization
    (["--recipe", "none", "--observer", "mse", "--qat-steps", "7"], None, 7, "mse"),
])
def test_quantize_applies_edgesr_runs_recipe_by_default(ckpt, monkeypatch, argv, recipe, qat_steps, observer):
    from edgesr.app.pipeline import DEFAULT_RECIPE, RunConfig
    from edgesr.commands import quantize as command

    seen = {}

    def fake(ckpt_path, calib, observer_, qat_steps_, out, **kw):
        seen.update(observer=observer_, qat_steps=qat_steps_, recipe=kw["recipe"])
        return {"out": "q.pt", "observer": observer_, "qat_steps": qat_steps_, "activation_ranges": {}, "eval": {}}

    monkeypatch.setattr(command, "quantize_checkpoint", fake)
    assert main(["quantize", str(ckpt), *argv]) == 0
    assert seen == {"observer": observer, "qat_steps": qat_steps, "recipe": recipe}
    assert (DEFAULT_RECIPE, RunConfig.qat_steps) == ("default", 1000)


def test_quantize_without_options_runs_the_recipe(ckpt, calib_dir, tmp_path, capsys):
    out = tmp_path / "tiny_int8.pt"
    assert main(["quantize", str(ckpt), "--calib", str(calib_dir), "--qat-steps", "3", "--patches", "8",
                 "--patch-size", "32", "--out", str(out), "--sets", str(calib_dir)]) == 0
    text = capsys.readouterr().out
    assert "(recipe default, 3 QAT steps," in text and "recipe default: kept minmax" in text
    assert "weights for w8a16 and Core ML W8: " in text  # which candidate, of the four scored
    recipe = load_checkpoint(out)[1]["quantization"]["recipe"]
    assert recipe["name"] == "default" and [s["technique"] for s in recipe["stages"]][-1] == "lsq_qat"
