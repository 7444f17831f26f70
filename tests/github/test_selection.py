"""Selecting a campaign's repositories on the fake GitHub: org listing, search, filters."""

from __future__ import annotations

import pytest
import requests

from codybatch import github
from codybatch.selection import Selector, excluded, parse_selector, select_repositories
from codybatch.settings import Settings
from codybatch.spec import FieldError
from tests.fakes.github_server import FakeGitHub


@pytest.fixture
def fleet(fake_github: FakeGitHub) -> FakeGitHub:
    for name, extra in {
        "acme/api": {"topics": ["python", "service"], "language": "Python"},
        "acme/web": {"topics": ["js"], "language": "JavaScript"},
        "acme/worker": {"topics": ["python"], "language": "Python"},
        "acme/legacy-billing": {"topics": ["python"], "language": "Python"},
        "acme/old": {"topics": ["python"], "language": "Python", "archived": True},
        "acme/api-fork": {"topics": ["python"], "language": "Python", "fork": True},
        "other/api": {"topics": ["python"], "language": "Python"},
    }.items():
        fake_github.create_repo(name, **extra)
    return fake_github


def keys(selection) -> list[str]:
    return [t.key.split("/", 1)[1] for t in selection.targets]


def test_an_org_is_listed_page_by_page_without_archived_forks_or_excluded(
    fleet: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(github, "PER_PAGE", 2)  # PyGithub follows the Link headers
    settings = fleet.settings()
    selection = select_repositories(Selector(org="acme", exclude=("acme/legacy-*",)), settings)
    assert keys(selection) == ["acme/api", "acme/web", "acme/worker"]
    listed = fleet.api_requests("GET", r"^/orgs/acme/repos$")
    assert len(listed) == 3  # 6 repositories, 2 a page
    everything = Selector(org="acme", include_archived=True, include_forks=True)
    assert len(select_repositories(everything, settings).targets) == 6


def test_search_topic_and_language_go_to_the_search_api(fleet: FakeGitHub) -> None:
    settings = fleet.settings()
    selection = select_repositories(Selector(org="acme", topic="python"), settings)
    assert keys(selection) == ["acme/api", "acme/legacy-billing", "acme/worker"]
    (request,) = fleet.api_requests("GET", r"^/search/repositories$")
    assert "topic%3Apython" in request.path and "archived%3Afalse" in request.path
    across = select_repositories(Selector(search="api", language="python"), settings)
    assert keys(across) == ["acme/api", "other/api"]


def test_the_allowlist_always_applies(fleet: FakeGitHub) -> None:
    host = github.web_host(fleet.settings())
    settings = fleet.settings(allowed_repositories=(f"{host}/acme/w*",))
    selection = select_repositories(Selector(org="acme"), settings)
    assert keys(selection) == ["acme/web", "acme/worker"]
    assert len(selection.refused) == 2


def test_an_unknown_org_is_a_readable_error(fleet: FakeGitHub) -> None:
    with pytest.raises(github.GitHubError, match="404 Not Found"):
        select_repositories(Selector(org="nobody"), fleet.settings())


def test_fake_search_answers_as_github_does(fleet: FakeGitHub) -> None:
    headers = {"Authorization": f"Bearer {fleet.token}"}
    missing = requests.get(f"{fleet.api_url}/search/repositories", headers=headers, timeout=5)
    assert missing.status_code == 422
    assert missing.json()["errors"] == [{"resource": "Search", "field": "q", "code": "missing"}]
    found = requests.get(
        f"{fleet.api_url}/search/repositories",
        params={"q": "topic:python fork:only", "per_page": 1},
        headers=headers,
        timeout=5,
    ).json()
    assert found["total_count"] == 1 and found["incomplete_results"] is False
    assert found["items"][0]["full_name"] == "acme/api-fork" and found["items"][0]["fork"]
    beyond = requests.get(
        f"{fleet.api_url}/search/repositories",
        params={"q": "api", "per_page": 100, "page": 11},
        headers=headers,
        timeout=5,
    )
    assert beyond.status_code == 422 and "first 1000" in beyond.json()["message"]


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"org": "acme", "topics": "x"}, "select.topics"),
        ({"exclude": ["x"]}, "select"),
        ({"org": ["acme"]}, "select.org"),
        ({"org": "acme", "include_forks": "yes"}, "select.include_forks"),
        ("acme", "select"),
    ],
)
def test_bad_selectors_name_the_field(value: object, field: str) -> None:
    errors: list[FieldError] = []
    parse_selector(value, errors)
    assert field in [e.field for e in errors]


def test_exclude_globs_match_the_key_or_owner_and_name() -> None:
    assert excluded("github.com/acme/legacy-a", ("acme/legacy-*",))
    assert excluded("github.com/acme/legacy-a", ("github.com/acme/*",))
    assert not excluded("github.com/acme/api", ("acme/legacy-*",))
    assert excluded("/srv/repos/old", ("/srv/repos/o*",))
    assert Settings().allowed_repositories == ()
