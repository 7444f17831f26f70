"""Trigger and cancel job DAG runs from inside the api-server: the one module that uses
Airflow's internal run functions (a test keeps it so).

Why not the public REST API (POST /api/v2/dags/{dag_id}/dagRuns, PATCH .../dagRuns/{run_id}
with state failed): the plugin's app runs inside the api-server, so a REST call would be an
HTTP request from the api-server to itself. Its own address is not known in there (behind
`[api] base_url`, a proxy or several workers), each action would hold a second request while
the first waits, and the in-process tests (and any embedding) have no listening server. An
in-process ASGI call is not open either: a mounted app never sees Airflow's root app
(Starlette sets scope["app"] to the mounted one). `apache-airflow-client` is not installed
and is the same HTTP client; `airflow.sdk` talks only to the Execution API, with task tokens.
So these call what the public routes call (trigger_dag; set_dag_run_state_to_failed, which
the PATCH route runs), after the plugin's routes checked the caller's permission on the DAG
as Airflow's would; an Airflow upgrade that moves them changes this file alone, and
tests/airflow/ui/test_api.py and tests/airflow/test_runend.py pin what they must do.
"""

from __future__ import annotations

import uuid
from typing import Any

from codybatch.records import utcnow


class RunError(Exception):
    """The DAG run could not be created or changed; `status` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def new_run_id() -> str:
    """A manual run id we choose, so the job id is known before the run starts."""
    return f"codybatch__{utcnow():%Y-%m-%dT%H:%M:%S}_{uuid.uuid4().hex[:8]}"


def trigger_run(dag_id: str, run_id: str, conf: dict[str, Any], user_name: str) -> bool:
    """Create a queued manual run of the DAG; return whether the DAG is paused."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound, DagRunAlreadyExists, ParamValidationError
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunTriggeredByType

    try:
        with create_session() as session:
            trigger_dag(
                dag_id,
                run_id=run_id,
                conf=conf,
                triggered_by=DagRunTriggeredByType.UI,
                triggering_user_name=user_name,
                session=session,
            )
            model = DagModel.get_dagmodel(dag_id, session=session)
            return bool(model and model.is_paused)
    except DagNotFound:
        raise RunError(
            f"the {dag_id} DAG is not loaded yet: wait for the dag-processor to parse dags/ "
            "(or run `airflow dags reserialize`) and try again",
            503,
        ) from None
    except DagRunAlreadyExists:
        raise RunError(f"a run {run_id} of {dag_id} already exists", 409) from None
    except (ParamValidationError, ValueError) as exc:
        raise RunError(f"Airflow refused the run: {exc}", 400) from None


def run_state(dag_id: str, run_id: str) -> str | None:
    """The DAG run's state (queued, running, success, failed), None if there is no such run."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        state = session.scalar(
            select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
        )
    return None if state is None else str(getattr(state, "value", state))


def fail_run(dag_id: str, run_id: str) -> bool:
    """Mark an unfinished run failed (running tasks fail, pending ones skip); False if none."""
    from airflow.api.common.mark_tasks import set_dag_run_state_to_failed
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        if run is None or run.state in (DagRunState.SUCCESS, DagRunState.FAILED):
            return False
        dag = DBDagBag().get_dag_for_run(run, session=session)
        if dag is None:
            raise RunError(f"the {dag_id} DAG of run {run_id} is not in the database", 409)
        set_dag_run_state_to_failed(dag=dag, run_id=run_id, commit=True, session=session)
    return True


def paused_dags(dag_ids: list[str]) -> dict[str, bool]:
    """Whether each DAG is paused in Airflow; DAGs Airflow has not parsed (yet) are left out."""
    if not dag_ids:
        return {}
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(DagModel.dag_id, DagModel.is_paused).where(DagModel.dag_id.in_(dag_ids))
        ).all()
    return {dag_id: bool(paused) for dag_id, paused in rows}
