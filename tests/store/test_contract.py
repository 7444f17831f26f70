"""One contract for every store: each test runs on the local and on the AWS store."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from codybatch.records import (
    AgentSession,
    ApprovalPart,
    CommandRun,
    FixRound,
    Job,
    JobStatus,
    MergeAttempt,
    MergePart,
    Phase,
    Progress,
    Publishing,
    RepositoryResult,
    RepositoryStatus,
    Tracking,
    Usage,
    Verification,
    expiry,
    job_id_for_run,
)
from codybatch.store import JobCursor, NotFoundError, StaleWriteError, Store

REPOSITORIES = ["github.com/acme/zeta", "github.com/acme/alpha", "github.com/acme/mid"]
T0 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def make_job(job_id: str = "job-1", created_at: datetime = T0, **spec: object) -> Job:
    spec = {
        "name": "Rename the thing",
        "prompt": "Rename foo to bar ✓",
        "repositories": REPOSITORIES,
        "max_usd": 2.5,
        "create_pull_requests": False,
        "steps": [{"run": "make test"}],
    } | spec
    return Job(
        job_id=job_id,
        spec=spec,
        created_at=created_at,
        updated_at=created_at,
        expires_at=expiry(created_at),
    )


# jobs


def test_create_and_get_job_round_trips(store: Store) -> None:
    job = make_job(dag_id="codybatch_job")
    job.run_id = "manual__1"
    job.usage = Usage(10, 20, 30, 40, 0.125)
    assert store.create_job(job) == job
    assert store.get_job(job.job_id) == job


def test_create_job_writes_a_pending_result_per_repository_in_order(store: Store) -> None:
    job = store.create_job(make_job())
    results = store.list_results(job.job_id)
    assert [r.repository for r in results] == REPOSITORIES
    assert {r.status for r in results} == {RepositoryStatus.PENDING}
    assert {r.revision for r in results} == {0}
    assert all(r.expires_at == job.expires_at for r in results)


def test_create_job_is_idempotent(store: Store) -> None:
    first = store.create_job(make_job())
    result = store.get_result(first.job_id, REPOSITORIES[0])
    result.status = RepositoryStatus.RUNNING
    store.save_result(result)

    again = store.create_job(make_job(prompt="something else"))

    assert again == first
    assert store.get_job(first.job_id).spec["prompt"] == first.spec["prompt"]
    stored = store.get_result(first.job_id, REPOSITORIES[0])
    assert (stored.status, stored.revision) == (RepositoryStatus.RUNNING, 1)
    assert len(store.list_results(first.job_id)) == len(REPOSITORIES)


def test_unknown_things_are_none(store: Store) -> None:
    store.create_job(make_job())
    assert store.get_job("job-missing") is None
    assert store.get_result("job-missing", REPOSITORIES[0]) is None
    assert store.get_result("job-1", "github.com/acme/other") is None
    assert store.get_patch("job-1", REPOSITORIES[0]) is None
    assert store.get_thread("job-1", REPOSITORIES[0]) is None
    assert store.list_results("job-missing") == []


def test_update_job_sets_fields_and_bumps_updated_at(store: Store) -> None:
    job = store.create_job(make_job(created_at=T0 - timedelta(days=1)))
    job = store.update_job(job.job_id, error="boom", dag_id="codybatch_job")

    updated = store.update_job(job.job_id, status=JobStatus.RUNNING, usage={"input_tokens": 7})
    assert updated.status == JobStatus.RUNNING
    assert updated.usage == Usage(input_tokens=7)
    assert (updated.error, updated.dag_id) == ("boom", "codybatch_job")
    assert updated.updated_at > job.created_at
    assert store.get_job(job.job_id) == updated

    cleared = store.update_job(job.job_id, status="COMPLETED", error=None, usage=Usage(usd=0.5))
    assert cleared == store.get_job(job.job_id)
    assert (cleared.status, cleared.error, cleared.usage.usd) == (JobStatus.COMPLETED, None, 0.5)


def test_update_job_refuses_unknown_jobs_and_fields(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.update_job("job-missing", status=JobStatus.RUNNING)
    store.create_job(make_job())
    with pytest.raises(AttributeError):
        store.update_job("job-1", colour="blue")


def test_list_jobs_newest_first_with_status_filter_and_pages(store: Store) -> None:
    jobs = []
    for i in range(7):
        # Jobs 2, 3 and 4 share a creation second: ties sort by job id, newest id first.
        created = T0 + timedelta(minutes=min(i, 2) if i <= 4 else i)
        jobs.append(store.create_job(make_job(f"job-{i}", created_at=created)))
    for i in (1, 3, 5):
        store.update_job(f"job-{i}", status=JobStatus.RUNNING)

    expected = ["job-6", "job-5", "job-4", "job-3", "job-2", "job-1", "job-0"]
    assert [j.job_id for j in store.list_jobs()] == expected
    pages = [store.list_jobs(limit=2, offset=o) for o in range(0, 8, 2)]
    assert [[j.job_id for j in page] for page in pages] == [
        expected[0:2],
        expected[2:4],
        expected[4:6],
        expected[6:],
    ]
    assert [j.job_id for j in store.list_jobs(status=JobStatus.RUNNING)] == [
        "job-5",
        "job-3",
        "job-1",
    ]
    assert [j.job_id for j in store.list_jobs(JobStatus.PENDING, limit=2, offset=1)] == [
        "job-4",
        "job-2",
    ]
    assert store.list_jobs(status=JobStatus.FAILED) == []
    assert all(j.status == JobStatus.RUNNING for j in store.list_jobs(JobStatus.RUNNING))


def ids(jobs: list[Job]) -> list[str]:
    return [j.job_id for j in jobs]


def test_list_jobs_pages_by_cursor_and_since(store: Store) -> None:
    for i in range(7):
        # Jobs 2, 3 and 4 share a creation time: a cursor on one of them splits the tie.
        created = T0 + timedelta(minutes=min(i, 2) if i <= 4 else i)
        store.create_job(make_job(f"job-{i}", created_at=created))
    for i in (1, 3, 5):
        store.update_job(f"job-{i}", status=JobStatus.RUNNING)

    expected = ["job-6", "job-5", "job-4", "job-3", "job-2", "job-1", "job-0"]
    pages, before = [], None
    while page := store.list_jobs(limit=3, before=before):
        pages.append(ids(page))
        before = JobCursor.parse(str(JobCursor.of(page[-1])))  # as a page hands it out
    assert pages == [expected[0:3], expected[3:6], expected[6:]]
    cursor = JobCursor.of(store.get_job("job-4"))
    assert ids(store.list_jobs(before=cursor, limit=2)) == ["job-3", "job-2"]
    assert ids(store.list_jobs(JobStatus.RUNNING, before=cursor)) == ["job-3", "job-1"]
    assert ids(store.list_jobs(JobStatus.PENDING, limit=1, before=cursor)) == ["job-2"]
    assert ids(store.list_jobs(since=T0 + timedelta(minutes=2))) == expected[:5]
    assert ids(store.list_jobs(JobStatus.RUNNING, since=T0 + timedelta(minutes=2))) == [
        "job-5",
        "job-3",
    ]
    assert ids(store.iter_jobs(page=2)) == expected
    assert ids(store.iter_jobs(JobStatus.PENDING, page=1)) == ["job-6", "job-4", "job-2", "job-0"]


def test_a_bad_cursor_names_the_field() -> None:
    for text in ("", "job-1", "yesterday|job-1", "2024-01-02T03:04:05|job-1"):
        with pytest.raises(ValueError, match="cursor"):
            JobCursor.parse(text)


def test_campaign_jobs_newest_first_with_a_cursor_and_counts(store: Store) -> None:
    for i in range(6):
        campaign = ("weekly", "daily", None)[i % 3]
        spec = {"campaign": campaign} if campaign else {}
        store.create_job(make_job(f"job-{i}", created_at=T0 + timedelta(hours=i), **spec))
    store.create_job(make_job("job-blank", campaign=""))  # not a campaign's job
    store.update_job("job-3", status=JobStatus.COMPLETED, dag_id="codybatch_job")
    ran = make_job("job-ran", created_at=T0 - timedelta(days=1), campaign="daily")
    ran.dag_id = "codybatch_campaign__daily"
    store.create_job(ran)

    assert ids(store.campaign_jobs("weekly")) == ["job-3", "job-0"]
    assert ids(store.campaign_jobs("daily", limit=1)) == ["job-4"]
    newest = store.campaign_jobs("daily", limit=1)[0]
    assert ids(store.campaign_jobs("daily", before=JobCursor.of(newest))) == ["job-1", "job-ran"]
    assert store.campaign_jobs("missing") == []
    assert ids(store.iter_jobs(campaign="weekly", page=1)) == ["job-3", "job-0"]
    assert store.campaigns() == {
        "weekly": {"codybatch_job": 1, None: 1},
        "daily": {None: 2, "codybatch_campaign__daily": 1},
    }
    with pytest.raises(ValueError, match="not both"):
        next(store.iter_jobs(JobStatus.PENDING, campaign="weekly"))


def test_a_changed_spec_moves_the_job_between_campaigns(store: Store) -> None:
    job = store.create_job(make_job("job-1", campaign="weekly"))
    store.update_job("job-1", spec=job.spec | {"campaign": "daily"})
    assert (ids(store.campaign_jobs("weekly")), ids(store.campaign_jobs("daily"))) == (
        [],
        ["job-1"],
    )
    store.update_job("job-1", spec={k: v for k, v in job.spec.items() if k != "campaign"})
    assert store.campaign_jobs("daily") == [] and store.get_job("job-1").spec == make_job().spec
    store.update_job("job-1", spec=job.spec | {"campaign": "monthly"})
    assert store.campaigns() == {"monthly": {None: 1}}


def test_job_for_run_finds_the_job_of_a_dag_run(store: Store) -> None:
    job = make_job(job_id_for_run("codybatch_job", "manual__1"))
    job.dag_id, job.run_id = "codybatch_job", "manual__1"
    store.create_job(job)
    assert store.job_for_run("codybatch_job", "manual__1") == job
    assert store.job_for_run("codybatch_job", "manual__2") is None
    assert store.job_for_run("other_dag", "manual__1") is None


def test_results_with_pr_state_follow_every_write(store: Store) -> None:
    for i in range(3):
        store.create_job(make_job(f"job-{i}", created_at=T0 + timedelta(hours=i)))
    assert store.results_with_pr_state("open") == []
    for job_id, repository, state in (
        ("job-0", REPOSITORIES[0], "open"),
        ("job-2", REPOSITORIES[2], "open"),
        ("job-2", REPOSITORIES[1], "open"),
        ("job-1", REPOSITORIES[0], "merged"),
        ("job-1", REPOSITORIES[1], "open"),
    ):
        result = store.get_result(job_id, repository)
        result.pr_number, result.pr_state = 7, state
        store.save_result(result)
    found = store.results_with_pr_state("open")
    assert [(r.job_id, r.repository) for r in found] == [
        ("job-2", REPOSITORIES[1]),  # newest job first; its repositories by name
        ("job-2", REPOSITORIES[2]),
        ("job-1", REPOSITORIES[1]),
        ("job-0", REPOSITORIES[0]),
    ]
    assert found[0] == store.get_result("job-2", REPOSITORIES[1])
    assert [r.job_id for r in store.results_with_pr_state("merged")] == ["job-1"]

    store.update_result("job-2", REPOSITORIES[2], lambda r: setattr(r, "pr_state", "merged"))
    store.update_result("job-0", REPOSITORIES[0], lambda r: setattr(r, "pr_state", None))
    assert [(r.job_id, r.repository) for r in store.results_with_pr_state("open")] == [
        ("job-2", REPOSITORIES[1]),
        ("job-1", REPOSITORIES[1]),
    ]
    assert len(store.results_with_pr_state("merged")) == 2


# results


def test_save_result_round_trips_every_field(store: Store) -> None:
    store.create_job(make_job())
    result = store.get_result("job-1", REPOSITORIES[1])
    result.status = RepositoryStatus.COMPLETED
    result.were_changes_necessary = True
    result.summary = "Renamed 3 files ✓"
    result.pr_title, result.pr_url, result.pr_number = "Rename", "https://x/pr/7", 7
    result.pr_state = "open"
    result.stop_reason = "end_turn"
    result.usage = Usage(1, 2, 3, 4, 0.1)
    result.has_patch = result.has_thread = True
    result.steps = [CommandRun("ls", exit_code=0, output="a\nb", seconds=0.25)]
    result.agent = AgentSession("finished", summary="ok", changes_claimed=True, turns=3)
    result.verify = Verification("pytest", passed=False, exit_code=1, rounds=2, fix_rounds=1)
    result.publishing = Publishing("opened", "new change", "codybatch/x", 7, "https://x/pr/7")
    result.tracking = Tracking("open", "failure", "none", refreshed_at=T0)
    result.fix_rounds = [FixRound(1, "failing_check", seen=[4], usage=Usage(1, 1))]
    result.approval = ApprovalPart("approved", by="ana", at=T0.isoformat())
    result.merge = MergePart("when_green", history=[MergeAttempt("refused", "checks pending")])
    result.progress = Progress(Phase.CLAUDE, turn=3, usage=Usage(9, 9), last_tool="editor: a.py")
    result.failed_phase = Phase.PUBLISHING
    result.changed_files, result.instructions = ["a.py", "b/ü.py"], ["AGENTS.md"]
    result.warnings, result.base_branch = ["Claude said changes_necessary=True"], "main"
    result.attempts = 2
    result.started_at = T0
    result.finished_at = T0 + timedelta(seconds=90)

    saved = store.save_result(result)

    assert saved.revision == 1
    assert store.get_result("job-1", REPOSITORIES[1]) == saved
    saved.error, saved.summary = "late failure", None
    store.save_result(saved)
    assert store.get_result("job-1", REPOSITORIES[1]) == saved


def test_update_result_applies_a_change_over_a_newer_write(store: Store) -> None:
    store.create_job(make_job())
    mine = store.get_result("job-1", REPOSITORIES[0])
    theirs = store.get_result("job-1", REPOSITORIES[0])
    theirs.summary = "written meanwhile"
    store.save_result(theirs)
    seen = []

    def change(result: RepositoryResult) -> None:
        seen.append(result.revision)
        result.pr_state = "merged"

    with pytest.raises(StaleWriteError):
        store.save_result(mine)
    updated = store.update_result("job-1", REPOSITORIES[0], change)
    assert (updated.summary, updated.pr_state) == ("written meanwhile", "merged")
    assert updated.revision == 2
    assert seen == [1]
    unchanged = store.update_result("job-1", REPOSITORIES[0], lambda r: False)
    assert unchanged.revision == 2 and store.get_result("job-1", REPOSITORIES[0]) == updated
    with pytest.raises(NotFoundError):
        store.update_result("job-1", "github.com/acme/none", change)


def test_list_results_keeps_repository_order_and_filters_by_status(store: Store) -> None:
    store.create_job(make_job())
    last = store.get_result("job-1", REPOSITORIES[2])
    last.status = RepositoryStatus.FAILED
    store.save_result(last)

    assert [r.repository for r in store.list_results("job-1")] == REPOSITORIES
    failed = store.list_results("job-1", status=RepositoryStatus.FAILED)
    assert [(r.repository, r.revision) for r in failed] == [(REPOSITORIES[2], 1)]
    assert store.list_results("job-1", status=RepositoryStatus.SKIPPED) == []


def test_a_stale_write_is_refused_and_changes_nothing(store: Store) -> None:
    store.create_job(make_job())
    mine = store.get_result("job-1", REPOSITORIES[0])
    theirs = store.get_result("job-1", REPOSITORIES[0])
    theirs.status = RepositoryStatus.COMPLETED
    store.save_result(theirs)

    mine.status = RepositoryStatus.FAILED
    with pytest.raises(StaleWriteError):
        store.save_result(mine)

    stored = store.get_result("job-1", REPOSITORIES[0])
    assert (stored.status, stored.revision) == (RepositoryStatus.COMPLETED, 1)
    assert mine.revision == 0
    with pytest.raises(StaleWriteError):
        store.save_result(RepositoryResult("job-1", REPOSITORIES[0], revision=5))


def test_concurrent_writers_to_one_result_only_one_wins(make_store: Callable[[], Store]) -> None:
    make_store().create_job(make_job())
    stores = [make_store() for _ in range(4)]
    copies = [s.get_result("job-1", REPOSITORIES[0]) for s in stores]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(stores))

    def write(store: Store, result: RepositoryResult, n: int) -> None:
        result.summary = f"writer {n}"
        barrier.wait()
        try:
            store.save_result(result)
            outcomes.append(result.summary)
        except StaleWriteError:
            outcomes.append("stale")

    threads = [
        threading.Thread(target=write, args=(s, c, n))
        for n, (s, c) in enumerate(zip(stores, copies, strict=True))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [o for o in outcomes if o != "stale"]
    assert len(winners) == 1 and len(outcomes) == 4
    stored = make_store().get_result("job-1", REPOSITORIES[0])
    assert (stored.summary, stored.revision) == (winners[0], 1)


def test_threads_updating_different_repositories_all_land(
    make_store: Callable[[], Store],
) -> None:
    make_store().create_job(make_job())

    def work(repository: str) -> None:
        store = make_store()
        for step in range(5):
            result = store.get_result("job-1", repository)
            result.progress = Progress(Phase.STEPS, detail=f"step {step}")
            result.status = RepositoryStatus.COMPLETED if step == 4 else RepositoryStatus.RUNNING
            store.save_result(result)

    threads = [threading.Thread(target=work, args=(r,)) for r in REPOSITORIES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    results = make_store().list_results("job-1")
    assert [(r.status, r.revision, r.progress.detail) for r in results] == [
        (RepositoryStatus.COMPLETED, 5, "step 4")
    ] * len(REPOSITORIES)


WRITER = """
import sys
from codybatch.records import RepositoryStatus
from codybatch.settings import Settings
from codybatch.store import open_store

