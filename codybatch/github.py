"""GitHub through PyGithub: resolve repositories, list them, and the pull request calls."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import re
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from github import Auth, Github, GithubException, GithubRetry
from github.PullRequest import PullRequest
from github.Repository import Repository as GhRepository

from codybatch.redact import redact_text
from codybatch.settings import Settings
from codybatch.spec import Repository, is_allowed, parse_repository

log = logging.getLogger("codybatch.github")

RETRIES = 5  # per request: 5xx, 429 and rate-limited 403 answers
TIMEOUT = 30  # seconds per HTTP request
PER_PAGE = 100  # items per page of list calls
T = TypeVar("T")


@dataclass(frozen=True)
class RemoteRepository:
    """A repository as the GitHub API describes it to our token."""

    full_name: str
    clone_url: str
    default_branch: str
    html_url: str
    archived: bool
    can_push: bool


class GitHubError(Exception):
    """A GitHub call failed; the message is readable and never contains the token."""


class _Retry(GithubRetry):
    """GithubRetry (Retry-After, x-ratelimit-reset, secondary limits) with every wait capped."""

    def __init__(self, max_wait: float = 300.0, **kwargs: Any):
        self.max_wait = max_wait
        super().__init__(**kwargs)

    def new(self, **kw: Any) -> _Retry:
        kw["max_wait"] = self.max_wait
        return super().new(**kw)

    def sleep(self, response: Any = None) -> None:
        wanted = None
        if response is not None:
            with contextlib.suppress(Exception):
                wanted = self.get_retry_after(response)
            if wanted is None and response.status in (403, 429):
                reset = response.headers.get("X-RateLimit-Reset", "")
                if response.headers.get("X-RateLimit-Remaining") == "0" and reset.isdigit():
                    wanted = int(reset) - datetime.now(UTC).timestamp() + 1
        if wanted is None:
            wanted = self.get_backoff_time()
        wait = max(0.0, min(wanted, self.max_wait))
        if wanted > 0:
            status = getattr(response, "status", "an error")
            log.info(
                "GitHub answered %s: asked to wait %.0f s, waiting %.2f s", status, wanted, wait
            )
        time.sleep(wait)


def client(settings: Settings) -> Github:
    """A PyGithub client for the configured API with bounded, rate-limit-aware retries."""
    if not settings.github_token:
        raise GitHubError("GITHUB_TOKEN is not set: a token is needed to use GitHub")
    retry = _Retry(
        max_wait=settings.github_max_wait,
        secondary_rate_wait=60.0,  # GitHub's advice; sleep() caps it at max_wait
        total=RETRIES,
        backoff_factor=0.5,
        status_forcelist=[*range(500, 600), 429],
        allowed_methods=frozenset({"GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"}),
        raise_on_status=False,  # the last answer reaches PyGithub, which raises a readable error
    )
    return Github(
        auth=Auth.Token(settings.github_token),
        base_url=settings.github_api_url.rstrip("/"),
        timeout=TIMEOUT,
        per_page=PER_PAGE,
        retry=retry,
        seconds_between_requests=None,
        seconds_between_writes=None,  # PR-creating calls are spaced by pr_slot, across processes
    )


def github_call(settings: Settings, what: str, call: Callable[[], T]) -> T:
    """Run a PyGithub call; turn its failures into a GitHubError that says what failed."""
    try:
        return call()
    except GithubException as exc:
        raise GitHubError(redact_text(f"{what}: {describe(exc)}", settings.secrets)) from None
    except requests.RequestException as exc:
        message = f"{what}: cannot reach GitHub at {settings.github_api_url} ({type(exc).__name__})"
        raise GitHubError(redact_text(message, settings.secrets)) from None


def describe(exc: GithubException) -> str:
    """GitHub's own reason for a failed call, in one line."""
    data = exc.data if isinstance(exc.data, dict) else {}
    message = str(data.get("message") or exc.message or "no reason given")
    details = [
        str(e.get("message") or f"{e.get('field', '')} {e.get('code', '')}".strip())
        for e in data.get("errors") or []
        if isinstance(e, dict)
    ]
    if details:
        message += " (" + "; ".join(details) + ")"
    if exc.status == 401:
        return f"the token was rejected (401 {message}): check GITHUB_TOKEN"
    return f"{exc.status} {message}"


