"""Server-rendered pages: jobs, job detail, diff, thread, new job, the run's Results tab."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup, escape

from codybatch.airflow.ui import (
    actions,
    campaignview,
    chart,
    diffview,
    lifecycle,
    progressview,
    prview,
    threadview,
    urls,
)
from codybatch.airflow.ui.actions import ActionError
from codybatch.airflow.ui.auth import (
    CSRF_FIELD,
    JobReader,
    PageJob,
    PageUser,
    can_run,
    check_csrf,
    csrf_token,
    job_dag_id,
    readable_job,
    require_run_permission,
)
from codybatch.jobtypes import job_types
from codybatch.records import FINISHED_JOB_STATUSES, Job, JobStatus, job_id_for_run
from codybatch.reports import result_counts
from codybatch.spec import SpecError, param_schemas
from codybatch.text import mask_credentials, scrub

router = APIRouter(include_in_schema=False)

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=True,  # everything from repositories, threads and users is escaped
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.globals["line_html"] = diffview.line_html
_env.globals["pull_request_view"] = prview.pull_request_view
_env.globals["job_statuses"] = [s.value for s in JobStatus]
_env.globals["dag_url"] = urls.dag_url
_env.globals["dag_run_url"] = urls.dag_run_url
_env.filters["q"] = lambda value: quote(str(value), safe="")
_env.filters["web_url"] = lambda url: url if str(url).startswith(("https://", "http://")) else "#"


def _path(value: Any) -> Markup:
    """A path or repository name that may break after each slash (escaped)."""
    return Markup("/<wbr>").join(escape(part) for part in str(value).split("/"))


_env.filters["path"] = _path


def _tokens(value: int) -> str:
    return f"{value:,}" if isinstance(value, int | float) else "-"  # any stored row renders


def _usd(value: float) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


_env.filters["tokens"] = _tokens
_env.filters["usd"] = _usd
_env.filters["when"] = lambda dt: dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "-"
_env.filters["day"] = lambda dt: dt.strftime("%Y-%m-%d") if dt else "-"


def render(request: Request, template: str, http_status: int = 200, **context: Any) -> HTMLResponse:
    html = _env.get_template(template).render(root=urls.app_url(), csrf_field=CSRF_FIELD, **context)
    # A stored row may hold any text (a lone surrogate): the page still renders for everyone.
    return HTMLResponse(scrub(html), status_code=http_status)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render(request, "error.html", http_status=status, status_code=status, message=message)


def user_context(user: Any) -> dict[str, Any]:
    """What every page shows of its user: the name, and the form token for its actions."""
    return {"user_name": user.get_name(), "csrf": csrf_token(user)}


@router.get("/", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    user: PageUser,
    status: str | None = None,
    page: int = Query(1, ge=1),
) -> HTMLResponse:
    config = actions.settings()
    wanted = actions.parse_status(status)
    limit = actions.PAGE_SIZE
    result = actions.list_jobs(
        actions.store(config), wanted, limit, (page - 1) * limit, visible=JobReader(user).jobs
    )
    status_value = wanted.value if wanted else ""

    def page_url(number: int) -> str:
        query = {k: v for k, v in (("status", status_value), ("page", number)) if v}
        return "?" + urlencode(query) if query else "?"

    csv_query = {"format": "csv", "limit": limit, "offset": (page - 1) * limit}
    if status_value:
        csv_query["status"] = status_value
    return render(
        request,
        "jobs.html",
        jobs=result.jobs,
        counts=result.counts,
        results=result.results,
        csv_url="/api/v1/jobs?" + urlencode(csv_query),
        status=status_value,
        page=page,
        newer_url=page_url(page - 1) if page > 1 else None,
        older_url=page_url(page + 1) if result.has_more else None,
        can_create=can_run(user, actions.JOB_DAG_ID, "POST"),
        **user_context(user),
    )


def _job_context(user: Any, job: Job) -> dict[str, Any]:
    config = actions.settings()
    results = actions.store(config).list_results(job.job_id)
    finished = job.status in FINISHED_JOB_STATUSES
    may_change = can_run(user, job_dag_id(job), "PUT")
    return {
        "job": job,
        "spec": actions.safe(job.spec, config),
        "results": results,
        "counts": result_counts(results),
        "finished": finished,
        "can_cancel": not finished and may_change,
        "publishable": {r.repository for r in results if may_change and actions.can_publish(r)},
        "progress_view": lambda r: progressview.progress_view(r, job, config.aws_region),
        **lifecycle.page_context(user, job, results, may_change),
    }


@router.get("/jobs/new", response_class=HTMLResponse)
def new_job_page(request: Request, user: PageUser) -> HTMLResponse:
    require_run_permission(user, actions.JOB_DAG_ID, "POST")
    return _new_form(request, user, {}, [])


def _new_form(
    request: Request, user: Any, values: dict[str, Any], errors: list[dict], status: int = 200
) -> HTMLResponse:
    config = actions.settings()
    listed = actions.repositories(config, actions.store(config), visible=JobReader(user).jobs)
    by_field: dict[str, list[str]] = {}
    for error in errors:
        name = error["field"].split("[")[0].split(".")[0]
        by_field.setdefault(name, []).append(error["message"])
    return render(
        request,
        "new.html",
        http_status=status,
        values=values,
        errors=errors,
        by_field=by_field,
        listed=listed,
        job_types=job_types(config),
        fields=param_schemas(config),
        **user_context(user),
    )


FORM_TEXT = ("name", "description", "prompt", "verify", "base_branch", "model", "type")
FORM_NUMBERS = ("max_turns", "max_tokens", "max_usd", "max_minutes")


def _number(raw: str) -> int | float | str:
    """A number as typed: int, else float (1e999 is inf, which the model refuses), else text."""
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            continue
    return raw


def _form_spec(form: Any) -> dict[str, Any]:
    """The form's fields as job input, as typed (the job model refuses, never the form);
    empty optional fields are left out."""
    repos = list(form.getlist("repositories"))
    repos += str(form.get("more_repositories", "")).splitlines()
    data: dict[str, Any] = {name: str(form.get(name, "")) for name in FORM_TEXT}
    data["repositories"] = [r for r in repos if r.strip()]
    data["create_pull_requests"] = form.get("create_pull_requests") == "on"
    data["steps"] = [s for s in str(form.get("steps", "")).splitlines() if s.strip()]
    for name in FORM_NUMBERS:
        raw = str(form.get(name, "")).strip()
        if raw:
            data[name] = _number(raw)
    prefix = f"var__{data['type']}__"
    data["variables"] = {
        key.removeprefix(prefix): str(value)
        for key, value in form.items()
        if key.startswith(prefix) and str(value)
    }
    if data["type"] == "custom":
        data.pop("type")
    return {k: v for k, v in data.items() if v not in ("", [], {}, None)}


@router.post("/jobs/new", response_class=HTMLResponse)
async def create_job_page(request: Request, user: PageUser) -> Response:
    form = await request.form()
    check_csrf(request, user, dict(form))
    require_run_permission(user, actions.JOB_DAG_ID, "POST")
    data = _form_spec(form)
    # Shown again with the errors: never echo a password or token typed into a URL.
    values = {k: mask_credentials(str(form.get(k, ""))) for k in form if k != CSRF_FIELD}
    values["repositories"] = [mask_credentials(str(r)) for r in form.getlist("repositories")]
    config = actions.settings()
    try:
        created = actions.create_job(data, user.get_name(), config, actions.store(config))
    except SpecError as exc:
        return _new_form(request, user, values, exc.as_dict(), status=400)
    except ActionError as exc:
        return _new_form(request, user, values, [{"field": "job", "message": str(exc)}], 400)
    return RedirectResponse(urls.app_url(f"/jobs/{created.job.job_id}"), status_code=303)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job: PageJob, request: Request, user: PageUser) -> HTMLResponse:
    return render(request, "job.html", **_job_context(user, job), **user_context(user))


@router.get("/jobs/{job_id}/live", response_class=HTMLResponse)
def job_fragment(job: PageJob, request: Request, user: PageUser) -> HTMLResponse:
    """The job's changing part, polled by the page while the job runs."""
    return render(request, "_job_body.html", **_job_context(user, job), **user_context(user))


