"""What the pages and the API do to a job's PRs after opening: answer the approval, merge."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from fastapi import HTTPException
from pydantic import BaseModel, Field

from codybatch.airflow.approval import ApprovalRequest, answer_approval, approval_request
from codybatch.airflow.ui import actions
from codybatch.airflow.ui.actions import ActionError
from codybatch.airflow.ui.auth import can_run, job_dag_id
from codybatch.approval import PUBLISH_NONE
from codybatch.records import FixRound, Job, RepositoryResult
from codybatch.settings import Settings
from codybatch.store import Store

log = logging.getLogger(__name__)


class MergeOutcome(BaseModel):
    """What the bulk merge did to one repository's pull request."""

    job_id: str
    repository: str
    pr_number: int | None = None
    pr_url: str | None = None
    outcome: str = Field(description="merged, refused, failed or skipped (no open PR)")
    reason: str


class MergeReport(BaseModel):
    """Per repository, merged or why not; the counts of each outcome."""

    outcomes: list[MergeOutcome]
    counts: dict[str, int]


class ApprovalAnswer(BaseModel):
    """An approval answered through Airflow's HITL update; publishing follows in the run."""

    job_id: str
    dag_id: str
    run_id: str
    chosen: list[str] = Field(description="The repositories approved, or ['Publish none']")
    approved: list[str]
    rejected: list[str]
    by: str
    at: str


def can_answer(user: BaseUser, dag_id: str) -> bool:
    """May change the DAG's runs and answer its Human-in-the-loop requests (Airflow's rule
    for PATCH .../hitlDetails)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )
    from airflow.models.dag import DagModel

    if not can_run(user, dag_id, "PUT"):
        return False
    return get_auth_manager().is_authorized_dag(
        method="PUT",
        access_entity=DagAccessEntity.HITL_DETAIL,
        details=DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id)),
        user=user,
    )


def require_answer_permission(user: BaseUser, dag_id: str) -> None:
    if not can_answer(user, dag_id):
        raise ActionError(
            f"Forbidden: you may not answer approvals of the {dag_id} DAG (it needs permission "
            "to change its runs and their Human-in-the-loop details)",
            403,
        )


def pending_request(job: Job) -> ApprovalRequest | None:
    """The job's approval request in Airflow, or None (no review, no run, not reached yet)."""
    if not job.spec.get("review_before_publish") or not job.dag_id or not job.run_id:
        return None
    try:
        return approval_request(job.dag_id, job.run_id)
    except Exception:  # the page still shows the job when Airflow's database does not answer
        log.warning("could not read the approval request of %s", job.job_id, exc_info=True)
        return None


def _answered(job: Job, request: ApprovalRequest) -> str:
    who = request.by or "nobody (the timeout chose)"
    at = request.at.strftime("%Y-%m-%d %H:%M:%S UTC") if request.at else "an earlier time"
    return (
        f"the approval of job {job.job_id} was already answered by {who} at {at} "
        f"({', '.join(request.chosen) or 'nothing chosen'}): Airflow takes one answer only"
    )


def answer(job: Job, approve: list[str] | None, reject: bool, user: BaseUser) -> ApprovalAnswer:
    """Answer the job's waiting approval as `user`: approve these repositories, or reject all.

    404 when there is no request, 409 when it was answered or is not waiting, 400 bad input."""
    if reject and approve:
        raise ActionError("give either approve (repositories) or reject, not both", 400)
    if not reject and not approve:
        raise ActionError(
            'nothing chosen: give {"approve": ["owner/name", ...]} (or "all") or {"reject": true}',
            400,
        )
    request = pending_request(job)
    if request is None:
        raise ActionError(
            f"job {job.job_id} has no approval request: it publishes without review, or its "
            "run has not reached the approval step yet",
            404,
        )
    if request.answered:
        raise ActionError(_answered(job, request), 409)
    if not request.waiting:
        raise ActionError(
            f"the approval of job {job.job_id} is not waiting for an answer "
            f"(its task is {request.ti_state or 'not started'})",
            409,
        )
    if reject:
        chosen = [PUBLISH_NONE]
    elif approve == ["all"]:
        chosen = list(request.repositories)
    else:
        chosen = []
        for raw in approve or []:
            known = actions.is_repository_of(job, raw)
            key = actions.resolve_repository(job, raw) if known else raw
            if key not in request.repositories:
                choices = ", ".join(request.repositories)
                raise ActionError(
                    f"approve: {key} is not waiting for approval in job {job.job_id}; "
                    f"choose from {choices}",
                    400,
                )
            if key not in chosen:
                chosen.append(key)
    assert job.dag_id and job.run_id  # pending_request found a request of this run
    try:
        done = answer_approval(job.dag_id, job.run_id, chosen, user)
    except HTTPException as exc:
        if exc.status_code == 409:
            again = pending_request(job)
            raise ActionError(_answered(job, again) if again else str(exc.detail), 409) from None
        raise ActionError(f"Airflow refused the answer: {exc.detail}", exc.status_code) from None
    responded = done.get("responded_by") or {}
    return ApprovalAnswer(
        job_id=job.job_id,
        dag_id=job.dag_id,
        run_id=job.run_id,
        chosen=chosen,
        approved=[r for r in chosen if r != PUBLISH_NONE],
        rejected=[r for r in request.repositories if r not in chosen],
        by=responded.get("name") or user.get_name(),
        at=str(done.get("responded_at") or ""),
    )


