"""One run per output folder: an exclusive lock file ``OUT/.lock``.

``edgesr run`` and ``edgesr train`` take the lock before they write anything into OUT and
release it when they end (normally, with an error, or on Ctrl-C). The lock file is
created with ``O_CREAT | O_EXCL`` (atomic, also on network file systems) and holds JSON
``{"pid", "host", "started", "command"}`` so that a refused run can say who holds it.

A lock whose owner is gone (a run killed with SIGKILL, a machine that rebooted) is *stale*:
when its host is this machine and its pid is no longer running (or, on Linux, now belongs to
a process started at another time than the owner: a reused pid), it is taken over with a
warning. A lock held by another host cannot be checked from here; the message says which
file to delete once that run is known to be over.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from edgesr.core.errors import EdgesrError

LOCK_NAME = ".lock"


def _owner() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "pid_start": _process_start(os.getpid()), "command": " ".join(["edgesr", *sys.argv[1:]])[:300]}


def _process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19])  # field 22, counted after "pid (comm)"
    except (OSError, ValueError, IndexError):
        return None


def _pid_running(pid: int) -> bool:
    """True when a process with ``pid`` exists on this machine (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> dict | None:
    """The lock's owner record; None for a missing file, ``{}`` for an unreadable one."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


def _is_stale(info: dict) -> bool:
    pid = info.get("pid")
    if info.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    if not _pid_running(pid):
        return True
    recorded, now = info.get("pid_start"), _process_start(pid)
    return recorded is not None and now is not None and recorded != now  # the pid now names another process


def _create(path: Path, owner: dict) -> bool:
    """Create the lock file holding ``owner``; False when it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(owner) + "\n")
    return True


def _take_over(path: Path, stale: dict) -> None:
    """Move a stale lock aside, making sure it is still the one judged stale (not a fresh one)."""
    aside = path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:  # another run removed it first
        return
    if _read(aside) != stale:  # a new owner took it between our read and the rename: give it back
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
    aside.unlink(missing_ok=True)


def acquire(out_dir: str | os.PathLike) -> Path:
    """Take ``OUT/.lock`` (OUT must exist); returns the lock path.

    Raises:
        EdgesrError: another live run holds the lock (the message names its pid, host and
            start time), or the lock cannot be created (the message names the folder).
    """
    path = Path(out_dir) / LOCK_NAME
    owner = _owner()
    for _ in range(3):
        try:
            if _create(path, owner):
                return path
        except OSError as exc:
            raise EdgesrError(f"{out_dir}: cannot create the run lock {path.name} ({exc.strerror})") from None
        info = _read(path)
        if info is None:  # released between our attempt and the read: try again
            continue
        if not _is_stale(info):
            who = (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}" if info
                   else "an unreadable lock")
            raise EdgesrError(f"{out_dir}: another edgesr run is using this folder ({who}); wait for it, choose "
                              f"another --out, or delete {path} if that run is over")
        warnings.warn(f"{out_dir}: taking over a stale lock of pid {info['pid']} (started {info.get('started')}, "
                      "no longer running)", stacklevel=2)
        _take_over(path, info)
    raise EdgesrError(f"{out_dir}: could not take the run lock {path} (other runs keep taking it)")


def release(path: Path) -> None:
    """Remove the lock at ``path`` if this process still owns it."""
    info = _read(path)
    if info and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
        try:
            path.unlink()
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                warnings.warn(f"{path}: could not remove the run lock ({exc.strerror}); delete it by hand", stacklevel=2)


@contextmanager
def out_dir_lock(out_dir: str | os.PathLike):
    """Hold ``OUT/.lock`` for the duration of the ``with`` block (see :func:`acquire`)."""
    path = acquire(out_dir)
    try:
        yield path
    finally:
        release(path)
