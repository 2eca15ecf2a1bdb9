"""--chaos: the worker (and PostgreSQL) killed at random points; the data still match."""

from __future__ import annotations

from pathlib import Path

from pgdurable.verify import Options, verify

DAG = Path(__file__).resolve().parents[2] / "fixtures" / "verify" / "dags" / "v07_twenty_steps.py"
SEED = Path(__file__).resolve().parents[2] / "fixtures" / "seed" / "counters.sql"


def test_chaos_5_on_a_twenty_step_workflow(admin):
    result = verify("airflow", str(DAG), Options(SEED, chaos=5, seed=7), admin)
    assert result.equal, result.text()
    kills = [e for e in result.chaos if "SIGKILLed" in e]
    assert len(kills) == 5, result.chaos
    counters = result.tables[0]
    # every step applied exactly once on both sides
    assert counters.table == "public.counters" and counters.new_rows == 20
    assert counters.only_new == [] and result.new_runs[0].startswith("completed")


def test_chaos_db_restarts_a_dedicated_postgresql(pg_cluster):
    result = verify("airflow", str(DAG), Options(SEED, chaos=2, chaos_db=True, seed=3), None)
    assert result.equal, result.text()
    assert sum("PostgreSQL crashed" in e for e in result.chaos) == 2, result.chaos
