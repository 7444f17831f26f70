"""A fake GitHub on 127.0.0.1: the REST endpoints PyGithub uses here plus git smart HTTP.

The API lives under /api/v3 (as on GitHub Enterprise Server); every repository's
clone_url points at a local bare repository served by `git http-backend` from the
same server, so the token really travels in an Authorization header. Tests inspect
and change the state directly (merge a PR "by a person", archive a repository,
remove push access, protect a branch) and script faults (403 rate limits, 5xx).
Use the `fake_github` fixture.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.fakes.serving import start_server, stop_server

API_PREFIX = "/api/v3"
GRAPHQL_PATH = "/api/graphql"  # where PyGithub sends GraphQL for an /api/v3 base URL
LOGS_PREFIX = "/_logs/"  # the redirect target of an Actions job log (a signed URL on GitHub)
SECONDARY_LIMIT_MESSAGE = (
    "You have exceeded a secondary rate limit and have been temporarily blocked from "
    "content creation. Please retry your request again later."
)
PRIMARY_LIMIT_MESSAGE = "API rate limit exceeded for user ID 1001."
DOCS = "https://docs.github.com/rest"
# Settings that make codybatch.github fast against the fake (no real waiting).
FAST_ENV = {"CODYBATCH_GITHUB_PR_INTERVAL": "0", "CODYBATCH_GITHUB_MAX_WAIT": "0.01"}


def _iso(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _git_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": tempfile.gettempdir(),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "A Person",
        "GIT_AUTHOR_EMAIL": "person@example.com",
        "GIT_COMMITTER_NAME": "A Person",
        "GIT_COMMITTER_EMAIL": "person@example.com",
    }


def git(*args: str, cwd: Path | None = None, check: bool = True) -> str:
    """Run git with a clean, token-free environment; return stdout."""
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=_git_env(), capture_output=True, text=True, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


@dataclass
class RecordedRequest:
    """One request the fake received, as received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    user: str | None = None
    at: float = field(default_factory=time.time)  # when it arrived

    @property
    def kind(self) -> str:
        return "git" if self.path.startswith("/git/") else "api"

    @property
    def route(self) -> str:
        """The path without query string and API prefix."""
        path = urlsplit(self.path).path
        if path == GRAPHQL_PATH:
            return "/graphql"
        return path[len(API_PREFIX) :] if path.startswith(API_PREFIX) else path

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    body: Any
    headers: dict[str, str]
    times: int


@dataclass
class FakeUser:
    login: str
    id: int
    name: str | None
    token: str


@dataclass
class FakePull:
    number: int
    id: int
    head_owner: str
    head_ref: str
    head_sha: str
    base_ref: str
    title: str
    body: str | None
    draft: bool
    user: str
    state: str = "open"
    merged: bool = False
    merged_at: str | None = None
    closed_at: str | None = None
    created_at: str = field(default_factory=_iso)
    updated_at: str = field(default_factory=_iso)
    comments: list[dict[str, Any]] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    review_comments: list[dict[str, Any]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    auto_merge: dict[str, Any] | None = None
    merge_commit_sha: str | None = None
    merged_by: str | None = None
    unknown_mergeability: int = 0  # GETs that still answer mergeable: null (GitHub computes it)


@dataclass
class FakeRepo:
    owner: str
    name: str
    id: int
    default_branch: str
    bare: Path
    archived: bool = False
    private: bool = True
    push: bool = True
    admin: bool = False
    visible: bool = True
    fork: bool = False
    topics: list[str] = field(default_factory=list)
    language: str | None = None
    description: str | None = None
    pulls: dict[int, FakePull] = field(default_factory=dict)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    check_runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    allow_auto_merge: bool = False
    delete_branch_on_merge: bool = False
    allow_merge_commit: bool = True
    allow_squash_merge: bool = True
    allow_rebase_merge: bool = True
    # Branch protection of the default branch: required check names and approving reviews.
    required_checks: list[str] = field(default_factory=list)
    required_approvals: int = 0
    protected: bool = False
    permissions: dict[str, str] = field(default_factory=dict)  # login -> admin|write|read|none
    job_logs: dict[int, str] = field(default_factory=dict)  # Actions job id -> its log

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class _HttpError(Exception):
    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.payload = {"message": message, "documentation_url": DOCS, **extra}


_PRE_RECEIVE = """#!/bin/sh
# Reject updates of branches listed in codybatch-protected (like a protected branch).
while read old new ref; do
  if [ -f codybatch-protected ] && grep -qxF "$ref" codybatch-protected; then
    echo "error: GH006: Protected branch update failed for $ref." >&2
    exit 1
  fi
done
exit 0
"""

_REPO = r"/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(f"^{pattern}/?$"), handler)
    for method, pattern, handler in [
        ("GET", "/user", "_get_user"),
        ("GET", "/user/repos", "_list_user_repos"),
        ("GET", "/rate_limit", "_get_rate_limit"),
        ("GET", "/orgs/(?P<org>[^/]+)", "_get_org"),
        ("GET", "/orgs/(?P<org>[^/]+)/repos", "_list_org_repos"),
        ("GET", "/search/repositories", "_search_repos"),
        ("GET", _REPO, "_get_repo"),
        ("GET", _REPO + "/pulls", "_list_pulls"),
        ("POST", _REPO + "/pulls", "_create_pull"),
        ("GET", _REPO + r"/pulls/(?P<number>\d+)", "_get_pull"),
        ("PATCH", _REPO + r"/pulls/(?P<number>\d+)", "_update_pull"),
        ("GET", _REPO + r"/issues/(?P<number>\d+)/comments", "_list_comments"),
        ("POST", _REPO + r"/issues/(?P<number>\d+)/comments", "_create_comment"),
        ("GET", _REPO + r"/pulls/(?P<number>\d+)/reviews", "_list_reviews"),
        ("GET", _REPO + r"/commits/(?P<ref>[^/]+)", "_get_commit"),
        ("GET", _REPO + r"/commits/(?P<ref>[^/]+)/status", "_get_combined_status"),
        ("GET", _REPO + r"/commits/(?P<ref>[^/]+)/check-runs", "_list_check_runs"),
        ("GET", _REPO + r"/check-runs/(?P<run_id>\d+)", "_get_check_run"),
        ("GET", _REPO + r"/check-runs/(?P<run_id>\d+)/annotations", "_list_annotations"),
        ("GET", _REPO + r"/actions/jobs/(?P<job_id>\d+)", "_get_job"),
        ("GET", _REPO + r"/actions/jobs/(?P<job_id>\d+)/logs", "_job_logs"),
        ("GET", _REPO + r"/pulls/(?P<number>\d+)/comments", "_list_review_comments"),
        (
            "POST",
            _REPO + r"/pulls/(?P<number>\d+)/comments/(?P<comment_id>\d+)/replies",
            "_reply_review_comment",
        ),
        ("PUT", _REPO + r"/pulls/(?P<number>\d+)/merge", "_merge_pull"),
        ("GET", _REPO + r"/pulls/(?P<number>\d+)/merge", "_is_merged"),
        ("GET", _REPO + r"/collaborators/(?P<login>[^/]+)/permission", "_get_permission"),
        ("GET", _REPO + r"/branches/(?P<branch>.+)", "_get_branch"),
        ("GET", _REPO + r"/git/ref/(?P<ref>.+)", "_get_ref"),
        ("DELETE", _REPO + r"/git/refs/(?P<ref>.+)", "_delete_ref"),
        ("POST", "/graphql", "_graphql"),
    ]
]


