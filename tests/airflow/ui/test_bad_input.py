"""One answer per bad input: the same bad job through every entry point gets the same field errors.

Entry points: the job model's parse, the CLI (`codybatch run`), a campaign file, the plugin's
API (`POST /codybatch/api/v1/jobs`), the New job form, and Airflow's own REST trigger (the
trigger form posts there): Airflow refuses what the Params' JSON schema can say (400 naming the
param); what needs the whole job it accepts, and the DAG's validate check refuses with the
same errors as everywhere else.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from codybatch.settings import Settings
from tests.airflow.ui.seed import csrf_of
from tests.helpers import make_repo

pytestmark = pytest.mark.airflow

SECRET = "hunter2-secret"
MISSING = object()  # the field is removed from the base job


@dataclass(frozen=True)
class Case:
    id: str
    fields: dict[str, Any]
    field: str  # the field every entry point names (entries as repositories[0])
    airflow_refuses: bool = False  # Airflow's schema refuses it at trigger time (400)
    form: bool = True  # the New job form can express it
    # A campaign file has its own repository rules (any number of targets, or a selector).
    campaign: bool = True
    hidden: tuple[str, ...] = ()  # text no answer may echo
    extra: dict[str, Any] = field(default_factory=dict)


CASES = [
    # A browser's form cannot send a lone surrogate (it encodes UTF-8): JSON entry points only.
    Case("name lone surrogate", {"name": "a \udcff b"}, "name", True, form=False),
    Case("name right-to-left override", {"name": "invoice\u202efdp.exe"}, "name", True),
    Case("name zero-width space", {"name": "re\u200bname"}, "name", True),
    Case("name line separator", {"name": "one\u2028two"}, "name", True),
    Case("name next line U+0085", {"name": "one\x85two"}, "name", True),
    Case("name newline", {"name": "two\nlines"}, "name", True),
    Case("name 300 characters", {"name": "n" * 300}, "name", True),
    Case("name missing", {"name": MISSING}, "name", True),
    Case("name a number", {"name": 42}, "name", True, form=False),
    Case("model CR LF", {"model": "claude\r\nX-Injected: 1"}, "model", True),
    Case("model zero-width joiner", {"model": "claude\u200d"}, "model", True),
    Case("base_branch leading dash", {"base_branch": "-upload-pack=evil"}, "base_branch"),
    Case("base_branch dot dot", {"base_branch": "a..b"}, "base_branch"),
    Case("base_branch .lock", {"base_branch": "feature.lock"}, "base_branch"),
    Case("base_branch hidden part", {"base_branch": "x/.hidden"}, "base_branch"),
    Case("base_branch space", {"base_branch": "two words"}, "base_branch"),
    Case("max_turns 1e999", {"max_turns": float("inf")}, "max_turns", True),
    Case("max_usd NaN", {"max_usd": float("nan")}, "max_usd", True),
    Case("max_minutes -Infinity", {"max_minutes": float("-inf")}, "max_minutes", True),
    Case("max_turns 0", {"max_turns": 0}, "max_turns", True),
    Case("max_turns 2.5", {"max_turns": 2.5}, "max_turns", True),
    Case("max_tokens text", {"max_tokens": "ten"}, "max_tokens", True),
    Case(
        "repositories one comma string",
        {"repositories": "acme/a,acme/b"},
        "repositories",
        True,
        form=False,
        campaign=False,  # a campaign file may list its targets in one string
    ),
    Case(
        "repositories six",
        {"repositories": [f"acme/r{i}" for i in range(6)]},
        "repositories",
        True,
        campaign=False,
    ),
    Case(
        "repositories none", {"repositories": []}, "repositories", True, form=False, campaign=False
    ),
    Case("repository with commas", {"repositories": ["acme/a,acme/b"]}, "repositories[0]"),
    Case(
        "repository URL with password",
        {"repositories": [f"https://bot:{SECRET}@github.com/acme/x"]},
        "repositories[0]",
        hidden=(SECRET,),
    ),
    Case(
        "repository URL with token",
        {"repositories": [f"https://ghp_{SECRET}@github.com/acme/x"]},
        "repositories[0]",
        hidden=(SECRET,),
    ),
    Case("repository relative path", {"repositories": ["./repo"]}, "repositories[0]"),
    Case(
        "repository outside the local root", {"repositories": ["/proc/self/cwd"]}, "repositories[0]"
    ),
    Case("repository not a repository", {"repositories": ["widget"]}, "repositories[0]"),
    Case(
        "repositories duplicate", {"repositories": ["@LOCAL@", "file://@LOCAL@"]}, "repositories[1]"
    ),
    Case("no prompt and no steps", {"steps": MISSING}, "prompt"),
    Case("prompt NUL", {"prompt": "fix\x00it"}, "prompt", True),
    Case("prompt right-to-left override", {"prompt": "fix \u202e it"}, "prompt", True),
    Case("prompt too long", {"prompt": "x" * 20_001}, "prompt", True),
    Case("description lone surrogate", {"description": "why \ud800"}, "description", True, False),
    Case(
        "create_pull_requests yes",
        {"create_pull_requests": "yes"},
        "create_pull_requests",
        True,
        form=False,
    ),
    Case("steps an empty command", {"steps": ["echo ok", ""]}, "steps[1]", form=False),
    Case("steps 21", {"steps": ["true"] * 21}, "steps", True),
    Case("steps bidi override", {"steps": ["echo \u202e"]}, "steps[0]", True),
    Case("verify NUL", {"verify": "make\x00 test"}, "verify", True),
    Case("effort unknown", {"effort": "extreme"}, "effort", True, form=False),
    Case("merge unknown", {"merge": "sometimes"}, "merge", True, form=False),
    Case("type unknown", {"type": "no-such-type"}, "type", True, form=False),
    Case("variables not text", {"variables": {"old": 1}}, "variables", True, form=False),
    Case("unknown field", {"colour": "blue"}, "colour", form=False),
    Case("campaign from a user", {"campaign": "sneaky"}, "campaign", form=False),
]

Answer = list[tuple[str, str]]


@pytest.fixture
def local_repo(codybatch_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository under the local root (CODYBATCH_HOME/examples, the default), so the default
    allows it; the checkout running the tests (/proc/self/cwd) is outside it wherever it is."""
    monkeypatch.delenv("CODYBATCH_LOCAL_ROOT", raising=False)
    return make_repo(codybatch_home / "examples" / "svc", {"a.txt": "a\n"})


