"""Task ids as node labels (issue 21): ``pgdurable apply`` records what the
source calls each step of a real Airflow DAG, and ``pgdurable show`` (of the
workflow and of a run's instance) and the dashboard draw the steps with them;
a redeploy with another graph forgets them. A run started by the DAG's trigger
function runs again through the same function."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from pgdurable import apply as applying
from pgdurable import pipeline, show
from pgdurable.cli import cli
from pgdurable.testing import wait_for
from pgdurable.translators import airflow
from pgdurable.translators.base import TranslateContext
from pgdurable.ui import data

DAG = Path(__file__).resolve().parents[2] / "fixtures/airflow/dags/a1_set_upstream.py"
TASKS = ["task a", "task b", "task c", "task d"]


def _labels(graph: show.Graph) -> list[str]:
    return [label for label, shape, _ in graph.nodes.values() if shape == "box"]


def test_task_ids_label_the_registered_workflow_and_its_runs(database, background_worker, tmp_path):
    database.create_role("etl")
    database.execute("SELECT df.grant_usage('etl')")
    batch = airflow.translate(airflow.read_paths([DAG]), TranslateContext(default_username="etl"))
    pipeline.run_import("airflow", batch.results, tmp_path)
    text = (tmp_path / "a1_set_upstream.sql").read_text()
    assert "(task a)" in text and "trigger_a1_set_upstream" in text
    with database.connect() as conn:
        applying.apply_directory(tmp_path, applying.DatabaseSink(conn))
    assert database.value(
        "SELECT labels FROM pgdurable.workflow_step_labels WHERE name = 'a1_set_upstream'"
    )

    with database.connect() as conn:
        registered, _ = show.build(conn, "airflow/a1_set_upstream")
    assert _labels(registered) == TASKS  # not 'SQL: SELECT 1', ...

    database.execute("GRANT USAGE ON SCHEMA airflow_dags TO etl")  # the administrator's call
    run = database.value("SELECT airflow_dags.trigger_a1_set_upstream()", user="etl")
    background_worker()
    wait_for(
        lambda: (
            database.value("SELECT status FROM df.instances WHERE id = %s", [run]) == "completed"
        ),
        what="the triggered run",
    )
    shown = CliRunner().invoke(cli, ["show", run, "--json", "--dsn", database.conninfo()])
    assert shown.exit_code == 0, shown.output
    boxes = [n["label"] for n in json.loads(shown.stdout)["nodes"]]
    assert [b for b in boxes if b.startswith("task ")] == TASKS
    text = CliRunner().invoke(cli, ["show", run, "--format", "text", "--dsn", database.conninfo()])
    assert "task a [completed]" in text.stdout and "task d [completed]" in text.stdout
    with database.connect("etl") as conn:  # the dashboard, as the DAG's role
        view = data.instance(conn, run)
        grid = data.run_grid(conn, "airflow/a1_set_upstream")
        assert [n.label for n in view.nodes if n.node_type == "SQL"] == TASKS
        assert [grid.column_labels[c] for c in grid.columns] == TASKS
        (first,) = grid.runs
        assert first.kind == "run" and first.status == "completed"
        again = data.rerun(conn, first.runid)  # the trigger function, once more
    assert database.value("SELECT label FROM df.instances WHERE id = %s", [again]) == (
        "airflow:a1_set_upstream"
    )
    wait_for(
        lambda: (
            database.value(
                "SELECT outcome FROM pgdurable.run_history WHERE instance_id = %s", [again]
            )
            == "succeeded"
        ),
        what="the re-run",
    )

    # Deployed again with another graph (psql, no labels written): they are forgotten.
    database.execute(
        "SELECT pgdurable.deploy_workflow('airflow', 'a1_set_upstream', 'SELECT 5', NULL,"
        " 'portable', 'exact', 'etl', NULL, false)"
    )
    with database.connect() as conn:
        redeployed, _ = show.build(conn, "airflow/a1_set_upstream")
    assert _labels(redeployed) == ["SQL: SELECT 5"]
    assert not database.value("SELECT count(*) FROM pgdurable.workflow_step_labels")
