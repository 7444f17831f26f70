"""CSV exports and the campaign burndown."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path

from codybatch.cli import main
from codybatch.records import Job, RepositoryResult, RepositoryStatus, Usage, utcnow
from codybatch.reports import (
    burndown,
    campaign_jobs,
    jobs_csv,
    jobs_csv_of,
    result_counts,
    results_csv,
)
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

    runs = [(j, store.list_results(j.job_id)) for j in campaign_jobs(store, "weekly")]
    points = burndown(runs)

    assert [p["job_id"] for p in points] == ["job-a", "job-b"]
    assert [(p["needing_change"], p["prs_open"], p["prs_merged"]) for p in points] == [
        (2, 2, 0),
        (1, 1, 1),
    ]
    assert [(p["repositories"], p["done"]) for p in points] == [(3, 1), (3, 1)]
    text = jobs_csv(store, store.list_jobs())
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["job_id"] for r in rows] == ["job-c", "job-b", "job-a"]
    assert rows[0]["failed"] == "1" and rows[2]["changed"] == "2"
    # The same rows from results already read (what the API's export does).
    assert jobs_csv_of((j, store.list_results(j.job_id)) for j in store.list_jobs()) == text


def test_result_counts() -> None:
    def result(status, changed=None, pr_state=None) -> RepositoryResult:
        pr_url = "https://github.com/a/b/pull/1" if pr_state else None
        return RepositoryResult(
            job_id="j",
            repository="github.com/a/b",
            status=status,
            were_changes_necessary=changed,
            pr_url=pr_url,
            pr_state=pr_state,
        )

    done, failed = RepositoryStatus.COMPLETED, RepositoryStatus.FAILED
    results = [
        result(done, True, "open"),
        result(done, True, "merged"),
        result(done, False),
        result(failed),
        result(RepositoryStatus.RUNNING),
    ]

    assert result_counts(results) == {
        "total": 5,
        "finished": 4,
        "changed": 2,
        "failed": 1,
        "pull_requests": 2,
        "prs_open": 1,
        "prs_merged": 1,
        "prs_closed": 0,
    }


def test_cli_csv(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CODYBATCH_HOME", str(tmp_path))
    store = LocalStore(tmp_path)
    _job(store, "job-a", None, [(True, "open", RepositoryStatus.COMPLETED)], 1)

    assert main(["show", "job-a", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["pr_state"] == "open" and rows[0]["status"] == "COMPLETED"
    assert main(["jobs", "--csv"]) == 0
    assert "job-a" in capsys.readouterr().out