store = open_store(Settings.from_env())
name = sys.argv[2]
for step in range(3):
    def add(result):  # another process may write the same record: applied on its version
        mine = [w for w in result.warnings if not w.startswith(name + "=")]
        result.warnings = sorted([*mine, f"{name}={step}"])
        result.status = RepositoryStatus.RUNNING
    store.update_result("job-1", sys.argv[1], add)
"""


def test_processes_writing_one_job_all_land(
    make_store: Callable[[], Store], store_env: dict[str, str]
) -> None:
    make_store().create_job(make_job())
    # Two processes per repository on the first one, so some writes must retry.
    targets = [(REPOSITORIES[0], "a"), (REPOSITORIES[0], "b"), (REPOSITORIES[1], "c")]
    env = os.environ | store_env
    processes = [
        subprocess.Popen([sys.executable, "-c", WRITER, repository, name], env=env)
        for repository, name in targets
    ]
    assert [p.wait(timeout=120) for p in processes] == [0, 0, 0]

    first, second, third = make_store().list_results("job-1")
    assert (first.warnings, first.revision) == (["a=2", "b=2"], 6)
    assert (second.warnings, second.revision) == (["c=2"], 3)
    assert (third.status, third.revision) == (RepositoryStatus.PENDING, 0)


# patches and threads


@pytest.mark.parametrize(
    "patch",
    [
        pytest.param(b"diff --git a/x b/x\n-old\n+new \xe2\x9c\x93\n", id="text"),
        pytest.param(bytes(range(256)) * 4 + b"\r\n\x00", id="binary"),
        pytest.param(random.Random(5).randbytes(700 * 1024), id="large"),
        pytest.param(b"", id="empty"),
    ],
)
def test_patches_read_back_byte_identical(store: Store, patch: bytes) -> None:
    store.create_job(make_job())
    store.put_patch("job-1", REPOSITORIES[0], patch)
    assert store.get_patch("job-1", REPOSITORIES[0]) == patch
    assert store.get_patch("job-1", REPOSITORIES[1]) is None


def test_a_patch_can_be_replaced_by_a_larger_or_smaller_one(store: Store) -> None:
    store.create_job(make_job())
    large = b"+" + b"x" * (400 * 1024)
    for patch in (b"small\n", large, b"small again\n", large + b"!"):
        store.put_patch("job-1", REPOSITORIES[0], patch)
        assert store.get_patch("job-1", REPOSITORIES[0]) == patch


def test_patch_writes_leave_the_result_revision_alone(store: Store) -> None:
    store.create_job(make_job())
    result = store.get_result("job-1", REPOSITORIES[0])
    store.put_patch("job-1", REPOSITORIES[0], b"+x\n")
    store.put_thread("job-1", REPOSITORIES[0], {"messages": []})
    result.has_patch = result.has_thread = True
    store.save_result(result)  # still revision 0: patch and thread writes do not count
    stored = store.get_result("job-1", REPOSITORIES[0])
    assert (stored.has_patch, stored.revision) == (True, 1)
    assert store.get_patch("job-1", REPOSITORIES[0]) == b"+x\n"


def test_threads_round_trip(store: Store) -> None:
    store.create_job(make_job())
    thread = {
        "messages": [
            {"role": "user", "content": "Rename ✓"},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        ],
        "usage": {"usd": 0.0123, "input_tokens": 12},
        "nothing": None,
    }
    store.put_thread("job-1", REPOSITORIES[2], thread)
    assert store.get_thread("job-1", REPOSITORIES[2]) == thread
    store.put_thread("job-1", REPOSITORIES[2], {"messages": []})
    assert store.get_thread("job-1", REPOSITORIES[2]) == {"messages": []}


# retention


def test_purge_expired_removes_expired_jobs_with_their_results_and_files(store: Store) -> None:
    old = make_job("job-old", created_at=T0 - timedelta(days=40))
    old.expires_at = T0 - timedelta(days=10)
    new = make_job("job-new")
    for job in (store.create_job(old), store.create_job(new)):
        for repository in REPOSITORIES[:2]:
            store.put_patch(job.job_id, repository, b"+" + job.job_id.encode())
            store.put_thread(job.job_id, repository, {"job": job.job_id})

    assert store.purge_expired(now=T0) == 1

    assert store.get_job("job-old") is None
    assert store.list_results("job-old") == []
    assert store.get_patch("job-old", REPOSITORIES[0]) is None
    assert store.get_thread("job-old", REPOSITORIES[1]) is None
    assert store.get_job("job-new") == new
    assert len(store.list_results("job-new")) == len(REPOSITORIES)
    assert store.get_patch("job-new", REPOSITORIES[1]) == b"+job-new"
    assert store.get_thread("job-new", REPOSITORIES[0]) == {"job": "job-new"}
    assert [j.job_id for j in store.list_jobs()] == ["job-new"]

    assert store.purge_expired(now=new.expires_at + timedelta(seconds=1)) == 1
    assert store.list_jobs() == []
    assert store.get_patch("job-new", REPOSITORIES[1]) is None


def test_update_job_only_from_leaves_other_statuses_alone(store: Store) -> None:
    job = Job(job_id="job-only", spec={"name": "n", "repositories": ["github.com/a/b"]})
    store.create_job(job)

    running = store.update_job("job-only", only_from=[JobStatus.PENDING], status=JobStatus.RUNNING)
    assert running.status == JobStatus.RUNNING
    store.update_job("job-only", status=JobStatus.CANCELLED)
    kept = store.update_job("job-only", only_from=[JobStatus.PENDING], status=JobStatus.RUNNING)
    assert kept.status == JobStatus.CANCELLED
    assert store.get_job("job-only").status == JobStatus.CANCELLED
    with pytest.raises(NotFoundError):
        store.update_job("job-missing", only_from=[JobStatus.PENDING], status=JobStatus.RUNNING)


# campaign fleets


def _entry(campaign: str, repository: str, **fields: object):
    from codybatch.fleet_records import FleetEntry

    return FleetEntry(campaign, repository, **fields)


def test_fleet_pages_by_index_with_filters_and_a_cursor(store: Store) -> None:
    from codybatch.fleet_records import ErrorClass, FleetStatus

    failed = {"status": FleetStatus.FAILED, "error_class": ErrorClass.CLONE_FAILED}
    store.put_fleet(
        [
            _entry("big", f"github.com/acme/r{i:03d}", usd=0.5, **(failed if i % 3 == 0 else {}))
            for i in range(30)
        ]
        + [
            _entry("other", "github.com/acme/r000"),
            _entry("big", "github.com/acme/zz", member=False),
        ]
    )
    first = store.fleet_page("big", limit=12)
    assert [e.repository for e in first] == [f"github.com/acme/r{i:03d}" for i in range(12)]
    second = store.fleet_page("big", after=first[-1].repository, limit=100)
    assert len(second) == 19 and second[-1].repository == "github.com/acme/zz"
    assert len(store.fleet("big")) == 31
    only_failed = store.fleet_page("big", status=FleetStatus.FAILED, limit=4)
    assert [e.repository[-4:] for e in only_failed] == ["r000", "r003", "r006", "r009"]
    rest = store.fleet_page("big", status=FleetStatus.FAILED, after=only_failed[-1].repository)
    assert len(rest) == 6
    clone = store.fleet_page("big", error_class=ErrorClass.CLONE_FAILED, limit=100)
    assert len(clone) == 10 and all(e.error_class == ErrorClass.CLONE_FAILED for e in clone)
    assert len(store.fleet_page("big", members_only=True, limit=100)) == 30

    counts = store.fleet_counts("big")
    assert (counts.members, counts.left) == (30, 1)
    assert counts.by_status == {"FAILED": 10, "NEW": 20}
    assert counts.by_error == {"clone_failed": 10}
    assert counts.usd == 15.0


def test_fleet_entry_round_trips_and_is_replaced(store: Store) -> None:
    from codybatch.fleet_records import FleetStatus

    entry = _entry("c", "github.com/acme/api", pr_number=7, pr_state="open", rounds=2, usd=0.25)
    store.put_fleet([entry])
    assert store.get_fleet("c", "github.com/acme/api") == entry
    entry.status = FleetStatus.COMPLETED
    store.put_fleet([entry])
    assert store.get_fleet("c", "github.com/acme/api").status == FleetStatus.COMPLETED
    assert store.fleet_page("c", status=FleetStatus.NEW) == []
    assert store.fleet_counts("c").prs_open == 1
    assert store.get_fleet("c", "github.com/acme/other") is None


def test_campaign_state_is_compare_and_swap(store: Store, make_store: Callable[[], Store]) -> None:
    assert store.get_campaign_state("c") == ({}, 0)
    assert store.put_campaign_state("c", {"launches": [1]}, 0) == 1
    other = make_store()
    assert other.put_campaign_state("c", {"launches": [1, 2]}, 1) == 2
    with pytest.raises(StaleWriteError):
        store.put_campaign_state("c", {"launches": ["late"]}, 1)
    with pytest.raises(StaleWriteError):
        store.put_campaign_state("new", {}, 3)
    assert store.get_campaign_state("c") == ({"launches": [1, 2]}, 2)
