"""Worker processes for the scale and recovery scenarios, and their memory.

A scenario that kills or measures a worker needs it in a process of its own:
``spawn_worker`` starts the real ``pgdurable worker`` CLI (stderr kept in a
log file so a failure can show its tail), ``RssSampler`` follows its resident
memory from ``/proc``. ``wait_until`` is the polling loop every wait uses, so
no scenario synchronises by sleeping a guessed time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def spawn_worker(dsn: str, log: Path, *options: str) -> subprocess.Popen:
    """``python -m pgdurable worker --dsn DSN OPTIONS``, stderr appended to ``log``."""
    with open(log, "ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "pgdurable", "worker", "--dsn", dsn, *options],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            # The repository root must not shadow the installed package (see STYLE.md).
            env={**os.environ, "PYTHONSAFEPATH": "1"},
        )


def stop(process: subprocess.Popen, *, kill: bool = False, timeout: float = 30.0) -> None:
    """SIGTERM (or SIGKILL) a worker we started and reap it; SIGKILL if TERM is ignored."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait(timeout)


def log_tail(log: Path, chars: int = 2000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def wait_until(
    condition: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    process: subprocess.Popen | None = None,
    log: Path | None = None,
) -> T:
    """Poll ``condition`` until it is truthy; fail after ``timeout`` or if ``process`` dies."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            tail = log_tail(log) if log else ""
            raise RuntimeError(f"the worker exited ({process.returncode}) before {what}\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a live process has used so far (``/proc/PID/stat``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces; the fields we want follow its closing paren.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Resident memory of one process, sampled every ``interval`` seconds in a thread.

    ``peak_mb`` is the largest VmRSS seen; ``hwm_mb`` the kernel's own high-water
    mark (VmHWM), which also catches a peak between two samples.
    """

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_mb = 0.0
        self.hwm_mb = 0.0
        self.samples: list[tuple[float, float]] = []  # (monotonic time, MB)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(self.interval)

    def sample(self) -> float | None:
        rss = _status_kib(self.pid, "VmRSS")
        hwm = _status_kib(self.pid, "VmHWM")
        if rss is None:
            return None
        mb = rss / 1024
        self.peak_mb = max(self.peak_mb, mb)
        if hwm is not None:
            self.hwm_mb = max(self.hwm_mb, hwm / 1024)
        self.samples.append((time.monotonic(), mb))
        return mb

    def stop(self) -> None:
        """Stop sampling (call while the process still runs, to keep its last VmHWM)."""
        self.sample()
        self._done.set()
        self._thread.join(5)
