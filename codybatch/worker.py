"""One (job, repository): clone -> steps -> Claude -> verify -> diff -> store -> publish.

A straight pipeline. Its failures are three typed errors, each mapped once (below) to what
is stored and the `codybatch worker` exit code.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codybatch import git, orphans
from codybatch.records import (
    AgentSession,
    CommandRun,
    Job,
    JobStatus,
    Phase,
    Progress,
    RepositoryResult,
    RepositoryStatus,
    Usage,
    Verification,
    decode,
    utcnow,
)
from codybatch.redact import contains_secret, redact, redact_text
from codybatch.sandbox import detect
from codybatch.settings import Settings
from codybatch.shell import run_command, truncate
from codybatch.spec import JobSpec, Repository, SpecError, repository_allowed
from codybatch.store import StaleWriteError, Store, open_store
from codybatch.verify import run_verify

log = logging.getLogger("codybatch.worker")

# A finished repository is not redone by a re-run; FAILED ones are (that is what a retry is for).
DONE = (RepositoryStatus.COMPLETED, RepositoryStatus.SKIPPED, RepositoryStatus.CANCELLED)
STEP_OUTPUT = 8_000  # characters of each step's output kept in the record (items stay small)
MAX_PATCH = 20 * 1024 * 1024  # a change bigger than this is refused, not stored or pushed
PROGRESS_INTERVAL = 3.0  # seconds between progress writes within one phase

# `codybatch worker` exit codes: 0 done, 3 the repository FAILED and the store says why (a
# retry would repeat it), 75 the worker itself failed (a retry may help). Python's own
# exit 1 (an uncaught error) is therefore never mistaken for a recorded failure.
EXIT_OK = 0
EXIT_RECORDED_FAILURE = 3
EXIT_TEMPORARY_FAILURE = 75


class WorkerError(Exception):
    """The worker could not run (store unreachable, job missing): nothing is recorded."""

    exit_code = EXIT_TEMPORARY_FAILURE


class RepositoryFailed(WorkerError):
    """The repository failed in `phase`; stored as FAILED with the message as its error."""

    exit_code = EXIT_RECORDED_FAILURE

    def __init__(self, phase: Phase, message: str):
        super().__init__(message)
        self.phase = phase


class Overtaken(WorkerError):
    """Someone wrote the result since this attempt began (a cancel, a newer attempt): theirs
    stands and this attempt stops without writing."""

    exit_code = EXIT_OK


def exit_code(result: RepositoryResult) -> int:
    """The worker's exit code for the result it leaves in the store."""
    if result.status == RepositoryStatus.FAILED:
        return EXIT_RECORDED_FAILURE
    return EXIT_OK


def run_worker(
    job_id: str,
    repository: str,
    settings: Settings,
    store: Store | None = None,
    force: bool = False,
    on_progress: Callable[[RepositoryResult], None] | None = None,
) -> RepositoryResult:
    """Process one repository of a job and store its result; return the stored result."""
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
    return Pipeline(store, settings, job, result, on_progress).run()


