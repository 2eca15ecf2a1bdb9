"""The deadlines of ``pgdurable.timeout`` nodes, as seen from inside their child.

A TIMEOUT runs its child as an asyncio task with a ``Deadline`` pushed on a
context variable, so every task the child spawns (JOIN and RACE branches)
sees it too. Two things happen under a deadline:

- SQL steps register the backend pid of the connection they run on, so that
  when the deadline passes the TIMEOUT can cancel the running statement on
  the server (``pg_cancel_backend``) before it cancels the task. Cancelling
  only the task would leave the statement running (and holding locks) until
  it ends on its own.
- "New work" (a leaf executing, a loop or a retry moving on) is refused once
  the deadline has passed. That is how a replay stays honest: when a claim
  reaches a TIMEOUT after its deadline (the worker was down, or the run slept
  through it), the child may still finish from its journal, since that work
  was done in time, but anything not yet done fails the TIMEOUT instead.

A connection whose statement is being cancelled is held until the cancel has
been sent, so the signal cannot reach another step that reuses the backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from pgdurable import db
from pgdurable.worker.outcomes import DeadlineExceeded

log = logging.getLogger("pgdurable.worker")


@dataclass(eq=False)
class Deadline:
    """One TIMEOUT node's hold over the work of its child in this claim."""

    key: tuple[str, int, str]  # the TIMEOUT's (scope, gen, node)
    expired: bool  # already past when this claim reached the node (replay only)
    firing: bool = False  # past now; the child is being cancelled
    backends: set[int] = field(default_factory=set)  # pids running its SQL right now
    cancel_sent: asyncio.Event = field(default_factory=asyncio.Event)


# Outermost first. A tuple, so a child task's copy of the context never sees
# deadlines pushed later by a sibling.
_ACTIVE: ContextVar[tuple[Deadline, ...]] = ContextVar("pgdurable_deadlines", default=())


def active() -> tuple[Deadline, ...]:
    return _ACTIVE.get()


@contextlib.contextmanager
def entered(deadline: Deadline):
    """Make ``deadline`` govern tasks created inside the ``with`` block."""
    token = _ACTIVE.set((*_ACTIVE.get(), deadline))
    try:
        yield deadline
    finally:
        _ACTIVE.reset(token)


def forbid_new_work() -> None:
    """Raise ``DeadlineExceeded`` if a deadline governing this task has passed.

    The outermost one wins: its TIMEOUT is the one that ends the work.
    """
    for deadline in _ACTIVE.get():
        if deadline.expired or deadline.firing:
            raise DeadlineExceeded(deadline)


class _TrackedPool:
    """A pool whose connections are registered with the current deadlines
    while a step holds them (only ``connection()`` is used by SQL steps)."""

    def __init__(self, pool: db.AsyncPool, deadlines: tuple[Deadline, ...]) -> None:
        self._pool = pool
        self._deadlines = deadlines

    @contextlib.asynccontextmanager
    async def connection(self, **kwargs: Any) -> AsyncIterator[Any]:
        async with self._pool.connection(**kwargs) as conn:
            pid = conn.info.backend_pid
            for deadline in self._deadlines:
                deadline.backends.add(pid)
            try:
                yield conn
            finally:
                for deadline in self._deadlines:
                    deadline.backends.discard(pid)
                for deadline in self._deadlines:
                    if deadline.firing:  # do not hand the backend on before the cancel is out
                        await deadline.cancel_sent.wait()


def track(pool: db.AsyncPool) -> Any:
    """``pool``, or a wrapper that registers its connections with the deadlines."""
    deadlines = _ACTIVE.get()
    return _TrackedPool(pool, deadlines) if deadlines else pool


async def cancel_statements(worker_pool: db.AsyncPool, deadline: Deadline) -> None:
    """Cancel, on the server, every statement running under ``deadline``.

    Sent from the worker's own (privileged) pool: ``pg_cancel_backend`` of a
    step's backend, which belongs to the instance's role. Always releases the
    connections held back for the cancel, even if it could not be sent (the
    task cancellation that follows makes psycopg send its own cancel).
    """
    deadline.firing = True
    try:
        pids = sorted(deadline.backends)
        if pids:
            async with worker_pool.connection() as conn:
                await conn.execute(
                    "SELECT pg_catalog.pg_cancel_backend(pid) FROM unnest(%s::int[]) AS pid",
                    [pids],
                )
    except db.DatabaseError:
        log.warning("could not cancel statements of timed-out steps", exc_info=True)
    finally:
        deadline.cancel_sent.set()
