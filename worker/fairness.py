"""Fair shares of a bounded resource among roles (issue 16 §4).

A worker has ``size`` slots (claimed instances, and separately steps in
flight). With R roles holding or waiting for slots, a role's share is
ceil(size / R): a role alone may use every slot, and while others wait no
role gets a slot beyond its share. Slots are never taken back from work
that is running (a statement cannot be paused), so a role below its share
may also *borrow* the slots other roles hold beyond theirs: the total held
then exceeds ``size`` by at most the borrowed amount (never more than
``size``), and shrinks back as the over-share work ends. ``share_rule``
is that rule; the SQL claim (``pgdurable.claim_v3``) applies the same one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Hashable, Iterable


def share_of(size: int, roles: int) -> int:
    return -(-size // max(roles, 1))


def borrowable(size: int, held: Counter) -> bool:
    """Whether a role that holds nothing yet could borrow a slot now."""
    return may_take(size, held, _NEWCOMER, ())


_NEWCOMER = object()


def may_take(size: int, held: Counter, role: Hashable, others_waiting: Iterable[Hashable]) -> bool:
    """Whether ``role`` may take one more slot, given what each role holds
    and which other roles wait for one."""
    waiting = {r for r in others_waiting if r != role}
    share = share_of(size, len({r for r, n in held.items() if n} | waiting | {role}))
    total = sum(held.values())
    if held[role] < share:
        beyond = sum(max(n - share, 0) for n in held.values())
        return total < size + beyond
    # At or over its share: only a free slot nobody below their share wants.
    return total < size and all(held[r] >= share for r in waiting)


class FairSlots:
    """An asyncio semaphore of ``size`` slots shared fairly by roles."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.held: Counter = Counter()
        self.waiting: Counter = Counter()
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, role: Hashable) -> AsyncIterator[None]:
        async with self._changed:
            self.waiting[role] += 1
            try:
                await self._changed.wait_for(
                    lambda: may_take(self.size, self.held, role, +self.waiting)
                )
            finally:
                self.waiting[role] -= 1
                # A waiter that gave up (cancelled) may have held others back.
                self._changed.notify_all()
            self.held[role] += 1
        try:
            yield
        finally:
            async with self._changed:
                self.held[role] -= 1
                self._changed.notify_all()