class FakeGitHub:
    """State plus a threaded HTTP server; start() it (or use it as a context manager)."""

    def __init__(self, root: Path, login: str = "codybatch-bot", token: str | None = None):
        self.root = Path(root)
        self.git_root = self.root / "git"
        self.git_root.mkdir(parents=True, exist_ok=True)
        self.token = token or "ghp_fake" + secrets.token_hex(16)
        self.users: dict[str, FakeUser] = {}
        self.user = self.add_user(login, token=self.token, name="Cody Batch Bot")
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.rate_remaining = 5000
        self.lock = threading.RLock()
        self._ids = itertools.count(5000)
        self._log_tickets: dict[str, str] = {}
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self._server = start_server(Handler)
        return self

    def stop(self) -> None:
        stop_server(self._server)
        self._server = None

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return self.url + API_PREFIX

    def env(self) -> dict[str, str]:
        """Environment variables that point codybatch at this fake."""
        return {"GITHUB_TOKEN": self.token, "GITHUB_API_URL": self.api_url, **FAST_ENV}

    def settings(self, **overrides: Any) -> Any:
        """codybatch Settings pointing at this fake (fast retries, no spacing)."""
        import dataclasses

        from codybatch.settings import Settings

        return dataclasses.replace(Settings.from_env({**os.environ, **self.env()}), **overrides)

    def clone_url(self, full_name: str) -> str:
        repo = self.repo(full_name)
        return f"{self.url}/git/{repo.owner}/{repo.name}.git"

    # -- state set-up and inspection -------------------------------------------------------

    def add_user(self, login: str, token: str | None = None, name: str | None = None) -> FakeUser:
        user = FakeUser(
            login, 1001 + len(self.users), name, token or "ghp_" + secrets.token_hex(16)
        )
        self.users[user.token] = user
        return user

    def create_repo(
        self,
        full_name: str,
        files: Mapping[str, str | bytes] | None = None,
        *,
        default_branch: str = "main",
        archived: bool = False,
        push: bool = True,
        private: bool = True,
        visible: bool = True,
        fork: bool = False,
        topics: list[str] | None = None,
        language: str | None = None,
        description: str | None = None,
    ) -> FakeRepo:
        """A repository with one commit holding `files` (path -> content)."""
        owner, name = full_name.split("/")
        bare = self.git_root / owner / f"{name}.git"
        work = self.root / "work" / owner / name
        work.mkdir(parents=True)
        git("init", "-q", "-b", default_branch, str(work))
        _write_files(work, files or {"README.md": f"# {name}\n"})
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", "Initial commit", cwd=work)
        bare.parent.mkdir(parents=True, exist_ok=True)
        git("clone", "-q", "--bare", str(work), str(bare))
        shutil.rmtree(work)
        hook = bare / "hooks" / "pre-receive"
        hook.write_text(_PRE_RECEIVE)
        hook.chmod(0o755)
        repo = FakeRepo(
            owner=owner,
            name=name,
            id=next(self._ids),
            default_branch=default_branch,
            bare=bare,
            archived=archived,
            push=push,
            private=private,
            visible=visible,
            fork=fork,
            topics=list(topics or []),
            language=language,
            description=description,
        )
        with self.lock:
            self.repos[full_name.lower()] = repo
        return repo

    def repo(self, full_name: str) -> FakeRepo:
        return self.repos[full_name.lower()]

    def commit_files(
        self,
        full_name: str,
        files: Mapping[str, str | bytes | None],
        branch: str | None = None,
        message: str = "A change by a person",
    ) -> str:
        """Commit files (None deletes) on a branch, as a person pushing would; return the sha."""
        repo = self.repo(full_name)
        branch = branch or repo.default_branch
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / "w"
            git("clone", "-q", str(repo.bare), str(work))
            if branch != repo.default_branch:
                git("checkout", "-q", "-B", branch, f"origin/{branch}", cwd=work, check=False)
            _write_files(work, files)
            git("add", "-A", cwd=work)
            git("commit", "-q", "-m", message, cwd=work)
            # Straight into the bare repository: hooks (protection) do not apply to admins here.
            git("push", "-q", "--no-verify", str(repo.bare), f"HEAD:refs/heads/{branch}", cwd=work)
            return git("rev-parse", "HEAD", cwd=work)

    def branch_sha(self, full_name: str, branch: str) -> str | None:
        out = git(
            "rev-parse",
            "--verify",
            "-q",
            f"refs/heads/{branch}",
            cwd=self.repo(full_name).bare,
            check=False,
        )
        return out or None

    def branches(self, full_name: str) -> list[str]:
        out = git(
            "for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=self.repo(full_name).bare
        )
        return sorted(out.split())

    def file_at(self, full_name: str, ref: str, path: str) -> str | None:
        out = subprocess.run(
            ["git", "show", f"{ref}:{path}"],
            cwd=self.repo(full_name).bare,
            env=_git_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout if out.returncode == 0 else None

    def commit_count(self, full_name: str, base: str, head: str) -> int:
        return int(git("rev-list", "--count", f"{base}..{head}", cwd=self.repo(full_name).bare))

    def pulls(self, full_name: str, state: str = "all") -> list[FakePull]:
        with self.lock:
            pulls = sorted(self.repo(full_name).pulls.values(), key=lambda p: p.number)
        return [p for p in pulls if state == "all" or p.state == state]

    def pull_url(self, full_name: str, number: int) -> str:
        """The html_url of a pull request."""
        return f"{self.url}/{self.repo(full_name).full_name}/pull/{number}"

    def pull(self, full_name: str, number: int) -> FakePull:
        return self.repo(full_name).pulls[number]

    def merge_pull(self, full_name: str, number: int, update_base: bool = True) -> None:
        """Merge a PR as a person would (fast-forwarding the base when possible)."""
        repo = self.repo(full_name)
        with self.lock:
            pull = repo.pulls[number]
            sha = self.branch_sha(full_name, pull.head_ref) or pull.head_sha
            base_sha = self.branch_sha(full_name, pull.base_ref)
            ancestor = subprocess.run(
                ["git", "merge-base", "--is-ancestor", base_sha or "", sha],
                cwd=repo.bare,
                env=_git_env(),
                check=False,
            )
            if update_base and ancestor.returncode == 0:
                git("update-ref", f"refs/heads/{pull.base_ref}", sha, cwd=repo.bare)
            pull.state, pull.merged = "closed", True
            pull.merged_at = pull.closed_at = pull.updated_at = _iso()

    def close_pull(self, full_name: str, number: int) -> None:
        """Close a PR as a person would."""
        with self.lock:
            pull = self.repo(full_name).pulls[number]
            pull.state = "closed"
            pull.closed_at = pull.updated_at = _iso()

    def add_review(self, full_name: str, number: int, login: str, state: str) -> None:
        """A review by a person: APPROVED, CHANGES_REQUESTED or COMMENTED."""
        with self.lock:
            pull = self.repo(full_name).pulls[number]
            pull.reviews.append(
                {"id": next(self._ids), "user": login, "state": state, "submitted_at": _iso()}
            )

    def set_commit_status(self, full_name: str, sha: str, context: str, state: str) -> None:
        """A commit status (success, failure, pending, error) as CI would post it."""
        with self.lock:
            statuses = self.repo(full_name).statuses.setdefault(sha, [])
            statuses[:] = [s for s in statuses if s["context"] != context]
            statuses.append({"id": next(self._ids), "context": context, "state": state})

    def add_check_run(
        self,
        full_name: str,
        sha: str,
        name: str,
        status: str,
        conclusion: str | None,
        *,
        summary: str | None = None,
        text: str | None = None,
        annotations: list[dict[str, Any]] | None = None,
        log: str | None = None,
    ) -> int:
        """A check run (status queued/in_progress/completed, conclusion success/failure...).

        `annotations` are {path, start_line, message, annotation_level?}; with `log` the
        run is a GitHub Actions job (same id, as on GitHub) whose log the API serves.
        """
        with self.lock:
            repo = self.repo(full_name)
            run_id = next(self._ids)
            app = "github-actions" if log is not None else "ci-app"
            notes = [
                {
                    "path": a["path"],
                    "start_line": a.get("start_line", 1),
                    "end_line": a.get("end_line", a.get("start_line", 1)),
                    "start_column": None,
                    "end_column": None,
                    "annotation_level": a.get("annotation_level", "failure"),
                    "title": a.get("title", ""),
                    "message": a["message"],
                    "raw_details": a.get("raw_details", ""),
                    "blob_href": f"{self.url}/{repo.full_name}/blob/{sha}/{a['path']}",
                }
                for a in annotations or []
            ]
            details = (
                f"{self.url}/{repo.full_name}/actions/runs/{run_id + 1}/job/{run_id}"
                if log is not None
                else f"https://ci.example.com/build/{run_id}"
            )
            repo.check_runs.setdefault(sha, []).append(
                {
                    "id": run_id,
                    "name": name,
                    "head_sha": sha,
                    "status": status,
                    "conclusion": conclusion if status == "completed" else None,
                    "url": f"{self.api_url}/repos/{repo.full_name}/check-runs/{run_id}",
                    "html_url": details if log is not None else f"{self.url}/runs/{run_id}",
                    "details_url": details,
                    "started_at": _iso(),
                    "completed_at": _iso() if status == "completed" else None,
                    "app": {"id": 15368 if log is not None else 99, "slug": app, "name": app},
                    "output": {
                        "title": summary.splitlines()[0] if summary else None,
                        "summary": summary,
                        "text": text,
                        "annotations_count": len(notes),
                        "annotations_url": f"{self.api_url}/repos/{repo.full_name}"
                        f"/check-runs/{run_id}/annotations",
                    },
                    "_annotations": notes,
                }
            )
            if log is not None:
                repo.job_logs[run_id] = log
            return run_id

    def add_comment(self, full_name: str, number: int, login: str, body: str) -> int:
        """A conversation comment on a PR by a person (login is added as a user if new)."""
        self._known(login)
        with self.lock:
            pull = self.repo(full_name).pulls[number]
            comment = {"id": next(self._ids), "body": body, "user": login, "created_at": _iso()}
            pull.comments.append(comment)
            return comment["id"]

    def add_review_comment(
        self, full_name: str, number: int, login: str, path: str, line: int, body: str
    ) -> int:
        """A review comment on a line of the PR's diff, by a person."""
        self._known(login)
        with self.lock:
            pull = self.repo(full_name).pulls[number]
            sha = self.branch_sha(full_name, pull.head_ref) or pull.head_sha
            comment = {
                "id": next(self._ids),
                "body": body,
                "user": login,
                "path": path,
                "line": line,
                "side": "RIGHT",
                "commit_id": sha,
                "original_commit_id": sha,
                "in_reply_to_id": None,
                "created_at": _iso(),
            }
            pull.review_comments.append(comment)
            return comment["id"]

    def add_label(self, full_name: str, number: int, label: str) -> None:
        with self.lock:
            self.repo(full_name).pulls[number].labels.append(label)

    def set_permission(self, full_name: str, login: str, permission: str) -> None:
        """A collaborator's permission: admin, write, read or none."""
        self._known(login)
        self.repo(full_name).permissions[login] = permission

    def protect(
        self, full_name: str, required_checks: list[str] | None = None, approvals: int = 0
    ) -> None:
        """Branch protection of the default branch: required checks and approving reviews."""
        repo = self.repo(full_name)
        repo.protected = True
        repo.required_checks = list(required_checks or [])
        repo.required_approvals = approvals

    def mergeability(self, full_name: str, number: int) -> tuple[bool | None, str]:
        """(mergeable, mergeable_state) of a PR as GitHub would compute it now."""
        with self.lock:
            repo = self.repo(full_name)
            return self._mergeability(repo, repo.pulls[number])

    def _known(self, login: str) -> None:
        if not any(u.login == login for u in self.users.values()):
            self.add_user(login, name=login.title())

    def archive(self, full_name: str, archived: bool = True) -> None:
        self.repo(full_name).archived = archived

    def set_push(self, full_name: str, allowed: bool) -> None:
        self.repo(full_name).push = allowed

    def hide(self, full_name: str) -> None:
        """Make a repository invisible to every token (404), as if access was revoked."""
        self.repo(full_name).visible = False

    def protect_branch(self, full_name: str, branch: str) -> None:
        """Reject pushes to that branch (pre-receive hook), like branch protection."""
        marker = self.repo(full_name).bare / "codybatch-protected"
        existing = marker.read_text() if marker.exists() else ""
        marker.write_text(existing + f"refs/heads/{branch}\n")

    # -- faults ----------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        *,
        times: int = 1,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next `times` API requests matching method and path regex with status."""
        with self.lock:
            self.faults.append(
                Fault(
                    method.upper(),
                    re.compile(path),
                    status,
                    {"message": f"fake fault {status}", "documentation_url": DOCS}
                    if body is None
                    else body,
                    dict(headers or {}),
                    times,
                )
            )

    def secondary_rate_limit(
        self,
        method: str = "POST",
        path: str = r"/pulls$",
        *,
        times: int = 1,
        retry_after: int | None = 60,
    ) -> None:
        """403 secondary rate limit, with Retry-After unless retry_after is None."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        self.fail(
            method,
            path,
            403,
            times=times,
            body={"message": SECONDARY_LIMIT_MESSAGE, "documentation_url": DOCS},
            headers=headers,
        )

    def primary_rate_limit(
        self,
        method: str = "GET",
        path: str = ".*",
        *,
        times: int = 1,
        reset_in: int = 30,
        status: int = 403,
    ) -> None:
        """Primary rate limit exhausted: x-ratelimit-remaining 0, reset in `reset_in` seconds."""
        reset = int(datetime.now(UTC).timestamp()) + reset_in
        headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
        self.fail(
            method,
            path,
            status,
            times=times,
            body={"message": PRIMARY_LIMIT_MESSAGE, "documentation_url": DOCS},
            headers=headers,
        )

    def server_error(
        self, method: str = "GET", path: str = ".*", *, status: int = 502, times: int = 1
    ) -> None:
        self.fail(method, path, status, times=times, body={"message": "Server Error"})

    # -- request log -----------------------------------------------------------------------

    def api_requests(
        self, method: str | None = None, route: str | None = None
    ) -> list[RecordedRequest]:
        """API requests, optionally of one method and whose route matches a regex."""
        with self.lock:
            requests = list(self.requests)
        return [
            r
            for r in requests
            if r.kind == "api"
            and (method is None or r.method == method.upper())
            and (route is None or re.search(route, r.route))
        ]

    def git_requests(self) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.kind == "git"]

    # -- HTTP dispatch ---------------------------------------------------------------------

    def _dispatch(self, rec: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(rec.path)
        if split.path.startswith("/git/"):
            return self._serve_git(rec, split.path, split.query)
        headers = self._rate_headers()
        try:
            if split.path.startswith(LOGS_PREFIX):
                return self._serve_log(split.path[len(LOGS_PREFIX) :])
            if not split.path.startswith(API_PREFIX) and split.path != GRAPHQL_PATH:
                raise _HttpError(404, "Not Found")
            user = self._api_user(rec.headers)
            if user is None:
                raise _HttpError(401, "Bad credentials")
            rec.user = user.login
            route = rec.route.rstrip("/") or "/"
            with self.lock:
                fault = self._take_fault(rec.method, route)
                if fault is not None:
                    return fault.status, {**headers, **fault.headers}, _dumps(fault.body)
                self.rate_remaining = max(0, self.rate_remaining - 1)
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            self.settle_auto_merges()  # pushes and checks since the last request may allow one
            for method, pattern, handler in _ROUTES:
                match = pattern.match(route)
                if match and method == rec.method:
                    with self.lock:
                        status, payload, extra = getattr(self, handler)(
                            user, query, rec.json() if rec.body else {}, **match.groupdict()
                        )
                    body = b"" if payload is None else _dumps(payload)
                    return status, {**headers, **extra}, body
            raise _HttpError(404, "Not Found")
        except _HttpError as err:
            return err.status, headers, _dumps(err.payload)

    def _take_fault(self, method: str, route: str) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and fault.method == method and fault.path.search(route):
                fault.times -= 1
                return fault
        return None

    def _rate_headers(self) -> dict[str, str]:
        reset = int(datetime.now(UTC).timestamp()) + 3600
        return {
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": str(self.rate_remaining),
            "X-RateLimit-Used": str(5000 - self.rate_remaining),
            "X-RateLimit-Reset": str(reset),
            "X-RateLimit-Resource": "core",
            "X-GitHub-Request-Id": secrets.token_hex(8).upper(),
        }

    def _api_user(self, headers: Mapping[str, str]) -> FakeUser | None:
        auth = _header(headers, "Authorization")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() in ("token", "bearer"):
            return self.users.get(value.strip())
        return None

    def _visible_repo(self, owner: str, name: str) -> FakeRepo:
        repo = self.repos.get(f"{owner}/{name}".lower())
        if repo is None or not repo.visible:
            raise _HttpError(404, "Not Found")
        return repo

    # -- JSON shapes -----------------------------------------------------------------------

    def _user_json(self, login: str) -> dict[str, Any]:
        user = next((u for u in self.users.values() if u.login == login), None)
        return {
            "login": login,
            "id": user.id if user else 9999,
            "type": "User",
            "site_admin": False,
            "url": f"{self.api_url}/users/{login}",
            "html_url": f"{self.url}/{login}",
        }

    def _repo_json(self, repo: FakeRepo) -> dict[str, Any]:
        api = f"{self.api_url}/repos/{repo.full_name}"
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "owner": {**self._user_json(repo.owner), "type": "Organization"},
            "private": repo.private,
            "visibility": "private" if repo.private else "public",
            "html_url": f"{self.url}/{repo.full_name}",
            "url": api,
            "pulls_url": api + "/pulls{/number}",
            "clone_url": f"{self.url}/git/{repo.full_name}.git",
            "git_url": f"git://127.0.0.1/{repo.full_name}.git",
            "ssh_url": f"git@127.0.0.1:{repo.full_name}.git",
            "default_branch": repo.default_branch,
            "archived": repo.archived,
            "disabled": False,
            "allow_auto_merge": repo.allow_auto_merge,
            "delete_branch_on_merge": repo.delete_branch_on_merge,
            "allow_merge_commit": repo.allow_merge_commit,
            "allow_squash_merge": repo.allow_squash_merge,
            "allow_rebase_merge": repo.allow_rebase_merge,
            "fork": repo.fork,
            "topics": repo.topics,
            "language": repo.language,
            "description": repo.description,
            "permissions": {
                "admin": repo.admin,
                "maintain": repo.admin,
                "push": repo.push,
                "triage": repo.push,
                "pull": True,
            },
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": _iso(),
            "pushed_at": _iso(),
        }

    def _pull_json(self, repo: FakeRepo, pull: FakePull) -> dict[str, Any]:
        api = f"{self.api_url}/repos/{repo.full_name}"
        if pull.state == "open":
            pull.head_sha = self.branch_sha(repo.full_name, pull.head_ref) or pull.head_sha
        return {
            "id": pull.id,
            "node_id": f"PR_{pull.id}",
            "number": pull.number,
            "url": f"{api}/pulls/{pull.number}",
            "html_url": f"{self.url}/{repo.full_name}/pull/{pull.number}",
            "issue_url": f"{api}/issues/{pull.number}",
            "comments_url": f"{api}/issues/{pull.number}/comments",
            "state": pull.state,
            "locked": False,
            "title": pull.title,
            "body": pull.body,
            "draft": pull.draft,
            "user": self._user_json(pull.user),
            "created_at": pull.created_at,
            "updated_at": pull.updated_at,
            "closed_at": pull.closed_at,
            "merged_at": pull.merged_at,
            "merged": pull.merged,
            "comments": len(pull.comments),
            "review_comments": len(pull.review_comments),
            "labels": [self._label_json(repo, name) for name in pull.labels],
            "auto_merge": pull.auto_merge,
            "merge_commit_sha": pull.merge_commit_sha,
            "head": {
                "label": f"{pull.head_owner}:{pull.head_ref}",
                "ref": pull.head_ref,
                "sha": pull.head_sha,
                "user": self._user_json(pull.head_owner),
                "repo": self._repo_json(repo),
            },
            "base": {
                "label": f"{repo.owner}:{pull.base_ref}",
                "ref": pull.base_ref,
                "sha": self.branch_sha(repo.full_name, pull.base_ref) or "",
                "user": self._user_json(repo.owner),
                "repo": self._repo_json(repo),
            },
        }

    def _label_json(self, repo: FakeRepo, name: str) -> dict[str, Any]:
        url = f"{self.api_url}/repos/{repo.full_name}/labels/{name}"
        return {"id": abs(hash(name)) % 10**8, "name": name, "color": "ededed", "url": url}

    def _review_comment_json(
        self, repo: FakeRepo, number: int, comment: dict[str, Any]
    ) -> dict[str, Any]:
        api = f"{self.api_url}/repos/{repo.full_name}"
        return {
            **{k: v for k, v in comment.items() if k != "user"},
            "user": self._user_json(comment["user"]),
            "url": f"{api}/pulls/comments/{comment['id']}",
            "html_url": f"{self.url}/{repo.full_name}/pull/{number}#discussion_r{comment['id']}",
            "pull_request_url": f"{api}/pulls/{number}",
            "updated_at": comment["created_at"],
            "diff_hunk": "",
        }

    def _comment_json(self, repo: FakeRepo, number: int, comment: dict[str, Any]) -> dict[str, Any]:
        api = f"{self.api_url}/repos/{repo.full_name}"
        return {
            "id": comment["id"],
            "body": comment["body"],
            "user": self._user_json(comment["user"]),
            "url": f"{api}/issues/comments/{comment['id']}",
            "html_url": f"{self.url}/{repo.full_name}/pull/{number}#issuecomment-{comment['id']}",
            "issue_url": f"{api}/issues/{number}",
            "created_at": comment["created_at"],
            "updated_at": comment["created_at"],
        }

    def _paginate(
        self, items: list[Any], query: Mapping[str, str], route: str
    ) -> tuple[list[Any], dict[str, str]]:
        per_page = max(1, min(100, int(query.get("per_page", 30))))
        page = max(1, int(query.get("page", 1)))
        last = max(1, -(-len(items) // per_page))
        links = []
        for rel, number in (("prev", page - 1), ("next", page + 1), ("first", 1), ("last", last)):
            if 1 <= number <= last and (rel in ("first", "last") or number != page):
                if rel in ("first", "last") and last == 1:
                    continue
                params = urlencode({**query, "page": number, "per_page": per_page})
                links.append(f'<{self.api_url}{route}?{params}>; rel="{rel}"')
        headers = {"Link": ", ".join(links)} if links else {}
        return items[(page - 1) * per_page : page * per_page], headers

    # -- API handlers (called with self.lock held) -----------------------------------------

    def _get_user(self, user: FakeUser, query: dict, body: dict) -> tuple[int, Any, dict]:
        return 200, {**self._user_json(user.login), "name": user.name, "email": None}, {}

    def _get_rate_limit(self, user: FakeUser, query: dict, body: dict) -> tuple[int, Any, dict]:
        core = {"limit": 5000, "remaining": self.rate_remaining, "reset": 0, "used": 0}
        return 200, {"resources": {"core": core}, "rate": core}, {}

    def _list_user_repos(self, user: FakeUser, query: dict, body: dict) -> tuple[int, Any, dict]:
        repos = sorted(
            (r for r in self.repos.values() if r.visible), key=lambda r: r.full_name.lower()
        )
        page, headers = self._paginate([self._repo_json(r) for r in repos], query, "/user/repos")
        return 200, page, headers

    def _owned(self, org: str) -> list[FakeRepo]:
        owned = [r for r in self.repos.values() if r.owner.lower() == org.lower()]
        if not owned:  # an organization exists here while it owns a repository
            raise _HttpError(404, "Not Found")
        return owned

    def _get_org(self, user: FakeUser, query: dict, body: dict, org: str) -> tuple[int, Any, dict]:
        login = self._owned(org)[0].owner
        api = f"{self.api_url}/orgs/{login}"
        payload = {
            "login": login,
            "id": 100 + sorted({r.owner.lower() for r in self.repos.values()}).index(org.lower()),
            "node_id": f"O_{login}",
            "type": "Organization",
            "url": api,
            "repos_url": api + "/repos",
            "html_url": f"{self.url}/{login}",
            "public_repos": sum(not r.private for r in self._owned(org)),
        }
        return 200, payload, {}

    def _list_org_repos(
        self, user: FakeUser, query: dict, body: dict, org: str
    ) -> tuple[int, Any, dict]:
        """GET /orgs/{org}/repos: type all|public|private|forks|sources|member, sort
        created (default, desc)|updated|pushed|full_name (asc), paginated; 404 for no org."""
        owned = self._owned(org)
        kind = query.get("type", "all")
        if kind not in ("all", "public", "private", "forks", "sources", "member"):
            raise _invalid(resource="Repository", field="type", code="invalid")
        keep = {
            "public": lambda r: not r.private,
            "private": lambda r: r.private,
            "forks": lambda r: r.fork,
            "sources": lambda r: not r.fork,
        }.get(kind, lambda r: True)
        repos = [r for r in owned if r.visible and keep(r)]
        sort = query.get("sort", "created")
        if sort == "full_name":
            repos.sort(key=lambda r: r.full_name.lower())
            reverse = query.get("direction", "asc") == "desc"
        else:  # every fake repository is created at once: newest id first stands in
            repos.sort(key=lambda r: r.id)
            reverse = query.get("direction", "desc") == "desc"
        if reverse:
            repos.reverse()
        route = f"/orgs/{org}/repos"
        page, headers = self._paginate([self._repo_json(r) for r in repos], query, route)
        return 200, page, headers

    def _search_repos(self, user: FakeUser, query: dict, body: dict) -> tuple[int, Any, dict]:
        """GET /search/repositories?q=: words match name or description; qualifiers org:,
        user:, topic:, language:, archived:, fork: (forks excluded unless fork:true|only),
        is:public|private; only the first 1,000 results are reachable."""
        q = query.get("q", "").strip()
        if not q:
            raise _HttpError(
                422,
                "Validation Failed",
                errors=[{"resource": "Search", "field": "q", "code": "missing"}],
            )
        words: list[str] = []
        tests: list[Any] = []
        forks = "false"
        for token in q.split():
            name, sep, value = token.partition(":")
            value = value.lower()
            if not sep:
                words.append(token.lower())
            elif name in ("org", "user"):
                tests.append(lambda r, v=value: r.owner.lower() == v)
            elif name == "topic":
                tests.append(lambda r, v=value: v in [t.lower() for t in r.topics])
            elif name == "language":
                tests.append(lambda r, v=value: (r.language or "").lower() == v)
            elif name == "archived":
                tests.append(lambda r, v=value: r.archived == (v == "true"))
            elif name == "fork":
                forks = value
            elif name == "is" and value in ("public", "private"):
                tests.append(lambda r, v=value: r.private == (v == "private"))
            elif name != "in":
                words.append(token.lower())
        if forks == "only":
            tests.append(lambda r: r.fork)
        elif forks != "true":
            tests.append(lambda r: not r.fork)
        for word in words:
            tests.append(
                lambda r, w=word: w in r.name.lower() or w in (r.description or "").lower()
            )
        found = sorted(
            (r for r in self.repos.values() if r.visible and all(t(r) for t in tests)),
            key=lambda r: r.full_name.lower(),
        )
        per_page = max(1, min(100, int(query.get("per_page", 30))))
        if int(query.get("page", 1)) * per_page > 1000 + per_page - 1:
            raise _HttpError(422, "Only the first 1000 search results are available")
        items = [{**self._repo_json(r), "score": 1.0} for r in found[:1000]]
        page, headers = self._paginate(items, query, "/search/repositories")
        return 200, {"total_count": len(found), "incomplete_results": False, "items": page}, headers

    def _get_repo(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str
    ) -> tuple[int, Any, dict]:
        return 200, self._repo_json(self._visible_repo(owner, name)), {}

    def _list_pulls(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str
    ) -> tuple[int, Any, dict]:
        repo = self._visible_repo(owner, name)
        state = query.get("state", "open")
        head = query.get("head")
        pulls = sorted(repo.pulls.values(), key=lambda p: p.number, reverse=True)
        selected = []
        for pull in pulls:
            if state != "all" and pull.state != state:
                continue
            if head:
                head_owner, _, head_ref = head.rpartition(":")
                if head_ref != pull.head_ref or (
                    head_owner and head_owner.lower() != pull.head_owner.lower()
                ):
                    continue
            if query.get("base") and query["base"] != pull.base_ref:
                continue
            selected.append(self._pull_json(repo, pull))
        route = f"/repos/{repo.full_name}/pulls"
        page, headers = self._paginate(selected, query, route)
        return 200, page, headers

    def _create_pull(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str
    ) -> tuple[int, Any, dict]:
        repo = self._visible_repo(owner, name)
        if repo.archived:
            raise _HttpError(403, "Repository was archived so is read-only.")
        if not repo.push:
            raise _HttpError(403, "Resource not accessible by personal access token")
        if not body.get("title"):
            raise _invalid(field="title", code="missing_field")
        head_owner, _, head_ref = str(body.get("head", "")).rpartition(":")
        head_owner = head_owner or repo.owner
        base = str(body.get("base", ""))
        head_sha = self.branch_sha(repo.full_name, head_ref) if head_ref else None
        for fld, ok in (("head", head_sha), ("base", self.branch_sha(repo.full_name, base))):
            if not ok:
                raise _invalid(field=fld, code="invalid")
        for pull in repo.pulls.values():
            if pull.state == "open" and pull.head_ref == head_ref and pull.base_ref == base:
                message = f"A pull request already exists for {head_owner}:{head_ref}."
                raise _invalid(code="custom", message=message)
        if self.commit_count(repo.full_name, base, head_ref) == 0:
            message = f"No commits between {base} and {head_ref}"
            raise _invalid(code="custom", message=message)
        number = max(repo.pulls, default=0) + 1
        pull = FakePull(
            number=number,
            id=next(self._ids),
            head_owner=head_owner,
            head_ref=head_ref,
            head_sha=head_sha or "",
            base_ref=base,
            title=body["title"],
            body=body.get("body"),
            draft=bool(body.get("draft", False)),
            user=user.login,
        )
        repo.pulls[number] = pull
        return 201, self._pull_json(repo, pull), {}

    def _existing_pull(self, owner: str, name: str, number: str) -> tuple[FakeRepo, FakePull]:
        repo = self._visible_repo(owner, name)
        pull = repo.pulls.get(int(number))
        if pull is None:
            raise _HttpError(404, "Not Found")
        return repo, pull

    def _get_pull(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str, number: str
    ) -> tuple[int, Any, dict]:
        repo, pull = self._existing_pull(owner, name, number)
        payload = self._pull_json(repo, pull)
        # Only a single PR carries mergeability; GitHub computes it in the background, so
        # it may still be null (and the state "unknown") right after a change.
        mergeable, state = self._mergeability(repo, pull)
        if pull.unknown_mergeability > 0 and pull.state == "open":
            pull.unknown_mergeability -= 1
            mergeable, state = None, "unknown"
        payload.update(
            mergeable=mergeable,
            mergeable_state=state,
            rebaseable=mergeable,
            merged_by=self._user_json(pull.merged_by) if pull.merged_by else None,
        )
        return 200, payload, {}

    def _update_pull(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str, number: str
    ) -> tuple[int, Any, dict]:
        repo, pull = self._existing_pull(owner, name, number)
        if repo.archived:
            raise _HttpError(403, "Repository was archived so is read-only.")
        if "state" in body:
            if body["state"] not in ("open", "closed"):
                raise _HttpError(422, "Validation Failed")
            if pull.merged and body["state"] == "open":
                raise _invalid(
                    code="custom",
                    message="state cannot be changed. The pull request cannot be reopened.",
                )
            if body["state"] != pull.state:
                pull.state = body["state"]
                pull.closed_at = _iso() if pull.state == "closed" else None
        for key in ("title", "body"):
            if key in body:
                setattr(pull, key, body[key])
        if "base" in body:
            pull.base_ref = body["base"]
        pull.updated_at = _iso()
        return 200, self._pull_json(repo, pull), {}

    def _list_comments(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str, number: str
    ) -> tuple[int, Any, dict]:
        repo, pull = self._existing_pull(owner, name, number)
        items = [self._comment_json(repo, pull.number, c) for c in pull.comments]
        route = f"/repos/{repo.full_name}/issues/{number}/comments"
        page, headers = self._paginate(items, query, route)
        return 200, page, headers

    def _create_comment(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str, number: str
    ) -> tuple[int, Any, dict]:
        repo, pull = self._existing_pull(owner, name, number)
        if not body.get("body"):
            raise _HttpError(422, "Validation Failed")
        comment = {
            "id": next(self._ids),
            "body": body["body"],
            "user": user.login,
            "created_at": _iso(),
        }
        pull.comments.append(comment)
        return 201, self._comment_json(repo, pull.number, comment), {}

    def _list_reviews(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str, number: str
    ) -> tuple[int, Any, dict]:
        repo, pull = self._existing_pull(owner, name, number)
        items = [
            {
                "id": r["id"],
                "user": self._user_json(r["user"]),
                "state": r["state"],
                "body": "",
                "submitted_at": r["submitted_at"],
                "commit_id": pull.head_sha,
            }
            for r in pull.reviews
        ]
        route = f"/repos/{repo.full_name}/pulls/{number}/reviews"
        page, headers = self._paginate(items, query, route)
        return 200, page, headers

    def _resolve_sha(self, repo: FakeRepo, ref: str) -> str:
        if ref == "HEAD":  # GitHub resolves HEAD to the default branch
            ref = repo.default_branch
        sha = self.branch_sha(repo.full_name, ref) or ref
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            raise _HttpError(422, f"No commit found for SHA: {ref}")
        return sha

    def _get_commit(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str, ref: str
    ) -> tuple[int, Any, dict]:
        repo = self._visible_repo(owner, name)
        sha = self._resolve_sha(repo, ref)
        url = f"{self.api_url}/repos/{repo.full_name}/commits/{sha}"
        return 200, {"sha": sha, "url": url, "commit": {"message": ""}, "files": []}, {}

    def _get_combined_status(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str, ref: str
    ) -> tuple[int, Any, dict]:
        repo = self._visible_repo(owner, name)
        sha = self._resolve_sha(repo, ref)
        statuses = repo.statuses.get(sha, [])
        states = {s["state"] for s in statuses}
        if not statuses or "pending" in states:
            state = "pending"
        elif states & {"failure", "error"}:
            state = "failure"
        else:
            state = "success"
        payload = {
            "state": state,
            "sha": sha,
            "total_count": len(statuses),
            "statuses": [{**s, "url": "", "description": ""} for s in statuses],
            "url": f"{self.api_url}/repos/{repo.full_name}/commits/{sha}/status",
        }
        return 200, payload, {}

    def _list_check_runs(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str, ref: str
    ) -> tuple[int, Any, dict]:
        repo = self._visible_repo(owner, name)
        runs = [self._run_json(r) for r in repo.check_runs.get(self._resolve_sha(repo, ref), [])]
        return 200, {"total_count": len(runs), "check_runs": runs}, {}

    @staticmethod
    def _run_json(run: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in run.items() if not k.startswith("_")}

    def _find_run(self, repo: FakeRepo, run_id: str) -> dict[str, Any]:
        for runs in repo.check_runs.values():
            for run in runs:
                if run["id"] == int(run_id):
                    return run
        raise _HttpError(404, "Not Found")

    def _get_check_run(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str, run_id: str
    ) -> tuple[int, Any, dict]:
        repo = self._visible_repo(owner, name)
        return 200, self._run_json(self._find_run(repo, run_id)), {}

    def _list_annotations(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str, run_id: str
    ) -> tuple[int, Any, dict]:
        repo = self._visible_repo(owner, name)
        notes = self._find_run(repo, run_id)["_annotations"]
        route = f"/repos/{repo.full_name}/check-runs/{run_id}/annotations"
        page, headers = self._paginate(notes, query, route)
        return 200, page, headers

    def _get_job(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str, job_id: str
    ) -> tuple[int, Any, dict]:
        """A GitHub Actions workflow job: the same id as its check run."""
        repo = self._visible_repo(owner, name)
        if int(job_id) not in repo.job_logs:
            raise _HttpError(404, "Not Found")
        run = self._find_run(repo, job_id)
        api = f"{self.api_url}/repos/{repo.full_name}"
        payload = {
            "id": run["id"],
            "run_id": run["id"] + 1,
            "name": run["name"],
            "head_sha": run["head_sha"],
            "status": run["status"],
            "conclusion": run["conclusion"],
            "url": f"{api}/actions/jobs/{run['id']}",
            "html_url": run["details_url"],
            "check_run_url": run["url"],
            "started_at": run["started_at"],
            "completed_at": run["completed_at"],
            "steps": [],
        }
        return 200, payload, {}

    def _job_logs(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str, job_id: str
    ) -> tuple[int, Any, dict]:
        """302 to a short-lived download URL of the job's plain-text log, as GitHub answers."""
        repo = self._visible_repo(owner, name)
        if int(job_id) not in repo.job_logs:
            raise _HttpError(404, "Not Found")
        ticket = secrets.token_hex(12)
        self._log_tickets[ticket] = repo.job_logs[int(job_id)]
        return 302, None, {"Location": f"{self.url}{LOGS_PREFIX}{ticket}"}

    def _serve_log(self, ticket: str) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            text = self._log_tickets.get(ticket)
        if text is None:
            return 404, {"Content-Type": "text/plain"}, b"expired\n"
        return 200, {"Content-Type": "text/plain; charset=utf-8"}, text.encode()

    def _list_review_comments(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str, number: str
    ) -> tuple[int, Any, dict]:
        repo, pull = self._existing_pull(owner, name, number)
        items = [self._review_comment_json(repo, pull.number, c) for c in pull.review_comments]
        route = f"/repos/{repo.full_name}/pulls/{number}/comments"
        page, headers = self._paginate(items, query, route)
        return 200, page, headers

    def _reply_review_comment(
        self,
        user: FakeUser,
        query: dict,
        body: dict,
        owner: str,
        name: str,
        number: str,
        comment_id: str,
    ) -> tuple[int, Any, dict]:
        repo, pull = self._existing_pull(owner, name, number)
        parent = next((c for c in pull.review_comments if c["id"] == int(comment_id)), None)
        if parent is None:
            raise _HttpError(404, "Not Found")
        if not body.get("body"):
            raise _invalid(field="body", code="missing_field")
        reply = {
            **parent,
            "id": next(self._ids),
            "body": body["body"],
            "user": user.login,
            "in_reply_to_id": parent["id"],
            "created_at": _iso(),
        }
        pull.review_comments.append(reply)
        return 201, self._review_comment_json(repo, pull.number, reply), {}

    def _get_permission(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str, login: str
    ) -> tuple[int, Any, dict]:
        repo = self._visible_repo(owner, name)
        if not any(u.login == login for u in self.users.values()):
            raise _HttpError(404, "Not Found")
        if login == self.user.login:
            permission = "admin" if repo.admin else ("write" if repo.push else "read")
        else:
            permission = repo.permissions.get(login, "read" if not repo.private else "none")
        payload = {
            "permission": permission,
            "role_name": permission,
            "user": self._user_json(login),
        }
        return 200, payload, {}

    def _get_branch(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str, branch: str
    ) -> tuple[int, Any, dict]:
        repo = self._visible_repo(owner, name)
        sha = self.branch_sha(repo.full_name, branch)
        if sha is None:
            raise _HttpError(404, "Branch not found")
        protected = repo.protected and branch == repo.default_branch
        checks = {
            "enforcement_level": "non_admins" if protected and repo.required_checks else "off",
            "contexts": repo.required_checks if protected else [],
            "checks": [{"context": c, "app_id": None} for c in repo.required_checks]
            if protected
            else [],
        }
        payload = {
            "name": branch,
            "commit": {"sha": sha, "url": f"{self.api_url}/repos/{repo.full_name}/commits/{sha}"},
            "protected": protected,
            "protection": {"enabled": protected, "required_status_checks": checks},
            "protection_url": f"{self.api_url}/repos/{repo.full_name}/branches/{branch}/protection",
        }
        return 200, payload, {}

    def _ref_json(self, repo: FakeRepo, ref: str, sha: str) -> dict[str, Any]:
        api = f"{self.api_url}/repos/{repo.full_name}"
        return {
            "ref": f"refs/{ref}",
            "node_id": f"REF_{abs(hash(ref)) % 10**8}",
            "url": f"{api}/git/refs/{ref}",
            "object": {"type": "commit", "sha": sha, "url": f"{api}/git/commits/{sha}"},
        }

    def _get_ref(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str, ref: str
    ) -> tuple[int, Any, dict]:
        repo = self._visible_repo(owner, name)
        sha = ref.startswith("heads/") and self.branch_sha(repo.full_name, ref[6:])
        if not sha:
            raise _HttpError(404, "Not Found")
        return 200, self._ref_json(repo, ref, sha), {}

    def _delete_ref(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str, ref: str
    ) -> tuple[int, Any, dict]:
        repo = self._visible_repo(owner, name)
        if not repo.push or repo.archived:
            raise _HttpError(403, "Resource not accessible by personal access token")
        branch = ref.removeprefix("heads/")
        if not ref.startswith("heads/") or self.branch_sha(repo.full_name, branch) is None:
            raise _HttpError(422, "Reference does not exist")
        if repo.protected and branch == repo.default_branch:
            raise _HttpError(422, "Cannot delete a protected branch")
        git("update-ref", "-d", f"refs/heads/{branch}", cwd=repo.bare)
        return 204, None, {}

    # -- merging ---------------------------------------------------------------------------

    def _checks_at(self, repo: FakeRepo, sha: str) -> dict[str, str]:
        """Latest state per check name at sha: success, failure or pending."""
        states: dict[str, str] = {}
        for status in repo.statuses.get(sha, []):
            states[status["context"]] = {"error": "failure"}.get(status["state"], status["state"])
        for run in repo.check_runs.get(sha, []):
            if run["status"] != "completed":
                states[run["name"]] = "pending"
            elif run["conclusion"] in ("success", "neutral", "skipped"):
                states[run["name"]] = "success"
            else:
                states[run["name"]] = "failure"
        return states

    def _mergeability(self, repo: FakeRepo, pull: FakePull) -> tuple[bool | None, str]:
        """(mergeable, mergeable_state) as GitHub reports them for an open PR."""
        if pull.state != "open":
            return None, "unknown"
        head = self.branch_sha(repo.full_name, pull.head_ref) or pull.head_sha
        base = self.branch_sha(repo.full_name, pull.base_ref) or ""
        if self._merged_tree(repo, base, head) is None:
            return False, "dirty"
        if pull.draft:
            return True, "draft"
        checks = self._checks_at(repo, head)
        protected = repo.protected and pull.base_ref == repo.default_branch
        required = repo.required_checks if protected else []
        if any(checks.get(c) != "success" for c in required):
            return True, "blocked"
        latest = {r["user"]: r["state"] for r in pull.reviews if r["state"] != "COMMENTED"}
        approvals = sum(1 for s in latest.values() if s == "APPROVED")
        if protected and (
            approvals < repo.required_approvals or "CHANGES_REQUESTED" in latest.values()
        ):
            return True, "blocked"
        if any(s != "success" for s in checks.values()):
            return True, "unstable"
        return True, "clean"

    def _merged_tree(self, repo: FakeRepo, base: str, head: str) -> str | None:
        proc = subprocess.run(
            ["git", "merge-tree", "--write-tree", base, head],
            cwd=repo.bare,
            env=_git_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.stdout.split()[0] if proc.returncode == 0 else None

    def _is_merged(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str, number: str
    ) -> tuple[int, Any, dict]:
        _, pull = self._existing_pull(owner, name, number)
        if not pull.merged:
            raise _HttpError(404, "Not Found")
        return 204, None, {}

    def _merge_pull(
        self, user: FakeUser, query: dict, body: dict, owner: str, name: str, number: str
    ) -> tuple[int, Any, dict]:
        repo, pull = self._existing_pull(owner, name, number)
        if repo.archived or not repo.push:
            raise _HttpError(403, "Resource not accessible by personal access token")
        sha = self.do_merge(repo, pull, user.login, body.get("merge_method") or "merge", body)
        return 200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}, {}

    def do_merge(
        self, repo: FakeRepo, pull: FakePull, login: str, method: str, body: dict[str, Any]
    ) -> str:
        """Merge as GitHub's merge button does, refusing (405/409) what GitHub refuses."""
        if pull.state != "open":
            raise _HttpError(405, "Pull Request is not mergeable")
        head = self.branch_sha(repo.full_name, pull.head_ref) or pull.head_sha
        if body.get("sha") and body["sha"] != head:
            raise _HttpError(409, "Head branch was modified. Review and try the merge again.")
        allowed = {
            "merge": (repo.allow_merge_commit, "Merge commits are not allowed on this repository."),
            "squash": (
                repo.allow_squash_merge,
                "Squash merges are not allowed on this repository.",
            ),
            "rebase": (
                repo.allow_rebase_merge,
                "Rebase merges are not allowed on this repository.",
            ),
        }
        if method not in allowed:
            raise _invalid(field="merge_method", code="invalid")
        if not allowed[method][0]:
            raise _HttpError(405, allowed[method][1])
        mergeable, state = self._mergeability(repo, pull)
        if state == "draft":
            raise _HttpError(405, "Pull Request is still a draft")
        if not mergeable:
            raise _HttpError(405, "Pull Request is not mergeable")
        if state == "blocked":
            checks = self._checks_at(repo, head)
            missing = [c for c in repo.required_checks if checks.get(c) != "success"]
            if missing:
                raise _HttpError(405, f'Required status check "{missing[0]}" is expected.')
            raise _HttpError(
                405, "At least 1 approving review is required by reviewers with write access."
            )
        base = self.branch_sha(repo.full_name, pull.base_ref) or ""
        title = body.get("commit_title") or (
            f"Merge pull request #{pull.number} from {pull.head_owner}/{pull.head_ref}"
            if method == "merge"
            else f"{pull.title} (#{pull.number})"
        )
        message = title + ("\n\n" + body["commit_message"] if body.get("commit_message") else "")
        if method == "rebase":
            new = self._rebase(repo, base, head)
        else:
            tree = self._merged_tree(repo, base, head)
            parents = ["-p", base] + (["-p", head] if method == "merge" else [])
            new = git("commit-tree", str(tree), *parents, "-m", message, cwd=repo.bare)
        git("update-ref", f"refs/heads/{pull.base_ref}", new, base, cwd=repo.bare)
        pull.head_sha = head
        pull.state, pull.merged, pull.merged_by = "closed", True, login
        pull.merged_at = pull.closed_at = pull.updated_at = _iso()
        pull.merge_commit_sha = new
        if repo.delete_branch_on_merge:
            git("update-ref", "-d", f"refs/heads/{pull.head_ref}", cwd=repo.bare)
        return new

    def _rebase(self, repo: FakeRepo, base: str, head: str) -> str:
        """Replay head's commits onto base (GitHub's rebase merge); return the new tip."""
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / "w"
            git("clone", "-q", "--no-checkout", str(repo.bare), str(work))
            git("checkout", "-q", "--detach", head, cwd=work)
            git("rebase", "-q", base, cwd=work)
            tip = git("rev-parse", "HEAD", cwd=work)
            git("fetch", "-q", str(work), tip, cwd=repo.bare)
            return tip

    def settle_auto_merges(self) -> None:
        """Merge every PR whose auto-merge is on and which became mergeable, as GitHub does."""
        with self.lock:
            for repo in self.repos.values():
                for pull in list(repo.pulls.values()):
                    if pull.state != "open" or pull.auto_merge is None:
                        continue
                    if self._mergeability(repo, pull) == (True, "clean"):
                        method = pull.auto_merge["merge_method"].lower()
                        with contextlib.suppress(_HttpError):  # GitHub leaves it waiting
                            self.do_merge(repo, pull, pull.auto_merge["enabled_by"], method, {})

    def _graphql(self, user: FakeUser, query: dict, body: dict) -> tuple[int, Any, dict]:
        """The auto-merge mutations, with GitHub's errors (HTTP 200 with an errors list)."""
        text = str(body.get("query", ""))
        found = re.search(r"\b(enablePullRequestAutoMerge|disablePullRequestAutoMerge)\b", text)
        if found is None or not text.lstrip().startswith("mutation"):
            return (
                200,
                {"errors": [{"message": "the fake serves the auto-merge mutations only"}]},
                {},
            )
        mutation = found.group(1)
        data = (body.get("variables") or {}).get("input") or {}
        target = None
        for repo in self.repos.values():
            for pull in repo.pulls.values():
                if f"PR_{pull.id}" == data.get("pullRequestId") and repo.visible:
                    target = repo, pull
        if target is None:
            message = (
                f"Could not resolve to a node with the global id of '{data.get('pullRequestId')}'"
            )
            return (
                200,
                {"data": {mutation: None}, "errors": [{"type": "NOT_FOUND", "message": message}]},
                {},
            )
        repo, pull = target

        def error(message: str) -> tuple[int, Any, dict]:
            errors = [{"type": "UNPROCESSABLE", "path": [mutation], "message": message}]
            return 200, {"data": {mutation: None}, "errors": errors}, {}

        if not repo.push:
            return error(f"{user.login} does not have permission to enable auto-merge")
        if mutation == "disablePullRequestAutoMerge":
            pull.auto_merge = None
        else:
            if not repo.allow_auto_merge:
                return error("Auto merge is not allowed for this repository")
            if pull.state != "open":
                return error("Pull request is not in the correct state to enable auto-merge")
            if not (repo.protected and (repo.required_checks or repo.required_approvals)):
                return error("Pull request Protected branch rules not configured for this branch")
            _, state = self._mergeability(repo, pull)
            if state in ("clean", "unstable"):
                return error(f"Pull request Pull request is in {state} status")
            method = str(data.get("mergeMethod", "MERGE"))
            pull.auto_merge = {
                "enabled_by": user.login,
                "merge_method": method.lower(),
                "commit_title": data.get("commitHeadline"),
                "commit_message": data.get("commitBody"),
            }
        actor = {"login": user.login, "avatarUrl": "", "resourcePath": f"/{user.login}", "url": ""}
        return 200, {"data": {mutation: {"actor": actor, "clientMutationId": None}}}, {}

    # -- git smart HTTP --------------------------------------------------------------------

    def _git_user(self, headers: Mapping[str, str]) -> FakeUser | None:
        scheme, _, value = _header(headers, "Authorization").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            login, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except ValueError:
            return None
        return self.users.get(password) or self.users.get(login)

    def _serve_git(
        self, rec: RecordedRequest, path: str, query: str
    ) -> tuple[int, dict[str, str], bytes]:
        match = re.match(r"^/git/(?P<owner>[^/]+)/(?P<name>[^/]+?)\.git(?P<rest>/.*)$", path)
        if match is None:
            return 404, {"Content-Type": "text/plain"}, b"Not found.\n"
        user = self._git_user(rec.headers)
        if user is None:
            return (
                401,
                {"WWW-Authenticate": 'Basic realm="FakeGitHub"'},
                b"Authentication required\n",
            )
        rec.user = user.login
        with self.lock:
            repo = self.repos.get(f"{match['owner']}/{match['name']}".lower())
            if repo is None or not repo.visible:
                return 404, {"Content-Type": "text/plain"}, b"Repository not found.\n"
            pushing = match["rest"].endswith("git-receive-pack") or "git-receive-pack" in query
            if pushing and (repo.archived or not repo.push):
                message = f"Permission to {repo.full_name}.git denied to {user.login}.\n"
                return 403, {"Content-Type": "text/plain"}, message.encode()
        env = {
            **_git_env(),
            "GIT_PROJECT_ROOT": str(self.git_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{repo.owner}/{repo.name}.git{match['rest']}",
            "QUERY_STRING": query,
            "REQUEST_METHOD": rec.method,
            "CONTENT_TYPE": _header(rec.headers, "Content-Type"),
            "CONTENT_LENGTH": str(len(rec.body)),
            "HTTP_CONTENT_ENCODING": _header(rec.headers, "Content-Encoding"),
            "GIT_PROTOCOL": _header(rec.headers, "Git-Protocol"),
            "REMOTE_USER": user.login,
            "REMOTE_ADDR": "127.0.0.1",
        }
        proc = subprocess.run(
            ["git", "http-backend"],
            input=rec.body,
            env=env,
            capture_output=True,
            check=False,
            timeout=120,
        )
        head, sep, payload = proc.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers[name.strip()] = value.strip()
        return status, headers, payload


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGitHub/1.0"
    fake: FakeGitHub

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        rec = RecordedRequest(
            self.command, self.path, dict(self.headers.items()), self._read_body()
        )
        with self.fake.lock:
            self.fake.requests.append(rec)
        try:
            status, headers, payload = self.fake._dispatch(rec)
        except Exception as exc:  # a bug in the fake: answer 500 and say what
            status, headers, payload = 500, {}, _dumps({"message": f"fake crashed: {exc!r}"})
        rec.status = status
        self.send_response(status)
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        for name, value in headers.items():
            if name.lower() not in ("content-length", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def _write_files(root: Path, files: Mapping[str, str | bytes | None]) -> None:
    """Write text or bytes under root; None deletes the file."""
    for path, content in files.items():
        target = root / path
        if content is None:
            target.unlink(missing_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)


def _invalid(**error: str) -> _HttpError:
    return _HttpError(422, "Validation Failed", errors=[{"resource": "PullRequest", **error}])


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return ""


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload).encode()


@pytest.fixture
def fake_github(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeGitHub]:
    """A running fake GitHub; GITHUB_TOKEN and GITHUB_API_URL point at it.

    Create repositories with `fake_github.create_repo("acme/api", {"README.md": "hi"})`.
    """
    fake = FakeGitHub(tmp_path_factory.mktemp("github"))
    fake.start()
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    try:
        yield fake
    finally:
        fake.stop()
