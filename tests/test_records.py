"""records: usage arithmetic, round-trips through dicts, job status from results, job ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from codybatch.records import (
    RETENTION,
    CommandRun,
    Job,
    JobStatus,
    Phase,
    Progress,
    Publishing,
    RepositoryResult,
    RepositoryStatus,
    Usage,
    expiry,
    job_id_for_run,
    job_status_from_results,
    utcnow,
)

T0 = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)


def test_usage_adds_up_and_totals() -> None:
    total = Usage(1, 2, 3, 4, 0.1) + Usage(10, 20, 30, 40, 0.2)
    assert total == Usage(11, 22, 33, 44, 0.3)
    assert total.total_tokens == 110
    assert Usage() + Usage() == Usage()


def test_usage_round_trips_and_tolerates_missing_fields() -> None:
    usage = Usage(1, 2, 3, 4, 0.5)
    assert Usage.from_dict(json.loads(json.dumps(usage.to_dict()))) == usage
    assert Usage.from_dict(None) == Usage()
    assert Usage.from_dict({"input_tokens": "7", "usd": "0.25"}) == Usage(7, 0, 0, 0, 0.25)


def test_job_round_trips_through_json() -> None:
    job = Job(
        job_id="job-1",
        spec={"name": "n", "repositories": ["github.com/a/b"]},
        status=JobStatus.RUNNING,
        created_at=T0,
        updated_at=T0,
        dag_id="codybatch_job",
        run_id="manual__x",
        usage=Usage(1, 2, 3, 4, 0.5),
        error="boom",
    )
    data = json.loads(json.dumps(job.to_dict()))
    assert data["status"] == "RUNNING" and data["created_at"] == T0.isoformat()
    assert Job.from_dict(data) == job
    assert job.name == "n" and job.repositories == ["github.com/a/b"]


def test_result_round_trips_through_json() -> None:
    result = RepositoryResult(
        job_id="job-1",
        repository="github.com/a/b",
        status=RepositoryStatus.COMPLETED,
        were_changes_necessary=True,
        summary="did it",
        pr_url="https://github.com/a/b/pull/3",
        pr_number=3,
        usage=Usage(5, 6, 0, 0, 0.01),
        has_patch=True,
        steps=[CommandRun("true", exit_code=0)],
        publishing=Publishing("opened", number=3),
        progress=Progress(Phase.DONE, turn=2, updated_at=T0),
        attempts=2,
        created_at=T0,
        updated_at=T0,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=5),
        revision=4,
    )
    data = json.loads(json.dumps(result.to_dict()))
    assert RepositoryResult.from_dict(data) == result
    assert result.finished


def test_a_record_from_before_the_typed_parts_still_reads() -> None:
    old = {
        "job_id": "j",
        "repository": "r",
        "status": "FAILED",
        "details": {
            "steps": [{"command": "make", "exit_code": 2, "output": "x", "seconds": 1.5}],
            "agent": {"stop_reason": "finished", "changes_claimed": True, "turns": 4, "x": 1},
            "verify": {"command": "pytest", "passed": True, "rounds": 1, "exit_code": 0},
            "pull_request": {"action": "failed", "reason": "no token"},
            "tracking": {"state": "open", "refreshed_at": "2030-01-01T00:00:00+00:00"},
            "base_branch": "main",
            "changed_files": ["a.py"],
            "disagreement": "Claude said changes_necessary=True, the diff says False",
            "publish_failed": True,
        },
    }
    result = RepositoryResult.from_dict(old)
    assert result.steps == [CommandRun("make", exit_code=2, output="x", seconds=1.5)]
    assert result.agent is not None and (result.agent.turns, result.agent.limit) == (4, None)
    assert result.verify is not None and result.verify.passed
    assert result.publishing == Publishing("failed", "no token")
    assert result.tracking is not None
    assert result.tracking.refreshed_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert (result.base_branch, result.changed_files) == ("main", ["a.py"])
    assert result.warnings == [old["details"]["disagreement"]]
    assert result.failed_phase == Phase.PUBLISHING
    assert "details" not in result.to_dict()


def test_result_from_a_sparse_dict() -> None:
    result = RepositoryResult.from_dict(
        {
            "job_id": "j",
            "repository": "r",
            "pr_number": "12",
            "revision": "3",
            "started_at": "2030-01-01T00:00:00",
        }
    )
    assert result.status == RepositoryStatus.PENDING and not result.finished
    assert result.pr_number == 12 and result.revision == 3
    assert result.started_at == datetime(2030, 1, 1, tzinfo=UTC)


def test_new_records_expire_thirty_days_ahead() -> None:
    assert timedelta(days=30) == RETENTION
    assert expiry(T0) == T0 + timedelta(days=30)
    now = utcnow()
    assert now.tzinfo is not None and now.microsecond == 0
    job = Job(job_id="j", spec={})
    assert job.expires_at - job.created_at == RETENTION


S = RepositoryStatus


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([S.COMPLETED, S.COMPLETED], JobStatus.COMPLETED),
        ([S.COMPLETED, S.SKIPPED], JobStatus.COMPLETED),
        ([S.COMPLETED, S.FAILED], JobStatus.PARTIAL),
        ([S.SKIPPED, S.FAILED, S.FAILED], JobStatus.PARTIAL),
        ([S.COMPLETED, S.CANCELLED], JobStatus.PARTIAL),
        ([S.FAILED, S.FAILED], JobStatus.FAILED),
        ([S.CANCELLED, S.CANCELLED], JobStatus.CANCELLED),
        ([S.FAILED, S.CANCELLED], JobStatus.CANCELLED),
        ([], JobStatus.FAILED),
    ],
)
def test_job_status_from_results(statuses: list[RepositoryStatus], expected: JobStatus) -> None:
    results = [RepositoryResult("j", f"r{i}", status=s) for i, s in enumerate(statuses)]
    assert job_status_from_results(results) == expected


def test_job_id_for_run_is_stable_and_distinct() -> None:
    first = job_id_for_run("codybatch_job", "manual__2030-01-01")
    assert first == job_id_for_run("codybatch_job", "manual__2030-01-01")
    assert first != job_id_for_run("codybatch_job", "manual__2030-01-02")
    assert first != job_id_for_run("other_dag", "manual__2030-01-01")
    assert first.startswith("job-") and len(first) == 20
