"""A worker killed with SIGKILL mid-step: its step and checkout go, its retry starts in seconds."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest

from codybatch import orphans
from codybatch.records import JobStatus, RepositoryStatus, job_id_for_run
from codybatch.store.local import LocalStore
from tests.airflow.test_dag import job_dag  # noqa: F401  (fixture)
from tests.helpers import make_repo

pytestmark = pytest.mark.airflow


def _gone(pid: int) -> bool:
    stat = orphans._stat(pid)
    return stat is None or stat[0] == "Z"  # exited (a zombie only waits for init to reap it)


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_sigkilled_worker_leaves_nothing_and_is_retried_within_seconds(
    job_dag,  # noqa: F811
    codybatch_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # the workers' checkouts, and only theirs
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    # The step shares files and host pids with the test: outside bubblewrap (whose own
    # PID namespace dies with the worker anyway; tests/test_worker_stop.py covers that).
    monkeypatch.setenv("CODYBATCH_SANDBOX", "container")
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    attempts, mark = tmp_path / "attempts", tmp_path / "mark"
    sh_file, sleep_file = tmp_path / "sh.pid", tmp_path / "sleep.pid"
    # The first attempt hangs in a step whose shell has a child; the retry passes.
    step = (
        f"date +%s.%N >> {attempts}; test -e {mark} && exit 0; touch {mark}; "
        f"sleep 300 & echo $! > {sleep_file}; echo $$ > {sh_file}; wait"
    )
    seen: dict[str, float | int | str] = {}

    def kill_the_first_worker() -> None:
        deadline = time.monotonic() + 120
        while not (sh_file.exists() and sh_file.read_text().strip()):
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        sh = int(sh_file.read_text())
        seen.update(sh=sh, sleep=int(sleep_file.read_text()), worker=_ppid(sh))
        seen["dir"] = str(Path(os.readlink(f"/proc/{sh}/cwd")).parent)
        os.kill(int(seen["worker"]), signal.SIGKILL)
        seen["killed_at"] = time.time()

    killer = threading.Thread(target=kill_the_first_worker, daemon=True)
    killer.start()
    run = job_dag.test(run_conf={"name": "crash", "steps": [step], "repositories": [str(repo)]})
    killer.join(timeout=5)

    assert "killed_at" in seen, "the first attempt's step never started"
    assert run.state == "success"
    starts = [float(t) for t in attempts.read_text().split()]
    assert len(starts) == 2
    assert starts[1] - float(seen["killed_at"]) < 15  # retried in seconds, not 5 minutes
    assert _gone(int(seen["sh"])) and _gone(int(seen["sleep"]))  # the step and its child
    assert not Path(str(seen["dir"])).exists()  # the killed worker's checkout
    assert list(scratch.iterdir()) == []
    store = LocalStore(codybatch_home)
    job_id = job_id_for_run("codybatch_job", run.run_id)
    assert store.get_job(job_id).status == JobStatus.COMPLETED
    (result,) = store.list_results(job_id)
    assert result.status == RepositoryStatus.COMPLETED and result.attempts == 2
