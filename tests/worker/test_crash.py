"""Crash safety: SIGKILLed workers, and two workers sharing one database.

Each workflow is a chain of steps ``UPDATE counters SET n = n + 1 WHERE
step = k``. Exactly-once (SPEC A.2.1) means every counter ends at exactly 1,
however often the worker dies: a step either committed together with its
journal row (and is never re-run) or rolled back with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from pgdurable.testing import wait_for

STEPS = 12
INSTANCES = 3


def prepare(database, wf) -> list[str]:
    database.execute("CREATE TABLE counters (instance int, step int, n int NOT NULL DEFAULT 0)")
    database.execute(
        "INSERT INTO counters SELECT i, s, 0 FROM generate_series(1, %s) i,"
        " generate_series(1, %s) s",
        [INSTANCES, STEPS],
    )
    database.execute("GRANT ALL ON counters TO alice")
    ids = []
    for i in range(1, INSTANCES + 1):
        # pg_sleep widens the window in which a kill lands inside a step's transaction.
        steps = [
            wf.sql(
                f"UPDATE counters SET n = n + 1 WHERE instance = {i} AND step = {k}"
                " AND pg_sleep(0.02) IS NOT NULL"
            )
            for k in range(1, STEPS + 1)
        ]
        ids.append(wf.start(wf.then(*steps)))
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
            "1",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
    )


def journaled(database) -> int:
    return database.value("SELECT count(*) FROM pgdurable.journal")


def test_sigkill_at_many_points_applies_every_step_exactly_once(database, wf):
    ids = prepare(database, wf)
    total = STEPS * INSTANCES
    for kill_after in (2, 7, 13, 20, 26, 31):
        worker = spawn_worker(database)
        target = kill_after
        wait_for(lambda: journaled(database) >= target, timeout=30, what=f"{target} steps")  # noqa: B023
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker.stderr.close()
    assert journaled(database) < total  # the kills did interrupt the work
    final = spawn_worker(database, "--until-idle")
    _, stderr = final.communicate(timeout=60)
    assert final.returncode == 0, stderr.decode()
    assert [wf.status(i) for i in ids] == ["completed"] * INSTANCES
    counts = database.execute("SELECT n, count(*) FROM counters GROUP BY n")
    assert counts == [(1, total)]


def test_two_workers_share_the_work_without_running_a_step_twice(database, wf):
    ids = prepare(database, wf)
    workers = [spawn_worker(database, "--until-idle") for _ in range(2)]
    for worker in workers:
        _, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stderr.decode()
    assert [wf.status(i) for i in ids] == ["completed"] * INSTANCES
    assert database.execute("SELECT n, count(*) FROM counters GROUP BY n") == [
        (1, STEPS * INSTANCES)
    ]
    holders = database.value("SELECT count(DISTINCT worker) FROM pgdurable.runs")
    assert holders == 0  # finished runs leave no lease behind
