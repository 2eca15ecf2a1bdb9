"""The benchmark runner (``python -m bench``) works end to end.

A smoke run at ``--quick`` sizes of the scenarios that need nothing beyond
this repository: the report is written atomically with a table per scenario
and the targets summary, ``--json`` carries the same figures, and bad usage
exits 2. The figures themselves are not asserted (they belong to
BENCHMARKS.md, from a full run on a quiet machine).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=None if env is None else {**os.environ, **env},
    )


def test_a_quick_run_writes_every_selected_section(tmp_path):
    report = tmp_path / "BENCH.md"
    done = _bench(
        "step",
        "breakdown",
        "throughput",
        "latency",
        "scaleout",
        "--quick",
        "--json",
        "--output",
        str(report),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = report.read_text()
    for title in (
        "## 1. Per-step overhead",
        "## 1b. Where a step's time goes",
        "## 2. Throughput",
        "## 3. Latency",
        "## 8. Scale-out across worker processes",
        "## Targets",
    ):
        assert title in text
    assert "fsync=on" in text  # the server runs with default durability
    # What makes figures comparable across machines is in the header.
    assert re.search(r"\*\*disk sync\*\*: fdatasync \d+\.\d\d ms per 8 kB write", text), text
    assert re.search(r"\*\*cpu calibration\*\*: \d+\.\d ms", text)
    assert re.search(r"\*\*load average\*\*: [\d. ]+ before the run, [\d. ]+ after it", text)
    figures = json.loads(done.stdout)
    sections = {section["key"]: section for section in figures["sections"]}
    assert set(sections) == {"step", "breakdown", "throughput", "latency", "scaleout"}
    breakdown = sections["breakdown"]["data"]
    assert breakdown["wall_s"] > breakdown["worker_cpu_s"] > 0
    queries = [s["query"] for s in breakdown["statements"]]
    assert any("complete_step_v3" in q for q in queries), "the completion is in the breakdown"
    assert {f["name"] for f in breakdown["functions"]} >= {"claim_v3", "complete_step_v3"}
    scaleout = sections["scaleout"]["data"]
    assert all(scaleout[f"workers_{p}"]["median"] > 0 for p in (1, 2, 4))
    step = sections["step"]["data"]
    assert step["step_s"]["median"] > step["floor_s"]["median"] > 0
    assert sections["throughput"]["data"]["workers_1"]["median"] > 0
    assert len(sections["latency"]["data"]["samples_s"]) == 20
    assert not list(tmp_path.glob(".BENCH.md.*")), "no temporary file is left behind"


def test_unknown_scenarios_are_a_usage_error():
    done = _bench("nonsense")
    assert done.returncode == 2
    assert "unknown scenario nonsense" in done.stderr


FIDELITY_DAGS = {
    "2.10.5/etl.py": """
        import pendulum
        from airflow import DAG
        from airflow.providers.postgres.operators.postgres import PostgresOperator

        with DAG("nightly", schedule="@daily", start_date=pendulum.datetime(2024, 1, 1)):
            PostgresOperator(task_id="vacuum", postgres_conn_id="postgres_default",
                             sql="VACUUM ANALYZE orders", autocommit=True)
    """,
    "2.10.5/workday.py": """
        import pendulum
        from airflow import DAG
        from airflow.operators.empty import EmptyOperator
        from plugins.workday import AfterWorkdayTimetable

        with DAG("workday", schedule=AfterWorkdayTimetable(),
                 start_date=pendulum.datetime(2024, 1, 1)):
            EmptyOperator(task_id="noop")
    """,
    "3.3.2/consumer.py": """
        from airflow.sdk import DAG, Asset, AssetWatcher
        from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
        from airflow.providers.standard.triggers.file import FileDeleteTrigger

        ORDERS = Asset("s3://lake/orders", watchers=[
            AssetWatcher(name="drop", trigger=FileDeleteTrigger(filepath="/data/orders.csv"))])

        with DAG("consumer", schedule=[ORDERS]):
            SQLExecuteQueryOperator(task_id="load", conn_id="postgres_default", sql="SELECT 1")
    """,
}


def test_the_fidelity_scenario_reports_each_airflow_version(tmp_path):
    """On a local folder per version (no download): counts per version, the causes of
    the manual DAGs by code, and the target line."""
    for name, text in FIDELITY_DAGS.items():
        path = tmp_path / "dags" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    report = tmp_path / "BENCH.md"
    done = _bench(
        "fidelity",
        "--quick",
        "--json",
        "--output",
        str(report),
        env={"PGDURABLE_FIDELITY_DAGS": str(tmp_path / "dags")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = report.read_text()
    assert "## 9. Fidelity on Airflow's own example DAGs" in text
    assert "| 2.10.5 | 2 | 1 | 0 | 1 | 0 | 50% |" in text
    assert "| 3.3.2 | 1 | 0 | 0 | 1 | 0 | 0% |" in text
    assert "| all | 3 | 1 | 0 | 2 | 0 | 33% |" in text
    assert "PGD357 ×1" in text and "PGD355 ×1" in text
    (section,) = json.loads(done.stdout)["sections"]
    assert section["data"]["versions"]["2.10.5"]["causes"] == {"PGD357": 1}
    assert section["data"]["share"] == 1 / 3
