"""Shared by the peer workload scripts: arguments, the bench table, worker processes, output.

Runs inside the peers' virtualenv (see ``venv.py``), so it imports psycopg
but never pgdurable. The protocol every ``*_workload.py`` follows:

- ``step``: the per-step workload of scenario 1 (ten one-row UPDATEs), timed
  ``--warmup`` + ``--samples`` times inside one process, so start-up is
  excluded; prints ``{"samples": {label: [seconds per step, ...]}}``.
- ``throughput``: ``--instances`` one-UPDATE instances are enqueued up front,
  then ``--workers`` worker processes (this script again, role ``worker``)
  are started together through a gate, and the rate is ``instances / (last
  completion - first start)`` read from the peer's own tables; prints
  ``{"samples": {label: [instances per second, ...]}}``.

Every script prints exactly one JSON object on stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import psycopg

STEPS = 10
WORKER_CONCURRENCY = 10  # per worker process, for every peer (pgdurable's worker default too)
UPDATE = "UPDATE bench_rows SET n = n + 1 WHERE k = {k}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["step", "throughput", "worker"])
    parser.add_argument("--dsn", required=True, help="libpq conninfo of the peer's database")
    parser.add_argument("--system-db", help="DBOS: name of the system database to create")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(result: dict[str, object]) -> None:
    print(json.dumps(result), flush=True)


def update_sql(k: int) -> str:
    # The literal key, as scenario 1 sends it, so every peer runs the same statement text.
    return UPDATE.format(k=int(k))


def prepare_rows(dsn: str, count: int) -> None:
    """``bench_rows`` with keys 1..count (created or extended; idempotent)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_rows (k int PRIMARY KEY, n int NOT NULL)")
        conn.execute(
            "INSERT INTO bench_rows SELECT k, 0 FROM generate_series(1, %s) k"
            " ON CONFLICT DO NOTHING",
            [max(count, 1000)],
        )


def scalar(dsn: str, query: str, params: Sequence[object] = ()) -> object:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query, list(params)).fetchone()
        return row[0] if row else None


def wait_until(done: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not finish within {timeout:.0f} s")
        time.sleep(interval)


def per_step(stamps: list[float]) -> float:
    """Seconds per step from the completion times of consecutive steps (first to last)."""
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


class Workers:
    """``count`` worker processes of this script, released together through a stdin gate.

    Each worker prints ``ready`` once its imports and connections are set up and
    waits for ``go``: the processes then start consuming at the same moment, so
    a slow start of the second one does not pass for a lower 2-worker rate.
    """

    def __init__(self, script: str, args: argparse.Namespace, count: int) -> None:
        self.processes: list[subprocess.Popen[str]] = []
        base = [sys.executable, script, "worker", "--dsn", args.dsn]
        if args.system_db:
            base += ["--system-db", args.system_db]
        for index in range(count):
            self.processes.append(
                subprocess.Popen(
                    [*base, "--worker-index", str(index)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            )

    def start(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for process in self.processes:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"worker exited before it was ready (exit {process.poll()})")
            if time.monotonic() > deadline:
                raise TimeoutError("workers did not get ready in time")
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()

    def check(self) -> None:
        for process in self.processes:
            code = process.poll()
            if code not in (None, 0):
                raise RuntimeError(f"a worker process failed (exit {code})")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def worker_gate() -> None:
    """In a worker: say ready, then block until the parent says go."""
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit(0)  # the parent gave up before releasing the workers


def run_throughput(
    script: str,
    args: argparse.Namespace,
    enqueue: Callable[[int], object],
    completed: Callable[[object], int],
    span: Callable[[object], float],
    timeout: float = 300,
) -> list[float]:
    """Warm-up + samples of: enqueue N, release the workers, wait, rate from the tables.

    ``enqueue(sample)`` returns a token naming that sample's instances,
    ``completed(token)`` counts the finished ones and ``span(token)`` gives
    seconds from the first start to the last completion.
    """
    rates = []
    for sample in range(args.warmup + args.samples):
        token = enqueue(sample)
        with Workers(script, args, args.workers) as workers:
            workers.start()

            def done(token: object = token) -> bool:
                workers.check()
                return completed(token) >= args.instances

            wait_until(done, timeout, f"{args.instances} instances")
        if sample >= args.warmup:
            rates.append(args.instances / span(token))
    return rates
