"""The CLI frictions of issue 11: --scale that agrees is accepted, import-weights writes a path
edgesr opens and reads the scale from the file, finetune-lut never overwrites silently,
collapse of an already-plain model writes its deploy checkpoint."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from edgesr.lut_baking.bundle import load_bundle
from PIL import Image

from edgesr.cli import main
from edgesr.core.checkpoint import load_checkpoint, save_checkpoint
from edgesr.core.data import embedded_image
from edgesr.core.imageio import read_image
from edgesr.core.models import create
from edgesr.core.train import TrainConfig, train


def edgesr(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2 and err.count("\n") == 1 and err.startswith("edgesr: error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in err, err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A real x2 SESR-M3 (width 16) checkpoint, trained a few steps on the embedded photographs."""
    out = tmp_path_factory.mktemp("train")
    return train(TrainConfig(model="sesr_m3", model_kwargs={"expansion": 16}, out=str(out), steps=2, batch=2,
                             lr_patch=16, val_every=0, progress=False))


@pytest.fixture()
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(embedded_image("chelsea")[:24, :32]).save(path)
    return path


def authors_srlut(path: Path, scale: int, bits: int = 7) -> Path:
    """A table in the SR-LUT authors' layout (L**4, 1, r, r) int8, L = 2**(8-bits) + 1."""
    levels = (256 >> bits) + 1
    rng = np.random.default_rng(0)
    np.save(path, rng.integers(-127, 128, size=(levels**4, 1, scale, scale), dtype=np.int8))
    return path


# ------------------------------------------------------------------ --scale


def test_scale_that_agrees_with_a_checkpoint_is_accepted(tmp_path, checkpoint):
    out = tmp_path / "e.json"
    code, _, err = edgesr("eval", "--checkpoint", checkpoint, "--scale", "2", "-o", out)
    assert code == 0, err
    assert out.exists()


def test_scale_that_conflicts_with_a_checkpoint_is_refused(tmp_path, checkpoint, photo):
    code, _, err = edgesr("eval", "--checkpoint", checkpoint, "--scale", "3", "-o", tmp_path / "e.json")
    one_line_error(code, err, "--scale 3 conflicts", str(checkpoint), "x2")
    code, _, err = edgesr("upscale", photo, "--checkpoint", checkpoint, "--scale", "4", "-o", tmp_path / "o.png")
    one_line_error(code, err, "--scale 4 conflicts")
    assert not (tmp_path / "e.json").exists() and not (tmp_path / "o.png").exists()


def test_model_scale_is_used_as_given(tmp_path, photo):
    code, _, err = edgesr("upscale", photo, "--model", "bicubic", "--scale", "3", "-o", tmp_path / "o.png")
    assert code == 0, err
    assert read_image(tmp_path / "o.png").shape[:2] == (72, 96)


# ------------------------------------------------------------------ import-weights


def test_srlut_import_appends_the_suffix_reads_the_scale_and_opens(tmp_path, photo):
    table = authors_srlut(tmp_path / "Model_S_x3_7bit.npy", scale=3)
    code, out, err = edgesr("import-weights", "srlut", table, "-o", tmp_path / "mylut")
    assert code == 0, err
    written = tmp_path / "mylut.lut"
    assert f"-> {written}" in out
    bundle = load_bundle(written)
    assert (bundle.scale, bundle.bits) == (3, 7)
    code, _, err = edgesr("upscale", photo, "--artifact", written, "--scale", "3", "-o", tmp_path / "up.png")
    assert code == 0, err
    assert read_image(tmp_path / "up.png").shape[:2] == (72, 96)


def test_srlut_import_with_a_conflicting_scale_writes_nothing(tmp_path):
    table = authors_srlut(tmp_path / "t.npy", scale=2)
    code, _, err = edgesr("import-weights", "srlut", table, "--scale", "4", "-o", tmp_path / "x.lut")
    one_line_error(code, err, "--scale 4 conflicts", "x2")
    assert not (tmp_path / "x.lut").exists()


