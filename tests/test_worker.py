"""worker: one (job, repository) over real local git repositories with shell steps."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from codybatch import git
from codybatch.jobs import register_job
from codybatch.records import JobStatus, Phase, RepositoryResult, RepositoryStatus
from codybatch.settings import Settings
from codybatch.spec import JobSpec
from codybatch.store.local import LocalStore
from codybatch.worker import WorkerError, run_worker
from tests.helpers import make_repo, tree_snapshot

SED = "sed -i 's/oldFunction/newFunction/g' app.py"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The tests' repositories live under tmp_path: that is their local root.
    return Settings(home=tmp_path / "home", local_root_dir=tmp_path, step_timeout=60)


@pytest.fixture
def store(settings: Settings) -> LocalStore:
    return LocalStore(settings.home)


@pytest.fixture
def repos(tmp_path: Path) -> dict[str, Path]:
    """Two repositories that call oldFunction, one that does not."""
    return {
        "a": make_repo(tmp_path / "a", {"app.py": "oldFunction()\n", "README": "a\n"}),
        "b": make_repo(tmp_path / "b", {"app.py": "x = oldFunction(1)\n", "lib/x.py": "x\n"}),
        "c": make_repo(tmp_path / "c", {"app.py": "print('clean')\n"}),
    }


@pytest.fixture(autouse=True)
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Checkouts go to a private temp dir, so the test can see they are removed."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def on_the_host(settings: Settings) -> Settings:
    """Steps outside the sandbox (as with CODYBATCH_SANDBOX=container): these tests' steps
    share files with the test or run the worker, which the sandbox rightly forbids."""
    return dataclasses.replace(settings, sandbox="container")


def register(
    store: LocalStore, settings: Settings, repositories: list[Path], **fields: Any
) -> tuple[str, list[str]]:
    data = {"name": "Replace oldFunction", "steps": [SED]} | fields
    data["repositories"] = [str(p) for p in repositories]
    job = register_job(JobSpec.parse(data, settings), store)
    return job.job_id, job.repositories


def stored(store: LocalStore, job_id: str, repository: str) -> RepositoryResult:
    result = store.get_result(job_id, repository)
    assert result is not None
    return result


def test_changed_repository_completes_with_a_patch(
    store: LocalStore, settings: Settings, repos: dict[str, Path], tmp_path: Path
) -> None:
    job_id, keys = register(store, settings, [repos["a"], repos["c"]])
    result = run_worker(job_id, keys[0], settings=settings, store=store)

    assert result == stored(store, job_id, keys[0])
    assert result.status == RepositoryStatus.COMPLETED
    assert result.were_changes_necessary is True and result.has_patch
    assert result.error is None
    assert result.attempts == 1 and result.progress.phase == Phase.DONE
    assert result.revision == 5  # started, cloning, steps, diff, done
    assert result.started_at is not None and result.finished_at is not None
    assert result.base_branch == "main"
    assert result.changed_files == ["app.py"]
    step = result.steps[0]
    assert step.command == SED and step.exit_code == 0 and not step.timed_out

    patch = store.get_patch(job_id, keys[0])
    assert patch and b"-oldFunction()" in patch and b"+newFunction()" in patch
    fresh = git.clone(str(repos["a"]), tmp_path / "fresh")
    git.apply_patch(fresh, patch)
    assert (fresh / "app.py").read_text() == "newFunction()\n"
    # the source repository itself is never touched
    assert (repos["a"] / "app.py").read_text() == "oldFunction()\n"

    job = store.get_job(job_id)
    assert job is not None and job.status == JobStatus.RUNNING
    assert stored(store, job_id, keys[1]).status == RepositoryStatus.PENDING


def test_unchanged_repository_completes_without_changes(
    store: LocalStore, settings: Settings, repos: dict[str, Path]
) -> None:
    job_id, keys = register(store, settings, [repos["c"]])
    result = run_worker(job_id, keys[0], settings=settings, store=store)
    assert result.status == RepositoryStatus.COMPLETED
    assert result.were_changes_necessary is False
    assert not result.has_patch
    assert store.get_patch(job_id, keys[0]) == b""
    assert result.changed_files == []


def test_every_kind_of_change_by_steps_is_in_the_patch(
    store: LocalStore, settings: Settings, repos: dict[str, Path], tmp_path: Path
) -> None:
    steps = [
        "printf 'bin\\000\\001\\377' > new.bin",
        "git mv README README.md",
        "chmod +x app.py",
        "ln -s app.py link",
        "mkdir -p docs && echo doc > docs/d.txt",
    ]
    job_id, keys = register(store, settings, [repos["a"]], steps=steps)
    result = run_worker(job_id, keys[0], settings=settings, store=store)
    assert result.status == RepositoryStatus.COMPLETED, result.error
    changed = git.clone(str(repos["a"]), tmp_path / "expected")
    for command in steps:
        subprocess.run(command, shell=True, cwd=changed, check=True, capture_output=True)
    fresh = git.clone(str(repos["a"]), tmp_path / "fresh")
    git.apply_patch(fresh, store.get_patch(job_id, keys[0]) or b"")
    assert tree_snapshot(fresh) == tree_snapshot(changed)


def test_a_failing_step_fails_only_its_repository(
    store: LocalStore, settings: Settings, tmp_path: Path
) -> None:
    ok = make_repo(tmp_path / "ok", {"app.py": "oldFunction()\n"})
    bad = make_repo(tmp_path / "bad", {"app.py": "oldFunction()\n", "FAIL": "x\n"})
    check = 'if [ -f FAIL ]; then echo "tests broke: FAIL is here" >&2; exit 3; fi; echo fine'
    job_id, keys = register(store, settings, [ok, bad], steps=[SED, check, "echo after"])
    results = [run_worker(job_id, k, settings=settings, store=store) for k in keys]

    assert results[0].status == RepositoryStatus.COMPLETED
    assert [s.output.strip() for s in results[0].steps] == ["", "fine", "after"]

    failed = results[1]
    assert failed.status == RepositoryStatus.FAILED
    assert failed.error is not None
    assert failed.error.startswith("step 2 (")
    assert "exited with 3" in failed.error and "tests broke: FAIL is here" in failed.error
    steps = failed.steps
    assert len(steps) == 2  # the step after the failure did not run
    assert steps[1].exit_code == 3 and "tests broke" in steps[1].output
    # what the steps changed before the failure is kept
    assert failed.were_changes_necessary is True
    assert b"+newFunction()" in (store.get_patch(job_id, keys[1]) or b"")
    assert failed.finished_at is not None


def test_running_twice_gives_the_same_result_and_no_duplicates(
    store: LocalStore, settings: Settings, repos: dict[str, Path]
) -> None:
    job_id, keys = register(store, settings, list(repos.values()))
    first = [run_worker(job_id, k, settings=settings, store=store) for k in keys]
    patches = [store.get_patch(job_id, k) for k in keys]
    second = [run_worker(job_id, k, settings=settings, store=store) for k in keys]

    assert second == first
    assert [store.get_patch(job_id, k) for k in keys] == patches
    results = store.list_results(job_id)
    assert [r.repository for r in results] == keys
    assert [r.revision for r in results] == [r.revision for r in first]  # the re-run wrote nothing
    assert [r.attempts for r in results] == [1, 1, 1]
    assert [r.were_changes_necessary for r in results] == [True, True, False]
    assert len(store.list_jobs()) == 1


def test_force_redoes_a_finished_repository_with_the_same_outcome(
    store: LocalStore, settings: Settings, repos: dict[str, Path]
) -> None:
    job_id, keys = register(store, settings, [repos["b"]])
    first = run_worker(job_id, keys[0], settings=settings, store=store)
    patch = store.get_patch(job_id, keys[0])
    again = run_worker(job_id, keys[0], settings=settings, store=store, force=True)
    assert again.status == first.status == RepositoryStatus.COMPLETED
    assert again.attempts == 2 and again.revision == 2 * first.revision
    assert again.changed_files == first.changed_files
    assert store.get_patch(job_id, keys[0]) == patch
    assert len(store.list_results(job_id)) == 1


def test_a_failed_repository_is_attempted_again(
    store: LocalStore, settings: Settings, repos: dict[str, Path], tmp_path: Path
) -> None:
    settings = on_the_host(settings)
    marker = tmp_path / "flaky-once"
    flaky = f"if [ ! -f {marker} ]; then touch {marker}; echo flaky; exit 1; fi"
    job_id, keys = register(store, settings, [repos["a"]], steps=[flaky, SED])
    first = run_worker(job_id, keys[0], settings=settings, store=store)
    assert first.status == RepositoryStatus.FAILED and "flaky" in (first.error or "")
    second = run_worker(job_id, keys[0], settings=settings, store=store)
    assert second.status == RepositoryStatus.COMPLETED
    assert second.error is None and second.attempts == 2
    assert second.were_changes_necessary is True
    assert len(second.steps) == 2


def test_a_retry_does_not_keep_the_previous_attempts_diff(
    store: LocalStore, settings: Settings, repos: dict[str, Path], tmp_path: Path
) -> None:
    settings = on_the_host(settings)
    counter = tmp_path / "attempt"
    step = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; "
        f'if [ $n = 1 ]; then {SED}; fi; echo "attempt $n fails"; exit 1'
    )
    job_id, keys = register(store, settings, [repos["a"]], steps=[step])
    first = run_worker(job_id, keys[0], settings=settings, store=store)
    assert first.status == RepositoryStatus.FAILED and first.were_changes_necessary is True
    second = run_worker(job_id, keys[0], settings=settings, store=store)
    assert second.status == RepositoryStatus.FAILED
    assert "attempt 2 fails" in (second.error or "")
    # this attempt changed nothing: the record and the patch say so
    assert second.were_changes_necessary is False and not second.has_patch
    assert store.get_patch(job_id, keys[0]) == b""


def test_the_worker_checks_the_allowlist_again(
    store: LocalStore, settings: Settings, repos: dict[str, Path]
) -> None:
    job_id, keys = register(store, settings, [repos["a"], repos["b"]])
    strict = dataclasses.replace(settings, allowed_repositories=(str(repos["a"]),))
    allowed = run_worker(job_id, keys[0], settings=strict, store=store)
    refused = run_worker(job_id, keys[1], settings=strict, store=store)
    assert refused.status == RepositoryStatus.FAILED
    assert refused.error is not None and "allowlist" in refused.error
    assert str(repos["b"]) in refused.error
    assert refused.were_changes_necessary is None and refused.steps == []
    # a refused repository does not fail the others of the job
    assert allowed.status == RepositoryStatus.COMPLETED, allowed.error


def test_a_step_timeout_fails_the_repository(
    store: LocalStore, settings: Settings, repos: dict[str, Path]
) -> None:
    quick = dataclasses.replace(settings, step_timeout=1)
    job_id, keys = register(store, quick, [repos["a"]], steps=["echo waiting; sleep 30"])
    result = run_worker(job_id, keys[0], settings=quick, store=store)
    assert result.status == RepositoryStatus.FAILED
    assert result.error is not None and "timed out" in result.error
    step = result.steps[0]
    assert step.timed_out and step.exit_code is None and "waiting" in step.output


def test_the_checkout_is_removed(
    store: LocalStore, settings: Settings, repos: dict[str, Path], private_tmp: Path
) -> None:
    settings = on_the_host(settings)
    job_id, keys = register(store, settings, [repos["a"], repos["b"]], steps=["pwd", SED])
    (repos["b"] / "app.py").unlink()  # b's sed fails
    git_dir = repos["b"]
    from tests.helpers import commit_all

    commit_all(git_dir, "remove app.py")
    results = [run_worker(job_id, k, settings=settings, store=store) for k in keys]
    assert [r.status for r in results] == [RepositoryStatus.COMPLETED, RepositoryStatus.FAILED]
    for r in results:
        checkout = Path(r.steps[0].output.strip())
        assert checkout.is_relative_to(private_tmp)
        assert not checkout.exists()
    assert list(private_tmp.iterdir()) == []


def test_steps_never_see_the_secrets(
    store: LocalStore,
    settings: Settings,
    repos: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token, key = "ghp_worker_secret_123", "sk-ant-worker-secret-456"
    monkeypatch.setenv("GITHUB_TOKEN", token)
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    monkeypatch.setenv("VISIBLE_VARIABLE", "seen")
    monkeypatch.setenv("UNLISTED_VARIABLE", "unseen")
    job_id, keys = register(store, settings, [repos["a"]], steps=["env"])
    # settings without the secrets: nothing would mask them, so only the clean env keeps them out
    passing = dataclasses.replace(settings, step_env=("VISIBLE_VARIABLE", "GITHUB_TOKEN"))
    result = run_worker(job_id, keys[0], settings=passing, store=store)
    output = result.steps[0].output
    assert "VISIBLE_VARIABLE=seen" in output  # CODYBATCH_STEP_ENV passes it
    assert "UNLISTED_VARIABLE" not in output
    for secret in (token, key, "GITHUB_TOKEN", "ANTHROPIC_API_KEY"):
        assert secret not in output
    assert token not in (store.home / "codybatch.db").read_bytes().decode("latin-1")


def test_secrets_printed_by_a_step_are_masked(
    store: LocalStore, settings: Settings, tmp_path: Path
) -> None:
    token = "ghp_printed_secret_789"
    repo = make_repo(tmp_path / "r", {"leak.txt": f"token={token}\n"})
    with_secrets = dataclasses.replace(settings, github_token=token)
    job_id, keys = register(store, settings, [repo], steps=["cat leak.txt; exit 1"])
    result = run_worker(job_id, keys[0], settings=with_secrets, store=store)
    assert result.status == RepositoryStatus.FAILED
    assert "token=[REDACTED]" in result.steps[0].output
    assert token not in (result.error or "") and "[REDACTED]" in (result.error or "")
    db = b"".join(p.read_bytes() for p in store.home.glob("codybatch.db*"))
    assert token.encode() not in db


def test_a_missing_base_branch_fails_readably(
    store: LocalStore, settings: Settings, repos: dict[str, Path]
) -> None:
    job_id, keys = register(store, settings, [repos["a"]], base_branch="no-such-branch")
    result = run_worker(job_id, keys[0], settings=settings, store=store)
    assert result.status == RepositoryStatus.FAILED
    assert result.error is not None and "git clone failed" in result.error
    assert "no-such-branch" in result.error


def test_a_base_branch_is_used(
    store: LocalStore, settings: Settings, repos: dict[str, Path]
) -> None:
    from tests.helpers import commit_all
    from tests.helpers import git as run

    run(repos["c"], "checkout", "--quiet", "-b", "legacy")
    (repos["c"] / "app.py").write_text("oldFunction()\n")
    commit_all(repos["c"], "legacy code")
    run(repos["c"], "checkout", "--quiet", "main")
    job_id, keys = register(store, settings, [repos["c"]], base_branch="legacy")
    result = run_worker(job_id, keys[0], settings=settings, store=store)
    assert result.status == RepositoryStatus.COMPLETED
    assert result.base_branch == "legacy"
    assert result.were_changes_necessary is True


def test_verify_command_decides_the_outcome(
    store: LocalStore, settings: Settings, repos: dict[str, Path]
) -> None:
    job_id, keys = register(
        store, settings, [repos["a"], repos["c"]], verify="grep -q newFunction app.py"
    )
    passed, failed = (run_worker(job_id, k, settings=settings, store=store) for k in keys)
    assert passed.status == RepositoryStatus.COMPLETED
    assert passed.verify.passed is True
    assert failed.status == RepositoryStatus.FAILED
    assert failed.verify.passed is False
    assert (
        failed.error is not None and "verify ('grep -q newFunction app.py') failed" in failed.error
    )


def test_a_cancel_during_the_run_is_not_overwritten(
    store: LocalStore, settings: Settings, repos: dict[str, Path]
) -> None:
    settings = on_the_host(settings)
    # the cancel comes from another process while the worker runs its steps
    cancel = (
        f'{sys.executable} -c "import sys; from codybatch.jobs import cancel_job; '
        f"from codybatch.store.local import LocalStore; "
        f'cancel_job(LocalStore(sys.argv[1]), sys.argv[2])" {settings.home} $JOB_ID'
    )
    data = {"name": "n", "steps": [SED, "true"], "repositories": [str(repos["a"])]}
    job_id = register_job(JobSpec.parse(data, settings), store).job_id
    keys = [str(repos["a"])]
    data["steps"] = [SED, cancel.replace("$JOB_ID", job_id)]
    store.update_job(job_id, spec=JobSpec.parse(data, settings).to_dict())
    result = run_worker(job_id, keys[0], settings=settings, store=store)
    assert result.status == RepositoryStatus.CANCELLED
    assert result == stored(store, job_id, keys[0])
    assert store.get_patch(job_id, keys[0]) is None  # the cancelled attempt wrote nothing
    job = store.get_job(job_id)
    assert job is not None and job.status == JobStatus.CANCELLED


def test_unknown_job_or_repository(
    store: LocalStore, settings: Settings, repos: dict[str, Path]
) -> None:
    with pytest.raises(WorkerError, match="does not exist"):
        run_worker("job-missing", str(repos["a"]), settings=settings, store=store)
    job_id, _ = register(store, settings, [repos["a"]])
    with pytest.raises(WorkerError, match="is not a repository of job"):
        run_worker(job_id, str(repos["b"]), settings=settings, store=store)


def test_another_repository_gone_missing_does_not_fail_this_one(
    store: LocalStore, settings: Settings, repos: dict[str, Path]
) -> None:
    import shutil

    job_id, keys = register(store, settings, [repos["a"], repos["b"]])
    shutil.rmtree(repos["b"])
    kept = run_worker(job_id, keys[0], settings=settings, store=store)
    gone = run_worker(job_id, keys[1], settings=settings, store=store)
    assert kept.status == RepositoryStatus.COMPLETED, kept.error
    assert gone.status == RepositoryStatus.FAILED and "clone" in (gone.error or "")


def test_a_retry_failing_before_the_clone_leaves_no_old_patch(
    store: LocalStore, settings: Settings, repos: dict[str, Path]
) -> None:
    import shutil

    job_id, keys = register(store, settings, [repos["a"]], steps=[f"{SED}; exit 1"])
    first = run_worker(job_id, keys[0], settings=settings, store=store)
    assert first.has_patch and store.get_patch(job_id, keys[0])
    shutil.rmtree(repos["a"])
    second = run_worker(job_id, keys[0], settings=settings, store=store)
    assert second.status == RepositoryStatus.FAILED and not second.has_patch
    assert store.get_patch(job_id, keys[0]) == b""


def test_a_step_rewriting_git_config_cannot_redirect_git(
    store: LocalStore, settings: Settings, repos: dict[str, Path], tmp_path: Path
) -> None:
    settings = on_the_host(settings)
    # A planted clean filter would run during the diff's `git add` with git's environment.
    marker = tmp_path / "filter-ran"
    step = (
        f"git config filter.x.clean 'env > {marker}; cat' && echo '* filter=x' > .gitattributes"
        f" && {SED}"
    )
    job_id, keys = register(store, settings, [repos["a"]], steps=[step])
    result = run_worker(job_id, keys[0], settings=settings, store=store)
    assert result.status == RepositoryStatus.COMPLETED, result.error
    assert not marker.exists()  # .git/config was put back before git ran again
    assert b"newFunction" in store.get_patch(job_id, keys[0])


def test_a_change_carrying_a_secret_is_neither_stored_nor_pushed(
    store: LocalStore, settings: Settings, repos: dict[str, Path]
) -> None:
    import base64

    token = "ghp_" + "s3cr3t" * 6
    secret_settings = dataclasses.replace(settings, github_token=token)
    encoded = base64.b64encode(token.encode()).decode()
    job_id, keys = register(store, settings, [repos["a"], repos["b"]])
    for key, text in ((keys[0], token), (keys[1], encoded)):
        result = store.get_result(job_id, key)
        spec_steps = [f"echo '{text}' > leaked.txt"]
        job = store.get_job(job_id)
        store.update_job(job_id, spec={**job.spec, "steps": spec_steps})
        done = run_worker(job_id, key, settings=secret_settings, store=store)
        assert done.status == RepositoryStatus.FAILED
        assert "contains a secret" in (done.error or "") and token not in (done.error or "")
        assert store.get_patch(job_id, key) in (None, b"")
        assert result is not None


def test_verify_output_is_redacted(
    store: LocalStore, settings: Settings, repos: dict[str, Path], tmp_path: Path
) -> None:
    token = "ghp_" + "v3rify" * 6
    (tmp_path / "token.txt").write_text(token)
    secret_settings = dataclasses.replace(settings, github_token=token)
    verify = f"cat {tmp_path / 'token.txt'}; false"
    job_id, keys = register(store, settings, [repos["a"]], verify=verify)
    done = run_worker(job_id, keys[0], settings=secret_settings, store=store)
    assert done.status == RepositoryStatus.FAILED
    assert token not in (done.error or "") and token not in str(done.to_dict())
    assert token.encode() not in (settings.home / "codybatch.db").read_bytes()


def test_an_overtaken_attempt_does_not_overwrite_the_newer_patch(
    store: LocalStore, settings: Settings, repos: dict[str, Path], tmp_path: Path
) -> None:
    settings = on_the_host(settings)
    counter = tmp_path / "counter"
    job_id = register_job(
        JobSpec.parse(
            {"name": "n", "steps": ["true"], "repositories": [str(repos["a"])]}, settings
        ),
        store,
    ).job_id
    # Attempt 1's step starts attempt 2 (as a re-submitted Batch job would) and waits for it.
    newer = (
        f"CODYBATCH_SANDBOX=container CODYBATCH_HOME={settings.home} "
        f"CODYBATCH_LOCAL_ROOT={settings.local_root} "
        f"{sys.executable} -m codybatch worker --force "
        f"--job-id {job_id} "
        f"--repository {repos['a']} > /dev/null 2>&1"
    )
    step = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; "
        f"echo attempt$n > out.txt; if [ $n = 1 ]; then {newer}; fi"
    )
    job = store.get_job(job_id)
    store.update_job(job_id, spec={**job.spec, "steps": [step]})
    run_worker(job_id, str(repos["a"]), settings=settings, store=store)

    final = stored(store, job_id, str(repos["a"]))
    assert final.status == RepositoryStatus.COMPLETED and final.attempts == 2
    patch = store.get_patch(job_id, str(repos["a"])) or b""
    assert b"+attempt2" in patch and b"attempt1" not in patch
