"""Closes jobs whose DAG run ended or vanished without closing them (codybatch.airflow.runend)."""

from codybatch.airflow.runend import build_sweep_dag

dag = build_sweep_dag()
