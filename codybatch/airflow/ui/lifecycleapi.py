"""The JSON API for a PR's life after opening: answer a job's approval, merge green PRs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from codybatch.airflow.ui import actions, lifecycle
from codybatch.airflow.ui.api import CHANGE, NOT_FOUND, READ
from codybatch.airflow.ui.auth import (
    ApiJob,
    ApiUser,
    JobReader,
    check_csrf,
    job_dag_id,
    readable_job,
    require_run_permission,
)
from codybatch.airflow.ui.campaignview import DAG_PREFIX

router = APIRouter(tags=["Cody Batch"])

APPROVAL_EXAMPLES = {
    "some": {"value": {"approve": ["acme/billing-service"]}},
    "all": {"value": {"approve": "all"}},
    "reject": {"value": {"reject": True}},
}


@router.post(
    "/jobs/{job_id}/approval",
    summary='Answer the job\'s approval before publishing: {"approve": [repositories]} or '
    '"all", or {"reject": true}; through Airflow\'s own HITL update',
    responses={
        **NOT_FOUND,
        400: {"description": "Bad body, or a repository that is not waiting for approval"},
        409: {"description": "Already answered (Airflow takes one answer), or not waiting"},
        **CHANGE,
    },
)
def answer_approval(
    job_id: str,
    request: Request,
    user: ApiUser,
    body: Annotated[Any, Body(openapi_examples=APPROVAL_EXAMPLES)],
) -> lifecycle.ApprovalAnswer:
    check_csrf(request, user)
    job = readable_job(job_id, user)
    lifecycle.require_answer_permission(user, job_dag_id(job))
    approve, reject = lifecycle.answer_from_body(body)
    return lifecycle.answer(job, approve, reject, user)


@router.post(
    "/jobs/{job_id}/merge",
    summary="Merge the job's green PRs now (every required check passed, approved, mergeable); "
    '{"repository": "owner/name"} for one; per repository merged or why not',
    responses={**NOT_FOUND, **CHANGE},
)
def merge_job(
    job_id: str,
    request: Request,
    user: ApiUser,
    body: Annotated[
        Any | None, Body(openapi_examples={"one": {"value": {"repository": "acme/web"}}})
    ] = None,
) -> lifecycle.MergeReport:
    check_csrf(request, user)
    job = readable_job(job_id, user)
    require_run_permission(user, job_dag_id(job), "PUT")
    repository = body.get("repository") if isinstance(body, dict) else None
    if repository is not None and not isinstance(repository, str):
        raise actions.ActionError("repository: must be a repository name (owner/name)", 400)
    config = actions.settings()
    return lifecycle.merge_green(job, repository, user.get_name(), config, actions.store(config))


@router.post(
    "/campaigns/{name}/merge",
    summary="Merge the green PRs of the campaign's fleet, each through its latest job",
    responses={**READ, **CHANGE},
)
def merge_campaign(name: str, request: Request, user: ApiUser) -> lifecycle.MergeReport:
    check_csrf(request, user)
    reader = JobReader(user)
    reader.require_dag(DAG_PREFIX + name)
    require_run_permission(user, DAG_PREFIX + name, "PUT")
    config = actions.settings()
    return lifecycle.merge_campaign(name, user, config, actions.store(config), reader.jobs)


@router.get(
    "/jobs/{job_id}/rounds/{number}/claude-thread/{repository:path}",
    summary="The Claude message thread of one fix round of a repository",
    responses=NOT_FOUND,
)
def get_round_thread(job: ApiJob, number: int, repository: str) -> Any:
    _, fix = lifecycle.fix_round(job, number, repository)
    thread = lifecycle.round_thread(job, fix, actions.settings())
    if thread is None:
        raise actions.ActionError(f"round {number} of {repository} kept no Claude thread", 404)
    return thread
