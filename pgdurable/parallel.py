"""Map a function over many independent items in a pool of processes, and leave
no process behind.

Used by translators whose items are independent and CPU-bound (Airflow DAG
files). The pool's workers ignore SIGINT: a Ctrl-C reaches the whole process
group, and only the parent decides what happens (its KeyboardInterrupt stops
and joins the pool; a worker printing its own traceback helps no one). A parent
killed outright (SIGTERM, SIGKILL) runs no cleanup, so on Linux each worker
asks the kernel to kill it when its parent dies (``PR_SET_PDEATHSIG``) instead
of waiting on its task queue forever. Results come back in input order;
``progress(done, total)`` is called as they do.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _worker_setup(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked while forked
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def map_in_processes(
    function: Callable[[T], R],
    items: Sequence[T],
    *,
    chunksize: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> list[R]:
    """``[function(i) for i in items]`` computed by a process pool."""
    # A Ctrl-C while the workers are being forked waits until the pool exists (a
    # worker would otherwise get it before it ignores SIGINT), then stops it.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        pool = multiprocessing.Pool(initializer=_worker_setup, initargs=(os.getpid(),))
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        raise
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending Ctrl-C is raised here
        results: list[R] = []
        for result in pool.imap(function, items, chunksize=chunksize):
            results.append(result)
            if progress is not None:
                progress(len(results), len(items))
        return results
    finally:  # also on an interrupt: stop every worker and wait until it is gone
        pool.terminate()
        pool.join()
