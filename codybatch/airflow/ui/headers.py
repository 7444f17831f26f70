"""Security headers on every response of the plugin app.

The pages load only their own stylesheet and script (no inline script or handler), plus the
one inline `<style>` of the diff highlighting, allowed by its hash. The Swagger page loads
Swagger UI from this app too, and its one inline start-up script is allowed by its hash.
They are shown inside the Airflow UI's iframe (same origin), so framing is allowed for
Airflow's own origin only.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Response

INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _airflow_origin() -> str:
    """The origin of `[api] base_url` when it is set (a proxy in front of Airflow), else ''."""
    from airflow.configuration import conf

    url = urlsplit(conf.get("api", "base_url", fallback="") or "")
    return f"{url.scheme}://{url.netloc}" if url.scheme and url.netloc else ""


def content_security_policy(scripts: str = "'self'", styles: str | None = None) -> str:
    """The CSP of the pages (the Swagger page passes its own scripts and styles)."""
    from codybatch.airflow.ui import diffview

    ancestors = " ".join(filter(None, ["'self'", _airflow_origin()]))
    if styles is None:
        styles = f"'self' {_hash(diffview.stylesheet())}"
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {scripts}",
            f"style-src {styles}",
            "img-src 'self' data:",
            "connect-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
            f"frame-ancestors {ancestors}",
        ]
    )


def docs_policy(html: str) -> str:
    """The CSP of the Swagger page: its assets from this app, its inline scripts by hash."""
    hashes = " ".join(_hash(script) for script in INLINE_SCRIPT.findall(html))
    return content_security_policy(f"'self' {hashes}", "'self'")


def add_security_headers(app: FastAPI) -> None:
    """Send the CSP, nosniff and framing rules on every response; never cache non-static ones."""
    policy = content_security_policy()

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        path = request.url.path
        headers = response.headers
        headers.setdefault("Content-Security-Policy", policy)  # the Swagger page sets its own
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "SAMEORIGIN"
        headers["Referrer-Policy"] = "same-origin"
        if "/static/" not in path:
            # Jobs, patches and threads are private and change: no browser or proxy keeps them.
            headers["Cache-Control"] = "no-store"
        return response
