"""A worker stopped from outside (cancel, Batch terminate) unwinds: no step or checkout survives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codybatch.jobs import finalize_job, register_job
from codybatch.records import RepositoryStatus
from codybatch.settings import Settings
from codybatch.spec import JobSpec
from codybatch.store.local import LocalStore
from tests.helpers import make_repo


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_worker_kills_its_step_and_removes_its_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: signal.Signals
) -> None:
    home, scratch = tmp_path / "home", tmp_path / "scratch"
    scratch.mkdir()
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    pid_file = tmp_path / "step.pid"
    step = f"echo $$ > {pid_file}; sleep 60; touch {tmp_path}/finished"
    settings = Settings(home=home)
    store = LocalStore(home)
    spec = JobSpec.parse({"name": "slow", "steps": [step], "repositories": [str(repo)]}, settings)
    job = register_job(spec, store)
    env = {**os.environ, "CODYBATCH_HOME": str(home), "TMPDIR": str(scratch)}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "codybatch",
            "worker",
            "--job-id",
            job.job_id,
            "--repository",
            str(repo),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    step_pid = int(pid_file.read_text())
    assert list(scratch.iterdir())  # the checkout exists while it runs

    worker.send_signal(sig)
    worker.wait(timeout=20)

    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(step_pid, 0)  # the step's shell is gone
    assert list(scratch.iterdir()) == []  # the checkout was removed
    assert not (tmp_path / "finished").exists()
    # The runner's finalize (or a cancel) records what happened to the unfinished repository.
    finalize_job(store, job.job_id)
    (result,) = store.list_results(job.job_id)
    assert result.status == RepositoryStatus.FAILED and "stopped before finishing" in result.error
