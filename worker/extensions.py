"""Executors for pgdurable's extension nodes (SPEC A.4): RETRY, TIMEOUT, TRY.

Each follows the interpreter's replay rule: what a replay cannot recompute
the same way is journaled (keys are (scope, gen, node) like every outcome),
and waits are durable timers that end the claim (``Suspended``).

RETRY: attempt n runs the child in its own scope ``<scope>::<gen>::<retry>``
at generation n, so every attempt has a fresh journal (its steps run again)
and its stamps supersede the previous attempt's. The scope's generation
(``pgdurable.generations``) is the current attempt. A failed attempt is
journaled under (attempt scope, n, retry node); the delay is a timer under
the same key; when it fires the scope moves to generation n + 1, which also
drops attempt n's journal and timer. The last attempt's error propagates.

TIMEOUT: the deadline is a timer fixed when the node first runs. The child
runs in the TIMEOUT's own scope as a task (see ``deadlines``); at the
deadline its running SQL is cancelled on the server (the step then fails and
records that), the task is cancelled if it has not ended within a short
grace, and "timed out after N s" is journaled under the TIMEOUT's key, so a replay
fails the same way without entering the child. While the child waits (timer,
signal), the claim ends with the earlier of its wake time and the deadline.

TRY: a failure of the child is journaled under the TRY's key, so a replay
goes straight to ``on_failure``. That branch runs in the same scope with the
error as the named result ``error`` (``$error``), a one-row SQL-shaped result
``{"rows":[{"error":…}],"row_count":1}`` so ``$error`` substitutes as a quoted
string; the name is restored afterwards. The TRY's result is the child's on
success, else ``{"error":…,"result":<on_failure's result>}``.

These nodes stamp themselves (with ``status_details``: a RETRY's attempt,
max_attempts, last_error and, while it waits, next_attempt_at; a TIMEOUT's
deadline_at; a TRY's recovered_from), which ``df.instance_nodes`` and
``df.explain`` show.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pgdurable.worker import deadlines
from pgdurable.worker.outcomes import DeadlineExceeded, Failed, Suspended
from pgdurable.worker.results import dumps

if TYPE_CHECKING:
    from pgdurable.worker.graph import Node
    from pgdurable.worker.interpreter import Execution, Scope

NODE_TYPES = frozenset({"RETRY", "TIMEOUT", "TRY"})
ERROR_RESULT_NAME = "error"
MAX_DELAY_SECONDS = 2_147_483_647.0  # the constructors' integer bound
CANCEL_GRACE_SECONDS = 2.0  # for a timed-out child to fail by itself once its SQL is cancelled


def _config(node: Node) -> dict[str, Any]:
    config = node.config
    if not config:
        raise Failed(f"{node.type} node {node.id} has no valid JSON config")
    return config


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    delay_seconds: float
    backoff: float = 1.0
    max_delay_seconds: float | None = None

    @classmethod
    def of(cls, node: Node) -> RetryPolicy:
        config = _config(node)
        try:
            return cls(
                int(config["max_attempts"]),
                float(config["delay_seconds"]),
                float(config.get("backoff") or 1.0),
                None
                if config.get("max_delay_seconds") is None
                else float(config["max_delay_seconds"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise Failed(f"RETRY node {node.id} has an invalid config: {exc}") from exc

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt``: delay * backoff^(attempt-1), capped."""
        cap = MAX_DELAY_SECONDS if self.max_delay_seconds is None else self.max_delay_seconds
        delay = self.delay_seconds
        for _ in range(attempt - 1):  # multiplied step by step: a float power could overflow
            if delay >= cap:
                break
            delay *= self.backoff
        return min(delay, cap)


async def run(ex: Execution, node: Node, scope: Scope) -> str:
    """Run an extension node, stamping it (with its details) at start and end."""
    details: dict[str, Any] = {}
    ex.stamp(node, scope, "running")
    try:
        result = await HANDLERS[node.type](ex, node, scope, details)
    except Failed as failure:
        ex.stamp(node, scope, "failed", dumps(failure.error), details=dict(details))
        raise
    ex.stamp(node, scope, "completed", result, details=dict(details))
    return result


async def _journal_failure(ex: Execution, key: tuple[str, int, str], error: str) -> None:
    """Journal a decision "this failed with ``error``" (no stamp: the node stamps itself)."""
    await ex.flush()
    await ex.journal.record(*key, "failed", error=error, stamp=False)
    ex.instance.journal[key] = {"outcome": "failed", "error": error}


# -- RETRY ----------------------------------------------------------------------


