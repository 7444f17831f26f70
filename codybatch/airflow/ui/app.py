"""The Cody Batch FastAPI app that the Airflow plugin mounts at /codybatch."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from codybatch.airflow.ui.actions import ActionError
from codybatch.airflow.ui.auth import ApiUser, LoginRequired, PageUser, login_url
from codybatch.airflow.ui.headers import add_security_headers, docs_policy
from codybatch.airflow.ui.urls import app_url

HERE = Path(__file__).resolve().parent
API_PREFIX = "/api/v1"
SWAGGER_STATIC = "/static/swagger-ui"

DESCRIPTION = """
Jobs of Cody Batch: one change applied to up to five repositories, each job a run of the
`codybatch_job` DAG. Authenticate as for Airflow's own API: `Authorization: Bearer <token>`
from `POST /auth/token` (or the Airflow UI's session cookie plus an `X-CSRF-Token` header
for changes). Reading a job needs permission to read runs of its DAG (lists leave out the
jobs you may not read); creating, cancelling and publishing need permission to trigger it.
"""


def _is_api(request: Request) -> bool:
    return f"{API_PREFIX}/" in request.url.path or request.url.path.endswith("/openapi.json")


def _field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    out = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        out.append({"field": ".".join(loc) or "body", "message": str(error.get("msg", ""))})
    return out


def _swagger_ui_dir() -> Path | None:
    """Swagger UI's files from the swagger-ui-bundle package, or None when it is missing."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    return Path(str(swagger_ui_path))


def docs_page() -> HTMLResponse:
    """FastAPI's Swagger UI page with every asset served by this app (no CDN)."""
    assets = app_url(SWAGGER_STATIC)
    page = get_swagger_ui_html(
        openapi_url=app_url("/openapi.json"),
        title="Cody Batch API",
        swagger_js_url=f"{assets}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui.css",
        swagger_favicon_url=f"{assets}/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},  # no badge from validator.swagger.io
    )
    page.headers["Content-Security-Policy"] = docs_policy(page.body.decode())
    return page


def create_app() -> FastAPI:
    """The app: JSON API under /api/v1, pages at the root, OpenAPI at /openapi.json."""
    from codybatch.airflow.ui import api, lifecycleapi, lifecyclepages, pages

    app = FastAPI(
        title="Cody Batch",
        version="1",
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.include_router(api.router, prefix=API_PREFIX)
    app.include_router(lifecycleapi.router, prefix=API_PREFIX)
    app.include_router(pages.router)
    app.include_router(lifecyclepages.router)
    swagger = _swagger_ui_dir()
    if swagger is not None:  # before /static, which would otherwise answer for it
        app.mount(SWAGGER_STATIC, StaticFiles(directory=swagger), name="swagger-ui")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    add_security_headers(app)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(user: ApiUser) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def docs(user: PageUser) -> HTMLResponse:
        if swagger is None:
            raise HTTPException(503, "Swagger UI is not installed: pip install -r requirements.txt")
        return docs_page()

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(login_url(request), status_code=303)

    @app.exception_handler(ActionError)
    async def action_error(request: Request, exc: ActionError) -> Response:
        if _is_api(request):
            body: dict = {"detail": str(exc)}
            if exc.errors:
                body["errors"] = exc.errors
            return JSONResponse(body, status_code=exc.status)
        return pages.error_page(request, exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        errors = _field_errors(exc)
        if _is_api(request):
            return JSONResponse({"detail": "invalid request", "errors": errors}, status_code=400)
        message = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return pages.error_page(request, 400, f"invalid request: {message}")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if _is_api(request) or exc.status_code == 401:
            return JSONResponse(
                {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
            )
        return pages.error_page(request, exc.status_code, str(exc.detail))

    return app