class Pipeline:
    """The state of one repository being processed, saved as it goes."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        job: Job,
        result: RepositoryResult,
        on_progress: Callable[[RepositoryResult], None] | None = None,
    ):
        self.store, self.settings, self.job = store, settings, job
        self.on_progress = on_progress
        self.checkout: Path | None = None
        self.git_config = b""
        self.saved_at = 0.0
        self.result = self.start(result)

    def start(self, result: RepositoryResult) -> RepositoryResult:
        """A fresh attempt: the parts an earlier attempt wrote are not this one's."""
        fresh = dataclasses.replace(
            result,
            status=RepositoryStatus.RUNNING,
            attempts=result.attempts + 1,
            started_at=utcnow(),
            progress=Progress(
                phase=Phase.CHECKING,
                batch_job_id=self.settings.batch_job_id or None,
                updated_at=utcnow(),
            ),
            **_fresh_attempt(),
        )
        self.store.save_result(fresh)
        if result.has_patch:
            self.store.put_patch(result.job_id, result.repository, b"")
        if self.job.status == JobStatus.PENDING:
            pending = [JobStatus.PENDING]
            self.store.update_job(self.job.job_id, only_from=pending, status=JobStatus.RUNNING)
        self.notify(fresh)
        return fresh

    def run(self) -> RepositoryResult:
        r = self.result
        try:
            orphans.remove_dead()  # checkouts and steps of workers killed before they finished
            tmp = orphans.work_dir()
            try:
                try:
                    self.pipeline(tmp / "checkout")
                except (RepositoryFailed, Overtaken, StaleWriteError):
                    self.keep_diff()
                    raise
                except Exception as exc:  # git, GitHub, a bug: recorded, never raised further
                    message = redact_text(str(exc) or type(exc).__name__, self.settings.secrets)
                    trace = redact_text(traceback.format_exc(), self.settings.secrets)
                    log.error("%s failed: %s\n%s", r.repository, message, trace)
                    self.keep_diff()  # before the checkout goes: nothing computed is lost
                    raise RepositoryFailed(r.progress.phase, message) from exc
            finally:
                orphans.release(tmp)
        except RepositoryFailed as exc:
            r.status, r.error, r.failed_phase = RepositoryStatus.FAILED, str(exc), exc.phase
        except (Overtaken, StaleWriteError):
            return self.stored()
        r.progress = dataclasses.replace(r.progress, phase=Phase.DONE, updated_at=utcnow())
        r.finished_at = utcnow()
        try:
            saved = self.store.save_result(r)
        except StaleWriteError:
            return self.stored()
        self.notify(saved)
        return saved

    def pipeline(self, checkout: Path) -> None:
        spec, repo = self.check()
        remote = self.resolve(spec, repo)
        if self.result.status == RepositoryStatus.SKIPPED:
            return
        if spec.steps or spec.verify:
            detect(self.settings.sandbox).require()  # before any work, not after the clone
        self.clone(spec, repo, remote, checkout)
        self.run_steps(spec, checkout)
        if spec.task:
            self.run_claude(spec, checkout)
        elif spec.verify:
            self.run_verify(spec, checkout)
        self.record_diff()
        # With review_before_publish the job's approval step publishes what a person approves.
        if spec.create_pull_requests and remote is not None and not spec.review_before_publish:
            self.publish(spec, remote, checkout)
        self.result.status = RepositoryStatus.COMPLETED

    # the phases

    def check(self) -> tuple[JobSpec, Repository]:
        """The spec and this repository, checked again: the allowlist may have changed."""
        try:
            # Only this repository: another of the job that is no longer allowed must not
            # fail this one.
            spec = JobSpec.parse(
                self.job.spec,
                dataclasses.replace(self.settings, allowed_repositories=()),
                check_local=False,
            )
        except SpecError as exc:
            raise RepositoryFailed(
                Phase.CHECKING, f"the job spec is no longer valid: {exc}"
            ) from None
        repo = spec.repository(self.result.repository)
        if not repository_allowed(repo, self.settings):
            raise RepositoryFailed(
                Phase.CHECKING, f"{self.result.repository} is not in the allowlist of this worker"
            )
        return spec, repo

    def resolve(self, spec: JobSpec, repo: Repository) -> Any:
        """The GitHub repository (None for a local one); SKIPPED when a person finished it."""
        if repo.is_local:
            return None
        from codybatch.github import resolve_repository

        remote = resolve_repository(repo, self.settings)
        if remote.archived:
            raise RepositoryFailed(
                Phase.CHECKING, f"{remote.full_name} is archived: nothing can be changed"
            )
        if spec.campaign and spec.create_pull_requests and remote.can_push:
            from codybatch.publish import done_by_a_person

            if done_by_a_person(remote, spec, self.result, self.settings):
                self.result.status = RepositoryStatus.SKIPPED
        return remote

    def clone(self, spec: JobSpec, repo: Repository, remote: Any, checkout: Path) -> None:
        self.progress(Phase.CLONING, detail=repo.key)
        if remote is None:
            url, branch, token = repo.path, spec.base_branch, None
        else:
            url = remote.clone_url
            branch = spec.base_branch or remote.default_branch
            token = self.settings.github_token or None
        log.info("cloning %s", repo.key)
        git.clone(url, checkout, branch=branch, token=token)
        self.checkout = checkout
        # Steps and verify run in the checkout and could rewrite .git/config (say, an
        # insteadOf that sends the token elsewhere): git later runs on this snapshot.
        self.git_config = git.read_config(checkout)
        self.result.base_branch = git.current_branch(checkout)

    def run_steps(self, spec: JobSpec, checkout: Path) -> None:
        for i, command in enumerate(spec.steps, 1):
            self.progress(Phase.STEPS, detail=f"step {i} of {len(spec.steps)}: {command}")
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
            step = decode(CommandRun, redact(done.to_dict(), self.settings.secrets))
            self.result.steps.append(step)
            if not step.ok:
                why = "timed out" if step.timed_out else f"exited with {step.exit_code}"
                raise RepositoryFailed(
                    Phase.STEPS, f"step {i} ({command!r}) {why}: {truncate(step.output, 2000)}"
                )

    def run_verify(self, spec: JobSpec, checkout: Path) -> None:
        self.progress(Phase.VERIFY, detail=spec.verify)
        run = run_verify(spec.verify or "", checkout, self.settings, spec.network)
        self.result.verify = decode(Verification, run)
        if not run["passed"]:
            raise RepositoryFailed(
                Phase.VERIFY, f"verify ({spec.verify!r}) failed: {truncate(run['output'], 2000)}"
            )

    def run_claude(self, spec: JobSpec, checkout: Path) -> None:
        from codybatch.agent import run_agent

        self.progress(Phase.CLAUDE)

        def on_thread(thread: dict[str, Any]) -> None:
            self.check_still_ours()
            # The agent hands out threads already redacted (its tests check that).
            self.store.put_thread(self.result.job_id, self.result.repository, thread)
            self.result.has_thread = True
            self.progress(Phase.CLAUDE, **_thread_progress(thread))

        outcome = run_agent(checkout, spec, self.settings, on_thread)
        r = self.result
        r.usage = outcome.usage
        r.stop_reason = outcome.stop_reason
        r.summary = outcome.summary
        r.pr_title = outcome.pr_title
        r.agent = decode(AgentSession, redact(outcome.to_dict(), self.settings.secrets))
        r.agent.model = r.agent.model or spec.model or self.settings.model
        if r.agent.instructions:
            r.instructions = list(r.agent.instructions.files)
        if outcome.verify:
            r.verify = decode(Verification, outcome.verify)
        if outcome.stop_reason == "error":
            raise RepositoryFailed(Phase.CLAUDE, f"Claude could not finish: {outcome.error}")
        if r.verify and not r.verify.passed:
            rounds = r.verify.rounds
            raise RepositoryFailed(
                Phase.VERIFY, f"verify ({spec.verify!r}) still failed after {rounds} rounds"
            )

    def record_diff(self) -> None:
        """Store the patch of whatever the checkout holds now (also after a failure)."""
        if self.checkout is None or not self.checkout.exists():
            return
        self.progress(Phase.DIFF)
        git.restore_config(self.checkout, self.git_config)
        patch = git.diff(self.checkout)
        r = self.result
        if len(patch) > MAX_PATCH:
            raise RepositoryFailed(
                Phase.DIFF,
                f"the change is {len(patch) / 1e6:.1f} MB, over the {MAX_PATCH / 1e6:.0f} MB "
                "limit: it is not stored; narrow the job",
            )
        leaked = contains_secret(patch, self.settings.secrets)
        if leaked:
            raise RepositoryFailed(
                Phase.DIFF,
                f"the change contains a secret ({leaked}): it is neither stored nor pushed",
            )
        r.were_changes_necessary = bool(patch)
        r.changed_files = git.changed_files(self.checkout)[:1000]
        self.check_still_ours()
        self.store.put_patch(r.job_id, r.repository, patch)
        r.has_patch = bool(patch)
        claimed = r.agent.changes_claimed if r.agent else None
        if claimed is not None and claimed != r.were_changes_necessary:
            r.warnings.append(
                f"Claude said changes_necessary={claimed}, the diff says {r.were_changes_necessary}"
            )

    def publish(self, spec: JobSpec, remote: Any, checkout: Path) -> None:
        """Open or update the pull request. A failure here is publishing's alone: the change
        is stored, so `codybatch publish` can retry it without running the job again."""
        from codybatch.publish import publish_changes

        self.progress(Phase.PUBLISHING, force_save=True)  # the change is stored first
        git.restore_config(checkout, self.git_config)
        publish_changes(checkout, remote, self.job, spec, self.result, self.settings)

    # bookkeeping

    def progress(self, phase: Phase, force_save: bool = False, **changes: Any) -> None:
        """Record what the worker is doing; written when it changes, at most every few
        seconds within a phase (a new phase is written at once)."""
        r = self.result
        before = r.progress
        changes.setdefault("detail", None if phase != before.phase else before.detail)
        now = dataclasses.replace(before, phase=phase, **changes)
        if now == before and not force_save:
            return
        r.progress = now
        new_phase = phase != before.phase
        if force_save or new_phase or time.monotonic() - self.saved_at >= PROGRESS_INTERVAL:
            r.progress.updated_at = utcnow()
            try:
                self.store.save_result(r)
            except StaleWriteError as exc:
                raise Overtaken(str(exc)) from None
            self.saved_at = time.monotonic()
        self.notify(r)  # in-process displays see every change, the store one every few seconds

    def notify(self, result: RepositoryResult) -> None:
        if self.on_progress is not None:
            self.on_progress(result)

    def check_still_ours(self) -> None:
        """Raise Overtaken when someone wrote the result since this attempt last did."""
        stored = self.store.get_result(self.result.job_id, self.result.repository)
        if stored is None or stored.revision != self.result.revision:
            raise Overtaken(
                f"{self.result.repository} was taken over (cancelled or re-attempted): "
                "this attempt stops without writing"
            )

    def keep_diff(self) -> None:
        """After a failure: store the diff made so far, unless it already is."""
        if self.result.were_changes_necessary is None:
            try:
                self.record_diff()
            except Exception:
                log.exception("could not record the diff after a failure")

    def stored(self) -> RepositoryResult:
        log.warning("%s: changed meanwhile, keeping the stored result", self.result.repository)
        stored = self.store.get_result(self.result.job_id, self.result.repository)
        if stored is None:
            raise WorkerError(f"{self.result.repository} disappeared from the store")
        self.notify(stored)
        return stored


