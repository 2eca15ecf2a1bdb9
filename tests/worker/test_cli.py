"""The instance commands of the CLI (run, status, explain), as a user types them."""

from __future__ import annotations

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
