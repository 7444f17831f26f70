"""Everything that imports Airflow: the DAG factory and the runners."""
