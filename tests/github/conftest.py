"""Fixtures of the GitHub tests: the fake GitHub, settings pointing at it, checkouts to change."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from codybatch import git
from codybatch.github import RemoteRepository, resolve_repository
from codybatch.records import Job, RepositoryResult, RepositoryStatus
from codybatch.settings import Settings
from codybatch.spec import JobSpec, parse_repository
from tests.fakes.github_server import FakeGitHub, fake_github

__all__ = ["fake_github"]

PUBLIC_URL = "http://airflow.test:8080"
SPEC = {
    "name": "Replace oldFunction",
    "description": "oldFunction is deprecated: use newFunction.",
    "prompt": "Replace every call of oldFunction with newFunction.",
    "create_pull_requests": True,
}
OLD = "from lib import oldFunction\n\noldFunction(1)\n"
NEW = "from lib import newFunction\n\nnewFunction(1)\n"


@pytest.fixture
def gh_settings(fake_github: FakeGitHub, tmp_path: Path) -> Settings:
    """Settings pointing at the fake: its token and API URL, no waiting, a public URL."""
    return fake_github.settings(home=tmp_path / "home", public_url=PUBLIC_URL)


@pytest.fixture
def repos(fake_github: FakeGitHub) -> list[str]:
    """acme/api and acme/web call oldFunction; acme/docs does not."""
    fake_github.create_repo("acme/api", {"app.py": OLD, "README.md": "# api\n"})
    fake_github.create_repo("acme/web", {"web.py": OLD})
    fake_github.create_repo("acme/docs", {"index.md": "# docs\n"})
    return ["acme/api", "acme/web", "acme/docs"]


def make_job(
    settings: Settings, repositories: list[str], job_id: str = "job-0001", **overrides: object
) -> tuple[Job, JobSpec]:
    spec = JobSpec.parse({**SPEC, "repositories": repositories, **overrides}, settings)
    return Job(job_id=job_id, spec=spec.to_dict()), spec


ChangeFn = Callable[[str, Mapping[str, str | None]], tuple[Path, RemoteRepository, bytes]]


@pytest.fixture
def change(gh_settings: Settings, tmp_path: Path) -> ChangeFn:
    """Clone a fake repository, change files (None deletes); return checkout, remote, patch."""
    counter = itertools.count()

    def make(
        full_name: str, files: Mapping[str, str | None]
    ) -> tuple[Path, RemoteRepository, bytes]:
        remote = resolve_repository(parse_repository(full_name), gh_settings)
        checkout = tmp_path / f"checkout-{next(counter)}"
        git.clone(remote.clone_url, checkout, token=gh_settings.github_token)
        for path, content in files.items():
            target = checkout / path
            if content is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
        return checkout, remote, git.diff(checkout)

    return make


def result_for(
    job: Job, full_name: str, patch: bytes, summary: str | None = "Replaced 1 call.", **kw: object
) -> RepositoryResult:
    return RepositoryResult(
        job_id=job.job_id,
        repository=parse_repository(full_name).key,
        status=RepositoryStatus.COMPLETED,
        were_changes_necessary=bool(patch),
        summary=summary,
        **kw,
    )
