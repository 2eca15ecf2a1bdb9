"""How a node can end other than with a result: the worker's control flow.

These are not errors of pgdurable (they stay outside the ``PgDurableError``
tree, like dramatiq's ``Retry``): they carry a workflow's own outcomes up the
graph. ``Failed`` and ``Broke`` are workflow semantics (SPEC B §4.3, BREAK);
``Suspended`` means "nothing more can happen until a time or a signal", and
ends the claim so a waiting instance holds no coroutine; ``LeaseLost``,
``Cancelled``, ``Retry`` and ``ShuttingDown`` end a claim without changing
the workflow.
"""

from __future__ import annotations

from datetime import datetime


class Failed(Exception):
    """The node failed with ``error`` (the text stamped on it and its ancestors)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class Broke(Exception):
    """A ``df.break`` unwinding to the nearest loop with ``value`` (JSON text)."""

    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.value = value


class Suspended(Exception):
    """The node waits: for ``wake_at`` (None = no timer) or one of ``signals``."""

    def __init__(self, wake_at: datetime | None, signals: frozenset[str] = frozenset()) -> None:
        super().__init__(wake_at, signals)
        self.wake_at = wake_at
        self.signals = signals

    @staticmethod
    def combine(waits: list[Suspended]) -> Suspended:
        """One wait for several branches: the earliest timer, any of the signals."""
        times = [w.wake_at for w in waits if w.wake_at is not None]
        signals: frozenset[str] = frozenset().union(*(w.signals for w in waits))
        return Suspended(min(times) if times else None, signals)


class LeaseLost(Exception):
    """Another worker holds this instance now; stop without writing anything."""


class Cancelled(Exception):
    """``df.cancel`` was called; stop driving the instance."""


class Retry(Exception):
    """The database connection failed mid-claim; release and try again later."""


class ShuttingDown(Exception):
    """The worker is stopping: end the claim at this step boundary and release it."""


class DeadlineExceeded(Exception):
    """A ``pgdurable.timeout`` deadline has passed: nothing new may start under it.

    Raised inside the TIMEOUT's child (see ``deadlines.forbid_new_work``) and
    caught by the TIMEOUT that owns ``deadline``, which then fails the node.
    """

    def __init__(self, deadline: object) -> None:
        super().__init__("deadline exceeded")
        self.deadline = deadline