def job_of(case: Case, local_repo: Path) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Table job",
        "steps": ["true"],
        "repositories": [str(local_repo)],
    }
    for key, value in case.fields.items():
        if value is MISSING:
            data.pop(key, None)
        else:
            data[key] = value
    if isinstance(data.get("repositories"), list):
        data["repositories"] = [
            r.replace("@LOCAL@", str(local_repo)) if isinstance(r, str) else r
            for r in data["repositories"]
        ]
    return data


def _lines(text: str) -> Answer:
    """`  - field: message` lines of a SpecError (CLI) or CampaignError text."""
    found = []
    for line in text.splitlines():
        if line.startswith("  - "):
            name, _, message = line[4:].partition(": ")
            found.append((name, message))
    return found


def via_parse(data: dict[str, Any]) -> Answer:
    from codybatch.settings import Settings
    from codybatch.spec import JobSpec, SpecError

    with pytest.raises(SpecError) as info:
        JobSpec.parse(data, Settings.from_env(), user_input=True)
    return [(e.field, e.message) for e in info.value.errors]


def via_cli(data: dict[str, Any], folder: Path, capsys: pytest.CaptureFixture[str]) -> Answer:
    from codybatch.cli import main

    path = folder / "job.json"
    path.write_text(json.dumps(data))  # json escapes surrogates and writes Infinity/NaN
    assert main(["run", str(path)]) == 2
    return _lines(capsys.readouterr().err)


def via_campaign(data: dict[str, Any], folder: Path) -> Answer:
    from codybatch.airflow.campaigns import CampaignError, load_campaign

    path = folder / "table-case.yaml"
    path.write_text(yaml.safe_dump({"schedule": "@daily", **data}, allow_unicode=False))
    with pytest.raises(CampaignError) as info:
        load_campaign(path, Settings.from_env())
    return _lines(str(info.value))


def via_api(admin: Any, data: dict[str, Any]) -> tuple[Answer, str]:
    response = admin.post(
        "/codybatch/api/v1/jobs",
        content=json.dumps(data),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    return [(e["field"], e["message"]) for e in response.json()["errors"]], response.text


def _form_value(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return str(value)


def via_form(ui: Any, data: dict[str, Any]) -> tuple[Answer, str]:
    form = {"csrf_token": csrf_of(ui)}
    for key, value in data.items():
        form["more_repositories" if key == "repositories" else key] = _form_value(value)
    response = ui.post("/codybatch/jobs/new", data=form)
    assert response.status_code == 400, response.text[:2000]
    items = re.findall(r"<li><code>(.*?)</code>: (.*?)</li>", response.text)
    return [(html.unescape(f), html.unescape(m)) for f, m in items], response.text


def via_airflow(admin: Any, data: dict[str, Any], refuses: bool) -> tuple[Answer | None, str]:
    """Airflow's REST trigger: a 400 naming the param, or an accepted run whose validate check
    gives the errors (None when Airflow refused)."""
    from codybatch.airflow.dag import JOB_DAG_ID, check_conf

    body = json.dumps({"logical_date": None, "conf": data})
    response = admin.post(
        f"/api/v2/dags/{JOB_DAG_ID}/dagRuns",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    if refuses:
        assert response.status_code == 400, response.text
        return None, response.text
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    admin.delete(f"/api/v2/dags/{JOB_DAG_ID}/dagRuns/{run_id}")  # no scheduler runs it here
    from codybatch.spec import SpecError

    with pytest.raises(SpecError) as info:
        check_conf(job_dag_params(), data, JOB_DAG_ID, Settings.from_env())
    return [(e.field, e.message) for e in info.value.errors], response.text


def job_dag_params() -> dict[str, Any]:
    from codybatch.airflow.params import job_params

    return {name: param.value for name, param in job_params(Settings.from_env()).items()}


@pytest.fixture
def ui(client, tokens):
    client.cookies.set("_token", tokens["admin"])
    return client


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_one_answer_per_bad_input(
    case: Case,
    local_repo: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    admin,
    tokens,
    store,
) -> None:
    data = job_of(case, local_repo)
    expected = via_parse(data)
    assert case.field in [f for f, _ in expected], expected
    texts = [json.dumps(expected)]

    assert via_cli(data, tmp_path, capsys) == expected
    if case.campaign:
        assert via_campaign(data, tmp_path) == expected
    answer, text = via_api(admin, data)
    assert answer == expected
    texts.append(text)
    if case.form:
        admin.cookies.set("_token", tokens["admin"])
        answer, text = via_form(admin, data)
        admin.cookies.clear()
        assert answer == expected
        texts.append(text)
    answer, text = via_airflow(admin, data, case.airflow_refuses)
    if answer is None:
        base = case.field.split("[")[0]
        assert f"param {base}" in text  # Airflow names the param
        texts.append(text)
    else:  # accepted (Airflow shows the run its conf): validate refuses with the same errors
        assert answer == expected
    assert store.list_jobs() == []  # nothing was registered anywhere
    for secret in case.hidden:
        assert not any(secret in t for t in texts)
