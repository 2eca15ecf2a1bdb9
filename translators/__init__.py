"""Translators: pure functions from a parsed source (pg_cron jobs, Airflow DAG
files, queue-worker configs) to workflow models. Installed as
``pgdurable.translators``; they touch no database and no clock."""
