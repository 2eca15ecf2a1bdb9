"""The instance commands of the CLI (run, status, explain), as a user types them."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def pgdurable(database, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgdurable", *args, "--dsn", database.conninfo("alice")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
    )


def test_explain_draws_a_live_instance_and_an_expression(database, wf):
    instance = wf.start(wf.then(wf.sql("SELECT 1", name="one"), wf.sql("SELECT 2")), label="demo")
    wf.run()
    shown = pgdurable(database, "explain", instance)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].rstrip() == f"Instance: {instance} (demo)"
    assert lines[1].rstrip() == "Status:   ✓ Completed"
    assert any("SQL: SELECT 1 |=> 'one'" in line and "✓" in line for line in lines)
    assert sum("→ " in line for line in lines) == 1
    drawn = pgdurable(database, "explain", "'SELECT 1' ~> 'SELECT 2'")
    assert drawn.returncode == 0, drawn.stderr
    assert "SQL: SELECT 2" in drawn.stdout and "Instance:" not in drawn.stdout
    missing = pgdurable(database, "explain", "0badc0de")
    assert missing.stdout.strip() == "Instance '0badc0de' not found"


def test_every_instance_command_takes_json_with_the_connection(database, wf, tmp_path):
    # issue 20 item 6: cancel, signal and explain had no --json, status and apply's
    # --json left out the `connection` key the README promises.
    instance = wf.start(wf.then(wf.signal("go"), wf.sql("SELECT 1")), label="json-demo")
    answers = {}
    for args in (
        ("signal", instance, "go", '{"n": 1}'),
        ("explain", instance),
        ("status", instance),
        ("status",),
        ("cancel", instance),
    ):
        shown = pgdurable(database, *args, "--json")
        assert shown.returncode == 0, shown.stderr
        data = json.loads(shown.stdout)
        assert data["connection"] == {"source": "--dsn", "target": data["connection"]["target"]}
        assert "alice" in data["connection"]["target"]
        answers[args[0] + str(len(args))] = data
        if args[0] == "signal":  # pending until consumed; removed once the instance ends
            assert database.value(
                "SELECT data FROM pgdurable.signals WHERE instance_id = %s", [instance]
            ) == {"n": 1}
    assert answers["signal4"]["answer"] == "OK"
    assert answers["signal4"]["signal"] == "go"
    assert answers["explain2"]["answer"].splitlines()[0].startswith(f"Instance: {instance}")
    assert answers["status2"]["id"] == instance
    assert instance in [r["id"] for r in answers["status1"]["instances"]]
    assert answers["cancel2"]["answer"].startswith(f"Instance {instance} cancelled")
    assert wf.status(instance) == "cancelled"
    # apply --json carries the connection too (an empty folder applies nothing).
    applied = pgdurable(database, "apply", str(tmp_path), "--json")
    assert applied.returncode == 0, applied.stderr
    data = json.loads(applied.stdout)
    assert data["applied"] == [] and "alice" in data["connection"]["target"]


def test_a_missing_schema_says_how_to_install_it(empty_database):
    # Before: `error: relation "df.instances" does not exist`.
    for args in (("status",), ("cancel", "0badc0de"), ("explain", "0badc0de")):
        shown = subprocess.run(
            [sys.executable, "-m", "pgdurable", *args, "--dsn", empty_database.conninfo()],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONSAFEPATH": "1"},
        )
        assert shown.returncode == 1, shown.stderr
        assert "run `pgdurable schema install`" in shown.stderr, shown.stderr
        assert "does not exist" not in shown.stderr
