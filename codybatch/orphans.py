"""What a killed worker leaves behind: its steps die with it, its checkout goes at the next start.

A worker works in `/tmp/codybatch-<pid>.<start>-XXXX/` (its pid and start time, so another
process that later reuses the pid is not mistaken for it) and lists there the process group of
each command it starts. A step's shell gets SIGKILL when the worker dies (PR_SET_PDEATHSIG);
whatever the shell started is killed, by group, when the next worker (or the task that saw the
worker crash) removes the dead worker's directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
GROUPS_FILE = "process-groups"
_OWNED = re.compile(r"^codybatch-(\d+)\.(\d+)-")
# This worker's directory, while it has one (per thread: `codybatch run` works in threads).
_current = threading.local()


def _prctl(option: int, value: int) -> bool:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent() -> None:
    """A Popen preexec_fn: the child gets SIGKILL when the process that started it dies."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in clock ticks) of a process, None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[2]), int(fields[19])


def _alive(pid: int, start: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z" and stat[2] == start


def work_dir() -> Path:
    """A fresh directory for this worker's checkout, named for its owner process."""
    stat = _stat(os.getpid())
    start = stat[2] if stat else 0
    _current.path = Path(tempfile.mkdtemp(prefix=f"codybatch-{os.getpid()}.{start}-"))
    return _current.path


def release(path: Path) -> None:
    """Remove this worker's directory (its work is done)."""
    shutil.rmtree(path, ignore_errors=True)
    if getattr(_current, "path", None) == path:
        _current.path = None


def record_group(pgid: int) -> None:
    """Note a command's process group in this worker's directory, to kill if the worker dies."""
    path, stat = getattr(_current, "path", None), _stat(pgid)
    if path is None or stat is None:
        return
    with contextlib.suppress(OSError), (path / GROUPS_FILE).open("a") as out:
        out.write(f"{pgid} {stat[2]}\n")


def _kill_groups(path: Path) -> None:
    with contextlib.suppress(OSError):
        for line in (path / GROUPS_FILE).read_text().splitlines():
            pgid, start = (int(x) for x in line.split())
            leader = _stat(pgid)
            # Once the whole group is gone its id may be reused: then the leader is someone else.
            if leader is not None and leader[2] != start:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)


def remove_dead(root: Path | None = None) -> list[Path]:
    """Kill the leftover commands of dead workers and remove their directories; return those."""
    root = root or Path(tempfile.gettempdir())
    removed = []
    with contextlib.suppress(OSError):
        for path in root.iterdir():
            owned = _OWNED.match(path.name)
            if not owned or not path.is_dir() or _alive(int(owned[1]), int(owned[2])):
                continue
            _kill_groups(path)
            shutil.rmtree(path, ignore_errors=True)
            log.info("removed %s, left by a worker that died", path)
            removed.append(path)
    return removed


def stop_with_parent() -> None:
    """A Popen preexec_fn: the child gets SIGTERM (and may clean up) when its parent dies."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
