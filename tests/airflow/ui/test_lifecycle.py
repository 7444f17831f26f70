"""A PR's life after opening on the job and campaign pages and the API: approval state, fix
rounds, merge state, and the bulk "Merge green PRs" against the fake GitHub."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest

from codybatch import fleet
from codybatch.fleet_records import FleetEntry, FleetStatus
from codybatch.records import (
    ApprovalPart,
    FixRound,
    JobStatus,
    MergeAttempt,
    MergePart,
    Usage,
    job_id_for_run,
)
from codybatch.spec import parse_repository
from codybatch.store.local import LocalStore
from tests.airflow.ui.seed import XSS, csrf_of, seed_job
from tests.fakes.github_server import FakeGitHub, fake_github
from tests.github.test_worker_publish import run_job

pytestmark = pytest.mark.airflow
__all__ = ["fake_github"]

API = "/codybatch/api/v1"
BILLING, WEB = "github.com/acme/billing", "github.com/acme/web"
ROUND_PATCH = """diff --git a/src/app.py b/src/app.py
--- a/src/app.py
+++ b/src/app.py
@@ -1,2 +1,3 @@
-x = 1
+x = 2
+y = 3
 z = 4
"""


@pytest.fixture
def ui(client, tokens):
    client.cookies.set("_token", tokens["admin"])
    return client


@pytest.fixture
def viewer_ui(client, tokens):
    client.cookies.set("_token", tokens["viewer"])
    return client


def _seed_lifecycle(store: LocalStore):
    """A job whose billing PR was approved, fixed twice and refused a merge; web rejected."""
    job = seed_job(store)
    billing = store.get_result(job.job_id, BILLING)
    billing.pr_url, billing.pr_number, billing.pr_state = (
        "https://github.com/acme/billing/pull/4",
        4,
        "open",
    )
    billing.approval = ApprovalPart("approved", "alice", "2026-03-01T10:00:00+00:00", "opened")
    billing.fix_rounds = [
        FixRound(
            1,
            "failing_check",
            f"ci/test failed {XSS}",
            outcome="pushed",
            patch=ROUND_PATCH,
            thread_key=f"{BILLING}#round-1",
            usage=Usage(1000, 200, 0, 0, 0.25),
            reply_url="https://github.com/acme/billing/pull/4#issuecomment-9",
        ),
        FixRound(2, "review_comments", "app.py:3 please rename", outcome="no_change",
                 note="Claude changed nothing: no further rounds", usage=Usage(500, 50, 0, 0, 0.5)),
    ]  # fmt: skip
    billing.followup_stopped = "max_fix_rounds (2) reached"
    part = MergePart(mode="when_green")
    part.record(MergeAttempt("refused", "required check ci/test failed", by="tracking"))
    billing.merge = part
    store.put_patch(job.job_id, f"{BILLING}#round-1", ROUND_PATCH.encode())
    store.put_thread(job.job_id, f"{BILLING}#round-1", {"turns": [], "note": f"round {XSS}"})
    store.save_result(billing)
    web = store.get_result(job.job_id, WEB)
    web.approval = ApprovalPart("rejected", "bob", "2026-03-01T10:05:00+00:00", "not chosen")
    store.save_result(web)
    return job


def _article(page: str, repository: str) -> str:
    start = page.index(f'<h2 class="path" title="{repository}">')
    end = page.find('<article class="result"', start)
    return page[start : end if end > 0 else None]


def test_the_job_page_shows_approval_rounds_and_merge_per_repository(ui, store) -> None:
    job = _seed_lifecycle(store)
    page = ui.get(f"/codybatch/jobs/{job.job_id}")
    assert page.status_code == 200 and XSS not in page.text
    billing, web = _article(page.text, BILLING), _article(page.text, WEB)
    assert "<strong>Approval</strong>: approved by alice at 2026-03-01 10:00:00 UTC" in billing
    assert "<strong>Approval</strong>: rejected: stays patch-only by bob" in web
    assert "Fix rounds</strong>: 2 ·" in billing and "$0.7500" in billing  # both rounds' cost
    rows = re.findall(r'<tr class="round round-(\w+)">(.*?)</tr>', billing, re.S)
    assert [outcome for outcome, _ in rows] == ["pushed", "no_change"]
    first, second = rows[0][1], rows[1][1]
    assert "a failing check" in first and "ci/test failed &lt;script&gt;" in first
    assert "1 file, +2 -1" in first and "$0.2500" in first
    assert f"/codybatch/jobs/{job.job_id}/rounds/1/patch/{quote(BILLING, safe='')}" in first
    assert f"/codybatch/jobs/{job.job_id}/rounds/1/thread/{quote(BILLING, safe='')}" in first
    assert "review comments" in second and "no change" in second and "patch</a>" not in second
    assert "Follow-ups stopped: max_fix_rounds (2) reached" in billing
    assert "<strong>Merge</strong>: not merged" in billing
    assert "required check ci/test failed" in billing and "by tracking" in billing
    assert "Fix rounds" not in web and "<strong>Merge</strong>" not in web
    # The same typed parts in the JSON API.
    data = ui.get(f"{API}/jobs/{job.job_id}").json()
    by_repo = {r["repository"]: r for r in data["results"]}
    assert by_repo[BILLING]["approval"]["by"] == "alice"
    assert [f["trigger"] for f in by_repo[BILLING]["fix_rounds"]] == [
        "failing_check",
        "review_comments",
    ]
    assert by_repo[BILLING]["merge"]["reason"] == "required check ci/test failed"
    assert by_repo[WEB]["approval"]["state"] == "rejected"


def test_a_rounds_patch_and_thread_are_shown(ui, store) -> None:
    job = _seed_lifecycle(store)
    name = quote(BILLING, safe="")
    patch = ui.get(f"/codybatch/jobs/{job.job_id}/rounds/1/patch/{name}")
    assert patch.status_code == 200 and patch.headers["content-type"].startswith("text/x-diff")
    assert patch.text == ROUND_PATCH
    thread = ui.get(f"/codybatch/jobs/{job.job_id}/rounds/1/thread/{name}")
    assert thread.status_code == 200 and XSS not in thread.text
    assert "round &lt;script&gt;" in thread.text  # the round's thread, not the first run's
    json_url = f"{API}/jobs/{job.job_id}/rounds/1/claude-thread/{BILLING}"
    assert f'href="{json_url}"' in thread.text  # its JSON button downloads the round's thread
    assert ui.get(json_url).json()["note"] == f"round {XSS}"
    none = ui.get(f"{API}/jobs/{job.job_id}/rounds/2/claude-thread/{BILLING}")
    assert none.status_code == 404 and "kept no Claude thread" in none.json()["detail"]
    assert ui.get(f"/codybatch/jobs/{job.job_id}/rounds/2/patch/{name}").status_code == 404
    missing = ui.get(f"/codybatch/jobs/{job.job_id}/rounds/7/thread/{name}")
    assert missing.status_code == 404 and "has no fix round 7" in missing.text


def test_the_fleet_table_shows_rounds_and_merge_state(ui, store, tmp_path: Path) -> None:
    job = _seed_lifecycle(store)
    entry = FleetEntry("ship", BILLING, status=FleetStatus.LAUNCHED, job_id=job.job_id, jobs=1)
    store.put_fleet([entry])
    fleet.refresh(store, [entry])  # copies the result's rounds and last merge decision
    fleet.snapshot(store, "ship", "scheduled__2026-01-01")
    [saved] = store.fleet_page("ship", limit=5)
    assert (saved.rounds, saved.merge_state) == (2, "refused")
    page = ui.get("/codybatch/campaigns/ship")
    assert page.status_code == 200
    row = re.search(r"<tr>\s*<td>github.com/acme/billing.*?</tr>", page.text, re.S).group(0)
    assert "merge: refused" in row and "required check ci/test failed" in row
    assert re.search(r"<td>2</td>", row)  # rounds


# -- Merge green PRs against the fake GitHub ---------------------------------------------------


@pytest.fixture
def two_prs(fake_github: FakeGitHub, codybatch_home: Path, monkeypatch: pytest.MonkeyPatch):
    """A job with two open PRs: acme/api green (check passed, approved), acme/web failing."""
    for name, value in fake_github.env().items():
        monkeypatch.setenv(name, value)
    old = "from lib import oldFunction\n\noldFunction(1)\n"
    for repo in ("acme/api", "acme/web"):
        fake_github.create_repo(repo, {"app.py": old})
        fake_github.protect(repo, required_checks=["ci/test"], approvals=1)
    settings = fake_github.settings(home=codybatch_home)
    store = LocalStore(codybatch_home)
    job_id = job_id_for_run("codybatch_job", "merge_test")
    results = run_job(settings, store, ["acme/api", "acme/web"], job_id, draft=False)
    assert {r.pr_state for r in results.values()} == {"open"}
    for repo, conclusion in (("acme/api", "success"), ("acme/web", "failure")):
        head = fake_github.pull(repo, 1).head_sha
        fake_github.add_check_run(repo, head, "ci/test", "completed", conclusion)
        fake_github.add_review(repo, 1, "alice", "APPROVED")
    store.update_job(job_id, status=JobStatus.COMPLETED)
    return job_id, store


def test_merge_green_prs_from_the_job_page(ui, fake_github: FakeGitHub, two_prs) -> None:
    job_id, store = two_prs
    page = ui.get(f"/codybatch/jobs/{job_id}")
    assert "Merge green PRs (2 open)" in page.text
    assert ui.post(f"/codybatch/jobs/{job_id}/merge", data={}).status_code == 403  # no CSRF
    assert not fake_github.pull("acme/api", 1).merged

    done = ui.post(f"/codybatch/jobs/{job_id}/merge", data={"csrf_token": csrf_of(ui)})
    assert done.status_code == 200
    rows = dict(re.findall(r'<tr class="outcome-(\w+)">\s*<td>([^<]+)<', done.text))
    assert rows == {"merged": "github.com/acme/api", "refused": "github.com/acme/web"}
    assert "required check ci/test failed" in done.text
    assert fake_github.pull("acme/api", 1).merged and not fake_github.pull("acme/web", 1).merged
    api = store.get_result(job_id, parse_repository("acme/api").key)
    assert api.pr_state == "merged" and api.merge.state == "merged"
    assert api.merge.history[-1].by == "admin"  # the person who pressed the button

    after = ui.get(f"/codybatch/jobs/{job_id}")
    assert "<strong>Merge</strong>: merged" in _article(after.text, "github.com/acme/api")
    assert "Merge green PRs (1 open)" in after.text


def test_merge_api_returns_typed_outcomes_and_needs_permission(
    admin, client, tokens, fake_github: FakeGitHub, two_prs
) -> None:
    job_id, _ = two_prs
    viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
    refused = client.post(f"{API}/jobs/{job_id}/merge", headers=viewer)
    assert refused.status_code == 403 and not fake_github.pull("acme/api", 1).merged

    one = admin.post(f"{API}/jobs/{job_id}/merge", json={"repository": "acme/web"})
    assert one.status_code == 200, one.text
    assert one.json()["counts"] == {"refused": 1}
    [web] = one.json()["outcomes"]
    assert (web["repository"], web["pr_number"], web["outcome"]) == (
        "github.com/acme/web",
        1,
        "refused",
    )
    assert web["reason"] == "required check ci/test failed"

    both = admin.post(f"{API}/jobs/{job_id}/merge").json()
    assert both["counts"] == {"merged": 1, "refused": 1}
    again = admin.post(f"{API}/jobs/{job_id}/merge").json()  # merged now: not asked again
    assert {o["repository"]: o["outcome"] for o in again["outcomes"]} == {
        "github.com/acme/api": "skipped",
        "github.com/acme/web": "refused",
    }
    assert len(fake_github.api_requests("PUT", r"/merge$")) == 1
    missing = admin.post(f"{API}/jobs/{job_id}/merge", json={"repository": "acme/nope"})
    assert missing.status_code == 404


def test_merge_green_prs_of_a_campaign(ui, admin, tokens, fake_github: FakeGitHub, two_prs) -> None:
    job_id, store = two_prs
    entries = [
        FleetEntry("ship", parse_repository(r).key, status=FleetStatus.LAUNCHED, job_id=job_id)
        for r in ("acme/api", "acme/web")
    ]
    store.put_fleet(entries)
    fleet.refresh(store, entries)
    fleet.snapshot(store, "ship", "scheduled__2026-01-01")
    page = ui.get("/codybatch/campaigns/ship")
    assert "Merge green PRs (2 open)" in page.text
    viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
    refused = ui.post(f"{API}/campaigns/ship/merge", headers=viewer)
    assert refused.status_code == 403 and not fake_github.pull("acme/api", 1).merged
    done = ui.post("/codybatch/campaigns/ship/merge", data={"csrf_token": csrf_of(ui)})
    assert done.status_code == 200
    assert re.search(r'outcome-merged">\s*<td>github.com/acme/api', done.text)
    assert fake_github.pull("acme/api", 1).merged
    entry = store.get_fleet("ship", "github.com/acme/api")
    assert (entry.pr_state, entry.merge_state) == ("merged", "merged")  # the table shows it now
    assert store.fleet_counts("ship").prs_merged == 1
    report = admin.post(f"{API}/campaigns/ship/merge").json()
    assert report["counts"] == {"refused": 1}  # only web is still open
