"""``--chaos N``: run the new side on worker processes that are killed at random points.

The run is driven by real ``pgdurable worker`` processes. At each of N chaos
points a worker is ``SIGKILL``ed after a random number (1-3) of further
journaled steps plus a random delay of up to 50 ms, so kills land between
steps as well as inside a step's transaction; with ``--chaos-db`` PostgreSQL
itself is crashed (``pg_ctl stop -m immediate``) and restarted at the same
point, which only a dedicated cluster may suffer. A last worker then runs
until idle. The final data must still equal the old side's: a step either
committed together with its journal row or rolled back with it.

Workers use a 1-second lease so the next one takes over a killed worker's
instance quickly. ``--seed`` makes the kill points repeatable.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from pgdurable import db
from pgdurable.embedded import EmbeddedCluster
from pgdurable.errors import VerificationError

STEP_TIMEOUT_SECONDS = 60.0


def _spawn(conninfo: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pgdurable",
            "worker",
            "--dsn",
            conninfo,
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


def _progress(conninfo: str) -> tuple[int, int] | None:
    """(journaled steps, unfinished instances), or None while the server is away."""
    try:
        with db.connection(conninfo, autocommit=True) as conn:
            steps = conn.execute("SELECT count(*) FROM pgdurable.journal").fetchone()[0]
            open_ = conn.execute(
                "SELECT count(*) FROM df.instances WHERE status NOT IN"
                " ('completed', 'failed', 'cancelled')"
            ).fetchone()[0]
    except Exception:
        return None
    return steps, open_


def runner(
    kills: int,
    rng: random.Random,
    events: list[str],
    cluster: EmbeddedCluster | None = None,
    worker_args: tuple[str, ...] = (),
) -> Callable[[str], None]:
    """A replacement for the in-process worker run: ``run(conninfo)`` with chaos."""
    remaining = [kills]

    def run(conninfo: str) -> None:
        while remaining[0] > 0:
            start = _progress(conninfo)
            if start is None or start[1] == 0:
                break
            worker = _spawn(conninfo, *worker_args)
            target = start[0] + rng.randint(1, 3)
            deadline = time.monotonic() + STEP_TIMEOUT_SECONDS
            finished = False
            while time.monotonic() < deadline:
                now = _progress(conninfo)
                if now is not None and (now[0] >= target or now[1] == 0):
                    finished = now[1] == 0
                    break
                if worker.poll() is not None:
                    break
                time.sleep(0.01)
            if finished:
                worker.kill()
                worker.wait()
                worker.stderr.close()
                events.append(f"the run finished before chaos point {kills - remaining[0] + 1}")
                break
            time.sleep(rng.uniform(0, 0.05))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            worker.stderr.close()
            remaining[0] -= 1
            point = kills - remaining[0]
            steps = (_progress(conninfo) or (0, 0))[0] if cluster is None else None
            what = f"chaos point {point}: worker SIGKILLed"
            if cluster is not None:
                cluster.stop(mode="immediate")
                cluster.start()
                what += " and PostgreSQL crashed (immediate stop) and restarted"
            else:
                what += f" after {steps} journaled steps"
            events.append(what)
        final = _spawn(conninfo, *worker_args, "--until-idle")
        try:
            _, stderr = final.communicate(timeout=600)
        except subprocess.TimeoutExpired as exc:
            final.kill()
            final.communicate()
            raise VerificationError("the last worker did not finish the run in 600 s") from exc
        if final.returncode != 0:
            raise VerificationError(
                f"the last worker exited with {final.returncode}: {stderr.decode()[-2000:]}"
            )

    return run
