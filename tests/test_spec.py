"""JobSpec: valid specs in every accepted shape, and bad ones each naming the field and the fix."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from codybatch.settings import Settings
from codybatch.spec import (
    MAX_PROMPT,
    JobSpec,
    SpecError,
    field_table,
    is_allowed,
    param_schemas,
    parse_repository,
    repository_allowed,
)
from tests.helpers import make_repo

OPEN = Settings()  # no allowlist


def spec(**fields: Any) -> dict[str, Any]:
    return {
        "name": "Rename foo",
        "prompt": "Rename foo to bar",
        "repositories": ["acme/widget"],
    } | fields


def errors_of(data: Any, settings: Settings = OPEN) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        JobSpec.parse(data, settings)
    return [(e.field, e.message) for e in info.value.errors]


@pytest.fixture
def local_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "local-repo", {"README.md": "hello\n"})


# valid specs


def test_minimal_spec_has_defaults() -> None:
    job = JobSpec.parse(spec(), OPEN)
    assert job.name == "Rename foo"
    assert job.repositories == ("github.com/acme/widget",)
    assert job.create_pull_requests is False
    assert job.steps == ()
    assert job.base_branch is None and job.verify is None
    assert (job.max_turns, job.max_tokens, job.max_usd, job.max_minutes) == (50, 5_000_000, 2.0, 30)


def test_full_spec_in_snake_case() -> None:
    job = JobSpec.parse(
        spec(
            description="why",
            create_pull_requests=True,
            steps=["sed -i s/foo/bar/ x.py", "make fmt"],
            base_branch="release/1.2",
            verify="make test",
            max_turns=10,
            max_usd=0.5,
            max_tokens=10_000,
            max_minutes=5,
        ),
        OPEN,
    )
    assert job.create_pull_requests is True
    assert job.steps == ("sed -i s/foo/bar/ x.py", "make fmt")
    assert job.base_branch == "release/1.2"
    assert job.verify == "make test"
    assert (job.max_turns, job.max_usd, job.max_tokens, job.max_minutes) == (10, 0.5, 10_000, 5.0)


def test_camel_case_aliases_of_the_seed_api() -> None:
    job = JobSpec.parse(
        spec(createPullRequests=True, baseBranch="develop", maxTurns=7, maxUsd=1, maxMinutes=3),
        OPEN,
    )
    assert job.create_pull_requests is True
    assert job.base_branch == "develop"
    assert (job.max_turns, job.max_usd, job.max_minutes) == (7, 1.0, 3.0)


def test_booleans_given_as_text_are_accepted() -> None:
    assert JobSpec.parse(spec(create_pull_requests="true"), OPEN).create_pull_requests is True
    assert JobSpec.parse(spec(create_pull_requests="False"), OPEN).create_pull_requests is False


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("acme/widget", "github.com/acme/widget"),
        ("Acme/Widget", "github.com/acme/widget"),
        ("github.com/acme/widget", "github.com/acme/widget"),
        ("www.github.com/acme/widget", "github.com/acme/widget"),
        ("https://github.com/acme/widget", "github.com/acme/widget"),
        ("https://github.com/acme/widget.git", "github.com/acme/widget"),
        ("https://github.com/acme/widget/", "github.com/acme/widget"),
        ("acme/widget.git", "github.com/acme/widget"),
        ("ghe.example.com/team/tool", "ghe.example.com/team/tool"),
        ("https://ghe.example.com:8443/team/tool", "ghe.example.com:8443/team/tool"),
        ("  acme/my_repo.js  ", "github.com/acme/my_repo.js"),
    ],
)
def test_github_repository_forms(raw: str, key: str) -> None:
    repo = parse_repository(raw)
    assert repo.key == key
    assert not repo.is_local
    assert JobSpec.parse(spec(repositories=[raw]), OPEN).repositories == (key,)


def test_github_enterprise_repository_parts() -> None:
    repo = parse_repository("ghe.example.com/Team/Tool")
    assert (repo.host, repo.owner, repo.name, repo.full_name) == (
        "ghe.example.com",
        "Team",
        "Tool",
        "Team/Tool",
    )


def test_local_repository_as_path_and_file_url(local_repo: Path) -> None:
    by_path = JobSpec.parse(spec(repositories=[str(local_repo)]), OPEN)
    by_url = JobSpec.parse(spec(repositories=[f"file://{local_repo}"]), OPEN)
    by_host = JobSpec.parse(spec(repositories=[f"file://localhost{local_repo}"]), OPEN)
    assert by_path.repositories == by_url.repositories == by_host.repositories
    assert by_path.repositories == (str(local_repo),)
    repo = by_path.repository(str(local_repo))
    assert repo.is_local and repo.path == str(local_repo) and repo.full_name == str(local_repo)


def test_local_bare_repository_is_accepted(tmp_path: Path) -> None:
    bare = make_repo(tmp_path / "remote.git", {"a": "1"}, bare=True)
    assert JobSpec.parse(spec(repositories=[str(bare)]), OPEN).repositories == (str(bare),)


def test_repositories_as_one_text_are_refused_not_split(local_repo: Path) -> None:
    text = f"acme/one\ngithub.com/acme/two\n{local_repo}\n"
    assert [f for f, _ in errors_of(spec(repositories=text))] == ["repositories"]


def test_five_repositories_are_allowed() -> None:
    repos = [f"acme/r{i}" for i in range(5)]
    assert len(JobSpec.parse(spec(repositories=repos), OPEN).repositories) == 5


def test_steps_without_prompt() -> None:
    job = JobSpec.parse(spec(prompt="", steps=["echo one", "echo two"]), OPEN)
    assert job.prompt == ""
    assert job.steps == ("echo one", "echo two")


def test_prompt_of_exactly_the_maximum_length() -> None:
    assert len(JobSpec.parse(spec(prompt="x" * MAX_PROMPT), OPEN).prompt) == MAX_PROMPT


def test_name_of_100_characters_is_allowed() -> None:
    assert JobSpec.parse(spec(name="n" * 100), OPEN).name == "n" * 100


def test_to_dict_parses_back_to_the_same_spec(local_repo: Path) -> None:
    job = JobSpec.parse(
        spec(repositories=["acme/a", str(local_repo)], steps=["true"], maxUsd=3), OPEN
    )
    assert JobSpec.parse(job.to_dict(), OPEN) == job


def test_repository_lookup_accepts_any_form_of_the_key() -> None:
    job = JobSpec.parse(spec(repositories=["acme/widget", "ghe.example.com/x/y"]), OPEN)
    assert job.repository("https://github.com/Acme/Widget.git").key == "github.com/acme/widget"
    with pytest.raises(KeyError):
        job.repository("acme/other")


# the allowlist


def test_allowlist_accepts_matching_repositories() -> None:
    settings = Settings(allowed_repositories=("github.com/acme/*", "ghe.example.com/team/*"))
    job = JobSpec.parse(
        spec(repositories=["acme/a", "https://github.com/ACME/b", "ghe.example.com/team/c"]),
        settings,
    )
    assert len(job.repositories) == 3


def test_allowlist_pattern_without_host_means_github() -> None:
    repo = parse_repository("github.com/acme/widget")
    assert is_allowed(repo, ("acme/*",))
    assert not is_allowed(parse_repository("ghe.example.com/acme/widget"), ("acme/*",))


def test_allowlist_for_local_repositories(local_repo: Path) -> None:
    repo = parse_repository(str(local_repo))
    assert is_allowed(repo, (f"{local_repo.parent}/*",))
    assert is_allowed(repo, (f"file://{local_repo.parent}/*",))
    assert not is_allowed(repo, ("github.com/*",))


@pytest.mark.parametrize("variable", ["CODYBATCH_ALLOWED_REPOSITORIES", "ALLOWED_REPOSITORIES"])
def test_outside_the_allowlist_is_refused(variable: str) -> None:
    settings = Settings.from_env({variable: "github.com/acme/*, github.com/tools/lint"})
    assert settings.allowed_repositories == ("github.com/acme/*", "github.com/tools/lint")
    JobSpec.parse(spec(repositories=["acme/ok", "tools/lint"]), settings)
    errors = errors_of(spec(repositories=["acme/ok", "evil/widget"]), settings)
    assert len(errors) == 1
    field, message = errors[0]
    assert field == "repositories[1]"
    assert "github.com/evil/widget" in message and "allowlist" in message
    assert "CODYBATCH_ALLOWED_REPOSITORIES" in message
    assert "ask an admin" in message


def test_the_codybatch_variable_wins_over_the_seed_alias() -> None:
    settings = Settings.from_env(
        {"CODYBATCH_ALLOWED_REPOSITORIES": "acme/*", "ALLOWED_REPOSITORIES": "other/*"}
    )
    assert settings.allowed_repositories == ("acme/*",)


# bad specs: each error names the field and says how to fix it


@pytest.mark.parametrize("count", [6, 7])
def test_too_many_repositories(count: int) -> None:
    errors = errors_of(spec(repositories=[f"acme/r{i}" for i in range(count)]))
    assert errors == [
        (
            "repositories",
            f"has {count} repositories: at most 5 per job; split the work into several jobs",
        )
    ]


@pytest.mark.parametrize(
    "duplicate",
    ["acme/widget", "ACME/Widget", "github.com/acme/widget", "https://github.com/acme/widget.git"],
)
def test_duplicate_repositories_after_normalisation(duplicate: str) -> None:
    errors = errors_of(spec(repositories=["acme/widget", duplicate]))
    assert len(errors) == 1
    field, message = errors[0]
    assert field == "repositories[1]"
    assert "duplicate of 'github.com/acme/widget'" in message and "list it once" in message


def test_duplicate_local_repository_as_path_and_url(local_repo: Path) -> None:
    errors = errors_of(spec(repositories=[str(local_repo), f"file://{local_repo}/"]))
    assert [f for f, _ in errors] == ["repositories[1]"]
    assert "duplicate" in errors[0][1]


@pytest.mark.parametrize("repositories", [None, [], ""])
def test_no_repositories(repositories: Any) -> None:
    errors = errors_of(spec(repositories=repositories))
    assert errors == [
        ("repositories", "is required: list 1 to 5 repositories (owner/name)"),
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", "is required"),
        ("   ", "is required: it is blank"),
        ("n" * 101, "is 101 characters: shorten it to at most 100"),
        ("two\nlines", "must be one line with at least one letter or digit"),
        ("tab\there", "must be one line with at least one letter or digit"),
        ("bell\x07", "must be one line with at least one letter or digit"),
        ("!!! ---", "must be one line with at least one letter or digit"),
        (42, "must be a string, not int"),
    ],
)
def test_bad_names(name: Any, expected: str) -> None:
    errors = errors_of(spec(name=name))
    assert ("name", expected) in errors
    assert {f for f, _ in errors} == {"name"}


def test_missing_name() -> None:
    data = spec()
    del data["name"]
    assert errors_of(data) == [("name", "is required")]


@pytest.mark.parametrize("prompt", [None, "", "   \n  "])
def test_empty_prompt_without_steps(prompt: Any) -> None:
    errors = errors_of(spec(prompt=prompt))
    assert errors == [("prompt", "is required unless steps are given: say what to change")]


def test_over_long_prompt() -> None:
    errors = errors_of(spec(prompt="x" * (MAX_PROMPT + 1)))
    assert errors == [("prompt", "is 20,001 characters: shorten it to at most 20,000")]


@pytest.mark.parametrize("value", [5, 3.5, {"acme/widget": True}, True])
def test_repositories_of_the_wrong_type(value: Any) -> None:
    errors = errors_of(spec(repositories=value))
    assert errors == [("repositories", "must be a list of repositories (owner/name)")]


def test_repository_entries_of_the_wrong_type() -> None:
    errors = errors_of(spec(repositories=["acme/ok", 12, None]))
    assert errors == [
        ("repositories[1]", "must be a string, not int"),
        ("repositories[2]", "must be a string, not NoneType"),
    ]


@pytest.mark.parametrize("steps", [5, {"run": "make"}, True])
def test_steps_not_a_list(steps: Any) -> None:
    errors = errors_of(spec(steps=steps))
    assert ("steps", "must be a list of shell commands") in errors


def test_bad_step_entries_and_too_many_steps() -> None:
    assert errors_of(spec(steps=["echo ok", "", 3])) == [
        ("steps[1]", "must be a non-empty shell command"),
        ("steps[2]", "must be a non-empty shell command"),
    ]
    errors = errors_of(spec(steps=["true"] * 21))
    assert errors == [("steps", "has 21 commands: at most 20")]


@pytest.mark.parametrize("value", ["yes", 1, "on", [True]])
def test_create_pull_requests_not_a_boolean(value: Any) -> None:
    errors = errors_of(spec(create_pull_requests=value))
    assert errors == [("create_pull_requests", f"must be true or false, not {value!r}")]


def test_camel_case_alias_reports_errors_under_the_snake_case_field() -> None:
    errors = errors_of(spec(createPullRequests="yes"))
    assert errors == [("create_pull_requests", "must be true or false, not 'yes'")]


def test_field_given_twice_under_both_names() -> None:
    errors = errors_of(spec(create_pull_requests=True, createPullRequests=False))
    assert len(errors) == 1
    field, message = errors[0]
    assert field in ("create_pull_requests", "createPullRequests")
    assert "given twice" in message and "keep one" in message


@pytest.mark.parametrize("path", ["./repo", "../repo", "~/repo"])
def test_relative_path(path: str) -> None:
    errors = errors_of(spec(repositories=[path]))
    assert errors == [
        ("repositories[0]", f"{path!r} is a relative path: give an absolute path or a file:// URL")
    ]


@pytest.mark.parametrize("url", ["file://relative/repo", "file://home/me/repo"])
def test_file_url_without_absolute_path(url: str) -> None:
    # file://home/me/repo must not silently become /me/repo.
    errors = errors_of(spec(repositories=[url]))
    assert errors == [
        (
            "repositories[0]",
            f"{url!r} is not a file:// URL with an absolute path: write file:///abs/path",
        )
    ]


@pytest.mark.parametrize(
    ("raw", "hint"),
    [
        ("widget", "use owner/name"),
        ("a/b/c/d", "use owner/name"),
        ("acme/", "not a valid owner or repository name"),
        ("acme/wid get", "not a valid owner or repository name"),
        ("acme/..", "not a valid owner or repository name"),
        ("ssh://git@github.com/acme/widget", "only https URLs"),
        ("git@github.com:acme/widget.git", "not a valid owner or repository name"),
        ("nohost/acme/widget", "is not a host name"),
    ],
)
def test_malformed_repository(raw: str, hint: str) -> None:
    errors = errors_of(spec(repositories=[raw]))
    assert len(errors) == 1
    assert errors[0][0] == "repositories[0]"
    assert hint in errors[0][1]


def test_non_git_local_path(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    missing = tmp_path / "missing"
    errors = errors_of(spec(repositories=[str(plain), str(missing)]))
    assert errors == [
        ("repositories[0]", f"{plain} is not a git repository"),
        ("repositories[1]", f"{missing} is not a git repository"),
    ]


def test_local_repository_with_pull_requests(local_repo: Path) -> None:
    errors = errors_of(spec(repositories=[str(local_repo)], create_pull_requests=True))
    assert len(errors) == 1
    field, message = errors[0]
    assert field == "repositories[0]"
    assert "local repository" in message and "set create_pull_requests to false" in message


def test_unknown_field() -> None:
    errors = errors_of(spec(prompts="typo", priority=1))
    assert [f for f, _ in errors] == ["priority", "prompts"]
    assert all("is not a known field: use one of" in m and "prompt" in m for _, m in errors)


@pytest.mark.parametrize(
    "branch", ["two words", "a..b", "ends/", "/starts", "x~1", "a:b", "lock.", "a@{1}", "a//b"]
)
def test_bad_base_branch(branch: str) -> None:
    errors = errors_of(spec(base_branch=branch))
    assert errors == [("base_branch", f"{branch!r} is not a valid git branch name")]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_turns", 0, "is 0: choose a value between 1 and 500"),
        ("max_turns", 501, "is 501: choose a value between 1 and 500"),
        ("max_turns", 2.5, "must be a whole number"),
        ("max_usd", 0, "is 0: choose a value between 0.01 and 500.0"),
        ("max_usd", 1000, "is 1000: choose a value between 0.01 and 500.0"),
        ("max_tokens", 10, "is 10: choose a value between 1000 and 50000000"),
        ("max_minutes", 0.5, "is 0.5: choose a value between 1.0 and 1440.0"),
        ("max_minutes", "ten", "must be a number between 1.0 and 1440.0"),
        ("max_turns", True, "must be a number between 1 and 500"),
        ("maxUsd", -1, "is -1: choose a value between 0.01 and 500.0"),
    ],
)
def test_limits_out_of_range(field: str, value: Any, message: str) -> None:
    target = {"maxUsd": "max_usd"}.get(field, field)
    assert errors_of(spec(**{field: value})) == [(target, message)]


@pytest.mark.parametrize(
    ("field", "value"), [("description", 5), ("prompt", ["a"]), ("verify", 1), ("model", 2)]
)
def test_text_fields_of_the_wrong_type(field: str, value: Any) -> None:
    assert (field, f"must be a string, not {type(value).__name__}") in errors_of(
        spec(**{field: value})
    )


@pytest.mark.parametrize("data", [None, ["acme/widget"], "name: x", 3])
def test_spec_not_an_object(data: Any) -> None:
    assert errors_of(data) == [("spec", "must be an object of fields (name, prompt, ...)")]


def test_all_errors_of_a_spec_are_reported_together(tmp_path: Path) -> None:
    settings = Settings(allowed_repositories=("github.com/acme/*",))
    data = {
        "name": "   ",
        "prompt": "",
        "repositories": ["acme/a", "ACME/A", "evil/x", "./rel", *[f"acme/r{i}" for i in range(4)]],
        "create_pull_requests": "yes",
        "steps": 5,
        "base_branch": "a b",
        "max_turns": 0,
        "colour": "blue",
    }
    with pytest.raises(SpecError) as info:
        JobSpec.parse(data, settings)
    fields = [e.field for e in info.value.errors]
    for expected in (
        "colour",
        "name",
        "steps",
        "prompt",
        "base_branch",
        "create_pull_requests",
        "repositories",
        "repositories[1]",
        "repositories[2]",
        "repositories[3]",
        "max_turns",
    ):
        assert expected in fields, expected
    text = str(info.value)
    assert text.startswith("invalid job spec:")
    for e in info.value.errors:
        assert f"  - {e.field}: {e.message}" in text
    assert info.value.as_dict()[0] == {
        "field": info.value.errors[0].field,
        "message": info.value.errors[0].message,
    }


def test_spec_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="repositories"):
        JobSpec.parse(spec(repositories=[]), OPEN)


# strict text, branches, URLs, numbers, the local default, the README


def test_the_readme_field_table_is_the_model() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert field_table() in readme, "README.md: paste codybatch.spec.field_table() as the table"


@pytest.mark.parametrize(
    ("name", "char"),
    [
        ("invoice\u202efdp.exe", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ("re\u200bname", "U+200B (ZERO WIDTH SPACE)"),
        ("one\u2028two", "U+2028 (LINE SEPARATOR)"),
        ("one\x85two", "U+0085 (NEXT LINE)"),
    ],
)
def test_names_are_one_line_of_visible_text(name: str, char: str) -> None:
    assert errors_of(spec(name=name)) == [
        ("name", f"contains {char}, a control or invisible character: remove it")
    ]


def test_a_lone_surrogate_is_refused_by_name() -> None:
    [(field, message)] = errors_of(spec(description="why \udcff"))
    assert field == "description" and "U+DCFF" in message and "valid UTF-8" in message


def test_prompts_keep_newlines_and_tabs_but_no_other_control() -> None:
    assert JobSpec.parse(spec(prompt="line one\n\tline two\r\n"), OPEN).prompt.count("\n") == 2
    assert errors_of(spec(prompt="a\x00b"))[0][1].startswith("contains U+0000 (NUL)")
    assert errors_of(spec(model="claude\r\nX: 1"))[0][0] == "model"


@pytest.mark.parametrize("branch", ["-upload-pack=x", "feature.lock", "x/.hidden", "@"])
def test_branches_follow_check_ref_format(branch: str) -> None:
    [(field, message)] = errors_of(spec(base_branch=branch))
    assert field == "base_branch" and repr(branch) in message


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_numbers_are_finite(value: float) -> None:
    [(field, message)] = errors_of(spec(max_usd=value))
    assert field == "max_usd"
    assert message.endswith("not a finite number: choose a value between 0.01 and 500.0")


@pytest.mark.parametrize(
    "url", ["https://bot:s3cr3t@github.com/acme/x", "https://s3cr3t@github.com/acme/x"]
)
def test_credentials_in_a_url_are_refused_without_echo(url: str) -> None:
    [(field, message)] = errors_of(spec(repositories=[url]))
    assert field == "repositories[0]" and "s3cr3t" not in message
    assert "user name or password" in message


def test_strings_are_never_split() -> None:
    assert errors_of(spec(repositories="acme/a,acme/b")) == [
        (
            "repositories",
            "must be a list of repositories, one entry each (one per line in a form), "
            'e.g. ["acme/billing", "acme/web"]',
        )
    ]
    assert errors_of(spec(repositories=["acme/a, acme/b"]))[0][0] == "repositories[0]"
    assert errors_of(spec(steps="echo one\necho two"))[0][0] == "steps"


def test_local_repositories_default_to_the_local_root(tmp_path: Path) -> None:
    inside = make_repo(tmp_path / "examples" / "svc", {"a": "1"})
    outside = make_repo(tmp_path / "elsewhere", {"a": "1"})
    settings = Settings(home=tmp_path)
    JobSpec.parse(spec(repositories=[str(inside)]), settings, user_input=True)
    for path in (str(outside), "/proc/self/cwd", sys.prefix):
        found = errors_of_input(spec(repositories=[path]), settings)
        assert {f for f, _ in found} == {"repositories[0]"}
        assert any("is outside CODYBATCH_LOCAL_ROOT" in m for _, m in found), found
    allowed = Settings(home=tmp_path, allowed_repositories=(f"{tmp_path}/*",))
    JobSpec.parse(spec(repositories=[str(outside)]), allowed, user_input=True)
    assert repository_allowed(parse_repository(str(inside)), settings)
    assert not repository_allowed(parse_repository(str(outside)), settings)
    assert repository_allowed(parse_repository("acme/x"), settings)


def errors_of_input(data: Any, settings: Settings) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        JobSpec.parse(data, settings, user_input=True)
    return [(e.field, e.message) for e in info.value.errors]


def test_the_trigger_form_params_come_from_the_model() -> None:
    import re

    schemas = param_schemas(Settings.from_env({}))
    assert set(schemas) == set(JobSpec.model_fields) - {"campaign", "rendered_prompt", "guidance"}
    assert schemas["repositories"]["maxItems"] == 5 and schemas["repositories"]["minItems"] == 1
    assert schemas["max_turns"]["type"] == ["null", "integer"]  # optional: not required
    assert schemas["create_pull_requests"]["type"] == ["null", "boolean"]  # a switch, no '*'
    assert schemas["effort"]["enum"] == [None, "low", "medium", "high", "xhigh", "max"]
    name = re.compile(schemas["name"]["pattern"])
    assert name.search("Rename foo") and not name.search("a\u202eb") and not name.search("\udcff")
