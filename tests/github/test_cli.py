"""`codybatch repositories` and `codybatch publish` against the fake GitHub."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from codybatch import cli
from codybatch.github import branch_name
from tests.fakes.github_server import FakeGitHub
from tests.github.conftest import NEW, SPEC
from tests.github.test_worker_publish import REPLACE


def write_spec(tmp_path: Path, repos: list[str], create_pull_requests: bool) -> str:
    conf = {**SPEC, "repositories": repos, "steps": [REPLACE]}
    conf.pop("prompt")
    conf["create_pull_requests"] = create_pull_requests
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(conf))
    return str(path)


def test_repositories_lists_what_the_token_sees_within_the_allowlist(
    fake_github: FakeGitHub,
    codybatch_home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("acme/api", "acme/web", "other/tool"):
        fake_github.create_repo(name)
    host = fake_github.url.removeprefix("http://")
    assert cli.main(["repositories"]) == 0
    assert capsys.readouterr().out.split() == [
        f"{host}/{n}" for n in ("acme/api", "acme/web", "other/tool")
    ]
    monkeypatch.setenv("CODYBATCH_ALLOWED_REPOSITORIES", "*/acme/*")
    assert cli.main(["repositories", "--json"]) == 0
    assert '"' + f"{host}/acme/web" + '"' in capsys.readouterr().out
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_wrong_token_value")
    assert cli.main(["repositories"]) == 1
    err = capsys.readouterr().err
    assert "token was rejected" in err and "ghp_wrong_token_value" not in err


def test_publish_opens_pull_requests_for_a_job_run_without_them(
    fake_github: FakeGitHub,
    codybatch_home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_github.create_repo(
        "acme/api", {"app.py": "from lib import oldFunction\n\noldFunction(1)\n"}
    )
    fake_github.create_repo("acme/docs", {"index.md": "# docs\n"})
    spec = write_spec(tmp_path, ["acme/api", "acme/docs"], create_pull_requests=False)
    assert cli.main(["run", spec, "--job-id", "job-cli"]) == 0
    assert fake_github.pulls("acme/api") == []
    capsys.readouterr()

    assert cli.main(["publish", "job-cli"]) == 0
    out = capsys.readouterr().out
    assert len(fake_github.pulls("acme/api")) == 1
    assert f"github.com/acme/api: opened  {fake_github.pull_url('acme/api', 1)}" in out
    assert "github.com/acme/docs: none" in out
    assert fake_github.file_at("acme/api", branch_name(SPEC["name"]), "app.py") == NEW

    assert cli.main(["publish", "job-cli", "acme/api"]) == 0
    assert "github.com/acme/api: unchanged" in capsys.readouterr().out
    assert len(fake_github.pulls("acme/api")) == 1
    assert cli.main(["publish", "job-nope"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_run_with_pull_requests_in_parallel_opens_one_each(
    fake_github: FakeGitHub,
    codybatch_home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = ["acme/a", "acme/b", "acme/c"]
    for name in names:
        fake_github.create_repo(name, {"m.py": "oldFunction()\n"})
    spec = write_spec(tmp_path, names, create_pull_requests=True)
    assert cli.main(["run", spec, "--parallel", "3"]) == 0
    assert [len(fake_github.pulls(n)) for n in names] == [1, 1, 1]
    assert len(fake_github.api_requests("POST", r"/pulls$")) == 3
