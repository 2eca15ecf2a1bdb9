"""Load holds (issue 11 §5): a burst of instances started within seconds
completes with bounded worker memory and a bounded number of connections,
and a role connection limit below the worker's concurrency slows the work
down (back-pressure) instead of failing instances.

CI size: 1 000 instances; ``--long``: 5 000. Each instance is two SQL steps
that insert into ``effects``, so the run also checks exactly-once at volume.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from pgdurable.testing import spawn_worker, stop_process, wait_for

CONCURRENCY = 10
# The worker's own pool (concurrency + 3), the step pool of the one role
# (concurrency) and the LISTEN connection.
MAX_WORKER_CONNECTIONS = 2 * CONCURRENCY + 4
MAX_RSS_MB = 400


def _graph(k: int) -> str:
    step = "INSERT INTO effects (k, step) VALUES ({k}, {s})"
    return json.dumps(
        {
            "node_type": "THEN",
            "left_node": {"node_type": "SQL", "query": step.format(k=k, s=1)},
            "right_node": {"node_type": "SQL", "query": step.format(k=k, s=2)},
        }
    )


def _start_burst(database, count: int, threads: int = 8) -> float:
    """Start ``count`` instances from ``threads`` sessions; seconds it took."""

    def start(part: range) -> None:
        with database.connect("alice", autocommit=False) as conn:
            for k in part:
                conn.execute("SELECT df.start(%s)", [_graph(k)])
            conn.commit()

    began = time.monotonic()
    workers = [
        threading.Thread(target=start, args=(range(i, count, threads),)) for i in range(threads)
    ]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return time.monotonic() - began


class Sampler:
    """Peak RSS of the worker process and peak connections to the database."""

    def __init__(self, database, pid: int) -> None:
        self.database, self.pid = database, pid
        self.rss_mb = 0.0
        self.connections = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.database.connect() as conn:
            while not self.done.wait(0.2):
                try:
                    status = Path(f"/proc/{self.pid}/status").read_text()
                except OSError:
                    return
                for line in status.splitlines():
                    if line.startswith("VmRSS:"):
                        self.rss_mb = max(self.rss_mb, int(line.split()[1]) / 1024)
                count = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                ).fetchone()[0]
                self.connections = max(self.connections, count)

    def stop(self) -> None:
        self.done.set()
        self.thread.join(10)


def run_burst(
    database, tmp_path: Path, count: int, threads: int = 8
) -> tuple[float, float, Sampler]:
    database.create_role("alice")
    database.execute("SELECT df.grant_usage('alice')")
    database.execute("CREATE TABLE effects (k int, step int); GRANT ALL ON effects TO alice")
    started_in = _start_burst(database, count, threads)
    worker = spawn_worker(
        database.conninfo(), "--concurrency", str(CONCURRENCY), log=tmp_path / "worker.log"
    )
    sampler = Sampler(database, worker.pid)
    began = time.monotonic()
    try:
        wait_for(
            lambda: (
                database.value(
                    "SELECT count(*) FROM df.instances WHERE status IN ('pending', 'running')"
                )
                == 0
            ),
            timeout=600,
            interval=0.5,
            what=f"{count} instances to finish",
        )
        finished_in = time.monotonic() - began
    finally:
        sampler.stop()
        stop_process(worker)
    statuses = dict(database.execute("SELECT status, count(*) FROM df.instances GROUP BY 1"))
    assert statuses == {"completed": count}, (
        statuses,
        (tmp_path / "worker.log").read_text()[-3000:],
    )
    assert database.execute("SELECT count(*), count(DISTINCT (k, step)) FROM effects") == [
        (2 * count, 2 * count)
    ]
    return started_in, finished_in, sampler


def test_a_burst_completes_with_bounded_memory_and_connections(database, tmp_path, long_run):
    count = 5000 if long_run else 1000
    started_in, finished_in, sampler = run_burst(database, tmp_path, count)
    print(
        f"load: {count} instances started in {started_in:.1f}s, finished in {finished_in:.1f}s;"
        f" worker peak RSS {sampler.rss_mb:.0f} MB, peak connections {sampler.connections}"
    )
    assert sampler.connections <= MAX_WORKER_CONNECTIONS
    assert 0 < sampler.rss_mb < MAX_RSS_MB


def test_a_role_connection_limit_means_back_pressure_not_failures(database, tmp_path):
    database.create_role("alice")
    # Fewer connections than the worker's concurrency wants for alice's steps.
    database.execute("ALTER ROLE alice CONNECTION LIMIT 3")
    try:
        _, finished_in, _ = run_burst(database, tmp_path, 200, threads=2)
    finally:
        database.execute("ALTER ROLE alice CONNECTION LIMIT -1")
    print(f"load with a connection limit of 3: 200 instances finished in {finished_in:.1f}s")
