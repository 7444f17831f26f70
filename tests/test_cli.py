"""The codybatch command: run, worker, jobs, show, diff, thread, purge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from codybatch.cli import main
from codybatch.records import Job, JobStatus, RepositoryStatus, utcnow
from codybatch.store.local import LocalStore
from tests.helpers import make_repo

SED = "sed -i 's/oldFunction/newFunction/g' app.py"
CHECK = 'if [ -f FAIL ]; then echo "tests broke" >&2; exit 4; fi'
CODYBATCH = Path(sys.executable).parent / "codybatch"


@pytest.fixture
def home(codybatch_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return codybatch_home


@pytest.fixture
def repos(tmp_path: Path) -> list[Path]:
    """Two repositories that call oldFunction, a third that does not."""
    return [
        make_repo(tmp_path / "alpha", {"app.py": "oldFunction()\n"}),
        make_repo(tmp_path / "beta", {"app.py": "y = oldFunction(2)\n", "bin.dat": b"\0\1"}),
        make_repo(tmp_path / "gamma", {"app.py": "print('fine')\n"}),
    ]


def write_spec(path: Path, repositories: list[Any], **fields: Any) -> Path:
    data = {"name": "Replace oldFunction", "steps": [SED, CHECK]} | fields
    data["repositories"] = [str(r) for r in repositories]
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def only_job(home: Path) -> Job:
    jobs = LocalStore(home).list_jobs()
    assert len(jobs) == 1
    return jobs[0]


# run


def test_run_prints_progress_and_a_summary_and_exits_0(
    home: Path, repos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "job.yaml", repos)
    code, out, _ = run_cli(capsys, "run", str(spec))
    assert code == 0, out
    job = only_job(home)
    assert job.status == JobStatus.COMPLETED
    lines = out.splitlines()
    assert lines[0] == f"job {job.job_id}: Replace oldFunction (3 repositories)"
    for repo in repos:
        assert f"  COMPLETED {repo}" in lines
    header = next(i for i, line in enumerate(lines) if line.startswith("REPOSITORY"))
    assert lines[header].split() == [
        "REPOSITORY",
        "STATUS",
        "CHANGED",
        "PR",
        "TOKENS",
        "USD",
        "NOTE",
    ]
    rows = [line.split() for line in lines[header + 1 : header + 4]]
    assert rows == [
        [str(repos[0]), "COMPLETED", "yes", "-", "0", "0.0000"],
        [str(repos[1]), "COMPLETED", "yes", "-", "0", "0.0000"],
        [str(repos[2]), "COMPLETED", "no", "-", "0", "0.0000"],
    ]
    assert f"job {job.job_id}: COMPLETED" in lines
    assert f"patches: codybatch diff {job.job_id} REPOSITORY" in lines
    assert list((tmp_path / "tmp").iterdir()) == []  # no checkout left behind


def test_run_exits_1_when_a_repository_fails(
    home: Path, repos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repos[1] / "FAIL").write_text("x")
    subprocess.run(["git", "add", "FAIL"], cwd=repos[1], check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "fail"],
        cwd=repos[1],
        check=True,
    )
    spec = write_spec(tmp_path / "job.yaml", repos)
    code, out, _ = run_cli(capsys, "run", str(spec))
    assert code == 1
    job = only_job(home)
    assert job.status == JobStatus.PARTIAL
    row = next(line for line in out.splitlines() if line.startswith(f"{repos[1]} "))
    assert row.split()[1] == "FAILED"
    assert "step 2" in row and "exited with 4" in row
    assert f"job {job.job_id}: PARTIAL" in out
    statuses = [r.status for r in LocalStore(home).list_results(job.job_id)]
    assert statuses == [
        RepositoryStatus.COMPLETED,
        RepositoryStatus.FAILED,
        RepositoryStatus.COMPLETED,
    ]


def test_run_json_output(
    home: Path, repos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "job.json", repos[:2])
    spec.write_text(json.dumps(yaml.safe_load(spec.read_text())))
    code, out, _ = run_cli(capsys, "run", "--json", str(spec))
    assert code == 0
    data = json.loads(out[out.index("{") :])
    assert data["status"] == "COMPLETED"
    assert [(r["repository"], r["status"]) for r in data["results"]] == [
        (str(repos[0]), "COMPLETED"),
        (str(repos[1]), "COMPLETED"),
    ]


def test_run_again_with_the_same_job_id_changes_nothing(
    home: Path, repos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "job.yaml", repos)
    assert run_cli(capsys, "run", "--job-id", "job-fixed", str(spec))[0] == 0
    store = LocalStore(home)
    before = store.list_results("job-fixed")
    assert run_cli(capsys, "run", "--job-id", "job-fixed", str(spec))[0] == 0
    assert store.list_results("job-fixed") == before
    assert [j.job_id for j in store.list_jobs()] == ["job-fixed"]


@pytest.mark.parametrize(
    ("fields", "count", "expected"),
    [
        ({"name": ""}, 7, ["name: is required", "repositories: has 7 repositories"]),
        ({"steps": 5, "create_pull_requests": "yes"}, 3, ["steps:", "create_pull_requests:"]),
        ({}, 6, ["repositories: has 6 repositories: at most 5 per job"]),
    ],
)
def test_run_refuses_a_bad_spec_with_exit_2(
    home: Path,
    repos: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fields: dict[str, Any],
    count: int,
    expected: list[str],
) -> None:
    extra = [make_repo(tmp_path / f"extra{i}", {"a": "1"}) for i in range(count - len(repos))]
    spec = write_spec(tmp_path / "bad.yaml", [*repos, *extra], **fields)
    code, out, err = run_cli(capsys, "run", str(spec))
    assert code == 2
    assert out == ""
    assert err.startswith("invalid job spec:")
    for text in expected:
        assert text in err
    assert not (home / "codybatch.db").exists()  # nothing registered
    assert list((tmp_path / "tmp").iterdir()) == []  # nothing cloned


def test_run_refuses_a_repository_outside_the_allowlist(
    home: Path,
    repos: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALLOWED_REPOSITORIES", f"{repos[0]},{repos[1]}")
    spec = write_spec(tmp_path / "job.yaml", repos)
    code, _, err = run_cli(capsys, "run", str(spec))
    assert code == 2
    assert f"repositories[2]: '{repos[2]}' is not in the allowlist" in err
    assert not (home / "codybatch.db").exists()


# worker


def test_worker_command(
    home: Path, repos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from codybatch.jobs import register_job
    from codybatch.settings import Settings
    from codybatch.spec import JobSpec

    (repos[2] / "FAIL").write_text("x\n")
    subprocess.run(["git", "add", "FAIL"], cwd=repos[2], check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "f"],
        cwd=repos[2],
        check=True,
    )
    data = {"name": "n", "steps": [SED, CHECK], "repositories": [str(r) for r in repos]}
    store = LocalStore(home)
    job = register_job(JobSpec.parse(data, Settings.from_env()), store)

    code, out, _ = run_cli(capsys, "worker", "--job-id", job.job_id, "--repository", str(repos[0]))
    assert code == 0
    assert json.loads(out) == {
        "job_id": job.job_id,
        "repository": str(repos[0]),
        "status": "COMPLETED",
        "were_changes_necessary": True,
        "error": None,
    }
    code, out, _ = run_cli(
        capsys, "worker", "--job-id", job.job_id, "--repository", f"file://{repos[2]}"
    )
    assert code == 3  # recorded: the runner does not retry it
    assert json.loads(out)["status"] == "FAILED"
    code, out, _ = run_cli(capsys, "worker", "--job-id", "job-missing", "--repository", "a/b")
    assert code == 75 and out == ""


# jobs, show, diff, thread, purge


@pytest.fixture
def two_jobs(home: Path, repos: list[Path], tmp_path: Path) -> tuple[str, str]:
    """A COMPLETED job over all three repositories, then a FAILED one."""
    assert main(["run", "--job-id", "job-ok", str(write_spec(tmp_path / "a.yaml", repos))]) == 0
    failing = write_spec(tmp_path / "b.yaml", repos[:1], steps=["exit 9"], name="Broken")
    assert main(["run", "--job-id", "job-bad", str(failing)]) == 1
    return "job-ok", "job-bad"


def test_jobs_lists_newest_first(
    two_jobs: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "jobs")
    assert code == 0
    lines = out.splitlines()
    header = ["JOB", "STATUS", "NAME", "REPOS", "TOKENS", "USD", "CREATED", "NOTE"]
    assert lines[0].split() == header
    ids = [line.split()[0] for line in lines[1:]]
    assert sorted(ids) == ["job-bad", "job-ok"]
    row = next(line for line in lines if line.startswith("job-ok"))
    assert row.split()[1:3] == ["COMPLETED", "Replace"] and " 3 " in row


@pytest.mark.parametrize("status", ["FAILED", "failed"])
def test_jobs_filtered_by_status(
    two_jobs: tuple[str, str], capsys: pytest.CaptureFixture[str], status: str
) -> None:
    code, out, _ = run_cli(capsys, "jobs", "--status", status)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["job-bad"]
    code, out, _ = run_cli(capsys, "jobs", "--status", "CANCELLED")
    assert code == 0 and out.splitlines()[1:] == []


def test_jobs_with_an_unknown_status_says_which_exist(
    two_jobs: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["jobs", "--status", "DONE"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "DONE" in err and "COMPLETED" in err and "PARTIAL" in err


def test_jobs_json(two_jobs: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "jobs", "--json")
    assert code == 0
    data = {j["job_id"]: j for j in json.loads(out)}
    assert data["job-ok"]["status"] == "COMPLETED"
    assert data["job-bad"]["status"] == "FAILED"
    assert data["job-bad"]["spec"]["name"] == "Broken"
    assert len(data["job-ok"]["spec"]["repositories"]) == 3


def test_show(
    two_jobs: tuple[str, str], repos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "show", "job-ok")
    assert code == 0
    assert out.startswith("job job-ok: Replace oldFunction  [COMPLETED]\n")
    assert "usage: 0 tokens, $0.0000" in out
    for repo, changed in zip(repos, ["yes", "yes", "no"], strict=True):
        row = next(line for line in out.splitlines() if line.startswith(f"{repo} "))
        assert row.split()[1:3] == ["COMPLETED", changed]
    code, out, _ = run_cli(capsys, "show", "job-bad")
    assert "[FAILED]" in out and "exited with 9" in out


def test_show_json(
    two_jobs: tuple[str, str], repos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "show", "job-ok", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["job_id"] == "job-ok" and data["status"] == "COMPLETED"
    assert [
        (r["repository"], r["status"], r["were_changes_necessary"]) for r in data["results"]
    ] == [
        (str(repos[0]), "COMPLETED", True),
        (str(repos[1]), "COMPLETED", True),
        (str(repos[2]), "COMPLETED", False),
    ]
    assert data["results"][0]["steps"][0]["command"] == SED


def test_show_an_unknown_job(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "show", "job-missing")
    assert code == 1 and out == "" and "job job-missing not found" in err


def test_diff_prints_the_exact_patch(
    two_jobs: tuple[str, str],
    home: Path,
    repos: list[Path],
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    patch = LocalStore(home).get_patch("job-ok", str(repos[1]))
    assert patch and b"+y = newFunction(2)" in patch
    assert main(["diff", "job-ok", str(repos[1])]) == 0
    assert capsysbinary.readouterr().out == patch
    # any form of the repository's name finds it
    assert main(["diff", "job-ok", f"file://{repos[1]}"]) == 0
    assert capsysbinary.readouterr().out == patch
    monkeypatch.chdir(repos[1].parent)
    assert main(["diff", "job-ok", repos[1].name]) == 0
    assert capsysbinary.readouterr().out == patch
    assert main(["diff", "job-ok", str(repos[2])]) == 0
    assert capsysbinary.readouterr().out == b""
    assert main(["diff", "job-ok", "acme/unknown"]) == 1
    assert b"no result for acme/unknown in job job-ok" in capsysbinary.readouterr().err


def test_thread(
    two_jobs: tuple[str, str], home: Path, repos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "thread", "job-ok", str(repos[0]))
    assert code == 0 and json.loads(out) is None
    thread = {"messages": [{"role": "assistant", "content": "done ✓"}]}
    LocalStore(home).put_thread("job-ok", str(repos[0]), thread)
    code, out, _ = run_cli(capsys, "thread", "job-ok", str(repos[0]))
    assert code == 0 and json.loads(out) == thread
    code, _, err = run_cli(capsys, "thread", "job-missing", str(repos[0]))
    assert code == 1 and "no result" in err


def test_purge(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = LocalStore(home)
    old = utcnow() - timedelta(days=31)
    store.create_job(
        Job(
            job_id="job-old",
            spec={"name": "old", "repositories": ["github.com/a/b"]},
            created_at=old,
            updated_at=old,
            expires_at=old + timedelta(days=30),
        )
    )
    store.put_patch("job-old", "github.com/a/b", b"p")
    store.create_job(
        Job(job_id="job-new", spec={"name": "new", "repositories": ["github.com/a/b"]})
    )
    code, out, _ = run_cli(capsys, "purge")
    assert code == 0 and out == "purged 1 expired jobs\n"
    assert store.get_job("job-old") is None and store.get_patch("job-old", "github.com/a/b") is None
    assert store.get_job("job-new") is not None
    assert run_cli(capsys, "purge")[1] == "purged 0 expired jobs\n"


# the installed command, as a real process


def test_the_installed_codybatch_command(home: Path, repos: list[Path], tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "job.yaml", repos)
    env = os.environ | {"CODYBATCH_HOME": str(home)}
    proc = subprocess.run(
        [str(CODYBATCH), "run", "--job-id", "job-proc", str(spec)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "REPOSITORY" in proc.stdout and "job job-proc: COMPLETED" in proc.stdout
    diff = subprocess.run(
        [str(CODYBATCH), "diff", "job-proc", str(repos[0])],
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert diff.stdout == LocalStore(home).get_patch("job-proc", str(repos[0]))
    assert b"+newFunction()" in diff.stdout
    bad = write_spec(tmp_path / "bad.yaml", [*repos, *repos])
    proc = subprocess.run(
        [str(CODYBATCH), "run", str(bad)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "repositories: has 6 repositories" in proc.stderr
    assert "duplicate" in proc.stderr


@pytest.mark.parametrize("content", [None, "name: [unclosed\n"])
def test_run_refuses_an_unreadable_spec_file_with_exit_2(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    path = tmp_path / "job.yaml"
    if content is not None:
        path.write_text(content)
    code, out, err = run_cli(capsys, "run", str(path))
    assert code == 2 and out == ""
    assert f"cannot read the job spec {path}" in err


def test_campaign_fleet_and_retry(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from codybatch.fleet_records import ErrorClass, FleetEntry, FleetStatus
    from codybatch.settings import Settings

    settings = Settings(home=tmp_path / "home")
    store = LocalStore(settings.home)
    failed = {"status": FleetStatus.FAILED, "error_class": ErrorClass.NO_ACCESS}
    store.put_fleet(
        [
            FleetEntry("legacy_lib_upgrade", "github.com/acme/a", **failed),
            FleetEntry("legacy_lib_upgrade", "github.com/acme/b", status=FleetStatus.COMPLETED),
            FleetEntry("legacy_lib_upgrade", "github.com/acme/c", **failed),
        ]
    )
    env = {"CODYBATCH_HOME": str(settings.home)}

    def run(*argv: str) -> int:
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            return main(list(argv))

    assert run("campaign", "fleet", "legacy-lib-upgrade.yaml", "--status", "failed", "--csv") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("repository,") and len(out) == 3 and "no_access" in out[1]
    assert run("campaign", "retry", "legacy-lib-upgrade", "--failed") == 0
    captured = capsys.readouterr()
    assert captured.out.split() == ["github.com/acme/a", "github.com/acme/c"]
    assert "airflow dags trigger codybatch_campaign__legacy_lib_upgrade" in captured.err
    assert store.get_fleet("legacy_lib_upgrade", "github.com/acme/a").retry
    assert run("campaign", "retry", "legacy-lib-upgrade", "--repo", "acme/b") == 0
    assert store.get_fleet("legacy_lib_upgrade", "github.com/acme/b").retry
    assert run("campaign", "retry", "legacy-lib-upgrade", "--repo", "acme/x") == 1
    assert "acme/x is not a repository of campaign legacy_lib_upgrade" in capsys.readouterr().err
