"""The approval step of a job DAG: Airflow's own human-in-the-loop (HITLOperator).

`request_approval` lists the changed repositories of a review_before_publish job; the
mapped `approval` task (one request, or none) waits in Required Actions without a slot;
`publish_approved` publishes what the person chose. The Cody Batch job page answers the
same request through Airflow's own HITL update, so both ways are one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import task

from codybatch.settings import Settings

log = logging.getLogger(__name__)

APPROVAL_TASK = "approval"


@task(trigger_rule="all_done")  # one failed repository must not hold back the others
def request_approval(items: list[dict[str, str]] | None = None) -> list[dict[str, Any]]:
    """One approval request when the job reviews before publishing and something changed."""
    from airflow.sdk.exceptions import AirflowSkipException

    from codybatch.airflow.aws import open_store
    from codybatch.approval import PUBLISH_NONE, request, reviewable

    if not items:
        raise AirflowSkipException("no job was registered: nothing to approve")
    settings = Settings.from_env()
    store = open_store(settings)
    job = store.get_job(items[0]["job_id"])
    if job is None or not job.spec.get("review_before_publish"):
        raise AirflowSkipException("the job publishes without review")
    results = reviewable(store, job.job_id)
    if not results:
        raise AirflowSkipException(f"job {job.job_id}: nothing changed, nothing to approve")
    return [
        {
            "subject": f"Publish the changes of {job.name}?"[:200],
            "body": request(job, results, settings, store),
            "options": [r.repository for r in results] + [PUBLISH_NONE],
        }
    ]


def approval_task(requests: Any, settings: Settings) -> Any:
    """The HITL task, mapped over the (zero or one) requests; a timeout publishes nothing."""
    from codybatch.approval import PUBLISH_NONE

    return HITLOperator.partial(
        task_id=APPROVAL_TASK,
        multiple=True,
        defaults=[PUBLISH_NONE],
        response_timeout=timedelta(hours=settings.approval_timeout_hours),
    ).expand_kwargs(requests)


@task
def publish_approved(
    answers: list[dict[str, Any]] | None, items: list[dict[str, str]] | None = None
) -> list[str]:
    """Publish the chosen repositories from their stored patches; record each decision."""
    from codybatch.airflow.aws import open_store
    from codybatch.approval import decide

    if not items or not answers:
        return []
    answer = next(iter(answers))
    user = answer.get("responded_by_user") or None
    by = (user.get("name") or user.get("id")) if user else None
    at = answer.get("responded_at")
    settings = Settings.from_env()
    decided = decide(
        items[0]["job_id"],
        list(answer.get("chosen_options") or []),
        by,
        settings,
        open_store(settings),
        at=at.isoformat() if hasattr(at, "isoformat") else at,
    )
    return [f"{r.repository}: {r.approval.state if r.approval else 'pending'}" for r in decided]


def answer_approval(dag_id: str, run_id: str, chosen: list[str], user: Any) -> dict[str, Any]:
    """Answer a job's approval request as `user`, through Airflow's own HITL update (the
    handler behind PATCH .../hitlDetails): 404 none waiting, 409 already answered."""
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.utils.session import create_session

    with create_session() as session:
        answered = update_hitl_detail(
            dag_id=dag_id,
            dag_run_id=run_id,
            task_id=APPROVAL_TASK,
            update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=chosen),
            user=user,
            session=session,
            map_index=0,
        )
        return answered.model_dump(mode="json")


@dataclass(frozen=True)
class ApprovalRequest:
    """A job's approval request as Airflow holds it (its HITL detail)."""

    repositories: list[str]  # the options a person may approve (without PUBLISH_NONE)
    ti_state: str | None
    answered: bool
    by: str | None = None
    at: datetime | None = None
    chosen: list[str] = field(default_factory=list)

    @property
    def waiting(self) -> bool:
        """The task waits for a person and nobody answered yet: an answer is taken now."""
        return self.ti_state == "awaiting_input" and not self.answered


def approval_request(dag_id: str, run_id: str) -> ApprovalRequest | None:
    """The job run's approval request (Airflow's get_hitl_detail); None when it has none."""
    from airflow.api_fastapi.core_api.routes.public.hitl import get_hitl_detail
    from airflow.utils.session import create_session
    from fastapi import HTTPException

    from codybatch.approval import PUBLISH_NONE

    with create_session() as session:
        try:
            detail = get_hitl_detail(
                dag_id=dag_id,
                dag_run_id=run_id,
                task_id=APPROVAL_TASK,
                session=session,
                map_index=0,
            )
        except HTTPException as exc:
            if exc.status_code == 404:
                return None
            raise
    user = detail.responded_by_user
    state = detail.task_instance.state
    return ApprovalRequest(
        repositories=[o for o in detail.options if o != PUBLISH_NONE],
        ti_state=state.value if hasattr(state, "value") else state,
        answered=detail.response_received,
        by=(user.name or user.id) if user else None,
        at=detail.responded_at,
        chosen=list(detail.chosen_options or []),
    )
