"""Drives one claimed instance through its graph by deterministic replay.

Every claim walks the graph from the root (of the current root generation).
Leaf outcomes already in the journal are replayed, not re-run; the first leaf
without one executes; a leaf that must wait (timer not due, no signal yet)
raises ``Suspended``, which ends the claim: the run row records when to wake,
and no coroutine or memory is kept for a waiting instance.

Invariants:
- A leaf's outcome is journaled under (scope, gen, node) before anything that
  depends on it runs, so a replay takes the same path (SPEC B §6 IMPL).
- Decisions that depend on timing are journaled too: the winner of a RACE and
  the outcome of a finished nested loop.
- A RACE branch that must wait while its sibling still runs does not end the
  claim: it is replayed again when its timer is due (or, for a signal, every
  ``SIGNAL_RECHECK_SECONDS``), so it can win while the sibling's SQL runs.
  Outcomes journaled during the claim are kept in memory for that replay.
- Named results are rebuilt by the replay itself (a map per scope; JOIN and
  RACE children start from a copy and merge back). Loop generations carry
  them across iterations in ``pgdurable.generations``.
- Node stamps (SPEC B §4.1) are queued and written in one batch with the next
  durable write (a SQL step's completion carries them in its own
  transaction); they never decide anything, so losing some in a crash only
  means rewriting them on replay.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pgdurable.worker import deadlines, extensions, steps
from pgdurable.worker.graph import Instance, Node
from pgdurable.worker.journal import Journal
from pgdurable.worker.outcomes import Broke, Cancelled, Failed, Suspended
from pgdurable.worker.results import dumps
from pgdurable.worker.truth import condition_holds

log = logging.getLogger("pgdurable.worker")

MAX_LOOP_ITERATIONS = 100_000
BREAK_OUTSIDE_LOOP = (
    "df.break() was called outside of a loop. df.break() may only be used inside df.loop()."
)
RACE_LOSER_LOOP = "Loop branch cancelled after losing RACE"
# Nodes that write their own stamps: a loop per generation, the extension
# nodes with their status_details.
SELF_STAMPED = frozenset({"LOOP"}) | extensions.NODE_TYPES


@dataclass
class Scope:
    """One orchestration: the root, a JOIN/RACE branch or a nested loop."""

    name: str
    gen: int
    results: dict[str, str] = field(default_factory=dict)  # named results, JSON text

    @property
    def execution_id(self) -> str:
        return f"{self.name}::{self.gen}"

    def child_name(self, node_id: str) -> str:
        return f"{self.name}::{self.gen}::{node_id}"


class Execution:
    """One claim of one instance."""

    def __init__(self, instance: Instance, journal: Journal, services: steps.Services) -> None:
        self.instance = instance
        self.journal = journal
        self.services = services
        self._stamps: list[dict[str, Any]] = []
        self._flush_lock = asyncio.Lock()
        # SQL steps whose completion may finish the instance (see
        # Instance.final_steps), and whether one did.
        self.final_steps = instance.final_steps()
        self.finished = False
        # Why nothing new may start as the instance's role (it was dropped
        # mid-run): journaled outcomes still replay, and the first node that
        # would start work as the role fails with this (SPEC B §4.1).
        self.refused: str | None = None

    # -- stamps ---------------------------------------------------------------

    def stamp(
        self,
        node: Node,
        scope: Scope,
        status: str,
        result: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Queue a stamp unless the stored one already says the same.

        ``details`` go into status_details next to the execution id; a running
        stamp that carries them is always written (they change while it runs).
        """
        exec_id = scope.execution_id
        stored = self.instance.stamps.get(node.id)
        if stored == (status, exec_id) and (details is None or status != "running"):
            return
        if status == "running" and stored in (("completed", exec_id), ("failed", exec_id)):
            return
        self.instance.stamps[node.id] = (status, exec_id)
        entry: dict[str, Any] = {"node": node.id, "status": status, "exec": exec_id}
        if result is not None:
            entry["result"] = json.loads(result)
        if details:
            entry["details"] = details
        self._stamps.append(entry)

    def noted(self, node: Node, scope: Scope, status: str) -> None:
        """Remember a stamp written by a journal call (no write needed)."""
        self.instance.stamps[node.id] = (status, scope.execution_id)

    async def flush(self) -> None:
        """Write queued stamps; learn of a cancel at the same time."""
        async with self._flush_lock:
            if not self._stamps:
                return
            batch, self._stamps = self._stamps, []
            status = await self.journal.stamp(batch)
        if status == "cancelled":
            raise Cancelled()

    def take_stamps(self) -> list[dict[str, Any]]:
        batch, self._stamps = self._stamps, []
        return batch

    def give_back(self, batch: list[dict[str, Any]]) -> None:
        """Requeue stamps taken for a write that failed, ahead of newer ones."""
        self._stamps[:0] = batch

    # -- the walk -------------------------------------------------------------

    async def run_root(self) -> str:
        root = self.instance.nodes[self.instance.root]
        return await self.run(root, Scope(self.instance.id, 1))

    async def run(self, node: Node, scope: Scope) -> str:
        """Run ``node`` in ``scope``; its result (JSON text) or an outcome exception."""
        if node.type not in SELF_STAMPED:
            self.stamp(node, scope, "running")
        try:
            result = await self._dispatch(node, scope)
        except Failed as failure:
            if node.type not in SELF_STAMPED:
                self.stamp(node, scope, "failed", dumps(failure.error))
            raise
        except Broke as brk:
            if node.type == "BREAK":  # the break itself completes; ancestors stay as they are
                self.stamp(node, scope, "completed", brk.value)
            raise
        if node.type not in SELF_STAMPED:
            self.stamp(node, scope, "completed", result)
        if node.result_name:
            scope.results[node.result_name] = result
        return result

    async def _dispatch(self, node: Node, scope: Scope) -> str:
        if node.type == "THEN":
            await self.run(self.child(node.left), scope)
            return await self.run(self.child(node.right), scope)
        if node.type == "IF":
            return await self._if(node, scope)
        if node.type == "JOIN":
            return await self._join(node, scope)
        if node.type == "RACE":
            return await self._race(node, scope)
        if node.type == "LOOP":
            return await self._loop(node, scope)
        if node.type in extensions.NODE_TYPES:
            return await extensions.run(self, node, scope)
        return await steps.run_leaf(self, node, scope)

    def child(self, node_id: str | None) -> Node:
        if node_id is None or node_id not in self.instance.nodes:
            raise Failed(f"graph error: missing child node {node_id!r}")
        return self.instance.nodes[node_id]

    async def _if(self, node: Node, scope: Scope) -> str:
        config = node.config
        if node.condition is not None:
            holds = condition_holds(await self.run(self.child(node.condition), scope))
        elif config.get("condition_type") == "result_has_rows":
            holds = self._has_rows(str(config.get("result_name")), scope)
        else:
            raise Failed(f"IF node {node.id} has no condition")
        return await self.run(self.child(node.left if holds else node.right), scope)

    @staticmethod
    def _has_rows(name: str, scope: Scope) -> bool:
        if name not in scope.results:
            raise Failed(f"df.if_rows: result '{name}' not found")
        try:
            value = json.loads(scope.results[name])
        except ValueError:
            value = None
        if not isinstance(value, dict) or not isinstance(value.get("row_count"), int):
            raise Failed(f"df.if_rows: result '{name}' is not a SQL result (missing row_count)")
        return value["row_count"] > 0

    # -- branches -------------------------------------------------------------

    async def _branch(self, node_id: str, scope: Scope) -> tuple[Scope, str]:
        child = Scope(scope.child_name(node_id), 1, dict(scope.results))
        return child, await self.run(self.child(node_id), child)

    async def _join(self, node: Node, scope: Scope) -> str:
        branch_ids = [node.left, node.right, *node.extras]
        tasks = [asyncio.ensure_future(self._branch(b, scope)) for b in branch_ids]
        try:
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        waits = [o for o in outcomes if isinstance(o, Suspended)]
        for outcome in outcomes:  # infrastructure problems end the claim first
            if isinstance(outcome, BaseException) and not isinstance(
                outcome, Failed | Broke | Suspended
            ):
                raise outcome
        if waits:
            raise Suspended.combine(waits)
        for index, outcome in enumerate(outcomes, 1):
            if isinstance(outcome, Failed):
                raise Failed(f"JOIN branch {index} failed: {outcome.error}")
            if isinstance(outcome, Broke):
                raise outcome
        results = []
        for child, result in outcomes:
            scope.results.update(child.results)
            results.append(result)
        return "[" + ",".join(results) + "]"

    async def _race(self, node: Node, scope: Scope) -> str:
        sides = {"left": node.left, "right": node.right}
        key = (scope.name, scope.gen, node.id)
        decided = self.instance.journal.get(key)
        if decided is not None:
            winner = json.loads(decided["result"])
            return self._race_result(
                winner, await self._capture(self._branch(sides[winner], scope)), scope
            )

        def start(side: str) -> asyncio.Future:
            return asyncio.ensure_future(self._capture(self._branch(sides[side], scope)))

        tasks = {side: start(side) for side in sides}
        # Branches that wait (a timer, a signal) while their sibling still
        # runs: each is replayed again when its wait may be over, so a due
        # timer or a sent signal resumes it without waiting for the sibling's
        # SQL to end. Only when every branch waits does the claim end.
        waiting: dict[str, _Waiting] = {}
        winner = None
        try:
            while winner is None:
                running = [tasks[side] for side in sides if side not in waiting]
                if not running:
                    break
                done, _ = await asyncio.wait(
                    running,
                    timeout=_retry_in(waiting.values()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for side, task in tasks.items():  # left first when both finish together
                    if task in done and side not in waiting and winner is None:
                        outcome = task.result()
                        if isinstance(outcome, Suspended):
                            waiting[side] = _Waiting(outcome)
                        elif isinstance(outcome, BaseException) and not isinstance(
                            outcome, Failed | Broke
                        ):
                            raise outcome
                        else:
                            winner = side
                if winner is None and len(waiting) < len(sides):
                    for side in [s for s, w in waiting.items() if w.left() <= 0]:
                        del waiting[side]
                        tasks[side] = start(side)
        finally:
            pending = [task for task in tasks.values() if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        if winner is None:
            raise Suspended.combine([w.wait for w in waiting.values()])
        await self.journal.record(
            scope.name, scope.gen, node.id, "completed", result=dumps(winner), stamp=False
        )
        self.instance.journal[key] = {"outcome": "completed", "result": dumps(winner)}
        loser = self.child(sides["right" if winner == "left" else "left"])
        if loser.type == "LOOP":
            loser_scope = Scope(scope.child_name(loser.id), 1)
            self.stamp(loser, loser_scope, "failed", dumps(RACE_LOSER_LOOP))
        return self._race_result(winner, tasks[winner].result(), scope)

    @staticmethod
    async def _capture(coroutine) -> Any:
        try:
            return await coroutine
        except (Failed, Broke, Suspended) as outcome:
            return outcome

    @staticmethod
    def _race_result(winner: str, outcome: Any, scope: Scope) -> str:
        if isinstance(outcome, Suspended | Broke):
            raise outcome
        if isinstance(outcome, Failed):
            raise Failed(f"RACE {winner} branch failed: {outcome.error}")
        if isinstance(outcome, BaseException):
            raise outcome
        child, result = outcome
        scope.results.update(child.results)
        return result

    # -- loops ----------------------------------------------------------------

    async def _loop(self, node: Node, scope: Scope) -> str:
        is_root = node.id == self.instance.root
        finished = None if is_root else self.instance.journal.get((scope.name, scope.gen, node.id))
        if finished is not None:  # a nested loop that already ended: replay its outcome
            if finished["outcome"] == "failed":
                raise Failed(finished["error"])
            scope.results.update(json.loads(finished["named"] or "{}"))
            return finished["result"]
        loop_scope = scope.name if is_root else scope.child_name(node.id)
        carried = "{}" if is_root else dumps(scope.results)
        gen, named, started_at = await self.journal.enter_scope(loop_scope, carried)
        inner = Scope(loop_scope, gen, {} if is_root else json.loads(named))
        if self.refused is not None and not is_root:
            # The reference's nested loop is a child orchestration that loads
            # the graph again; without the role it cannot start, and the
            # parent stamps the LOOP failed.
            error = f"Loop sub-orchestration failed: {self.refused}"
            self.stamp(node, inner, "failed", dumps(error))
            raise Failed(error)
        try:
            result = await self._iterate(node, inner, started_at, is_root)
        except Failed as failure:
            self.stamp(node, inner, "failed", dumps(failure.error))
            if not is_root:
                await self.journal.record(
                    scope.name, scope.gen, node.id, "failed", error=failure.error, stamp=False
                )
            raise
        self.stamp(node, inner, "completed", result)
        if not is_root:
            await self.flush()
            await self.journal.record(
                scope.name,
                scope.gen,
                node.id,
                "completed",
                result=result,
                named=dumps(inner.results),
                stamp=False,
            )
            scope.results.update(inner.results)
            self.instance.journal[(scope.name, scope.gen, node.id)] = {
                "outcome": "completed",
                "result": result,
                "named": dumps(inner.results),
            }
        return result

    async def _iterate(self, node: Node, inner: Scope, started_at: datetime, is_root: bool) -> str:
        """Do-while: body, then the optional condition; a break in either exits."""
        while True:
            self.stamp(node, inner, "running")
            try:
                last = await self.run(self.child(node.left), inner)
                if node.condition is not None and not condition_holds(
                    await self.run(self.child(node.condition), inner)
                ):
                    return last
            except Broke as brk:
                return brk.value
            if inner.gen >= MAX_LOOP_ITERATIONS:
                raise Failed(f"Loop exceeded maximum of {MAX_LOOP_ITERATIONS} iterations")
            # Every iteration takes at least one second (SPEC B §4.2): a durable
            # timer, so a waiting loop holds no coroutine either.
            deadlines.forbid_new_work()  # under an expired TIMEOUT no iteration starts
            await self.flush()
            due, fired = await self.journal.timer(
                inner.name, inner.gen, node.id, due_at=started_at + timedelta(seconds=1)
            )
            if not fired:
                raise Suspended(due)
            started_at = await self.journal.next_generation(
                inner.name, inner.gen, "{}" if is_root else dumps(inner.results)
            )
            inner.gen += 1
            if is_root:
                inner.results = {}  # a root loop's named results reset per iteration


# While a RACE sibling runs, a branch waiting for a signal is replayed this
# often to see whether one arrived (a timer wait is replayed when it is due).
SIGNAL_RECHECK_SECONDS = 0.5
# Never replayed sooner than this after it suspended, whatever the clocks say
# (due times are the database's clock).
MIN_RECHECK_SECONDS = 0.05


@dataclass
class _Waiting:
    """A RACE branch that suspended, and when (monotonic clock)."""

    wait: Suspended
    since: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        """Seconds until its wait may be over: the timer, or the signal recheck."""
        waited = time.monotonic() - self.since
        left = SIGNAL_RECHECK_SECONDS - waited if self.wait.signals else float("inf")
        if self.wait.wake_at is not None:
            left = min(left, (self.wait.wake_at - datetime.now(UTC)).total_seconds())
        return max(left, MIN_RECHECK_SECONDS - waited)


def _retry_in(waiting: Iterable[_Waiting]) -> float | None:
    lefts = [w.left() for w in waiting]
    return max(min(lefts), 0.0) if lefts else None