@router.post("/jobs/{job_id}/cancel")
async def cancel_page(job_id: str, request: Request, user: PageUser) -> Response:
    check_csrf(request, user, dict(await request.form()))
    job = readable_job(job_id, user)
    require_run_permission(user, job_dag_id(job), "PUT")
    actions.cancel(job_id, actions.store(actions.settings()))
    return RedirectResponse(urls.app_url(f"/jobs/{job_id}"), status_code=303)


@router.post("/jobs/{job_id}/publish/{repository:path}")
async def publish_page(job_id: str, repository: str, request: Request, user: PageUser) -> Response:
    check_csrf(request, user, dict(await request.form()))
    job = readable_job(job_id, user)
    require_run_permission(user, job_dag_id(job), "POST")
    config = actions.settings()
    actions.publish(job, repository, config, actions.store(config))
    return RedirectResponse(urls.app_url(f"/jobs/{job_id}"), status_code=303)


@router.get("/jobs/{job_id}/diff/{repository:path}", response_class=HTMLResponse)
def diff_page(job: PageJob, repository: str, request: Request, user: PageUser) -> HTMLResponse:
    config = actions.settings()
    store = actions.store(config)
    result = actions.get_result(store, job, repository)
    patch = store.get_patch(job.job_id, result.repository)
    files = (
        diffview.render_patch(actions.safe_text(patch.decode("utf-8", "replace"), config))
        if patch
        else []
    )
    return render(
        request,
        "diff.html",
        job=job,
        result=result,
        files=files,
        has_patch=patch is not None,
        pygments=Markup(f"<style>{diffview.stylesheet()}</style>"),
        **user_context(user),
    )