def test_srlut_import_of_a_table_without_a_scale(tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((81, 5), dtype=np.int8))  # 5 outputs per entry: no r with r*r == 5
    code, _, err = edgesr("import-weights", "srlut", bad, "-o", tmp_path / "x")
    one_line_error(code, err, str(bad), "(81, 5)")
    text = tmp_path / "text.npy"
    text.write_text("not numpy")
    code, _, err = edgesr("import-weights", "srlut", text, "-o", tmp_path / "x")
    one_line_error(code, err, str(text), "not a .npy")


def test_esr_import_appends_pt(tmp_path):
    model = create("esr_max_s2_k7_c13", scale=2)
    src = tmp_path / "eSR-MAX_s2_K7_C13.model"
    torch.save(model.state_dict(), src)
    code, out, err = edgesr("import-weights", "esr", src, "-o", tmp_path / "esr_max")
    assert code == 0, err
    assert f"-> {tmp_path / 'esr_max.pt'}" in out
    _, state = load_checkpoint(tmp_path / "esr_max.pt")
    assert state["scale"] == 2
    code, _, err = edgesr("import-weights", "esr", src, "--scale", "3", "-o", tmp_path / "other")
    one_line_error(code, err, "--scale 3 conflicts")
    assert not (tmp_path / "other.pt").exists()


# ------------------------------------------------------------------ finetune-lut


def test_finetune_lut_writes_a_new_file_unless_told_to_overwrite(tmp_path):
    table = authors_srlut(tmp_path / "t.npy", scale=2)
    assert edgesr("import-weights", "srlut", table, "-o", tmp_path / "m.lut")[0] == 0
    original = (tmp_path / "m.lut").read_bytes()
    small = ("--steps", "1", "--batch", "1", "--patch", "8")
    code, _, err = edgesr("finetune-lut", tmp_path / "m.lut", *small)
    assert code == 0, err
    assert (tmp_path / "m.lut").read_bytes() == original  # the input is untouched
    tuned = tmp_path / "m_finetuned.lut"
    assert load_bundle(tuned).source["finetune_steps"] == 1
    code, _, err = edgesr("finetune-lut", tmp_path / "m.lut", *small)  # the default output now exists
    one_line_error(code, err, str(tuned), "already exists", "--overwrite")
    code, _, err = edgesr("finetune-lut", tmp_path / "m.lut", *small, "-o", tmp_path / "m.lut")
    one_line_error(code, err, "the input bundle", "--overwrite")
    assert (tmp_path / "m.lut").read_bytes() == original
    code, _, err = edgesr("finetune-lut", tmp_path / "m.lut", *small, "-o", tmp_path / "m.lut", "--overwrite")
    assert code == 0, err
    assert load_bundle(tmp_path / "m.lut").source["finetune_steps"] == 1


# ------------------------------------------------------------------ collapse


def test_collapse_of_a_plain_model_writes_its_deploy_checkpoint(tmp_path):
    plain = save_checkpoint(tmp_path / "esr.pt", create("esr_max", scale=3), form="train")
    code, out, err = edgesr("collapse", plain, "-o", tmp_path / "deploy.pt")
    assert code == 0, err
    assert "no training-only form" in out
    model, state = load_checkpoint(tmp_path / "deploy.pt")
    assert state["form"] == "deploy" and state["scale"] == 3
    before = load_checkpoint(plain)[0].state_dict()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_collapse_of_a_deploy_checkpoint_again(tmp_path, checkpoint):
    assert edgesr("collapse", checkpoint, "-o", tmp_path / "d1.pt")[0] == 0
    code, _, err = edgesr("collapse", tmp_path / "d1.pt", "-o", tmp_path / "d2.pt")
    assert code == 0, err
    a, b = load_checkpoint(tmp_path / "d1.pt")[0].state_dict(), load_checkpoint(tmp_path / "d2.pt")[0].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
