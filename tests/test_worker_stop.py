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
    # The step runs in the sandbox: it marks the checkout, and its sleep is found by its
    # unusual argument (its pid is the sandbox's own).
    seconds = f"61.{int(sig)}"
    step = f"echo started > started.txt; sleep {seconds}; touch finished"
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
    while not list(scratch.glob("*/checkout/started.txt")):
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    assert _sleeping(seconds), "the step's sleep is not running"

    worker.send_signal(sig)
    worker.wait(timeout=20)

    time.sleep(0.2)
    assert not _sleeping(seconds)  # the step and its sandbox are gone
    assert list(scratch.iterdir()) == []  # the checkout was removed
    # The runner's finalize (or a cancel) records what happened to the unfinished repository.
    finalize_job(store, job.job_id)
    (result,) = store.list_results(job.job_id)
    assert result.status == RepositoryStatus.FAILED and "stopped before finishing" in result.error


def _sleeping(seconds: str) -> bool:
    """Whether a process running the step's `sleep SECONDS` exists on this machine."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "cmdline").read_bytes() == f"sleep\0{seconds}\0".encode():
                return True
        except OSError:
            continue
    return False
