"""One run per output folder (issue 14, class 5): ``OUT/.lock`` and the resume check against run.json."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edgesr.app.pipeline import RESUME_SETTINGS, _claim_out_dir
from edgesr.app.run_lock import LOCK_NAME, acquire, out_dir_lock, release
from edgesr.cli import main
from edgesr.core.errors import EdgesrError

HOLDER = """
import sys
from edgesr.app.run_lock import acquire
acquire(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()  # hold the lock until the test closes stdin or kills us
"""

TINY_TRAIN = ("--model", "sesr_m3", "--expansion", "16", "--steps", "1", "--batch", "2", "--lr-patch", "16",
              "--val-every", "0", "--no-progress")


def edgesr(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, err.getvalue()


@contextlib.contextmanager
def held_by_another_process(folder: Path):
    """A live process holding ``folder``'s lock for the duration of the block."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_lock_records_its_owner_and_is_released(tmp_path):
    with out_dir_lock(tmp_path) as path:
        info = json.loads(path.read_text())
        assert info["pid"] > 0 and info["host"] == socket.gethostname() and info["started"]
        with pytest.raises(EdgesrError, match=f"another edgesr run.*pid {info['pid']}"):
            acquire(tmp_path)
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_is_released_on_an_exception(tmp_path):
    with pytest.raises(KeyboardInterrupt), out_dir_lock(tmp_path):
        raise KeyboardInterrupt
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_second_train_on_a_busy_folder_is_refused(tmp_path):
    with held_by_another_process(tmp_path) as holder:
        code, err = edgesr("train", "-o", str(tmp_path), *TINY_TRAIN)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
        assert f"another edgesr run is using this folder (pid {holder.pid}" in err and str(tmp_path) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]  # nothing trained into it


def test_a_second_run_on_a_busy_folder_is_refused_before_any_work(tmp_path):
    with held_by_another_process(tmp_path) as holder:
        code, err = edgesr("run", "-o", str(tmp_path), "--steps", "1")
        assert code == 2 and f"pid {holder.pid}" in err
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "run.json").exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    with held_by_another_process(tmp_path) as holder:
        pass  # killed: SIGKILL leaves its lock file behind
    stale = json.loads((tmp_path / LOCK_NAME).read_text())
    assert stale["pid"] == holder.pid
    with pytest.warns(UserWarning, match=f"taking over a stale lock of pid {holder.pid}"):
        code, err = edgesr("train", "-o", str(tmp_path), *TINY_TRAIN)
    assert code == 0, err
    assert (tmp_path / "checkpoints" / "last.pt").exists() and not (tmp_path / LOCK_NAME).exists()


def test_a_lock_whose_pid_now_names_another_process_is_stale(tmp_path):
    """A reused pid: this process is alive, but it started at another time than the lock's owner."""
    import os

    from edgesr.app.run_lock import _process_start

    start = _process_start(os.getpid())
    if start is None:
        pytest.skip("no /proc on this system: process start times are not readable")
    lock = tmp_path / LOCK_NAME
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "pid_start": start - 1}))
    with pytest.warns(UserWarning, match="stale lock"):
        path = acquire(tmp_path)
    assert json.loads(path.read_text())["pid_start"] == start
    release(path)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "pid_start": start}))
    with pytest.raises(EdgesrError, match="another edgesr run"):  # the same process: live
        acquire(tmp_path)


def test_a_lock_from_another_host_is_not_taken(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "some-other-host", "started": "2026-01-01T00:00:00"}))
    with pytest.raises(EdgesrError, match="pid 1 on some-other-host"):
        acquire(tmp_path)


def test_release_leaves_a_lock_it_does_not_own(tmp_path):
    lock = tmp_path / LOCK_NAME
    lock.write_text(json.dumps({"pid": 1, "host": socket.gethostname()}))
    release(lock)
    assert lock.exists()


# ------------------------------------------------------------------ resume checks run.json

SETTINGS = {"model": "sesr_m5", "scale": 2, "data": None, "data_root": None, "sets": None, "steps": 3000, "batch": 16,
            "seed": 0, "qat_steps": 200, "observer": "minmax", "recipe": "default", "lut_finetune_steps": 300}


def test_settings_cover_what_the_run_records():
    assert set(RESUME_SETTINGS) == set(SETTINGS)


def test_a_resume_with_other_settings_is_refused_before_any_work(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({**SETTINGS, "started": "2026-01-01T00:00:00"}))
    before = (tmp_path / "run.json").read_text()
    code, err = edgesr("run", "-o", str(tmp_path), "--steps", "5", "--seed", "3")
    assert code == 2 and err.count("\n") == 1
    assert "steps=3000, seed=0" in err and "steps=5, seed=3" in err and "--force" in err
    assert (tmp_path / "run.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # lock released, nothing else written


def test_force_resumes_with_new_settings_and_records_them(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({**SETTINGS, "started": "2026-01-01T00:00:00"}))
    with pytest.warns(UserWarning, match="--force: resuming with steps=5"), \
            _claim_out_dir(tmp_path, {**SETTINGS, "steps": 5}, force=True):
        assert (tmp_path / LOCK_NAME).exists()
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["steps"] == 5 and record["started"] == "2026-01-01T00:00:00" and "resumed" in record
    assert not (tmp_path / LOCK_NAME).exists()


def test_same_settings_resume_and_an_older_record_is_accepted(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"model": "sesr_m5", "scale": 2, "started": "2026-01-01T00:00:00"}))
    with _claim_out_dir(tmp_path, SETTINGS):
        pass
    assert json.loads((tmp_path / "run.json").read_text())["steps"] == 3000
    with _claim_out_dir(tmp_path, SETTINGS):
        pass


def test_another_model_is_refused_even_with_force(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps(SETTINGS))
    with pytest.raises(EdgesrError, match="holds a run of sesr_m5 x2, not sesr_m3 x2"), \
            _claim_out_dir(tmp_path, {**SETTINGS, "model": "sesr_m3"}, force=True):
        pass
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_broken_run_record_is_one_line(tmp_path):
    (tmp_path / "run.json").write_text("[1, 2")
    code, err = edgesr("run", "-o", str(tmp_path), "--steps", "1")
    assert code == 2 and err.count("\n") == 1 and "run.json" in err