def web_host(settings: Settings) -> str:
    """The host repositories of the configured API live on (github.com for the public API)."""
    netloc = urlsplit(settings.github_api_url).netloc.lower()
    return "github.com" if netloc in ("api.github.com", "") else netloc


def resolve_repository(repo: Repository, settings: Settings) -> RemoteRepository:
    """What GitHub says about a repository: clone URL, default branch, archived, push access."""
    if repo.is_local:
        raise GitHubError(f"{repo.key} is a local repository, not one on GitHub")
    host = web_host(settings)
    if repo.host not in (host, "github.com"):
        raise GitHubError(
            f"repository {repo.key} is not on the GitHub this token is for ({host}): "
            "set GITHUB_API_URL to that server's API"
        )
    gh = client(settings)
    try:
        data = gh.get_repo(repo.full_name)
    except GithubException as exc:
        if exc.status in (403, 404):
            raise GitHubError(
                f"repository {repo.key} not found or not visible to the token"
                + ("" if exc.status == 404 else f" ({describe(exc)})")
            ) from None
        raise GitHubError(
            redact_text(f"looking up {repo.key}: {describe(exc)}", settings.secrets)
        ) from None
    except requests.RequestException as exc:
        raise GitHubError(
            f"looking up {repo.key}: cannot reach GitHub at {settings.github_api_url} "
            f"({type(exc).__name__})"
        ) from None
    permissions = data.permissions
    return RemoteRepository(
        full_name=data.full_name,
        clone_url=data.clone_url,
        default_branch=data.default_branch,
        html_url=data.html_url,
        archived=bool(data.archived),
        can_push=bool(permissions and permissions.push),
    )


def list_repositories(settings: Settings) -> list[str]:
    """Keys of the repositories the token can see that the allowlist allows, sorted."""
    gh = client(settings)

    def fetch() -> list[str]:
        keys = set()
        for item in gh.get_user().get_repos():
            try:
                repo = parse_repository(item.html_url)
            except ValueError:
                continue
            if is_allowed(repo, settings.allowed_repositories):
                keys.add(repo.key)
        return sorted(keys)

    return github_call(settings, "listing the repositories of the token", fetch)


def branch_name(job_name: str) -> str:
    """The branch of a job: codybatch/<slug of the name>, stable for a name."""
    text = unicodedata.normalize("NFKD", job_name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60].strip("-")
    if not slug:
        slug = "job-" + hashlib.sha256(job_name.encode()).hexdigest()[:10]
    return f"codybatch/{slug}"


def author_of_token(settings: Settings) -> str:
    """'Name <id+login@users.noreply.HOST>' of the token's user."""
    gh = client(settings)

    def fetch() -> tuple[str, str | None, int]:
        user = gh.get_user()
        return user.login, user.name, user.id

    login, name, user_id = github_call(settings, "reading the token's user", fetch)
    return f"{name or login} <{user_id}+{login}@users.noreply.{web_host(settings)}>"


def find_pull(repo: GhRepository, owner: str, branch: str) -> PullRequest | None:
    """The newest pull request from `branch` (open, merged or closed), if any."""
    pulls = list(repo.get_pulls(state="all", head=f"{owner}:{branch}"))
    pulls = [p for p in pulls if p.head.ref == branch]
    return max(pulls, key=lambda p: p.number) if pulls else None


_slot_lock = threading.Lock()


@contextlib.contextmanager
def pr_slot(settings: Settings) -> Iterator[None]:
    """Serialise PR-creating calls per token across threads and processes, spaced apart.

    GitHub's secondary rate limits hit content creation in bursts; a lock file per
    token (named by a hash, never the token) under CODYBATCH_HOME, shared by the local
    workers, keeps the time of the last call.
    """
    digest = hashlib.sha256(f"{settings.github_api_url}\0{settings.github_token}".encode())
    folder = Path(settings.home) / "locks"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        folder = Path(tempfile.gettempdir())
    path = folder / f"codybatch-github-{digest.hexdigest()[:16]}.lock"
    with _slot_lock, open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0)
            try:
                last = float(handle.read().strip() or 0)
            except ValueError:
                last = 0.0
            wait = last + settings.github_pr_interval - time.time()
            if wait > 0:
                time.sleep(min(wait, settings.github_pr_interval))
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.write(str(time.time()))
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
