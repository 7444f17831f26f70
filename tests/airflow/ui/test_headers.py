"""Security headers on every plugin response; 401 for bad tokens; no 500 for odd headers."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import quote

import pytest

from tests.airflow.ui.seed import seed_job

pytestmark = pytest.mark.airflow

API = "/codybatch/api/v1"
BILLING = quote("github.com/acme/billing", safe="")


@pytest.fixture
def ui(client, tokens):
    client.cookies.set("_token", tokens["admin"])
    return client


def _policy(response) -> dict[str, list[str]]:
    policy = response.headers["content-security-policy"]
    return {d.split()[0]: d.split()[1:] for d in policy.split("; ")}


def _check_common(response) -> dict[str, list[str]]:
    assert response.headers["x-content-type-options"] == "nosniff"
    policy = _policy(response)
    assert policy["frame-ancestors"][0] == "'self'"  # the Airflow UI's iframe, same origin
    assert policy["default-src"] == ["'none'"]
    return policy


def test_pages_get_a_policy_that_fits_what_they_load(ui, store) -> None:
    job = seed_job(store)
    paths = [
        "/codybatch/",
        "/codybatch/jobs/new",
        f"/codybatch/jobs/{job.job_id}",
        f"/codybatch/jobs/{job.job_id}/diff/{BILLING}",
        "/codybatch/campaigns",
    ]
    for path in paths:
        response = ui.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        policy = _check_common(response)
        assert response.headers["cache-control"] == "no-store"
        html = response.text
        # Nothing the policy would block: scripts only from our origin, no inline handlers,
        # and every inline <style> allowed by its hash.
        assert policy["script-src"] == ["'self'"]
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert not re.search(r"\son[a-z]+=", html), path
        for style in re.findall(r"<style>(.*?)</style>", html, re.S):
            digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in policy["style-src"], path
        for src in re.findall(r'(?:src|href)="(https?://[^"]+)"', html):
            pytest.fail(f"{path} loads {src} from another origin")


def test_api_responses_and_errors_are_never_cached(admin, client) -> None:
    for response in (
        admin.get(f"{API}/jobs"),
        admin.get(f"{API}/jobs/job-missing"),
        client.get(f"{API}/jobs"),
        admin.get("/codybatch/openapi.json"),
    ):
        _check_common(response)
        assert response.headers["cache-control"] == "no-store"


def test_static_files_get_nosniff_and_may_be_cached(client) -> None:
    response = client.get("/codybatch/static/codybatch.js")
    assert response.status_code == 200
    _check_common(response)
    assert "no-store" not in response.headers.get("cache-control", "")


def test_the_swagger_page_loads_everything_from_the_app(ui) -> None:
    response = ui.get("/codybatch/docs")
    assert response.status_code == 200
    policy = _check_common(response)
    assert "http" not in policy["script-src"] + policy["style-src"] + policy["img-src"]
    assert "'unsafe-inline'" not in policy["script-src"]
    # The one inline start-up script is allowed by its hash, and nothing else inline.
    inline = re.findall(r"<script>(.*?)</script>", response.text, re.S)
    assert len(inline) == 1 and len([s for s in policy["script-src"] if "sha256-" in s]) == 1
    assets = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert assets and all(a.startswith("/codybatch/static/swagger-ui/") for a in assets)
    for asset in assets:
        served = ui.get(asset)
        assert served.status_code == 200 and len(served.content) > 100, asset
    assert "'/codybatch/openapi.json'" in response.text


@pytest.mark.parametrize("token", ["not-a-jwt", "eyJhbGciOiJIUzUxMiJ9.e30.c2lnbmF0dXJl"])
def test_a_bad_token_is_401_with_a_challenge(client, token: str) -> None:
    response = client.get(f"{API}/jobs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "sign in again" in response.json()["detail"]
    _check_common(response)


def test_an_expired_token_is_401(client) -> None:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    expired = get_auth_manager().generate_jwt(
        SimpleAuthManagerUser(username="admin", role="admin"), expiration_time_in_seconds=-60
    )
    response = client.get(f"{API}/jobs", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_non_ascii_csrf_header_is_refused_not_a_500(ui, store) -> None:
    job = seed_job(store)
    for value in ("é" * 64, "\u2603"):
        response = ui.post(
            f"{API}/jobs/{job.job_id}/cancel",
            headers={"X-CSRF-Token": value.encode("utf-8")},
        )
        assert response.status_code == 403, response.text
        assert "X-CSRF-Token" in response.json()["detail"]
        _check_common(response)
