"""Fuzz: mutated real files (bytes flipped, truncated, headers altered) through every loader.

Each loader (image, checkpoint, LUT bundle, SR-LUT .npy importer) is driven through the CLI
(``edgesr.cli.main``): the outcome must be success, or exit 2 with one ``edgesr: error:``
line naming the file; never a traceback. Hypothesis runs derandomized (the same examples
on every run) with a fixed number of examples, a few seconds per loader.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgesr.cli import main
from edgesr.core.checkpoint import save_checkpoint
from edgesr.core.contract import IOContract
from edgesr.core.data import embedded_image
from edgesr.core.models import create
from edgesr.lut_baking.bundle import LutBundle, save_bundle

FUZZ = settings(derandomize=True, max_examples=25, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def mutations(draw, size: int):
    """A list of edits of a file of ``size`` bytes: flips, overwrites, a truncation, an insertion."""
    edits = draw(st.lists(st.one_of(
        st.tuples(st.just("flip"), st.integers(0, size - 1), st.integers(1, 255)),
        st.tuples(st.just("set"), st.integers(0, min(size - 1, 400)), st.binary(min_size=1, max_size=8)),  # headers
        st.tuples(st.just("cut"), st.integers(0, size - 1), st.just(b"")),
        st.tuples(st.just("insert"), st.integers(0, size - 1), st.binary(min_size=1, max_size=16)),
    ), min_size=1, max_size=4))
    return edits


def mutate(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for kind, at, arg in edits:
        at = min(at, max(len(buf) - 1, 0))
        if kind == "flip" and buf:
            buf[at] ^= arg
        elif kind == "set":
            buf[at : at + len(arg)] = arg
        elif kind == "cut":
            del buf[at:]
        elif kind == "insert":
            buf[at:at] = arg
    return bytes(buf)


def run_cli(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(list(args))
    return code, err.getvalue()


def assert_success_or_one_line(code: int, err: str, path: Path) -> None:
    assert "Traceback" not in err, err
    if code == 0:
        return
    errors = [ln for ln in err.strip().splitlines() if ln.startswith("edgesr: error: ")]
    assert code == 2 and len(errors) == 1, (code, err)
    assert path.name in errors[0], errors[0]


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("originals")
    photo = embedded_image("chelsea")[:24, :32]
    Image.fromarray(photo).save(d / "photo.png")
    Image.fromarray(photo).save(d / "photo.jpg", quality=90)
    torch.manual_seed(0)
    save_checkpoint(d / "model.pt", create("sesr_m3", scale=2, expansion=8))
    rng = np.random.default_rng(0)
    lut = rng.integers(-127, 128, size=(9**4, 4), dtype=np.int8)  # bits 5: 9 levels, a small valid SR-LUT
    save_bundle(LutBundle("srlut", 2, 5, [lut], IOContract(2, "rgb", 1, True), 0, "srlut_s"), d / "model.lut")
    np.save(d / "authors.npy", lut.reshape(9**4, 1, 2, 2))
    return {p.name: p for p in d.iterdir()}


def _fuzz_file(tmp_path: Path, original: Path, edits, suffix: str) -> Path:
    path = tmp_path / f"mutated{suffix}"
    path.write_bytes(mutate(original.read_bytes(), edits))
    return path


@pytest.mark.parametrize("name", ["photo.png", "photo.jpg"])
def test_fuzz_image_loader(tmp_path, originals, name):
    original = originals[name]

    @FUZZ
    @given(edits=mutations(original.stat().st_size))
    def check(edits):
        path = _fuzz_file(tmp_path, original, edits, original.suffix)
        code, err = run_cli("upscale", str(path), "--model", "bicubic", "-o", str(tmp_path / "out.png"))
        assert_success_or_one_line(code, err, path)

    check()


def test_fuzz_checkpoint_loader(tmp_path, originals):
    original = originals["model.pt"]
    image = originals["photo.png"]

    @FUZZ
    @given(edits=mutations(original.stat().st_size))
    def check(edits):
        path = _fuzz_file(tmp_path, original, edits, ".pt")
        code, err = run_cli("upscale", str(image), "--checkpoint", str(path), "-o", str(tmp_path / "out.png"))
        assert_success_or_one_line(code, err, path)

    check()


def test_fuzz_lut_bundle_loader(tmp_path, originals):
    original = originals["model.lut"]
    image = originals["photo.png"]

    @FUZZ
    @given(edits=mutations(original.stat().st_size))
    def check(edits):
        path = _fuzz_file(tmp_path, original, edits, ".lut")
        code, err = run_cli("upscale", str(image), "--artifact", str(path), "-o", str(tmp_path / "out.png"))
        assert_success_or_one_line(code, err, path)

    check()


def test_fuzz_npy_importer(tmp_path, originals):
    original = originals["authors.npy"]

    @FUZZ
    @given(edits=mutations(original.stat().st_size))
    def check(edits):
        path = _fuzz_file(tmp_path, original, edits, ".npy")
        code, err = run_cli("import-weights", "srlut", str(path), "--scale", "2", "--out", str(tmp_path / "out.lut"))
        assert_success_or_one_line(code, err, path)

    check()


def test_fuzz_jpeg_entropy_coded_data(tmp_path, originals):
    """Flips confined to the JPEG's Huffman-coded data (between SOS and EOI), where the marker
    structure survives: libjpeg-turbo's warnings make some of these one-line errors (see
    tests/test_imageio.py for the fraction); the rest decode. Never a traceback."""
    original = originals["photo.jpg"].read_bytes()
    sos = original.index(b"\xff\xda")
    start, end = sos + 2 + int.from_bytes(original[sos + 2 : sos + 4], "big"), original.rindex(b"\xff\xd9")
    refused = []

    @FUZZ
    @given(flips=st.lists(st.tuples(st.integers(start, end - 1), st.integers(1, 255)), min_size=1, max_size=3))
    def check(flips):
        path = _fuzz_file(tmp_path, originals["photo.jpg"], [("flip", at, x) for at, x in flips], ".jpg")
        code, err = run_cli("upscale", str(path), "--model", "bicubic", "-o", str(tmp_path / "out.png"))
        assert_success_or_one_line(code, err, path)
        if code == 2:
            refused.append(err)

    check()
    assert refused and all("corrupt JPEG data" in e or "not a readable image" in e for e in refused), refused
