"""Who may see and change Cody Batch jobs: Airflow's own users and DAG permissions.

Plugin apps are mounted without Airflow's authentication, so every route depends on
one of these. Pages redirect anonymous visitors to the login; the API answers 401.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, oauth2_scheme
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class LoginRequired(Exception):
    """An anonymous (or expired) visitor asked for a page: send them to the login."""


async def api_user(user: Annotated[BaseUser, Depends(get_user)]) -> BaseUser:
    """The Airflow user of an API call (Bearer token or the UI's cookie); 401 otherwise."""
    return user


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
    if not hmac.compare_digest(given, csrf_token(user)):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"Forbidden: missing or wrong {CSRF_HEADER} (reload the page and try again)",
        )
