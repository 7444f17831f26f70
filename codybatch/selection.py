"""A campaign's targets: listed repositories and/or a GitHub selector, always allowlisted."""

from __future__ import annotations

import fnmatch
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from codybatch.settings import Settings
from codybatch.spec import FieldError, is_allowed, parse_repository

SELECT_FIELDS = (
    "org",
    "topic",
    "search",
    "language",
    "exclude",
    "include_archived",
    "include_forks",
)
MAX_SEARCH = 1000  # GitHub's search API answers at most the first 1,000 results


@dataclass(frozen=True)
class Selector:
    org: str | None = None
    topic: str | None = None
    search: str | None = None
    language: str | None = None
    exclude: tuple[str, ...] = ()
    include_archived: bool = False
    include_forks: bool = False

    def query(self) -> str | None:
        """The GitHub repository search query, or None when an org listing is enough."""
        if not (self.topic or self.search or self.language):
            return None
        parts = [self.search or ""]
        if self.org:
            parts.append(f"org:{self.org}")
        if self.topic:
            parts.append(f"topic:{self.topic}")
        if self.language:
            parts.append(f"language:{self.language}")
        if not self.include_archived:
            parts.append("archived:false")
        if self.include_forks:
            parts.append("fork:true")
        return " ".join(p for p in parts if p)

    def to_dict(self) -> dict[str, Any]:
        return {
            "org": self.org,
            "topic": self.topic,
            "search": self.search,
            "language": self.language,
            "exclude": list(self.exclude),
            "include_archived": self.include_archived,
            "include_forks": self.include_forks,
        }


@dataclass(frozen=True)
class Target:
    """A repository of the fleet and what is known of it without cloning."""

    key: str
    archived: bool = False
    default_branch: str | None = None


@dataclass
class Selection:
    targets: list[Target] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # selected, but not in the allowlist


def parse_selector(value: Any, errors: list[FieldError]) -> Selector | None:
    """The `select` field of a campaign file; errors name the field and the fix."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        errors.append(FieldError("select", "must be a mapping: {org: acme, topic: ..., ...}"))
        return None
    for key in sorted(set(value) - set(SELECT_FIELDS)):
        errors.append(FieldError(f"select.{key}", f"is not known: use {', '.join(SELECT_FIELDS)}"))
    texts: dict[str, str | None] = {}
    for key in ("org", "topic", "search", "language"):
        raw = value.get(key)
        if raw is not None and (not isinstance(raw, str) or not raw.strip() or "\n" in raw):
            errors.append(FieldError(f"select.{key}", "must be one line of text"))
            raw = None
        texts[key] = raw.strip() if isinstance(raw, str) else None
    if not any(texts.values()):
        errors.append(
            FieldError("select", "selects nothing: give org, topic, search and/or language")
        )
    exclude = value.get("exclude") or []
    if isinstance(exclude, str):
        exclude = [exclude]
    if not isinstance(exclude, list) or not all(isinstance(g, str) and g for g in exclude):
        errors.append(FieldError("select.exclude", "must be a list of globs, e.g. acme/legacy-*"))
        exclude = []
    flags = {}
    for key in ("include_archived", "include_forks"):
        flag = value.get(key, False)
        if not isinstance(flag, bool):
            errors.append(FieldError(f"select.{key}", f"must be true or false, not {flag!r}"))
            flag = False
        flags[key] = flag
    return Selector(
        org=texts["org"],
        topic=texts["topic"],
        search=texts["search"],
        language=texts["language"],
        exclude=tuple(g.lower() for g in exclude),
        **flags,
    )


def excluded(key: str, globs: Sequence[str]) -> bool:
    """A glob matches the key (host/owner/name or a path) or owner/name."""
    short = key.split("/", 1)[1] if not key.startswith("/") and key.count("/") == 2 else key
    return any(fnmatch.fnmatchcase(k, g) for g in globs for k in (key, short))


def select_repositories(selector: Selector, settings: Settings) -> Selection:
    """Ask GitHub (search API or the org's repositories, paginated by PyGithub), then drop the
    excluded, archived, forks and whatever the allowlist does not allow."""
    from codybatch.github import client, github_call

    gh = client(settings)

    def fetch() -> list[Any]:
        query = selector.query()
        if query is not None:
            return list(itertools.islice(gh.search_repositories(query), MAX_SEARCH))
        assert selector.org is not None
        return list(gh.get_organization(selector.org).get_repos(type="all"))

    what = f"selecting repositories ({selector.query() or f'org {selector.org}'})"
    selection = Selection()
    for repo in github_call(settings, what, fetch):
        if repo.archived and not selector.include_archived:
            continue
        if repo.fork and not selector.include_forks:
            continue
        if selector.topic and selector.query() is None and selector.topic not in repo.topics:
            continue
        try:
            parsed = parse_repository(repo.html_url)
        except ValueError:
            continue
        if excluded(parsed.key, selector.exclude):
            continue
        if not is_allowed(parsed, settings.allowed_repositories):
            selection.refused.append(parsed.key)
            continue
        selection.targets.append(Target(parsed.key, bool(repo.archived), repo.default_branch))
    selection.targets.sort(key=lambda t: t.key)
    return selection