def _outcome(result: RepositoryResult, outcome: str, reason: str) -> MergeOutcome:
    return MergeOutcome(
        job_id=result.job_id,
        repository=result.repository,
        pr_number=result.pr_number,
        pr_url=result.pr_url,
        outcome=outcome,
        reason=reason,
    )


def _report(outcomes: list[MergeOutcome], config: Settings) -> MergeReport:
    counts = dict(Counter(o.outcome for o in outcomes))
    return MergeReport.model_validate(
        actions.safe(MergeReport(outcomes=outcomes, counts=counts).model_dump(), config)
    )


def _merge_one_job(
    job: Job, repositories: list[str] | None, by: str, config: Settings, store: Store
) -> list[MergeOutcome]:
    """Merge the green open PRs of the job (of these repositories); the rest say why not."""
    from codybatch.merge import MergeError, merge_job

    results = store.list_results(job.job_id)
    if repositories is not None:
        results = [r for r in results if r.repository in repositories]
    out = []
    for result in results:
        if not (result.pr_number and result.pr_state == "open"):
            state = result.pr_state or "none"
            reason = "no pull request" if state == "none" else f"the pull request is {state}"
            out.append(_outcome(result, "skipped", reason))
            continue
        try:
            merged = merge_job(job.job_id, result.repository, config, store, by=by)
        except MergeError as exc:
            out.append(_outcome(result, "failed", str(exc)))
            continue
        except Exception as exc:  # one broken repository must not stop the others
            log.exception("merging %s of %s failed", result.repository, job.job_id)
            out.append(_outcome(result, "failed", f"could not merge: {exc}"))
            continue
        if not merged:  # merged or closed since it was read (tracking, another click)
            out.append(_outcome(result, "skipped", "the pull request is no longer open"))
            continue
        ((saved, attempt),) = merged
        out.append(_outcome(saved, attempt.outcome, attempt.reason))
    return out


def merge_green(
    job: Job, repository: str | None, by: str, config: Settings, store: Store
) -> MergeReport:
    """The job's bulk "Merge green PRs": `codybatch merge JOB [REPO]`, per repository."""
    wanted = [actions.resolve_repository(job, repository)] if repository else None
    return _report(_merge_one_job(job, wanted, by, config, store), config)


def merge_campaign(
    name: str,
    user: BaseUser,
    config: Settings,
    store: Store,
    may_read: Callable[[list[Job]], list[Job]],
) -> MergeReport:
    """Merge the green open PRs of the campaign's fleet, each through its latest job."""
    from codybatch import fleet
    from codybatch.airflow.ui.campaignview import all_entries

    entries = [e for e in all_entries(store, name, None, None) if e.member and e.job_id]
    by_job: dict[str, list[str]] = {}
    for entry in entries:
        if entry.pr_state == "open":
            by_job.setdefault(str(entry.job_id), []).append(entry.repository)
    outcomes: list[MergeOutcome] = []
    for job_id, repositories in by_job.items():
        job = store.get_job(job_id)
        if job is None or not may_read([job]) or not can_run(user, job_dag_id(job), "PUT"):
            outcomes += [
                MergeOutcome(
                    job_id=job_id,
                    repository=r,
                    outcome="refused",
                    reason=f"you may not change runs of job {job_id}'s DAG",
                )
                for r in repositories
            ]
            continue
        outcomes += _merge_one_job(job, repositories, user.get_name(), config, store)
    fleet.refresh(store, entries)  # the fleet table shows the merges now, not at the next run
    return _report(outcomes, config)


def answer_from_body(body: Any) -> tuple[list[str] | None, bool]:
    """`approve` and `reject` of an API body, checked: the field and its fix on bad input."""
    if not isinstance(body, dict):
        raise ActionError('the body must be {"approve": [...]} or {"reject": true}', 400)
    approve, reject = body.get("approve"), body.get("reject", False)
    if approve == "all":
        approve = ["all"]
    if approve is not None and (
        not isinstance(approve, list) or not all(isinstance(r, str) for r in approve)
    ):
        raise ActionError('approve: must be a list of repository names, or "all"', 400)
    if not isinstance(reject, bool):
        raise ActionError("reject: must be true or false", 400)
    return approve, reject


def page_context(
    user: BaseUser, job: Job, results: list[RepositoryResult], may_change: bool
) -> dict[str, Any]:
    """What the job page needs for its approval form, merge button and lifecycle lines."""
    from codybatch.airflow.ui.lifecycleview import lifecycle_view

    request = pending_request(job)
    open_prs = sum(1 for r in results if r.pr_number and r.pr_state == "open")
    return {
        "lifecycle_view": lifecycle_view,
        "approval_request": request,
        "can_answer": bool(request and request.waiting and can_answer(user, job_dag_id(job))),
        "can_merge": may_change and open_prs > 0,
        "open_prs": open_prs,
    }


def fix_round(job: Job, number: int, repository: str) -> tuple[RepositoryResult, FixRound]:
    """A repository's result and its fix round `number`; 404 when there is no such round."""
    result = actions.get_result(actions.store(actions.settings()), job, repository)
    for fix in result.fix_rounds:
        if fix.number == number:
            return result, fix
    raise ActionError(f"{result.repository} of job {job.job_id} has no fix round {number}", 404)


def round_thread(job: Job, fix: FixRound, config: Settings) -> dict[str, Any] | None:
    """A fix round's stored Claude thread, secrets masked; None when it kept none."""
    raw = actions.store(config).get_thread(job.job_id, fix.thread_key) if fix.thread_key else None
    return actions.safe(raw, config) if raw is not None else None