async def _retry(ex: Execution, node: Node, scope: Scope, details: dict[str, Any]) -> str:
    policy = RetryPolicy.of(node)
    child = ex.child(node.left)
    name = scope.child_name(node.id)
    attempt, _, _ = await ex.journal.enter_scope(name, "{}")
    details["max_attempts"] = policy.max_attempts
    while True:
        details["attempt"] = attempt
        details.pop("next_attempt_at", None)
        ex.stamp(node, scope, "running", details=dict(details))
        key = (name, attempt, node.id)
        failed = ex.instance.journal.get(key)
        if failed is None:
            # A fresh scope per attempt; named results flow in from the parent
            # and, from the attempt that succeeds, back out.
            inner = replace(scope, name=name, gen=attempt, results=dict(scope.results))
            try:
                result = await ex.run(child, inner)
            except Failed as failure:
                error = failure.error
                await _journal_failure(ex, key, error)
            else:
                scope.results.update(inner.results)
                return result
        else:
            error = failed["error"]
        details["last_error"] = error
        if attempt >= policy.max_attempts:
            raise Failed(error)
        await ex.flush()
        due, fired = await ex.journal.timer(*key, seconds=policy.delay_after(attempt))
        if not fired:  # the delay is a timer: no worker is held while it runs
            details["next_attempt_at"] = due.isoformat()
            ex.stamp(node, scope, "running", details=dict(details))
            raise Suspended(due)
        deadlines.forbid_new_work()  # a next attempt is new work under an expired TIMEOUT
        await ex.journal.next_generation(name, attempt, "{}")
        attempt += 1


# -- TIMEOUT --------------------------------------------------------------------


def _timeout_seconds(node: Node) -> int:
    value = _config(node).get("timeout_seconds")
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise Failed(f"TIMEOUT node {node.id} has an invalid config: timeout_seconds {value!r}")
    return value


async def _settle(task: asyncio.Future) -> Any:
    """The task's result, or the exception it ended with (CancelledError included)."""
    (outcome,) = await asyncio.gather(task, return_exceptions=True)
    return outcome


async def _timeout(ex: Execution, node: Node, scope: Scope, details: dict[str, Any]) -> str:
    seconds = _timeout_seconds(node)
    key = (scope.name, scope.gen, node.id)
    recorded = ex.instance.journal.get(key)
    if recorded is not None:  # only a timeout is journaled here
        raise Failed(recorded["error"])
    await ex.flush()
    due, fired = await ex.journal.timer(*key, seconds=float(seconds))
    details["deadline_at"] = due.isoformat()
    ex.stamp(node, scope, "running", details=dict(details))
    with deadlines.entered(deadlines.Deadline(key, expired=fired)) as deadline:
        task = asyncio.ensure_future(ex.run(ex.child(node.left), scope))
    try:
        if not fired:
            remaining = (due - datetime.now(UTC)).total_seconds()
            done, _ = await asyncio.wait({task}, timeout=max(remaining, 0.0))
            if task not in done:
                await deadlines.cancel_statements(ex.journal.pool, deadline)
                # A cancelled statement fails its step, which records why; only
                # what does not end by itself (or starts nothing new) is cut off.
                await asyncio.wait({task}, timeout=CANCEL_GRACE_SECONDS)
                task.cancel()
        outcome = await _settle(task)
    finally:
        if not task.done():  # we were cancelled ourselves (shutdown, lost lease)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    passed = deadline.expired or deadline.firing
    if isinstance(outcome, str):
        return outcome  # finished in time (or, on replay, had finished)
    if isinstance(outcome, DeadlineExceeded) and outcome.deadline is not deadline:
        raise outcome  # an enclosing TIMEOUT's
    if isinstance(outcome, Suspended) and not passed:
        wake = due if outcome.wake_at is None else min(outcome.wake_at, due)
        raise Suspended(wake, outcome.signals)
    timed_out = isinstance(outcome, DeadlineExceeded | Suspended) or (
        passed and isinstance(outcome, Failed | asyncio.CancelledError)
    )
    if not timed_out:
        raise outcome  # a failure in time, a break, or the claim ending (cancel, lease)
    error = f"timed out after {seconds} s"
    await _journal_failure(ex, key, error)
    raise Failed(error)


# -- TRY ------------------------------------------------------------------------


def error_result(error: str) -> str:
    """The named result ``$error``: one row, one column, so it substitutes as text."""
    return dumps({"rows": [{ERROR_RESULT_NAME: error}], "row_count": 1})


async def _try(ex: Execution, node: Node, scope: Scope, details: dict[str, Any]) -> str:
    key = (scope.name, scope.gen, node.id)
    recorded = ex.instance.journal.get(key)
    if recorded is None:
        try:
            return await ex.run(ex.child(node.left), scope)
        except Failed as failure:
            error = failure.error
        await _journal_failure(ex, key, error)
    else:
        error = recorded["error"]
    details["recovered_from"] = error
    injected = error_result(error)
    hidden = scope.results.get(ERROR_RESULT_NAME)
    scope.results[ERROR_RESULT_NAME] = injected
    try:
        fallback = await ex.run(ex.child(node.right), scope)
    finally:
        # $error belongs to on_failure; an earlier result of that name comes back
        if scope.results.get(ERROR_RESULT_NAME) == injected:
            if hidden is None:
                scope.results.pop(ERROR_RESULT_NAME, None)
            else:
                scope.results[ERROR_RESULT_NAME] = hidden
    try:
        json.loads(fallback)
    except ValueError:
        fallback = dumps(fallback)
    return '{"error":' + dumps(error) + ',"result":' + fallback + "}"


HANDLERS: dict[str, Callable[[Execution, Node, Scope, dict[str, Any]], Awaitable[str]]] = {
    "RETRY": _retry,
    "TIMEOUT": _timeout,
    "TRY": _try,
}
