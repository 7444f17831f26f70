"""Seed data for the UI tests: a job with a patch and a thread full of <script> tags."""

from __future__ import annotations

from datetime import datetime

from codybatch.records import (
    Job,
    JobStatus,
    Publishing,
    RepositoryStatus,
    Tracking,
    Usage,
    job_id_for_run,
)
from codybatch.settings import Settings
from codybatch.spec import JobSpec
from codybatch.store import Store

XSS = "<script>alert(1)</script>"

PATCH = f"""diff --git a/src/app.py b/src/app.py
index 1111111..2222222 100644
--- a/src/app.py
+++ b/src/app.py
@@ -1,3 +1,3 @@
 def total(items):
-    return oldFunction(items)
+    return newFunction(items, strict=True)
 # {XSS}
diff --git a/notes/{XSS}.md b/notes/{XSS}.md
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/notes/{XSS}.md
@@ -0,0 +1 @@
+{XSS}
""".encode()

THREAD = {
    "model": "claude-sonnet-4-5",
    "system": "You are Cody Batch.",
    "turns": [
        {
            "request": {
                "messages": [{"role": "user", "content": "Replace oldFunction everywhere."}]
            },
            "response": {
                "content": [
                    {"type": "text", "text": f"I will look first. {XSS}"},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "str_replace_based_edit_tool",
                        "input": {"command": "view", "path": "src/app.py"},
                    },
                ],
                "stop_reason": "tool_use",
            },
            "usage": {"input_tokens": 1200, "output_tokens": 80},
        },
        {
            "request": {
                "messages": [
                    {"role": "user", "content": "Replace oldFunction everywhere."},
                    {"role": "assistant", "content": []},
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "toolu_1",
                                "content": f"return oldFunction(items)  {XSS}",
                            }
                        ],
                    },
                ]
            },
            "response": {
                "content": [{"type": "text", "text": "Done: one call replaced."}],
                "stop_reason": "end_turn",
            },
            "usage": {"input_tokens": 1500, "output_tokens": 40, "cache_read_input_tokens": 1100},
        },
    ],
}


def csrf_of(client) -> str:
    """The CSRF token a page hands to the (cookie-authenticated) client."""
    import re

    page = client.get("/codybatch/jobs/new")
    assert page.status_code == 200, page.text
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text).group(1)


def seed_job(
    store: Store,
    name: str = "Replace oldFunction",
    status: JobStatus = JobStatus.COMPLETED,
    run_id: str | None = None,
    repositories: tuple[str, ...] = ("github.com/acme/billing", "github.com/acme/web"),
    created_at: datetime | None = None,
) -> Job:
    """A job written straight to the store, its first repository changed with a thread."""
    run_id = run_id or f"seed__{name}".replace(" ", "_")
    job = Job(
        job_id=job_id_for_run("codybatch_job", run_id),
        spec={
            "name": name,
            "prompt": f"Replace oldFunction. {XSS}",
            "repositories": list(repositories),
            "create_pull_requests": False,
            "draft": True,
            "steps": [],
            "max_turns": 50,
            "max_tokens": 5_000_000,
            "max_usd": 2.0,
            "max_minutes": 30.0,
        },
        dag_id="codybatch_job",
        run_id=run_id,
    )
    if created_at:
        job.created_at = job.updated_at = created_at
    store.create_job(job)
    first, *rest = repositories
    result = store.get_result(job.job_id, first)
    result.status = RepositoryStatus.COMPLETED
    result.were_changes_necessary = True
    result.summary = f"Replaced one call. {XSS}"
    result.usage = Usage(2700, 120, 0, 1100, 0.0123)
    result.has_patch = result.has_thread = True
    store.put_patch(job.job_id, first, PATCH)
    store.put_thread(job.job_id, first, THREAD)
    store.save_result(result)
    for repository in rest:
        other = store.get_result(job.job_id, repository)
        if status == JobStatus.RUNNING:
            other.status = RepositoryStatus.RUNNING
        else:
            other.status = RepositoryStatus.FAILED
            other.error = "clone failed: repository not found"
        store.save_result(other)
    return store.update_job(job.job_id, status=status, usage=Usage(2700, 120, 0, 1100, 0.0123))


CAMPAIGN_REPOSITORIES = ("github.com/acme/billing", "github.com/acme/web", "github.com/acme/docs")


def seed_campaign_run(
    store: Store,
    campaign: str,
    created_at: datetime,
    outcomes: dict[str, str],
    name: str = "Upgrade legacy-lib",
) -> Job:
    """One finished run of a campaign; outcomes maps a repository to what happened to it:
    "open" (PR open, checks passing, approved), "merged" (a person merged it: SKIPPED),
    "closed" (PR closed), "clean" (no change necessary), "patch" (changed, patch only)."""
    dag_id = f"codybatch_campaign__{campaign}"
    run_id = f"scheduled__{created_at.isoformat()}"
    job = Job(
        job_id=job_id_for_run(dag_id, run_id),
        spec=JobSpec.parse(
            {
                "name": name,
                "campaign": campaign,
                "steps": ["sed -i s/oldFunction/newFunction/g *.js"],
                "repositories": list(outcomes),
                "create_pull_requests": True,
            },
            Settings.from_env(),
        ).to_dict(),
        dag_id=dag_id,
        run_id=run_id,
    )
    job.created_at = job.updated_at = created_at
    store.create_job(job)
    for number, (repository, outcome) in enumerate(outcomes.items(), start=1):
        result = store.get_result(job.job_id, repository)
        result.status = RepositoryStatus.COMPLETED
        result.were_changes_necessary = outcome in ("open", "closed", "patch")
        branch = "codybatch/upgrade-legacy-lib"
        url = f"https://github.com/{repository.split('/', 1)[1]}/pull/{number}"
        if outcome == "patch":
            result.publishing = Publishing(
                action="patch_only", reason="no push access: patch only", branch=branch
            )
        elif outcome in ("open", "merged", "closed"):
            result.pr_url, result.pr_number, result.pr_state = url, number, outcome
            action = {"open": "updated", "merged": "left_alone_merged", "closed": "closed"}
            result.publishing = Publishing(
                action=action[outcome],
                reason=f"pull request #{number} was merged by a person: not reopened; "
                "the campaign is done for this repository"
                if outcome == "merged"
                else f"pushed the new change to {branch}",
                branch=branch,
                number=number,
                url=url,
                state=outcome,
            )
            result.tracking = Tracking(
                state=outcome,
                checks="success" if outcome == "open" else None,
                review="approved" if outcome == "open" else "none",
                refreshed_at=created_at,
            )
            if outcome == "merged":
                result.status = RepositoryStatus.SKIPPED
                result.were_changes_necessary = None
        store.save_result(result)
    return store.update_job(job.job_id, status=JobStatus.COMPLETED)
