"""The on-demand Cody Batch job DAG (logic in codybatch.airflow.dag)."""

from codybatch.airflow.dag import build_job_dag

dag = build_job_dag()