def _fresh_attempt() -> dict[str, Any]:
    """The fields an attempt writes, at their empty values."""
    return {
        "finished_at": None,
        "error": None,
        "failed_phase": None,
        "were_changes_necessary": None,  # this attempt's diff decides, not an earlier one's
        "has_patch": False,
        "changed_files": [],
        "steps": [],
        "agent": None,
        "verify": None,
        "warnings": [],
    }


def _thread_progress(thread: dict[str, Any]) -> dict[str, Any]:
    """Turn, tokens and cost so far and the last tool call, from a thread as saved."""
    turns = thread.get("turns") or []
    last_tool = None
    for turn in reversed(turns):
        uses = [
            b
            for b in ((turn.get("response") or {}).get("content") or [])
            if b.get("type") == "tool_use"
        ]
        if uses:
            last_tool = _describe_call(uses[-1])
            break
    return {
        "turn": len(turns),
        "usage": Usage.from_dict(thread.get("usage_total")),
        "last_tool": last_tool,
    }


def _describe_call(use: dict[str, Any]) -> str:
    """`name: the first argument`, short (for a progress line)."""
    args = use.get("input") or {}
    first = next((v for v in args.values() if isinstance(v, str)), "")
    first = " ".join(first.split())
    text = f"{use.get('name', '?')}: {first}" if first else str(use.get("name", "?"))
    return text if len(text) <= 120 else text[:119] + "…"
