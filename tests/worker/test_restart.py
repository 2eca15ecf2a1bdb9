"""Resilience: PostgreSQL crashing under a running worker, graceful SIGTERM,
and the structured JSON log (SPEC A.2.4; issue 4, durability and CLI).

Workflows are chains of ``UPDATE counters SET n = n + 1`` steps, as in
``test_crash.py``: every counter at exactly 1 at the end proves each step's
effect was applied once, whatever was interrupted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pgdurable import db, migrator
from pgdurable.embedded import DATABASE, EmbeddedCluster
from pgdurable.testing import TestDatabase, wait_for
from pgdurable.worker import run_worker

from .conftest import Workflows

STEPS = 10
INSTANCES = 3


@pytest.fixture
def own_database():
    """A database on a cluster of its own, which the test may crash and restart."""
    base = Path(tempfile.mkdtemp(prefix="pgdurable-restart-"))
    base.chmod(0o755)  # the server account (when we run as root) must enter it
    cluster = EmbeddedCluster(base / "cluster", settings={"fsync": "off"})
    cluster.start()
    try:
        with db.connection(cluster.conninfo(DATABASE)) as conn:
            migrator.apply(conn)
        database = TestDatabase(cluster, DATABASE)
        database.create_role("alice")
        database.execute("SELECT df.grant_usage('alice')")
        yield database
    finally:
        try:
            cluster.stop("immediate")
        finally:
            shutil.rmtree(base, ignore_errors=True)


def prepare(database, wf, steps: int = STEPS, instances: int = INSTANCES, sleep: float = 0.02):
    database.execute("CREATE TABLE counters (instance int, step int, n int NOT NULL DEFAULT 0)")
    database.execute(
        "INSERT INTO counters SELECT i, s, 0 FROM generate_series(1, %s) i,"
        " generate_series(1, %s) s",
        [instances, steps],
    )
    database.execute("GRANT ALL ON counters TO alice")
    ids = []
    for i in range(1, instances + 1):
        chain = [
            wf.sql(
                f"UPDATE counters SET n = n + 1 WHERE instance = {i} AND step = {k}"
                f" AND pg_sleep({sleep}) IS NOT NULL"
            )
            for k in range(1, steps + 1)
        ]
        ids.append(wf.start(wf.then(*chain)))
    return ids


def spawn_worker(database, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pgdurable",
            "worker",
            "--dsn",
            database.conninfo(),
            "--concurrency",
            "4",
            "--lease-seconds",
            "2",
            "--log-format",
            "json",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
    )


def journaled(database) -> int:
    return database.value("SELECT count(*) FROM pgdurable.journal")


def log_events(stderr: bytes) -> list[dict]:
    """Every stderr line must be one JSON object."""
    return [json.loads(line) for line in stderr.decode().splitlines() if line.strip()]


def test_postgres_crash_and_restart_mid_run(own_database):
    database = own_database
    wf = Workflows(database, "alice")
    ids = prepare(database, wf)
    total = STEPS * INSTANCES

    # 1. The server crashes under a running worker and comes back: the same
    #    worker reconnects and keeps going.
    worker = spawn_worker(database)
    wait_for(lambda: journaled(database) >= 6, timeout=30, what="6 steps")
    database.cluster.stop("immediate")
    database.cluster.start()
    before = journaled(database)
    assert before < total
    wait_for(lambda: journaled(database) >= before + 6, timeout=30, what="progress after restart")
    assert worker.poll() is None  # it survived the crash of its database

    # 2. The server crashes again and the worker dies while it is down: a
    #    worker started afterwards finishes everything.
    database.cluster.stop("immediate")
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    database.cluster.start()
    assert journaled(database) < total
    final = spawn_worker(database, "--until-idle")
    _, stderr = final.communicate(timeout=60)
    assert final.returncode == 0, stderr.decode()[-2000:]
    worker.stderr.close()
    assert [wf.status(i) for i in ids] == ["completed"] * INSTANCES
    assert database.execute("SELECT n, count(*) FROM counters GROUP BY n") == [(1, total)]


def test_sigterm_lets_the_running_step_finish_and_releases_the_claim(database, wf):
    ids = prepare(database, wf, steps=3, instances=1, sleep=0)
    database.execute(
        "UPDATE df.nodes SET query = query || ' AND pg_sleep(1.5) IS NOT NULL'"
        " WHERE instance_id = %s AND query LIKE '%%step = 1 %%'",
        [ids[0]],
    )
    worker = spawn_worker(database)
    wait_for(
        lambda: database.value(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'alice'"
            " AND state = 'active' AND query LIKE '%%pg_sleep(1.5)%%'"
        ),
        timeout=20,
        what="the slow step running",
    )
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=15)
    assert worker.returncode == 0, stderr.decode()[-2000:]
    assert time.monotonic() - started < 5
    # The running step finished and committed; no further step started.
    assert journaled(database) == 1
    assert database.execute("SELECT step, n FROM counters ORDER BY step") == [
        (1, 1),
        (2, 0),
        (3, 0),
    ]
    # The claim was released at once (no lease left to expire).
    assert database.execute("SELECT worker, lease_expires_at FROM pgdurable.runs") == [(None, None)]
    events = log_events(stderr)
    names = [e["event"] for e in events]
    assert names.index("worker_stopping") < names.index("step_completed")
    assert ("instance_released", ids[0]) in [(e["event"], e.get("instance")) for e in events]
    assert names[-1] == "worker_stopped"
    # Another worker resumes after the finished step.
    wf.run()
    assert wf.status(ids[0]) == "completed"
    assert database.execute("SELECT n, count(*) FROM counters GROUP BY n") == [(1, 3)]


def test_sigterm_cancels_a_step_that_outlives_the_grace_period(database, wf):
    ids = prepare(database, wf, steps=2, instances=1, sleep=0)
    database.execute(
        "UPDATE df.nodes SET query = query || ' AND pg_sleep(30) IS NOT NULL'"
        " WHERE instance_id = %s AND query LIKE '%%step = 1 %%'",
        [ids[0]],
    )
    worker = spawn_worker(database, "--grace", "0.5")
    wait_for(
        lambda: database.value(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'alice'"
            " AND state = 'active' AND query LIKE '%%pg_sleep(30)%%'"
        ),
        timeout=20,
        what="the long step running",
    )
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=15)
    assert worker.returncode == 0, stderr.decode()[-2000:]
    assert time.monotonic() - started < 5
    assert journaled(database) == 0  # the cancelled step rolled back with its record
    assert database.value("SELECT worker FROM pgdurable.runs") is None
    # Its statement does not keep running on the server either.
    wait_for(
        lambda: (
            not database.value(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%pg_sleep(30)%%'"
                " AND usename = 'alice' AND state = 'active'"
            )
        ),
        timeout=5,
        what="the statement cancelled",
    )
    database.execute("UPDATE df.nodes SET query = replace(query, 'pg_sleep(30)', 'pg_sleep(0)')")
    wf.run()
    assert wf.status(ids[0]) == "completed"
    assert database.execute("SELECT n, count(*) FROM counters GROUP BY n") == [(1, 2)]


def test_json_log_has_one_line_per_step_transition(database, wf):
    ids = prepare(database, wf, steps=3, instances=1, sleep=0)
    worker = spawn_worker(database, "--until-idle")
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr.decode()[-2000:]
    events = log_events(stderr)
    assert all({"ts", "level", "event"} <= set(e) for e in events)
    steps = [e for e in events if e["event"].startswith("step_")]
    nodes = [
        row[0]
        for row in database.execute(
            "SELECT id FROM df.nodes WHERE instance_id = %s AND node_type = 'SQL'", [ids[0]]
        )
    ]
    assert len(steps) == 6
    for node in nodes:
        mine = [e for e in steps if e["node"] == node]
        assert [e["event"] for e in mine] == ["step_started", "step_completed"]
        assert all(e["instance"] == ids[0] and e["type"] == "SQL" for e in mine)
        assert mine[0]["execution"] == f"{ids[0]}::1"
        assert mine[1]["duration_ms"] >= 0
    assert [e["instance"] for e in events if e["event"] == "instance_completed"] == ids


def test_library_worker_survives_a_database_restart(own_database):
    """The embedded entry point (no subprocess) also rides out a restart."""
    import asyncio
    import threading

    database = own_database
    wf = Workflows(database, "alice")
    ids = prepare(database, wf, steps=6, instances=2)
    outcome: dict = {}

    def main():
        outcome["result"] = asyncio.run(
            run_worker(database.conninfo(), until_idle=True, lease_seconds=2, poll_interval=0.2)
        )

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    wait_for(lambda: journaled(database) >= 3, timeout=30, what="3 steps")
    database.cluster.stop("immediate")
    database.cluster.start()
    thread.join(60)
    assert not thread.is_alive() and "result" in outcome
    assert [wf.status(i) for i in ids] == ["completed"] * 2
    assert database.execute("SELECT n, count(*) FROM counters GROUP BY n") == [(1, 12)]


def test_log_level_warning_keeps_step_transitions_out(database, wf):
    ids = prepare(database, wf, steps=3, instances=1, sleep=0)
    worker = spawn_worker(database, "--until-idle", "--log-level", "warning")
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr.decode()[-2000:]
    assert wf.status(ids[0]) == "completed"
    assert [e for e in log_events(stderr) if e["level"] == "info"] == []
