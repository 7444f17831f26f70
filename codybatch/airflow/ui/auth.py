"""Who may see and change Cody Batch jobs: Airflow's own users and DAG permissions.

Plugin apps are mounted without Airflow's authentication, so every route depends on
one of these. Pages redirect anonymous visitors to the login; the API answers 401.
A job is read only by users who may read runs of its DAG (JobReader); changes need more.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, oauth2_scheme
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials

from codybatch.airflow.dag import JOB_DAG_ID
from codybatch.airflow.ui import actions
from codybatch.records import Job

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class LoginRequired(Exception):
    """An anonymous (or expired) visitor asked for a page: send them to the login."""


async def api_user(
    request: Request,
    _oauth_token: Annotated[str | None, Depends(oauth2_scheme)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> BaseUser:
    """The Airflow user of an API call (Bearer token or the UI's cookie); 401 otherwise."""
    try:
        return await get_user(request, _oauth_token, bearer)
    except HTTPException as exc:
        # Airflow answers 403 to a malformed or forged token: it is a failed authentication.
        if exc.status_code == status.HTTP_403_FORBIDDEN:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                f"{exc.detail}: sign in again (POST /auth/token) and send the new token",
                headers={"WWW-Authenticate": "Bearer"},
            ) from None
        if exc.status_code == status.HTTP_401_UNAUTHORIZED and not exc.headers:
            exc.headers = {"WWW-Authenticate": "Bearer"}
        raise


async def page_user(
    request: Request,
    _oauth_token: Annotated[str | None, Depends(oauth2_scheme)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> BaseUser:
    """The Airflow user of a page; anonymous visitors are redirected to the login."""
    try:
        return await get_user(request, _oauth_token, bearer)
    except HTTPException as exc:
        if exc.status_code in (status.HTTP_401_UNAUTHORIZED, status.HTTP_403_FORBIDDEN):
            raise LoginRequired() from None
        raise


ApiUser = Annotated[BaseUser, Depends(api_user)]
PageUser = Annotated[BaseUser, Depends(page_user)]


def login_url(request: Request) -> str:
    """The auth manager's login page, coming back to this request's URL."""
    from airflow.api_fastapi.app import get_auth_manager

    url = request.url
    raw_path = request.scope.get("raw_path")
    if raw_path:  # keep %2F in repository names as the visitor sent them
        url = url.replace(path=raw_path.decode("latin-1"))
    return get_auth_manager().get_url_login(next_url=str(url))


def can_run(user: BaseUser, dag_id: str, method: str = "POST") -> bool:
    """True when the user may create (POST) or change (PUT) runs of the DAG."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )
    from airflow.models.dag import DagModel

    return get_auth_manager().is_authorized_dag(
        method=method,  # type: ignore[arg-type]
        access_entity=DagAccessEntity.RUN,
        details=DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id)),
        user=user,
    )


def require_run_permission(user: BaseUser, dag_id: str, method: str = "POST") -> None:
    """403 unless the user may trigger (or change runs of) the DAG."""
    if not can_run(user, dag_id, method):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"Forbidden: you may not {'trigger' if method == 'POST' else 'change'} runs "
            f"of the {dag_id} DAG; ask an Airflow admin for the User role",
        )


def job_dag_id(job: Job) -> str:
    """The DAG a job is a run of; jobs of `codybatch run` (no DAG) count as codybatch_job's."""
    return job.dag_id or JOB_DAG_ID


class JobReader:
    """What one user may read: jobs (runs) of the DAGs whose runs the auth manager lets them
    read. Asks once per DAG and remembers the answer, so filtering a list is cheap."""

    def __init__(self, user: BaseUser):
        self.user = user
        self._answers: dict[str, bool] = {}

    def readable_dags(self, dag_ids: Iterable[str]) -> set[str]:
        """The DAGs, of these, whose runs the user may read."""
        wanted = set(dag_ids)
        unknown = wanted - self._answers.keys()
        if unknown:
            self._answers.update(_may_read_runs(self.user, unknown))
        return {dag_id for dag_id in wanted if self._answers[dag_id]}

    def can_read_dag(self, dag_id: str) -> bool:
        return dag_id in self.readable_dags([dag_id])

    def jobs(self, jobs: Iterable[Job]) -> list[Job]:
        """The jobs the user may read, in their order."""
        jobs = list(jobs)
        allowed = self.readable_dags(job_dag_id(j) for j in jobs)
        return [j for j in jobs if job_dag_id(j) in allowed]

    def require_dag(self, dag_id: str) -> None:
        """403 unless the user may read runs of the DAG."""
        if not self.can_read_dag(dag_id):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"Forbidden: you may not read runs of the {dag_id} DAG; "
                "ask an Airflow admin for access to it",
            )

    def require(self, job: Job) -> Job:
        """The job, or 403 unless the user may read runs of its DAG."""
        self.require_dag(job_dag_id(job))
        return job


def readable_job(job_id: str, user: BaseUser) -> Job:
    """The job: 404 when there is none, 403 unless the user may read runs of its DAG."""
    return JobReader(user).require(actions.get_job(actions.store(actions.settings()), job_id))


def _api_job(job_id: str, user: ApiUser) -> Job:
    return readable_job(job_id, user)


def _page_job(job_id: str, user: PageUser) -> Job:
    return readable_job(job_id, user)


# The {job_id} of a read-only route, as the user may read it. Routes that change a job check
# the CSRF token first, then call readable_job themselves.
ApiJob = Annotated[Job, Depends(_api_job)]
PageJob = Annotated[Job, Depends(_page_job)]


def _may_read_runs(user: BaseUser, dag_ids: set[str]) -> dict[str, bool]:
    """Ask the auth manager, per DAG, whether the user may read its runs.

    Not filter_authorized_dag_ids: that batch call asks about the DAG itself, not its runs
    (a separate permission, e.g. FAB's "DAG Runs"). Jobs use few DAGs, so one call each is cheap.
    """
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )
    from airflow.models.dag import DagModel

    manager = get_auth_manager()
    teams = DagModel.get_dag_id_to_team_name_mapping(sorted(dag_ids))
    return {
        dag_id: manager.is_authorized_dag(
            method="GET",
            access_entity=DagAccessEntity.RUN,
            details=DagDetails(id=dag_id, team_name=teams.get(dag_id)),
            user=user,
        )
        for dag_id in dag_ids
    }


def csrf_token(user: BaseUser) -> str:
    """A per-user token that a form must echo: another site cannot know it."""
    from airflow.api_fastapi.auth.tokens import get_signing_key

    # The api-server's own signing key: the same in every api-server worker.
    key = get_signing_key("api", "secret_key").encode()
    return hmac.new(key, f"codybatch-csrf:{user.get_id()}".encode(), hashlib.sha256).hexdigest()


def uses_cookie(request: Request) -> bool:
    """True when the caller relies on the ambient cookie rather than an explicit token."""
    return not request.headers.get("authorization", "").lower().startswith("bearer ")


def check_csrf(request: Request, user: BaseUser, form: dict[str, Any] | None = None) -> None:
    """Refuse a cookie-authenticated change that does not carry the user's CSRF token."""
    if not uses_cookie(request):
        return
    given = request.headers.get(CSRF_HEADER) or str((form or {}).get(CSRF_FIELD) or "")
    # As bytes: compare_digest refuses str with non-ASCII characters (that was a 500).
    if not hmac.compare_digest(given.encode(errors="replace"), csrf_token(user).encode()):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"Forbidden: missing or wrong {CSRF_HEADER} (reload the page and try again)",
        )
