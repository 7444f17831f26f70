"""sandbox: escape attempts from a command, a step and verify are contained; limits bind.

Real bubblewrap and real processes (see tests/escapes.py for what lies outside the checkout).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import pytest

from codybatch import git
from codybatch.jobs import register_job
from codybatch.records import RepositoryStatus
from codybatch.sandbox import DEFAULT_LIMITS, Limits, Sandbox, _cgroup_base, detect
from codybatch.settings import Settings
from codybatch.shell import run_command
from codybatch.spec import JobSpec
from codybatch.store.local import LocalStore
from tests.escapes import PROC_STEP, Host, host_fixture  # noqa: F401 (fixture)
from tests.helpers import make_repo


def test_escapes_from_a_command_are_contained(host: Host) -> None:
    config = (host.checkout / ".git/config").read_bytes()
    outputs = []
    for name, command in host.escapes().items():
        done = run_command(command, host.checkout, timeout=20, sandbox=detect())
        outputs.append(f"{name}: {done.output}")
    host.assert_contained(*outputs)
    assert "/filler: Read-only file system" in outputs[-1]  # no memory filled through /
    assert (host.checkout / ".git/config").read_bytes() == config
    assert not (host.checkout / ".git/hooks/pre-commit").exists()
    # The worker's own git after all that: no hook, no filter runs.
    (host.checkout / "app.py").write_text("newFunction()\n")
    git.commit_all(host.checkout, "change", "Cody <cody@example.com>")
    host.assert_contained()
    # The neighbour's environment does hold them: a leak would have been seen.
    assert host.token.encode() in Path(f"/proc/{host.neighbour}/environ").read_bytes()


def test_the_worker_git_ignores_hooks_and_config_planted_without_a_sandbox(host: Host) -> None:
    """CODYBATCH_SANDBOX=container: the step can write .git, the worker's git still ignores it."""
    config = git.read_config(host.checkout)
    done = run_command(
        host.escapes()["git hooks and config"],
        host.checkout,
        timeout=20,
        sandbox=Sandbox("container"),
    )
    assert done.ok, done.output
    assert (host.checkout / ".git/hooks/pre-commit").exists()
    git.restore_config(host.checkout, config)
    (host.checkout / "app.py").write_text("newFunction()\n")
    assert b"newFunction" in git.diff(host.checkout)
    git.commit_all(host.checkout, "change", "Cody <cody@example.com>")
    assert not (host.root / "hook-ran").exists() and not (host.root / "filter-ran").exists()


def test_steps_and_verify_are_contained_and_leak_nothing_to_the_store(host: Host) -> None:
    settings = Settings(
        home=host.root / "store",
        local_root_dir=host.root,
        github_token=host.token,
        anthropic_api_key=host.key,
    )
    store = LocalStore(settings.home)
    repo = make_repo(host.root / "repo", {"app.py": "oldFunction()\n"})
    steps = [f"{command}; true" for command in host.escapes().values()]
    spec = JobSpec.parse(
        {"name": "escape", "steps": steps, "verify": PROC_STEP, "repositories": [str(repo)]},
        settings,
    )
    job = register_job(spec, store)
    from codybatch.worker import run_worker

    result = run_worker(job.job_id, str(repo), settings=settings, store=store)
    assert result.status == RepositoryStatus.COMPLETED, result.error
    assert len(result.steps) == len(steps)
    assert result.verify is not None and result.verify.passed  # it ran, and found nothing
    stored = b"".join(p.read_bytes() for p in settings.home.rglob("*") if p.is_file())
    host.assert_contained(stored.decode("utf-8", "replace"), str(result.to_dict()))


def test_no_network_by_default_and_network_when_the_job_allows_it(host: Host) -> None:
    url = f"http://127.0.0.1:{host.port}/ping"
    probe = f"python3 -c 'import urllib.request as u; u.urlopen(\"{url}\", timeout=2)'"
    closed = run_command(probe, host.checkout, timeout=20, sandbox=detect())
    assert not closed.ok and host.hits == []
    # network: true shares the worker's network (127.0.0.1 included).
    run_command(probe, host.checkout, timeout=20, sandbox=detect(), network=True)
    assert host.hits == ["/ping"]


def _process_bound() -> bool:
    """Whether a fork bomb is bounded here: a pids cgroup, or RLIMIT_NPROC (not root)."""
    return _cgroup_base("pids") is not None or os.getuid() != 0


def test_a_fork_bomb_is_bounded(tmp_path: Path, bwrap: Sandbox) -> None:
    if not _process_bound():
        pytest.skip("no pids cgroup and the worker is root: RLIMIT_NPROC does not bind")
    limits = dataclasses.replace(DEFAULT_LIMITS, processes=64)
    spawn = "i=0; while [ $i -lt 200 ]; do sleep 5 & i=$((i+1)); done; ls /proc | grep -c '^[0-9]'"
    done = run_command(spawn, tmp_path, timeout=20, sandbox=bwrap, limits=limits)
    assert "fork" in done.output.lower() or "resource" in done.output.lower(), done.output
    count = int(done.output.strip().splitlines()[-1]) if done.output.strip()[-1:].isdigit() else 0
    assert count <= 64
    started = time.monotonic()
    bomb = run_command(
        "f() { f | f & }; f; sleep 30", tmp_path, timeout=3, sandbox=bwrap, limits=limits
    )
    assert bomb.timed_out and time.monotonic() - started < 15
    assert _leftover_cgroups() == []


def _leftover_cgroups() -> list[str]:
    """Cgroups of finished commands still present (a concurrent test's live ones have procs)."""
    base = _cgroup_base("pids")
    if base is None:
        return []
    return [p.name for p in base.glob("codybatch-*") if _procs(p) == ""]


def _procs(cgroup: Path) -> str | None:
    try:
        return (cgroup / "cgroup.procs").read_text().strip()
    except OSError:
        return None  # removed meanwhile


def test_file_size_and_memory_are_bounded(tmp_path: Path, bwrap: Sandbox) -> None:
    limits = Limits(file_bytes=10 * 1024**2)
    big = run_command(
        "head -c 10G /dev/zero > big; echo exit=$?; dd if=/dev/zero of=sparse bs=1 count=1 "
        "seek=10G 2>&1; truncate -s 10G trunc; echo done",
        tmp_path,
        timeout=30,
        sandbox=bwrap,
        limits=limits,
    )
    assert "done" in big.output
    assert (tmp_path / "big").stat().st_size <= 10 * 1024**2
    assert (
        not (tmp_path / "sparse").exists() or (tmp_path / "sparse").stat().st_size <= 10 * 1024**2
    )
    assert not (tmp_path / "trunc").exists() or (tmp_path / "trunc").stat().st_size <= 10 * 1024**2
    # The default limits: a 10 GB sparse file is refused at once, not written.
    sparse = run_command("truncate -s 10G huge; echo rc=$?", tmp_path, timeout=30, sandbox=bwrap)
    assert "rc=0" not in sparse.output
    memory = run_command(
        f"{sys.executable} -c 'x = bytearray(20 * 1024**3)' || echo refused",
        tmp_path,
        timeout=30,
        sandbox=bwrap,
    )
    assert "MemoryError" in memory.output or "refused" in memory.output
