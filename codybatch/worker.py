"""One (job, repository): clone -> steps/agent -> verify -> diff -> store -> pull request."""

from __future__ import annotations

import dataclasses
import logging
import traceback
from pathlib import Path
from typing import Any

from codybatch import git, orphans
from codybatch.records import (
    JobStatus,
    RepositoryResult,
    RepositoryStatus,
    utcnow,
)
from codybatch.redact import contains_secret, redact, redact_text
from codybatch.sandbox import detect
from codybatch.settings import Settings
from codybatch.shell import run_command, truncate
from codybatch.spec import JobSpec, Repository, SpecError, is_allowed
from codybatch.store import StaleWriteError, Store, open_store
from codybatch.verify import run_verify

log = logging.getLogger("codybatch.worker")

# A finished repository is not redone by a re-run; FAILED ones are (that is what a retry is for).
DONE = (RepositoryStatus.COMPLETED, RepositoryStatus.SKIPPED, RepositoryStatus.CANCELLED)
STEP_OUTPUT = 8_000  # characters of each step's output kept in the record (items stay small)
MAX_PATCH = 20 * 1024 * 1024  # a change bigger than this is refused, not stored or pushed


class WorkerError(Exception):
    """The repository failed; the message says why in words a person understands."""


def run_worker(
    job_id: str,
    repository: str,
    settings: Settings | None = None,
    store: Store | None = None,
    force: bool = False,
) -> RepositoryResult:
    """Process one repository of a job and store its result; return the stored result."""
    settings = settings or Settings.from_env()
    store = store or open_store(settings)
    job = store.get_job(job_id)
    if job is None:
        raise WorkerError(f"job {job_id} does not exist in the store")
    result = store.get_result(job_id, repository)
    if result is None:
        raise WorkerError(f"{repository} is not a repository of job {job_id}")
    if result.status in DONE and not force:
        log.info("%s already %s: nothing to do", repository, result.status)
        return result

    result.status = RepositoryStatus.RUNNING
    result.attempts += 1
    result.started_at = utcnow()
    result.finished_at = None
    result.error = None
    result.were_changes_necessary = None  # this attempt's diff decides, not an earlier one's
    had_patch, result.has_patch = result.has_patch, False
    store.save_result(result)
    if had_patch:
        store.put_patch(job_id, repository, b"")  # an earlier attempt's patch is not this one's
    if job.status == JobStatus.PENDING:
        store.update_job(job_id, only_from=[JobStatus.PENDING], status=JobStatus.RUNNING)

    work = _Work(store, settings, result)
    try:
        # The allowlist may have changed: check it again, for this repository only (another
        # repository of the job that is no longer allowed must not fail this one).
        spec = JobSpec.parse(
            job.spec, dataclasses.replace(settings, allowed_repositories=()), check_local=False
        )
        repo = spec.repository(repository)
        if not is_allowed(repo, settings.allowed_repositories):
            raise WorkerError(f"{repository} is not in the allowlist of this worker")
        orphans.remove_dead()  # checkouts and steps of workers killed before they finished
        tmp = orphans.work_dir()
        try:
            work.process(job, spec, repo, tmp / "checkout")
        except Exception:
            work.result.status = RepositoryStatus.FAILED
            work.keep_diff()  # before the checkout goes: nothing computed is lost
            raise
        finally:
            orphans.release(tmp)
    except SpecError as exc:
        work.fail(f"the job spec is no longer valid: {exc}")
    except Exception as exc:  # one repository's failure is recorded, never raised further
        message = redact_text(str(exc) or type(exc).__name__, settings.secrets)
        trace = redact_text(traceback.format_exc(), settings.secrets)
        log.error("%s failed: %s\n%s", repository, message, trace)
        work.fail(message)
    return work.save()


