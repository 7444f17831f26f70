"""Pages for a PR's life after opening: answer the approval, merge green PRs, fix rounds."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from codybatch.airflow.ui import actions, lifecycle, threadview
from codybatch.airflow.ui.actions import ActionError
from codybatch.airflow.ui.auth import (
    JobReader,
    PageJob,
    PageUser,
    check_csrf,
    job_dag_id,
    readable_job,
    require_run_permission,
)
from codybatch.airflow.ui.campaignview import DAG_PREFIX
from codybatch.airflow.ui.pages import render, user_context
from codybatch.airflow.ui.urls import app_url

router = APIRouter(include_in_schema=False)


@router.post("/jobs/{job_id}/approval")
async def approval_page(job_id: str, request: Request, user: PageUser) -> Response:
    """The job page's approval form: approve the checked, approve all, or reject all."""
    form = await request.form()
    check_csrf(request, user, dict(form))
    job = readable_job(job_id, user)
    lifecycle.require_answer_permission(user, job_dag_id(job))
    decision = str(form.get("decision") or "selected")
    if decision == "reject":
        lifecycle.answer(job, None, True, user)
    elif decision == "all":
        lifecycle.answer(job, ["all"], False, user)
    else:
        chosen = [str(r) for r in form.getlist("repositories")]
        if not chosen:
            raise ActionError(
                "no repository checked: check the ones to publish, or press Reject all", 400
            )
        lifecycle.answer(job, chosen, False, user)
    return RedirectResponse(f"{app_url()}/jobs/{quote(job_id, safe='')}", status_code=303)


@router.post("/jobs/{job_id}/merge", response_class=HTMLResponse)
async def merge_page(job_id: str, request: Request, user: PageUser) -> HTMLResponse:
    """Merge the job's green PRs now; shows per repository merged, or why not."""
    form = await request.form()
    check_csrf(request, user, dict(form))
    job = readable_job(job_id, user)
    require_run_permission(user, job_dag_id(job), "PUT")
    config = actions.settings()
    repository = str(form.get("repository") or "") or None
    report = lifecycle.merge_green(job, repository, user.get_name(), config, actions.store(config))
    return render(
        request, "merge.html", job=job, campaign=None, report=report, **user_context(user)
    )


@router.post("/campaigns/{name}/merge", response_class=HTMLResponse)
async def campaign_merge_page(name: str, request: Request, user: PageUser) -> HTMLResponse:
    """Merge the green PRs of the campaign's fleet."""
    check_csrf(request, user, dict(await request.form()))
    reader = JobReader(user)
    reader.require_dag(DAG_PREFIX + name)
    require_run_permission(user, DAG_PREFIX + name, "PUT")
    config = actions.settings()
    report = lifecycle.merge_campaign(name, user, config, actions.store(config), reader.jobs)
    return render(
        request, "merge.html", job=None, campaign=name, report=report, **user_context(user)
    )


@router.get("/jobs/{job_id}/rounds/{number}/patch/{repository:path}")
def round_patch(job: PageJob, number: int, repository: str) -> Response:
    """A fix round's own change as text/x-diff (the whole stored patch, else the kept part)."""
    result, fix = lifecycle.fix_round(job, number, repository)
    config = actions.settings()
    stored = actions.store(config).get_patch(job.job_id, f"{result.repository}#round-{number}")
    text = stored.decode("utf-8", "replace") if stored is not None else fix.patch
    if not text:
        raise ActionError(f"round {number} of {result.repository} changed nothing", 404)
    name = actions.patch_filename(job.job_id, f"{result.repository}-round-{number}")
    return Response(
        actions.safe_text(text, config).encode("utf-8", "replace"),
        media_type="text/x-diff",
        headers={"Content-Disposition": f'inline; filename="{name}"'},
    )


@router.get("/jobs/{job_id}/rounds/{number}/thread/{repository:path}", response_class=HTMLResponse)
def round_thread(
    job: PageJob, number: int, repository: str, request: Request, user: PageUser
) -> HTMLResponse:
    """The Claude thread of one fix round."""
    result, fix = lifecycle.fix_round(job, number, repository)
    thread = lifecycle.round_thread(job, fix, actions.settings())
    view = threadview.build_thread(thread)
    raw_json = threadview.as_json(thread) if thread is not None and not view.turns else ""
    return render(
        request,
        "thread.html",
        job=job,
        result=result,
        thread=view,
        has_thread=thread is not None,
        json_url=app_url(
            f"/api/v1/jobs/{quote(job.job_id)}/rounds/{number}/claude-thread/"
            f"{quote(result.repository, safe='/')}"
        ),
        raw_json=raw_json,
        **user_context(user),
    )
