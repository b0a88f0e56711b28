"""The CLI on real photos, awkward images, and every bad input the foundation refuses."""

from __future__ import annotations

import contextlib
import io
import json
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgesr.cli import main
from edgesr.core.data import embedded_image
from edgesr.core.imageio import read_image
from edgesr.core.train import TrainConfig, train


def edgesr(*args: str) -> subprocess.CompletedProcess:
    """Run ``edgesr.cli.main`` in-process and capture what a user would see (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("default")
        code = main(list(args))
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def edgesr_process(*args: str) -> subprocess.CompletedProcess:
    """Run the installed entry point in a real subprocess (exit status and traceback-free stderr)."""
    return subprocess.run([sys.executable, "-m", "edgesr.cli", *args], capture_output=True, text=True, timeout=300)


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit status 2, one error line naming the problem, no traceback (warnings may precede it)."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("edgesr: error: ")]
    assert len(errors) == 1 and all(ln.startswith(("edgesr: error: ", "edgesr: warning: ")) for ln in lines), proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in errors[0], errors[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train")
    return train(TrainConfig(model="sesr_m3", model_kwargs={"expansion": 16}, out=str(out), steps=20, batch=4,
                             lr_patch=16, val_every=0, progress=False))


def _png_with_header(path: Path, width: int, height: int) -> None:
    """A PNG whose IHDR claims width x height but carries almost no data (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


# ------------------------------------------------------------------ happy paths


def test_list_and_info_json():
    proc = edgesr_process("info", "sesr_m5", "--scale", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert set(info) == {"name", "scale", "params", "params_deploy", "macs_per_frame_720p"}
    assert info["params_deploy"] == 13700 and info["macs_per_frame_720p"] == 13520 * 360 * 640
    assert "sesr_m5" in edgesr("list").stdout


def test_info_of_a_lookup_table_model_has_no_inference_macs():
    proc = edgesr_process("info", "srlut_s", "--scale", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["macs_per_frame_720p"] is None and info["network_macs_per_frame_720p"] > 0
    assert "lookup table" in edgesr_process("info", "srlut_s").stdout


def test_eval_on_embedded_photos_writes_json(tmp_path, checkpoint):
    out = tmp_path / "e.json"
    assert main(["eval", "--checkpoint", str(checkpoint), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["scale"] == 2 and 20 < res["eval"]["embedded"]["psnr_y"] < 60


def test_collapse_command_writes_a_deploy_checkpoint(tmp_path, checkpoint):
    from edgesr.core.checkpoint import load_checkpoint

    out = tmp_path / "deploy.pt"
    assert main(["collapse", str(checkpoint), "-o", str(out)]) == 0
    model, state = load_checkpoint(out)
    assert state["form"] == "deploy" and not hasattr(model, "collapse")


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "I;16", "LA"])
def test_upscale_handles_awkward_images(tmp_path, checkpoint, mode):
    src = embedded_image("chelsea")[:37, :53]  # odd size
    if mode == "I;16":
        im = Image.fromarray(src[..., 0].astype("<u2") * 257)
    elif mode in ("RGBA", "LA"):
        alpha = np.linspace(0, 255, src.shape[1], dtype=np.uint8)[None].repeat(src.shape[0], 0)
        base = src if mode == "RGBA" else src[..., 0]
        im = Image.fromarray(np.dstack([base, alpha]))
    else:
        im = Image.fromarray(src).convert(mode)
    path = tmp_path / f"in_{mode.replace(';', '')}.png"
    im.save(path)
    out = tmp_path / "out.png"
    assert main(["upscale", str(path), "--checkpoint", str(checkpoint), "-o", str(out)]) == 0
    result = read_image(out, keep_alpha=True)
    assert result.shape[:2] == (74, 106)
    channels = {"RGB": 3, "L": None, "RGBA": 4, "P": 3, "I;16": None, "LA": 2}[mode]
    assert (result.ndim == 2) if channels is None else (result.shape[2] == channels)
    if mode in ("RGBA", "LA"):  # alpha upscaled by bicubic, not dropped
        assert result[..., -1].min() < 20 and result[..., -1].max() > 235


def test_sixteen_bit_maps_to_eight_bit(tmp_path):
    v = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    Image.fromarray(v.astype("<u2")).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), [[0, 1, 255, 128]])


def test_upscaled_photo_is_better_than_nearest(tmp_path):
    """The network output on Y + bicubic chroma is a real photo, close to the HR one."""
    from edgesr.core.evaluate import TorchUpscaler, upscale_photo
    from edgesr.core.imresize import imresize
    from edgesr.core.metrics import psnr
    from edgesr.core.models import create

    hr = embedded_image("coffee")[:200, :300]
    lr = imresize(hr, 0.5)
    out = upscale_photo(TorchUpscaler(create("bicubic", scale=2)), lr)
    nearest = lr.repeat(2, 0).repeat(2, 1)
    assert psnr(out.astype(float), hr.astype(float), 2) > psnr(nearest.astype(float), hr.astype(float), 2)


# ------------------------------------------------------------------ bad input


def test_bad_images_are_refused_with_one_line(tmp_path, checkpoint):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    good = tmp_path / "good.png"
    Image.fromarray(embedded_image("chelsea")).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    corrupt = tmp_path / "corrupt.png"
    data = bytearray(good.read_bytes())
    data[100:400] = bytes(300)
    corrupt.write_bytes(bytes(data))
    bomb = tmp_path / "bomb.png"
    _png_with_header(bomb, 100_000, 100_000)
    out = tmp_path / "out.png"
    for path, needle in [(tmp_path / "missing.png", "no such file"), (empty, "empty"), (text, "not a readable image"),
                         (truncated, "not a readable image"), (corrupt, "not a readable image"), (bomb, "more pixels than the limit")]:
        proc = edgesr("upscale", str(path), "--checkpoint", str(checkpoint), "-o", str(out))
        assert_user_error(proc, str(path), needle)
        assert not out.exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # no half-written temp file


def test_unknown_model_and_unsupported_scale():
    assert_user_error(edgesr_process("info", "sesr_m99"), "sesr_m99", "known models")  # the real exit path once
    assert_user_error(edgesr("eval", "--model", "bicubic", "--scale", "5"), "scale 5")
    assert_user_error(edgesr("train", "--model", "nope", "--steps", "1"), "nope")


def test_corrupt_and_foreign_checkpoints(tmp_path, checkpoint):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(checkpoint.read_bytes()[:1000])
    assert_user_error(edgesr("eval", "--checkpoint", str(bad)), str(bad), "corrupt")
    import torch

    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    assert_user_error(edgesr("eval", "--checkpoint", str(foreign)), "not an edgesr checkpoint")
    # weights of another configuration under this model's name
    state = torch.load(checkpoint, weights_only=True)
    state["kwargs"] = {"expansion": 32}
    del state["sha256"]  # as an older edgesr wrote it (loads with a warning)
    other = tmp_path / "other.pt"
    torch.save(state, other)
    assert_user_error(edgesr("eval", "--checkpoint", str(other)), "do not fit")


def test_training_folder_without_large_enough_images(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    Image.fromarray(embedded_image("chelsea")[:20, :20]).save(folder / "tiny.png")
    proc = edgesr("train", "--data", str(folder), "--steps", "1", "--out", str(tmp_path / "run"), "--expansion", "16")
    assert_user_error(proc, "crop")
    empty = tmp_path / "none"
    empty.mkdir()
    assert_user_error(edgesr("train", "--data", str(empty), "--steps", "1", "--out", str(tmp_path / "run2")), str(empty), "no image")


def test_unwritable_output_is_refused(tmp_path, checkpoint):
    src = tmp_path / "in.png"
    Image.fromarray(embedded_image("chelsea")[:30, :30]).save(src)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_user_error(edgesr("upscale", str(src), "--checkpoint", str(checkpoint), "-o", str(blocker / "out.png")), "cannot write")
