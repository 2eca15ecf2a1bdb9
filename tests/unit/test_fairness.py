"""The fair-share rule of worker slots (worker/fairness.py)."""

from __future__ import annotations

import asyncio
from collections import Counter

from pgdurable.worker.fairness import FairSlots, borrowable, may_take


def test_a_role_alone_takes_every_slot_and_no_more():
    held = Counter()
    for _ in range(5):
        assert may_take(5, held, "a", [])
        held["a"] += 1
    assert not may_take(5, held, "a", [])
    # Full, with nobody beyond a share: a newcomer has nothing to borrow.
    assert not borrowable(5, Counter({"a": 2, "b": 2, "c": 1}))
    assert borrowable(5, Counter({"a": 3, "b": 2}))  # with a newcomer, shares are 2
    assert borrowable(5, Counter({"a": 4}))  # a free slot


def test_a_newcomer_borrows_what_others_hold_beyond_their_share():
    held = Counter({"a": 5})
    assert borrowable(5, held)
    assert may_take(5, held, "b", ["b"])  # share 3: b may go to 6 slots in all
    held["b"] += 1
    assert may_take(5, held, "b", [])
    held["b"] += 1
    assert not may_take(5, held, "b", [])  # a's excess (2) is used up
    assert not may_take(5, held, "a", [])  # a is over its share
    held["a"] -= 2  # a's long steps end: a 3, b 2, every slot taken
    assert not may_take(5, held, "b", [])
    held["b"] -= 1  # a free slot, b below its share of 3, a at it
    assert may_take(5, held, "b", [])
    assert not may_take(5, held, "a", ["b"])  # b waits below its share: the slot is b's
    assert may_take(5, held, "a", [])  # nobody waits: a may use it


def test_fair_slots_let_a_second_role_run_while_the_first_fills_them():
    async def scenario() -> list[str]:
        slots = FairSlots(2)
        order: list[str] = []
        release = asyncio.Event()

        async def hold(role: str) -> None:
            async with slots.hold(role):
                order.append(role)
                await release.wait()

        hogs = [asyncio.create_task(hold("a")) for _ in range(3)]
        await asyncio.sleep(0.01)
        other = asyncio.create_task(hold("b"))
        await asyncio.sleep(0.01)
        assert order == ["a", "a", "b"]  # the third "a" waits, "b" borrowed
        release.set()
        await asyncio.gather(*hogs, other)
        return order

    assert asyncio.run(scenario()) == ["a", "a", "b", "a"]