@router.get("/jobs/{job_id}/patch/{repository:path}")
def patch_download(job: PageJob, repository: str) -> Response:
    config = actions.settings()
    return actions.patch_response(actions.store(config), job, repository, config, "attachment")


@router.get("/jobs/{job_id}/thread/{repository:path}", response_class=HTMLResponse)
def thread_page(job: PageJob, repository: str, request: Request, user: PageUser) -> HTMLResponse:
    config = actions.settings()
    store = actions.store(config)
    result = actions.get_result(store, job, repository)
    raw = store.get_thread(job.job_id, result.repository)
    thread = actions.safe(raw, config) if raw is not None else None
    view = threadview.build_thread(thread)
    raw_json = ""
    if thread is not None and not view.turns:
        raw_json = threadview.as_json(thread)  # unknown shape: show it as it is
    return render(
        request,
        "thread.html",
        job=job,
        result=result,
        thread=view,
        happened=threadview.what_happened(view, result),
        has_thread=thread is not None,
        raw_json=raw_json,
        **user_context(user),
    )


@router.get("/campaigns", response_class=HTMLResponse)
def campaigns_page(request: Request, user: PageUser) -> HTMLResponse:
    config = actions.settings()
    return render(
        request,
        "campaigns.html",
        campaigns=campaignview.list_campaigns(config, actions.store(config), JobReader(user)),
        folder=str(campaignview.campaigns_dir(config)),
        **user_context(user),
    )


@router.post("/campaigns/{name}/retry")
async def retry_page(name: str, request: Request, user: PageUser) -> Response:
    form = dict(await request.form())
    check_csrf(request, user, form)
    require_run_permission(user, campaignview.DAG_PREFIX + name, "POST")
    repository = str(form.get("repository") or "")
    campaignview.retry(
        actions.store(actions.settings()),
        name,
        [repository] if repository else [],
        not repository,
        user.get_name(),
    )
    return RedirectResponse(urls.app_url(f"/campaigns/{quote(name, safe='')}"), status_code=303)


@router.get("/campaigns/{name:path}", response_class=HTMLResponse)
def campaign_page(
    name: str,
    request: Request,
    user: PageUser,
    status: str | None = None,
    error_class: str | None = None,
    cursor: str | None = None,
) -> HTMLResponse:
    config = actions.settings()
    store = actions.store(config)
    reader = JobReader(user)
    info, points = campaignview.get_campaign(config, store, name, reader)
    wanted, error = campaignview.parse_fleet_filters(status, error_class)
    fleet = campaignview.fleet_page(config, store, name, reader, wanted, error, cursor)
    filters = {"status": status or "", "error_class": error_class or ""}

    def page_url(after: str | None) -> str:
        query = {k: v for k, v in {**filters, "cursor": after or ""}.items() if v}
        return f"?{urlencode(query)}" if query else "?"

    return render(
        request,
        "campaign.html",
        campaign=info,
        runs=[{**p, "when": datetime.fromisoformat(p["at"])} for p in reversed(points)],
        chart=chart.burndown_chart(points),
        fleet=fleet,
        filters=filters,
        fleet_statuses=[s.value for s in campaignview.FleetStatus],
        error_classes=[c.value for c in campaignview.ErrorClass],
        next_url=page_url(fleet.next_cursor) if fleet.next_cursor else None,
        first_url=page_url(None) if fleet.cursor else None,
        csv_query=urlencode({**{k: v for k, v in filters.items() if v}, "format": "csv"}),
        can_retry=info.file is not None and can_run(user, info.dag_id),
        can_merge=can_run(user, info.dag_id, "PUT"),
        **user_context(user),
    )


@router.get("/runs/{dag_id}/{run_id:path}", response_class=HTMLResponse)
def run_page(dag_id: str, run_id: str, request: Request, user: PageUser) -> Response:
    """The Results tab of a DAG run: its job, or why there is none (yet)."""
    JobReader(user).require_dag(dag_id)  # the run's state is the DAG's to show
    job_id = job_id_for_run(dag_id, run_id)
    job = actions.store(actions.settings()).get_job(job_id)
    if job is not None:  # the job page checks its own DAG
        return RedirectResponse(urls.app_url(f"/jobs/{job_id}"), status_code=303)
    from codybatch.airflow.ui.runs import run_state

    state = run_state(dag_id, run_id)
    return render(
        request,
        "run.html",
        dag_id=dag_id,
        run_id=run_id,
        state=state,
        waiting=state in ("queued", "running"),
        **user_context(user),
    )
