"""What makes figures comparable across machines: disk sync latency and CPU speed.

A per-step time means little without the machine it came from: commits wait for
the WAL flush, and the worker and the server share the CPU. The report's header
therefore carries ``pg_test_fsync``'s fdatasync latency (the sync a commit waits
for with Linux's default ``wal_sync_method``) measured in the cluster's folder,
and the time of a fixed CPU-bound loop, so two reports can be put on one scale.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path

# fdatasync line of pg_test_fsync's first table ("one 8kB write"), e.g.
#         fdatasync                          6270.210 ops/sec     159 usecs/op
_FDATASYNC = re.compile(r"^\s*fdatasync\s+[\d.]+ ops/sec\s+(\d+) usecs/op", re.MULTILINE)
CPU_ROUNDS = 5
CPU_BLOCK = b"pgdurable-calibration" * 4096  # 86 KiB hashed 200 times per round


def cpu_loop_seconds() -> float:
    """Median seconds of a fixed, single-threaded hashing loop (lower is faster)."""
    samples = []
    for _ in range(CPU_ROUNDS):
        started = time.perf_counter()
        digest = b""
        for _ in range(200):
            digest = hashlib.sha256(CPU_BLOCK + digest).digest()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def find_pg_test_fsync(bindir: Path) -> str | None:
    """The server's own ``pg_test_fsync``, else one on PATH (npm builds ship none)."""
    candidate = bindir / "pg_test_fsync"
    if candidate.is_file():
        return str(candidate)
    return shutil.which("pg_test_fsync")


def fdatasync_microseconds(program: str, folder: Path) -> int:
    """fdatasync latency of one 8 kB write in ``folder``, as pg_test_fsync reports it.

    Raises ``RuntimeError`` with pg_test_fsync's own words when it fails or its
    output has no fdatasync figure.
    """
    probe = folder / "pg_test_fsync.out"
    try:
        done = subprocess.run(
            [program, "--secs-per-test", "1", "--filename", str(probe)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        probe.unlink(missing_ok=True)
    found = _FDATASYNC.search(done.stdout)
    if done.returncode != 0 or found is None:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise RuntimeError(f"pg_test_fsync gave no fdatasync figure: {last[0]}")
    return int(found.group(1))


def describe(bindir: Path, folder: Path) -> dict[str, str]:
    """The calibration lines of the report header (never raises: a missing tool is said)."""
    lines = {"cpu calibration": f"{cpu_loop_seconds() * 1000:.1f} ms for a fixed hashing loop"}
    program = find_pg_test_fsync(bindir)
    if program is None:
        lines["disk sync"] = f"not measured: no pg_test_fsync in {bindir} or on PATH"
        return lines
    try:
        micros = fdatasync_microseconds(program, folder)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        lines["disk sync"] = f"not measured: {exc}"
    else:
        lines["disk sync"] = f"fdatasync {micros / 1000:.2f} ms per 8 kB write (pg_test_fsync)"
    return lines
