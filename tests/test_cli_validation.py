"""The CLI's one validation layer and one error boundary (issue 14, classes 1, 2 and 7).

Every bad value is refused while the command line is parsed: exit 2, one line naming the
flag and the value, no traceback, nothing written. Expected OS failures are one line naming
the file; anything unexpected prints its traceback and asks for a bug report (exit 70).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from edgesr.cli import COMMANDS, EXIT_BUG, build_parser, main
from edgesr.commands._args import show_progress


def edgesr(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``edgesr.cli.main`` in-process; capture exit status, stdout and stderr as a user sees them."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings(), \
            contextlib.chdir(cwd or os.getcwd()):
        warnings.simplefilter("default")
        code = main(list(args))
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, exactly one stderr line ``edgesr: error: ...`` containing every needle, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgesr: error: "), proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*")}


@pytest.fixture()
def inputs(tmp_path) -> dict[str, str]:
    """Placeholder input files: parsing never opens them, so they need not be valid."""
    paths = {}
    for key, name in (("ck", "ck.pt"), ("lut", "m.lut"), ("tflite", "a.tflite"), ("photo", "photo.png"), ("npy", "t.npy")):
        (tmp_path / name).write_bytes(b"x")
        paths[key] = str(tmp_path / name)
    (tmp_path / "run").mkdir()
    paths["run"] = str(tmp_path / "run")
    return paths


# (command line with {placeholders}, the flag and value the message must name)
BAD_VALUES = [
    ("run --scale 0", "--scale", "'0'"),
    ("run --scale 1", "--scale", "'1'"),
    ("run --scale 100", "--scale", "'100'"),
    ("run --steps 0", "--steps", "'0'"),
    ("run --steps -5", "--steps", "'-5'"),
    ("run --steps 2.5", "--steps", "'2.5'"),
    ("run --batch 0", "--batch", "'0'"),
    ("run --qat-steps -1", "--qat-steps", "'-1'"),
    ("run --lut-finetune-steps -1", "--lut-finetune-steps", "'-1'"),
    ("run --seed -1", "--seed", "'-1'"),
    ("run --formats bogus", "--formats", "'bogus'"),
    ("run --formats ,", "--formats", "','"),
    ("run --precisions int4", "--precisions", "'int4'"),
    ("train --steps 0", "--steps", "'0'"),
    ("train --batch -1", "--batch", "'-1'"),
    ("train --lr nan", "--lr", "'nan'"),
    ("train --lr inf", "--lr", "'inf'"),
    ("train --lr 0", "--lr", "'0'"),
    ("train --lr -0.001", "--lr", "'-0.001'"),
    ("train --lr=-1e-3", "--lr", "'-1e-3'"),
    ("train --lr-patch 0", "--lr-patch", "'0'"),
    ("train --checkpoint-every 0", "--checkpoint-every", "'0'"),
    ("train --val-every -1", "--val-every", "'-1'"),
    ("train --expansion 0", "--expansion", "'0'"),
    ("train --expansion -16", "--expansion", "'-16'"),
    ("info sesr_m5 --scale 0", "--scale", "'0'"),
    ("eval --model bicubic --scale 0", "--scale", "'0'"),
    ("eval --model bicubic --scale nan", "--scale", "'nan'"),
    ("eval --checkpoint {ck} --scale -2", "--scale", "'-2'"),
    ("upscale {photo} --model bicubic -o out.png --scale 0", "--scale", "'0'"),
    ("quantize {ck} --qat-steps -1", "--qat-steps", "'-1'"),
    ("quantize {ck} --patches 0", "--patches", "'0'"),
    ("quantize {ck} --patch-size 0", "--patch-size", "'0'"),
    ("quantize {ck} --percentile nan", "--percentile", "'nan'"),
    ("quantize {ck} --percentile 20", "--percentile", "'20'"),
    ("export {ck} --formats tflite,bogus", "--formats", "'bogus'"),
    ("export {ck} --precisions int3", "--precisions", "'int3'"),
    ("export {ck} --calib-patches 0", "--calib-patches", "'0'"),
    ("bake {ck} --bits 0 -o b.lut", "--bits", "'0'"),
    ("bake {ck} --bits 9 -o b.lut", "--bits", "'9'"),
    ("finetune-lut {lut} --steps 0", "--steps", "'0'"),
    ("finetune-lut {lut} --lr -1", "--lr", "'-1'"),
    ("finetune-lut {lut} --batch 0", "--batch", "'0'"),
    ("finetune-lut {lut} --patch 0", "--patch", "'0'"),
    ("golden {tflite} -o g --max-size 2", "--max-size", "'2'"),
    ("profile {tflite} --threads 0", "--threads", "'0'"),
    ("profile {tflite} --threads 1,x", "--threads", "'1,x'"),
    ("profile {tflite} --sizes 0x5", "--sizes", "'0x5'"),
    ("profile {tflite} --sizes 4k", "--sizes", "'4k'"),
    ("profile {tflite} --repeats 0", "--repeats", "'0'"),
    ("profile {tflite} --warmup -1", "--warmup", "'-1'"),
    ("report {run} --repeats 0", "--repeats", "'0'"),
    ("report {run} --size 0x0", "--size", "'0x0'"),
    ("validate {tflite} --reference {ck} --num-threads 0", "--num-threads", "'0'"),
    ("validate {tflite} --reference {ck} --int8-tolerance-db nan", "--int8-tolerance-db", "'nan'"),
    ("validate {tflite} --reference {ck} --emulation-crop -1", "--emulation-crop", "'-1'"),
    ("import-weights srlut {npy} -o x --scale 0", "--scale", "'0'"),
    ("android-export {run} --gpu-tolerance -1", "--gpu-tolerance", "'-1'"),
    ("android-export {run} --gpu-tolerance nan", "--gpu-tolerance", "'nan'"),
]


@pytest.mark.parametrize(("line", "flag", "value"), BAD_VALUES, ids=[b[0].split(" {")[0] + " " + b[1] for b in BAD_VALUES])
def test_bad_values_are_refused_before_any_work(tmp_path, inputs, line, flag, value):
    before = snapshot(tmp_path)
    argv = [a.format(**inputs) for a in line.split()]
    proc = edgesr(*argv, cwd=tmp_path)
    assert_one_line_error(proc, flag, value, f"edgesr {argv[0]} --help")
    assert snapshot(tmp_path) == before  # nothing written, not even a run folder


def test_unknown_export_format_fails_at_parse_time_in_a_real_process(tmp_path):
    """`edgesr run --formats bogus` stops before training: no run folder, no checkpoint."""
    proc = subprocess.run([sys.executable, "-m", "edgesr.cli", "run", "--formats", "bogus", "-o", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert_one_line_error(proc, "--formats", "'bogus'")
    assert not (tmp_path / "r").exists()


def test_a_precision_no_format_has_is_refused_before_training(tmp_path):
    proc = edgesr("run", "--formats", "onnx", "--precisions", "fp16", "-o", str(tmp_path / "r"))
    assert_one_line_error(proc, "fp16", "onnx")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1e9", ""])
def test_environment_is_checked_at_startup(monkeypatch, value):
    monkeypatch.setenv("EDGESR_MAX_PIXELS", value)
    assert_one_line_error(edgesr("list"), "EDGESR_MAX_PIXELS", repr(value))


def test_torchrun_environment_is_checked(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "0")
    assert_one_line_error(edgesr("list"), "WORLD_SIZE", "'0'")


# ------------------------------------------------------------------ paths named right (class 7)


def test_a_symlink_loop_is_not_called_missing(tmp_path):
    loop = tmp_path / "loop.pt"
    loop.symlink_to(loop)
    line = assert_one_line_error(edgesr("eval", "--checkpoint", str(loop)), str(loop), "symbolic link loop")
    assert "no such" not in line
    missing = tmp_path / "missing.pt"
    assert_one_line_error(edgesr("eval", "--checkpoint", str(missing)), str(missing), "no such file")


def test_a_folder_where_a_file_is_expected(tmp_path):
    assert_one_line_error(edgesr("eval", "--checkpoint", str(tmp_path)), str(tmp_path), "is a folder")
    (tmp_path / "d.pt").mkdir()
    assert_one_line_error(edgesr("collapse", str(tmp_path / "d.pt"), "-o", str(tmp_path / "o.pt")), "is a folder")


def test_a_bad_output_suffix_names_the_users_path(tmp_path, inputs):
    out = tmp_path / "result.xyz"
    line = assert_one_line_error(edgesr("upscale", inputs["photo"], "--model", "bicubic", "-o", str(out)),
                                 str(out), "'.xyz'")
    assert ".tmp" not in line and not out.exists()
    assert_one_line_error(edgesr("upscale", inputs["photo"], "--model", "bicubic", "-o", str(tmp_path / "noext")),
                          "noext", "no suffix")
    assert_one_line_error(edgesr("eval", "--model", "bicubic", "-o", str(tmp_path / "r.txt")), "r.txt", ".json")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


# ------------------------------------------------------------------ the error boundary (class 2)


def _failing_run(exc: BaseException):
    def run(args):
        raise exc
    return run


def test_an_unexpected_exception_prints_its_traceback_and_asks_for_a_report(monkeypatch):
    import edgesr.commands.list_models as cmd

    monkeypatch.setattr(cmd, "run", _failing_run(ZeroDivisionError("boom")))
    proc = edgesr("list")
    assert proc.returncode == EXIT_BUG == 70
    assert "Traceback" in proc.stderr and "ZeroDivisionError: boom" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("edgesr: internal error (ZeroDivisionError)") and "bug" in last and "report" in last


@pytest.mark.parametrize(("code", "words"), [(errno.ENOSPC, "no space left"), (errno.EACCES, "permission denied"),
                                             (errno.EROFS, "read-only"), (errno.ELOOP, "symbolic link loop"),
                                             (errno.EISDIR, "is a folder")])
def test_expected_os_failures_are_one_line_naming_the_file(monkeypatch, code, words):
    import edgesr.commands.list_models as cmd

    monkeypatch.setattr(cmd, "run", _failing_run(OSError(code, os.strerror(code), "/data/out/model.tflite")))
    assert_one_line_error(edgesr("list"), "/data/out/model.tflite", words)


def test_an_unexpected_os_error_is_a_bug(monkeypatch):
    import edgesr.commands.list_models as cmd

    monkeypatch.setattr(cmd, "run", _failing_run(OSError(errno.EBADF, "Bad file descriptor")))
    assert edgesr("list").returncode == EXIT_BUG


def test_argparse_errors_are_one_line_and_help_exits_0():
    assert_one_line_error(edgesr("eval", "--model", "bicubic", "--no-such-flag"), "--no-such-flag")
    assert_one_line_error(edgesr("eval"), "one of the arguments --model --checkpoint --artifact is required")
    assert_one_line_error(edgesr("bogus-command"), "bogus-command")
    proc = edgesr("info", "--help")
    assert proc.returncode == 0 and "--scale" in proc.stdout


# ------------------------------------------------------------------ consistent flags (issue 11)

#: commands that write files: each takes -o/--out
WRITERS = ("run", "train", "collapse", "eval", "upscale", "import-weights", "quantize", "export", "validate", "bake",
           "finetune-lut", "golden", "profile")
#: commands that draw progress bars: each takes --no-progress
WITH_PROGRESS = ("run", "train", "eval", "upscale", "quantize", "export", "validate")


def _options(command: str) -> set[str]:
    parser = build_parser(command)
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {s for a in sub._actions for s in a.option_strings}


def test_every_writing_command_takes_o_and_out():
    assert set(WRITERS) <= set(COMMANDS)
    for command in WRITERS:
        assert {"-o", "--out"} <= _options(command), command


def test_every_command_with_a_progress_bar_takes_no_progress():
    for command in WITH_PROGRESS:
        assert "--no-progress" in _options(command), command


def test_progress_bars_are_off_when_stderr_is_not_a_terminal(monkeypatch):
    import argparse

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not show_progress(argparse.Namespace(no_progress=False))
    monkeypatch.setattr(sys, "stderr", Tty())
    assert show_progress(argparse.Namespace(no_progress=False))
    assert not show_progress(argparse.Namespace(no_progress=True))
