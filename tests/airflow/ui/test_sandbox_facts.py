"""The job page states the sandbox's terms and which repository instructions Claude got."""

from __future__ import annotations

import pytest

from codybatch.records import AgentSession, InstructionsUsed, ShellTerms
from tests.airflow.ui.seed import seed_job

pytestmark = pytest.mark.airflow


def test_job_page_shows_network_shell_and_instruction_files(client, tokens, store) -> None:
    client.cookies.set("_token", tokens["admin"])
    job = seed_job(store)
    page = client.get(f"/codybatch/jobs/{job.job_id}").text
    assert "network off" in page and "Claude's shell on, 120 s a command" in page

    store.update_job(
        job.job_id,
        spec={**job.spec, "network": True, "allowed_commands": ["npm test:*"]},
    )
    result = store.get_result(job.job_id, "github.com/acme/billing")
    result.agent = AgentSession(
        stop_reason="finished",
        instructions=InstructionsUsed(["AGENTS.md", "pkg/CLAUDE.md"], ["AGENTS.md"]),
        shell=ShellTerms(offered=True),
    )
    store.save_result(result)
    web = store.get_result(job.job_id, "github.com/acme/web")
    web.agent = AgentSession(
        stop_reason="finished", shell=ShellTerms(offered=False, reason="no sandbox can start")
    )
    store.save_result(web)
    page = client.get(f"/codybatch/jobs/{job.job_id}").text
    assert "network <strong>allowed</strong> (network: true)" in page
    assert "only npm test:*" in page
    assert "AGENTS.md, pkg/CLAUDE.md" in page and "(cut: AGENTS.md)" in page
    assert "not offered: no sandbox can start" in page
