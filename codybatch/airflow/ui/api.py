"""The JSON API under /codybatch/api/v1 (the seed design's REST API)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from codybatch import reports
from codybatch.airflow.ui import actions, campaignview
from codybatch.airflow.ui.actions import ActionError
from codybatch.airflow.ui.auth import (
    ApiJob,
    ApiUser,
    JobReader,
    check_csrf,
    job_dag_id,
    readable_job,
    require_run_permission,
)
from codybatch.airflow.ui.urls import app_url
from codybatch.records import Job
from codybatch.settings import Settings
from codybatch.spec import SpecError

router = APIRouter(tags=["Cody Batch"])

READ = {403: {"description": "Not allowed to read runs of the job's DAG"}}
NOT_FOUND = {404: {"description": "No such job or repository"}, **READ}
CHANGE = {
    401: {"description": "Not authenticated"},
    403: {"description": "Not allowed to trigger the DAG (or missing X-CSRF-Token)"},
}
CSV = {200: {"content": {"application/json": {}, "text/csv": {}}}}
Format = Annotated[
    Literal["json", "csv"], Query(description="json, or csv for a spreadsheet (a download)")
]
EXAMPLE = {
    "name": "Update code patterns",
    "description": "oldFunction is deprecated",
    "type": "code-pattern-update",
    "prompt": "Replace every call of oldFunction(x) with newFunction(x, {version: 2}).",
    "repositories": ["acme/billing-service", "acme/web-frontend"],
    "createPullRequests": False,
}


class CreatedJob(BaseModel):
    """A job that passed the job model and the checks before work, and its DAG run."""

    job_id: str
    dag_id: str
    run_id: str
    status: str
    url: str = Field(description="The job's page")
    warnings: list[str] = Field(description="Notes, e.g. repositories without push access")


class FieldProblem(BaseModel):
    field: str = Field(description="The field, e.g. name or repositories[1]")
    message: str = Field(description="What is wrong and how to fix it")


class InvalidJob(BaseModel):
    detail: str
    errors: list[FieldProblem]


class JobTypeVariable(BaseModel):
    name: str
    title: str
    description: str
    required: bool
    max_length: int


class JobTypeInfo(BaseModel):
    name: str
    title: str
    description: str
    prompt: str = Field(description="The template; {variable} is replaced by its value")
    variables: list[JobTypeVariable]
    defaults: dict[str, Any]
    guidance: str = Field(description="Extra guidance for Claude, after the system prompt")


class JobTypes(BaseModel):
    job_types: list[JobTypeInfo]


def _request_schema(config: Settings) -> dict[str, Any]:
    """The create-job body as JSON schema, from the job model (its camelCase names work too)."""
    from codybatch.spec import REQUIRED, param_schemas

    properties = {
        name: {k: v for k, v in schema.items() if k not in ("section", "values_display")}
        for name, schema in param_schemas(config).items()
    }
    return {"type": "object", "properties": properties, "required": list(REQUIRED)}


@router.get("/health", summary="The plugin is up and its store answers")
def health(user: ApiUser) -> dict[str, Any]:
    config = actions.settings()
    actions.store(config).list_jobs(limit=1)
    return {"status": "ok", "store": config.store, "dag_id": actions.JOB_DAG_ID}


@router.get("/repositories", summary="Repositories a new job may use")
def repositories(user: ApiUser) -> dict[str, Any]:
    config = actions.settings()
    return actions.repositories(config, actions.store(config), visible=JobReader(user).jobs)


@router.get(
    "/jobs",
    summary="Jobs of DAGs you may read, newest first (?format=csv: one row per job)",
    responses={400: {"description": "Bad filter"}, **CSV},
)
def list_jobs(
    user: ApiUser,
    status: Annotated[str | None, Query(description="PENDING, RUNNING, COMPLETED, ...")] = None,
    limit: Annotated[int, Query(ge=1, le=actions.MAX_PAGE_SIZE)] = actions.PAGE_SIZE,
    offset: Annotated[int, Query(ge=0)] = 0,
    cursor: Annotated[
        str | None, Query(description="a page's next_cursor: the page after it (keyset)")
    ] = None,
    format: Format = "json",
) -> Any:
    config = actions.settings()
    page = actions.list_jobs(
        actions.store(config),
        actions.parse_status(status),
        limit,
        offset,
        visible=JobReader(user).jobs,
        cursor=cursor,
    )
    if format == "csv":
        name = "codybatch-jobs" + (f"-{page.status.value.lower()}" if page.status else "")
        if offset:
            name += f"-from-{offset}"
        text = reports.jobs_csv_of((j, page.results[j.job_id]) for j in page.jobs)
        return csv_response(actions.safe_text(text, config), f"{name}.csv")
    return {
        "jobs": [
            {**actions.job_dict(j, None, config), "counts": page.counts[j.job_id]}
            for j in page.jobs
        ],
        "limit": page.limit,
        "offset": page.offset,
        "next_offset": page.offset + page.limit if page.has_more else None,
        "cursor": page.cursor,
        "next_cursor": page.next_cursor,
    }


@router.get("/job-types", summary="The job types a job may name in `type`")
def job_types(user: ApiUser) -> JobTypes:
    from codybatch.jobtypes import job_types as load

    found = load(actions.settings())
    return JobTypes(
        job_types=[
            JobTypeInfo(
                **t.model_dump(exclude={"variables"}),
                variables=[
                    JobTypeVariable(name=n, **v.model_dump()) for n, v in t.variables.items()
                ],
            )
            for t in found.values()
        ]
    )


@router.post(
    "/jobs",
    status_code=201,
    summary="Validate a job, check it before work, and trigger its codybatch_job run",
    responses={
        400: {"description": "Invalid job: every field error", "model": InvalidJob},
        **CHANGE,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": _request_schema(actions.settings()),  # as the app loads
                    "examples": {"seed": {"value": EXAMPLE}},
                }
            },
        }
    },
)
def create_job(request: Request, user: ApiUser, body: Annotated[Any, Body()]) -> CreatedJob:
    check_csrf(request, user)
    require_run_permission(user, actions.JOB_DAG_ID, "POST")
    config = actions.settings()
    try:
        created = actions.create_job(body, user.get_name(), config, actions.store(config))
    except SpecError as exc:
        raise ActionError("invalid job", 400, exc.as_dict()) from None
    return CreatedJob(
        job_id=created.job.job_id,
        dag_id=actions.JOB_DAG_ID,
        run_id=created.run_id,
        status=created.job.status.value,
        url=app_url(f"/jobs/{created.job.job_id}"),
        warnings=created.warnings,
    )


@router.get(
    "/jobs/{job_id}",
    summary="A job and its repository results (?format=csv: one row per repository)",
    responses={**NOT_FOUND, **CSV},
)
def get_job(job: ApiJob, format: Format = "json") -> Any:
    config = actions.settings()
    results = actions.store(config).list_results(job.job_id)
    if format == "csv":
        text = reports.results_csv(job, results)
        filename = f"{actions.safe_filename(job.job_id)}.csv"
        return csv_response(actions.safe_text(text, config), filename)
    return actions.job_dict(job, results, config)


@router.post(
    "/jobs/{job_id}/cancel",
    summary="Cancel a job: its DAG run is marked failed, open repositories CANCELLED",
    responses={**NOT_FOUND, 409: {"description": "The job already finished"}, **CHANGE},
)
def cancel_job(job_id: str, request: Request, user: ApiUser) -> dict[str, Any]:
    check_csrf(request, user)
    job = readable_job(job_id, user)
    require_run_permission(user, job_dag_id(job), "PUT")
    config = actions.settings()
    store = actions.store(config)
    job = actions.cancel(job_id, store)
    return actions.job_dict(job, store.list_results(job_id), config)


@router.get(
    "/jobs/{job_id}/repositories/{repository:path}/diff",
    summary="The patch of one repository (git diff)",
    response_class=Response,
    responses={200: {"content": {"text/x-diff": {}}}, **NOT_FOUND},
)
def get_diff(job: ApiJob, repository: str) -> Response:
    name = f"{repository}/diff"
    if not actions.is_repository_of(job, repository) and actions.is_repository_of(job, name):
        return JSONResponse(_result(job, name))
    config = actions.settings()
    return actions.patch_response(actions.store(config), job, repository, config, "inline")


@router.get(
    "/jobs/{job_id}/repositories/{repository:path}/claude-thread",
    summary="The Claude message thread of one repository",
    responses=NOT_FOUND,
)
def get_thread(job: ApiJob, repository: str) -> Any:
    name = f"{repository}/claude-thread"
    if not actions.is_repository_of(job, repository) and actions.is_repository_of(job, name):
        return _result(job, name)
    config = actions.settings()
    key = actions.resolve_repository(job, repository)
    thread = actions.store(config).get_thread(job.job_id, key)
    if thread is None:
        raise ActionError(f"{key} of job {job.job_id} has no Claude thread", 404)
    return actions.safe(thread, config)


@router.post(
    "/jobs/{job_id}/repositories/{repository:path}/publish",
    summary="Open the pull request of a patch-only result",
    responses={**NOT_FOUND, 409: {"description": "Nothing to publish"}, **CHANGE},
)
def publish(job_id: str, repository: str, request: Request, user: ApiUser) -> dict[str, Any]:
    check_csrf(request, user)
    job = readable_job(job_id, user)
    require_run_permission(user, job_dag_id(job), "POST")
    config = actions.settings()
    results = actions.publish(job, repository, config, actions.store(config))
    return {"results": [actions.safe(actions.result_dict(r), config) for r in results]}


@router.get(
    "/jobs/{job_id}/repositories/{repository:path}",
    summary="The result of one repository (owner/name URL-encoded, or its key)",
    responses=NOT_FOUND,
)
def get_result(job: ApiJob, repository: str) -> dict[str, Any]:
    return _result(job, repository)


@router.get("/campaigns", summary="Campaigns of DAGs you may read: files, DAGs and runs")
def list_campaigns(user: ApiUser) -> dict[str, Any]:
    config = actions.settings()
    found = campaignview.list_campaigns(config, actions.store(config), JobReader(user))
    return {"campaigns": [actions.safe(c.to_dict(), config) for c in found]}


FleetFormat = Annotated[
    Literal["json", "csv"], Query(description="json, or csv: every matching repository")
]


@router.get(
    "/campaigns/{name}/repositories",
    summary="The campaign's fleet: every repository's latest status, PR, checks, rounds, cost "
    "and error class, by name (?cursor= for the next page, ?format=csv for all)",
    responses={400: {"description": "Bad filter"}, **READ, **CSV},
)
def campaign_repositories(
    name: str,
    user: ApiUser,
    status: Annotated[str | None, Query(description="NEW, LAUNCHED, COMPLETED, ...")] = None,
    error_class: Annotated[
        str | None, Query(description="clone_failed, no_access, claude_limit, ...")
    ] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=actions.MAX_PAGE_SIZE)] = 50,
    format: FleetFormat = "json",
) -> Any:
    config = actions.settings()
    store = actions.store(config)
    reader = JobReader(user)
    wanted, error = campaignview.parse_fleet_filters(status, error_class)
    if format == "csv":
        reader.require_dag(campaignview.DAG_PREFIX + name)
        text = reports.fleet_csv(campaignview.all_entries(store, name, wanted, error))
        return csv_response(actions.safe_text(text, config), f"campaign-{name}.csv")
    page = campaignview.fleet_page(config, store, name, reader, wanted, error, cursor, limit)
    return page.to_dict()


@router.post(
    "/campaigns/{name}/retry",
    summary='Run repositories of the campaign again: {"failed": true} or '
    '{"repositories": [...]}; starts a campaign run now',
    responses={404: {"description": "Not a repository of the campaign"}, **CHANGE},
)
def retry_campaign(
    name: str,
    request: Request,
    user: ApiUser,
    body: Annotated[Any, Body(openapi_examples={"failed": {"value": {"failed": True}}})],
) -> dict[str, Any]:
    check_csrf(request, user)
    require_run_permission(user, campaignview.DAG_PREFIX + name, "POST")
    if not isinstance(body, dict) or not (body.get("failed") or body.get("repositories")):
        raise ActionError('give {"failed": true} and/or {"repositories": ["owner/name", ...]}')
    repositories = body.get("repositories") or []
    if not isinstance(repositories, list) or not all(isinstance(r, str) for r in repositories):
        raise ActionError("repositories: must be a list of repository names")
    config = actions.settings()
    marked, run_id = campaignview.retry(
        actions.store(config), name, repositories, bool(body.get("failed")), user.get_name()
    )
    return {"marked": marked, "dag_id": campaignview.DAG_PREFIX + name, "run_id": run_id}


@router.get(
    "/campaigns/{name:path}",
    summary="A campaign and its burndown: per run, repositories needing change, PRs open, merged",
    responses={404: {"description": "No campaign file and no runs of that name"}, **READ},
)
def get_campaign(name: str, user: ApiUser) -> dict[str, Any]:
    config = actions.settings()
    store = actions.store(config)
    info, points = campaignview.get_campaign(config, store, name, JobReader(user))
    state, _ = store.get_campaign_state(name)
    return {
        **actions.safe(info.to_dict(), config),
        "burndown": points,
        "fleet": store.fleet_counts(name).to_dict(),
        "stopped": actions.safe(state.get("stopped") or {}, config),
    }


def _result(job: Job, repository: str) -> dict[str, Any]:
    config = actions.settings()
    result = actions.get_result(actions.store(config), job, repository)
    return actions.safe(actions.result_dict(result), config)


def csv_response(text: str, filename: str) -> Response:
    """A CSV download: UTF-8, with the file name a browser saves it under."""
    return Response(
        text.encode("utf-8", "replace"),  # any stored text: a lone surrogate becomes "?"
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{actions.safe_filename(filename)}"'
        },
    )
