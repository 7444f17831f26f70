"""Security headers on every response of the plugin app.

The pages load only their own stylesheet and script (no inline script or handler), plus the
one inline `<style>` of the diff highlighting, allowed by its hash. They are shown inside
the Airflow UI's iframe (same origin), so framing is allowed for Airflow's own origin only.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Response

# FastAPI's Swagger page loads swagger-ui from its CDN and starts it with an inline script.
SWAGGER_CDN = "https://cdn.jsdelivr.net"


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _airflow_origin() -> str:
    """The origin of `[api] base_url` when it is set (a proxy in front of Airflow), else ''."""
    from airflow.configuration import conf

    url = urlsplit(conf.get("api", "base_url", fallback="") or "")
    return f"{url.scheme}://{url.netloc}" if url.scheme and url.netloc else ""


def content_security_policy(docs: bool = False) -> str:
    """The CSP of the pages (or, with docs, of the Swagger page)."""
    from codybatch.airflow.ui import diffview

    ancestors = " ".join(filter(None, ["'self'", _airflow_origin()]))
    if docs:
        scripts = f"'self' 'unsafe-inline' {SWAGGER_CDN}"
        styles = f"'self' {SWAGGER_CDN}"
    else:
        scripts = "'self'"
        styles = f"'self' {_hash(diffview.stylesheet())}"
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {scripts}",
            f"style-src {styles}",
            "img-src 'self' data: https://fastapi.tiangolo.com" if docs else "img-src 'self' data:",
            "connect-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
            f"frame-ancestors {ancestors}",
        ]
    )


def add_security_headers(app: FastAPI) -> None:
    """Send the CSP, nosniff and framing rules on every response; never cache non-static ones."""
    policies = {False: content_security_policy(), True: content_security_policy(docs=True)}

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        path = request.url.path
        headers = response.headers
        headers["Content-Security-Policy"] = policies[path.endswith("/docs")]
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "SAMEORIGIN"
        headers["Referrer-Policy"] = "same-origin"
        if "/static/" not in path:
            # Jobs, patches and threads are private and change: no browser or proxy keeps them.
            headers["Cache-Control"] = "no-store"
        return response
