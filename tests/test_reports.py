"""CSV exports and the campaign burndown."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path

from codybatch.cli import main
from codybatch.records import Job, RepositoryResult, RepositoryStatus, Usage, utcnow
from codybatch.reports import burndown, jobs_csv, results_csv
from codybatch.store.local import LocalStore


def _job(store: LocalStore, job_id: str, campaign: str | None, states: list[tuple], age: int):
    repos = [f"github.com/acme/r{i}" for i in range(len(states))]
    created = utcnow() - timedelta(hours=age)
    spec = {"name": "n", "repositories": repos, "campaign": campaign}
    store.create_job(Job(job_id=job_id, spec=spec, created_at=created))
    for repo, (changed, pr_state, status) in zip(repos, states, strict=True):
        r = store.get_result(job_id, repo)
        r.were_changes_necessary, r.pr_state, r.status = changed, pr_state, status
        r.usage = Usage(input_tokens=10, output_tokens=5, usd=0.25)
        store.save_result(r)


def test_results_csv_has_one_row_per_repository_and_neutralises_formulas(tmp_path: Path) -> None:
    job = Job(job_id="job-1", spec={"name": "csv", "repositories": ["a/b"]})
    result = RepositoryResult(
        job_id="job-1",
        repository="github.com/a/b",
        status=RepositoryStatus.COMPLETED,
        summary='=HYPERLINK("http://evil")',
        usage=Usage(input_tokens=7, usd=0.5),
    )
    rows = list(csv.DictReader(io.StringIO(results_csv(job, [result]))))

    assert len(rows) == 1
    assert rows[0]["repository"] == "github.com/a/b"
    assert rows[0]["input_tokens"] == "7" and rows[0]["usd"] == "0.5"
    assert rows[0]["summary"].startswith("'=")


def test_burndown_follows_campaign_runs(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    done, failed = RepositoryStatus.COMPLETED, RepositoryStatus.FAILED
    _job(
        store,
        "job-a",
        "weekly",
        [(True, "open", done), (True, "open", done), (False, None, done)],
        48,
    )
    _job(
        store,
        "job-b",
        "weekly",
        [(True, "merged", done), (True, "open", done), (False, None, done)],
        24,
    )
    _job(store, "job-c", None, [(True, "open", failed)], 1)

    points = burndown(store, "weekly")

    assert [p["job_id"] for p in points] == ["job-a", "job-b"]
    assert [(p["needing_change"], p["prs_open"], p["prs_merged"]) for p in points] == [
        (2, 2, 0),
        (1, 1, 1),
    ]
    rows = list(csv.DictReader(io.StringIO(jobs_csv(store, store.list_jobs()))))
    assert [r["job_id"] for r in rows] == ["job-c", "job-b", "job-a"]
    assert rows[0]["failed"] == "1" and rows[2]["changed"] == "2"


def test_cli_csv(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CODYBATCH_HOME", str(tmp_path))
    store = LocalStore(tmp_path)
    _job(store, "job-a", None, [(True, "open", RepositoryStatus.COMPLETED)], 1)

    assert main(["show", "job-a", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["pr_state"] == "open" and rows[0]["status"] == "COMPLETED"
    assert main(["jobs", "--csv"]) == 0
    assert "job-a" in capsys.readouterr().out