class _Work:
    """The state of one repository being processed, saved as it goes."""

    def __init__(self, store: Store, settings: Settings, result: RepositoryResult):
        self.store = store
        self.settings = settings
        self.result = result
        self.checkout: Path | None = None
        self.git_config = b""
        self.result.details = {}

    def process(self, job: Any, spec: JobSpec, repo: Repository, checkout: Path) -> None:
        if spec.steps or spec.verify:
            detect(self.settings.sandbox).require()  # before any work, not after the clone
        remote = None
        token = None
        if repo.is_local:
            url, branch = repo.path, spec.base_branch
        else:
            from codybatch.github import resolve_repository

            remote = resolve_repository(repo, self.settings)
            if remote.archived:
                raise WorkerError(f"{remote.full_name} is archived: nothing can be changed")
            if spec.campaign and spec.create_pull_requests and remote.can_push:
                from codybatch.publish import done_by_a_person

                if done_by_a_person(remote, spec, self.result, self.settings):
                    self.result.status = RepositoryStatus.SKIPPED
                    return
            url, branch = remote.clone_url, spec.base_branch or remote.default_branch
            token = self.settings.github_token or None
        log.info("cloning %s", repo.key)
        git.clone(url, checkout, branch=branch, token=token)
        self.checkout = checkout
        # Steps and verify run in the checkout and could rewrite .git/config (say, an
        # insteadOf that sends the token elsewhere): git later runs on this snapshot.
        self.git_config = git.read_config(checkout)
        self.result.details["base_branch"] = git.current_branch(checkout)

        self.run_steps(spec, checkout)
        if spec.prompt:
            self.run_agent(spec, checkout)
        elif spec.verify:
            self.run_verify(spec, checkout)
        self.record_diff()
        if self.result.status == RepositoryStatus.FAILED:
            return
        self.result.status = RepositoryStatus.COMPLETED
        # With review_before_publish the job's approval step publishes what a person approves.
        if spec.create_pull_requests and remote is not None and not spec.review_before_publish:
            from codybatch.publish import publish_changes

            git.restore_config(checkout, self.git_config)
            # A failure from here on is publishing's alone: the change is recorded, so
            # `codybatch publish` can retry it later without running the job again.
            self.result.details["publish_failed"] = True
            publish_changes(checkout, remote, job, spec, self.result, self.settings)
            del self.result.details["publish_failed"]

    def run_steps(self, spec: JobSpec, checkout: Path) -> None:
        outputs: list[dict[str, Any]] = []
        self.result.details["steps"] = outputs
        for i, command in enumerate(spec.steps, 1):
            log.info("step %d: %s", i, command)
            done = run_command(
                command,
                checkout,
                timeout=self.settings.step_timeout,
                output_limit=STEP_OUTPUT,
                passthrough=self.settings.step_env,
                sandbox=detect(self.settings.sandbox),
                network=spec.network,
            )
            outputs.append(redact(done.to_dict(), self.settings.secrets))
            if not done.ok:
                why = "timed out" if done.timed_out else f"exited with {done.exit_code}"
                raise WorkerError(f"step {i} ({command!r}) {why}: {truncate(done.output, 2000)}")

    def run_verify(self, spec: JobSpec, checkout: Path) -> None:
        run = run_verify(spec.verify or "", checkout, self.settings, spec.network)
        self.result.details["verify"] = {**run, "rounds": 1}
        if not run["passed"]:
            self.fail(f"verify ({spec.verify!r}) failed: {truncate(run['output'], 2000)}")

    def run_agent(self, spec: JobSpec, checkout: Path) -> None:
        from codybatch.agent import run_agent

        def on_thread(thread: dict[str, Any]) -> None:
            self.check_still_ours()
            # The agent hands out threads already redacted (its tests check that).
            self.store.put_thread(self.result.job_id, self.result.repository, thread)
            self.result.has_thread = True

        outcome = run_agent(checkout, spec, self.settings, on_thread)
        r = self.result
        r.usage = outcome.usage
        r.stop_reason = outcome.stop_reason
        r.summary = outcome.summary
        r.pr_title = outcome.pr_title
        r.details["agent"] = redact(outcome.to_dict(), self.settings.secrets)
        if outcome.verify:
            r.details["verify"] = outcome.verify
        if outcome.stop_reason == "error":
            self.fail(f"Claude could not finish: {outcome.error}")
        elif outcome.verify and not outcome.verify.get("passed"):
            rounds = outcome.verify.get("rounds")
            self.fail(f"verify ({spec.verify!r}) still failed after {rounds} rounds")

    def record_diff(self) -> None:
        """Store the patch of whatever the checkout holds now (also after a failure)."""
        if self.checkout is None or not self.checkout.exists():
            return
        git.restore_config(self.checkout, self.git_config)
        patch = git.diff(self.checkout)
        r = self.result
        if len(patch) > MAX_PATCH:
            raise WorkerError(
                f"the change is {len(patch) / 1e6:.1f} MB, over the {MAX_PATCH / 1e6:.0f} MB "
                "limit: it is not stored; narrow the job"
            )
        leaked = contains_secret(patch, self.settings.secrets)
        if leaked:
            raise WorkerError(
                f"the change contains a secret ({leaked}): it is neither stored nor pushed"
            )
        r.were_changes_necessary = bool(patch)
        r.details["changed_files"] = git.changed_files(self.checkout)[:1000]
        self.check_still_ours()
        self.store.put_patch(r.job_id, r.repository, patch)
        r.has_patch = bool(patch)
        claimed = (r.details.get("agent") or {}).get("changes_claimed")
        if claimed is not None and claimed != r.were_changes_necessary:
            r.details["disagreement"] = (
                f"Claude said changes_necessary={claimed}, the diff says {r.were_changes_necessary}"
            )

    def check_still_ours(self) -> None:
        """Raise StaleWriteError when someone wrote the result since this attempt began (a
        cancel, or another attempt of the same repository): its patch and thread stand."""
        stored = self.store.get_result(self.result.job_id, self.result.repository)
        if stored is None or stored.revision != self.result.revision:
            raise StaleWriteError(
                f"{self.result.repository} was taken over (cancelled or re-attempted): "
                "this attempt stops without writing"
            )

    def fail(self, error: str) -> None:
        self.result.status = RepositoryStatus.FAILED
        self.result.error = error

    def keep_diff(self) -> None:
        """After a failure: store the diff made so far, unless it already is."""
        if self.result.were_changes_necessary is None:
            try:
                self.record_diff()
            except Exception:
                log.exception("could not record the diff after a failure")

    def save(self) -> RepositoryResult:
        self.result.finished_at = utcnow()
        try:
            return self.store.save_result(self.result)
        except StaleWriteError:
            # Someone else (a cancel, a newer attempt) wrote since: theirs stands.
            stored = self.store.get_result(self.result.job_id, self.result.repository)
            log.warning("%s: changed meanwhile, keeping the stored result", self.result.repository)
            assert stored is not None
            return stored
