"""orphans: a dead worker's directory and the commands it listed go; live workers' stay."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from codybatch import orphans


def test_remove_dead_takes_only_dead_workers_directories(tmp_path: Path) -> None:
    me = orphans._stat(os.getpid())
    assert me is not None
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = tmp_path / f"codybatch-{os.getpid()}.{me[2]}-live"
    reused = tmp_path / f"codybatch-{os.getpid()}.{me[2] + 1}-reused"  # same pid, another start
    gone = tmp_path / f"codybatch-{dead.pid}.1-gone"
    foreign = tmp_path / "codybatch-home-abc"  # not a worker's: never touched
    for path in (live, reused, gone, foreign):
        (path / "checkout").mkdir(parents=True)
    step = subprocess.Popen(["sh", "-c", "sleep 300 & wait"], start_new_session=True)
    time.sleep(0.2)
    (gone / orphans.GROUPS_FILE).write_text(f"{step.pid} {orphans._stat(step.pid)[2]}\n")

    removed = orphans.remove_dead(tmp_path)

    assert sorted(removed) == sorted([reused, gone])
    assert live.exists() and foreign.exists() and not gone.exists() and not reused.exists()
    assert step.wait(timeout=10) == -9  # the dead worker's step, killed with its group


def test_a_worker_directory_records_the_groups_of_its_commands(tmp_path: Path) -> None:
    from codybatch.sandbox import Sandbox
    from codybatch.shell import run_command

    tmp = orphans.work_dir()
    try:
        assert orphans._OWNED.match(tmp.name)
        # Outside bubblewrap, so $$ is a pid of this machine (inside, the sandbox's own).
        done = run_command("echo $$", tmp, timeout=10, sandbox=Sandbox("container"))
        pgid, _start = (tmp / orphans.GROUPS_FILE).read_text().split()
        assert int(pgid) == int(done.output.strip())  # the shell leads its own group
        assert tmp not in orphans.remove_dead(tmp.parent)  # its owner is alive
    finally:
        orphans.release(tmp)
    assert not tmp.exists()
