"""``pgdurable runs`` and ``pgdurable status`` as a user types them (issue 20)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pgdurable.testing import wait_for


def pgdurable(database, *args: str, user: str = "alice") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgdurable", *args, "--dsn", database.conninfo(user)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
    )


def _register(database, name: str, start: bool, definition: str = "'SELECT 1'") -> None:
    """Register a workflow; ``definition`` is a DSL expression (SQL text)."""
    database.execute(
        "SELECT pgdurable.deploy_workflow(source => 'celery', workflow_name => %s,"
        f" definition => {definition}, schedule => NULL, profile => 'portable',"
        " fidelity => 'exact', run_as => 'alice', target_database => NULL, start => %s)",
        [name, start],
    )


def test_runs_lists_filters_and_says_when_there_are_more(database, wf):
    _register(database, "report", start=False)
    _register(database, "other", start=False)
    for graph in (wf.sql("SELECT 1"), wf.sql("SELECT 1/0"), wf.sql("SELECT 2")):
        wf.start(graph, "celery/report#run")
    wf.start(wf.sql("SELECT 3"), "celery/other#run")
    wf.run()

    shown = pgdurable(database, "runs")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split()[:4] == ["RUNID", "WORKFLOW", "RUN", "OUTCOME"]
    assert len(lines) == 5 and "there are more" not in shown.stdout
    assert "division by zero" in shown.stdout
    runids = [int(line.split()[0]) for line in lines[1:]]
    assert runids == sorted(runids, reverse=True)  # newest first
    assert {line.split()[1] for line in lines[1:]} == {"celery/report", "celery/other"}
    assert lines[1].split()[5].endswith("Z")  # UTC timestamps: date, time

    failed = json.loads(pgdurable(database, "runs", "report", "--state", "failed", "--json").stdout)
    assert "alice" in failed["connection"]["target"]
    assert [(r["workflow"], r["outcome"]) for r in failed["runs"]] == [("celery/report", "failed")]
    assert failed["runs"][0]["error"].endswith("division by zero")

    limited = pgdurable(database, "runs", "celery/report", "--limit", "2")
    assert "2 runs shown; there are more" in limited.stdout
    assert json.loads(pgdurable(database, "runs", "--limit", "2", "--json").stdout)["more"]

    assert json.loads(pgdurable(database, "runs", "--since", "1h", "--json").stdout)["runs"]
    future = pgdurable(database, "runs", "--since", "2999-01-01T00:00", "--json")
    assert json.loads(future.stdout)["runs"] == []
    assert pgdurable(database, "runs", "--since", "soon").returncode == 2
    # another role sees none of them
    database.create_role("eve")
    database.execute("SELECT df.grant_usage('eve')")
    assert pgdurable(database, "runs", user="eve").stdout.strip() == "no runs"


def test_status_shows_workflows_and_waiting_instances(database, wf, background_worker):
    _register(database, "broken", start=False)
    wf.start(wf.sql("SELECT 1/0"), "celery/broken#run")
    # a loop registered and started: it sleeps an hour between ticks
    _register(
        database, "hourly", start=True, definition="df.loop(df.seq(df.sleep(3600), 'SELECT 1'))"
    )
    for n in range(3):
        wf.start(wf.sql(f"SELECT {n}"), f"batch-{n}")
    background_worker()
    wait_for(
        lambda: (
            database.value(
                "SELECT count(*) FROM pgdurable.instance_states WHERE state IN ('completed', 'failed', 'waiting')"
            )
            == 5
        ),
        what="every instance ended or waiting",
    )

    shown = pgdurable(database, "status")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert text.startswith("workflows: 2\nWORKFLOW")
    broken = next(line for line in text.splitlines() if line.startswith("celery/broken"))
    assert broken.split()[1] == "failing" and "division by zero" in broken
    hourly = next(line for line in text.splitlines() if line.startswith("celery/hourly"))
    assert hourly.split()[1] == "waiting"
    assert "instances: 5 of 5, newest first" in text
    loop_line = next(line for line in text.splitlines() if line.endswith(" celery/hourly"))
    assert loop_line.split()[1] == "waiting"  # not running: it sleeps until its next tick

    data = json.loads(pgdurable(database, "status", "--json").stdout)
    assert "alice" in data["connection"]["target"]
    health = {w["workflow"]: w for w in data["workflows"]}
    assert health["celery/hourly"]["next_due_at"] is not None
    assert health["celery/hourly"]["overdue"] is False
    assert health["celery/broken"]["last_outcome"] == "failed"

    limited = pgdurable(database, "status", "--limit", "2", "--label", "batch-*")
    assert "instances: 2 of 3, newest first (there are more" in limited.stdout
    assert "workflows:" not in limited.stdout  # no workflow is named batch-*
    waiting = json.loads(pgdurable(database, "status", "--state", "waiting", "--json").stdout)
    assert [i["label"] for i in waiting["instances"]] == ["celery/hourly"]
    assert [w["workflow"] for w in waiting["workflows"]] == ["celery/hourly"]
    assert pgdurable(database, "status", "--state", "sleepy").returncode == 2
