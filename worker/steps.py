"""Executors for the leaf node types: SQL, SLEEP, WAIT_SCHEDULE, SIGNAL, BREAK
(HTTP and HTTP_MULTIPART live in ``http_step``, PYTHON and COMMAND in ``code_steps``).

Each executor first looks for the node's journaled outcome in this
generation and replays it; otherwise it executes and journals the outcome
before returning. Waiting executors (SLEEP, WAIT_SCHEDULE, SIGNAL) keep their
state in rows (a timer, the signal buffer) and raise ``Suspended`` instead of
sleeping, so a waiting instance costs no coroutine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pgdurable import db
from pgdurable.worker import deadlines, step_group, step_text
from pgdurable.worker.code_roots import CodeConfig
from pgdurable.worker.code_steps import run_code
from pgdurable.worker.fairness import FairSlots
from pgdurable.worker.http_step import run_http
from pgdurable.worker.logs import event
from pgdurable.worker.outcomes import Broke, Cancelled, Failed, LeaseLost, ShuttingDown, Suspended
from pgdurable.worker.results import as_result_text, dumps
from pgdurable.worker.sql_step import Completion, StepKey, run_sql_step
from pgdurable.worker.substitution import SubstitutionError, substitute

# Leaves that run nothing as the instance's role: they may finish after the
# role is gone (see Execution.refused).
ROLE_FREE = frozenset({"SLEEP", "WAIT_SCHEDULE", "SIGNAL"})

# A SQL step still running after this long has its 'running' stamp written
# on its own (see _sql); quicker steps write it with their completion.
RUNNING_STAMP_DELAY = 0.05

if TYPE_CHECKING:
    from pgdurable.worker.graph import Node
    from pgdurable.worker.interpreter import Execution, Scope


@dataclass
class Services:
    """What executors share across instances: user pools, the step bound
    (shared fairly by roles), the step time limit (seconds, None for none), the
    shutdown flag (set on SIGTERM: no new step starts after it), the code
    roots of code steps and the group commit of SQL steps (``step_group``)."""

    user_pool: Callable[[str, str | None], Awaitable[db.AsyncPool]]  # (role, database) -> pool
    step_slots: FairSlots
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    code: CodeConfig = field(default_factory=CodeConfig)
    step_timeout: float | None = None
    groups: step_group.StepGroups = field(default_factory=step_group.StepGroups)


def _replayed(ex: Execution, node: Node, scope: Scope) -> str | None:
    row = ex.instance.journal.get((scope.name, scope.gen, node.id))
    if row is None:
        return None
    ex.noted(node, scope, "failed" if row["outcome"] == "failed" else "completed")
    if row["outcome"] == "failed":
        raise Failed(row["error"])
    return row["result"]


async def _fail(ex: Execution, node: Node, scope: Scope, error: str) -> Failed:
    """Journal a failure (so a replay does not retry it) and return it to raise."""
    await ex.flush()
    await ex.journal.record(scope.name, scope.gen, node.id, "failed", error=error)
    ex.noted(node, scope, "failed")
    return Failed(error)


record_failure = _fail  # for executors in other modules (http_step)


async def run_leaf(ex: Execution, node: Node, scope: Scope) -> str:
    replayed = _replayed(ex, node, scope)
    if replayed is not None:
        return replayed
    if node.type == "BREAK":
        raise Broke(_break_value(node))
    deadlines.forbid_new_work()  # past a TIMEOUT's deadline only replays may finish
    if ex.refused is not None and node.type not in ROLE_FREE:
        raise Failed(ex.refused)
    executor = EXECUTORS.get(node.type)
    if executor is None:
        raise await _fail(
            ex, node, scope, f"{node.type} nodes are not supported by this pgdurable worker yet"
        )
    if ex.services.stopping.is_set():
        # Graceful shutdown: steps already running finish, none starts; the
        # claim is released and another worker (or the next start) resumes here.
        raise ShuttingDown()
    fields = {"instance": ex.instance.id, "node": node.id, "type": node.type}
    fields["execution"] = scope.execution_id
    event("step_started", **fields)
    runs = ex.journal.runs
    runs.step_started(ex.instance.id)
    started = time.perf_counter()
    try:
        result = await executor(ex, node, scope)
    except Failed as failure:
        runs.step_finished(node.type, time.perf_counter() - started)
        event("step_failed", **fields, duration_ms=_ms(started), error=failure.error)
        raise
    except Suspended as wait:
        event("step_waiting", **fields, wake_at=wait.wake_at, signals=sorted(wait.signals))
        raise
    runs.step_finished(node.type, time.perf_counter() - started)
    event("step_completed", **fields, duration_ms=_ms(started))
    ex.noted(node, scope, "completed")
    # Journaled already; kept here too, so a RACE branch replayed again in
    # this claim (see Execution._race) replays it instead of running it twice.
    ex.instance.journal[(scope.name, scope.gen, node.id)] = {
        "outcome": "completed",
        "result": result,
    }
    return result


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _break_value(node: Node) -> str:
    value = node.config.get("break_value")
    if value is None:
        return "null"
    return as_result_text(value) if isinstance(value, str) else dumps(value)


async def _sql(ex: Execution, node: Node, scope: Scope) -> str:
    instance = ex.instance
    try:
        text = substitute(
            node.query or "",
            scope.results,
            instance.vars,
            instance.id,
            instance.label,
            for_sql=True,
        )
    except SubstitutionError as exc:
        raise await _fail(ex, node, scope, str(exc)) from exc
    control = step_text.transaction_control(text)
    if control is not None:  # df.start refuses it; a raw {var} or a forged row brings it back
        raise await _fail(ex, node, scope, step_text.refusal(control))
    # Queued stamps (the parents' and this node's 'running') are written by
    # the step's own completion, in its transaction. Only a step still running
    # after RUNNING_STAMP_DELAY gets them written earlier, by a separate flush,
    # so monitoring shows it running; that flush can never overwrite the
    # completion (a 'running' stamp never replaces a terminal stamp of the
    # same execution).
    loop = asyncio.get_running_loop()
    flushes: list[asyncio.Future] = []
    timer = loop.call_later(
        RUNNING_STAMP_DELAY, lambda: flushes.append(asyncio.ensure_future(ex.flush()))
    )
    own_running = {"node": node.id, "status": "running", "exec": scope.execution_id}

    def take() -> list[dict]:
        # A step completed in the same transaction needs no 'running' stamp.
        return [stamp for stamp in ex.take_stamps() if stamp != own_running]

    try:
        # Under a TIMEOUT the step's backend is registered so it can be cancelled.
        pool = deadlines.track(await ex.services.user_pool(instance.role or "", instance.database))
        key = StepKey(scope.name, scope.gen, node.id)
        same_database = instance.database in (None, instance.control_database)
        root_scope = scope.name == instance.id and scope.gen == 1
        final = ex.final_steps.get(node.id) if root_scope else None
        time_limit = ex.services.step_timeout

        def alone() -> Awaitable[Completion]:
            return run_sql_step(
                pool,
                ex.journal,
                key,
                text,
                same_database=same_database,
                stamps=(take, ex.give_back),
                final=final,
                time_limit=time_limit,
            )

        # Several ready steps of one role and database may commit together
        # (step_group); a TIMEOUT's cancel names one backend, so not under one.
        grouped = same_database and not deadlines.active()
        async with ex.services.step_slots.hold(instance.role):
            try:
                if grouped:
                    member = step_group.Member(
                        ex.journal, key, text, (take, ex.give_back), final, time_limit
                    )
                    completion = await ex.services.groups.run(pool, member, alone)
                else:
                    completion = await alone()
            except Failed as failure:
                raise await _fail(ex, node, scope, failure.error) from failure
    finally:
        timer.cancel()
        flushed = await asyncio.gather(*flushes, return_exceptions=True)
    ended_here = final is not None and completion.status == "completed"
    for outcome in flushed:
        # A flush queued behind the completion that ended the run finds the
        # run row gone: that lease ended with the instance, nothing was lost.
        if isinstance(outcome, BaseException) and not (
            ended_here and isinstance(outcome, LeaseLost)
        ):
            raise outcome
    if completion.status == "cancelled":
        raise Cancelled()
    if ended_here:
        # The completion finished the instance: its ancestors are stamped.
        ex.finished = True
        for ancestor in final:
            ex.noted(instance.nodes[ancestor], scope, "completed")
    return completion.result


async def _sleep(ex: Execution, node: Node, scope: Scope) -> str:
    seconds = int((node.query or "0").strip())
    result = dumps({"slept": True, "seconds": seconds})
    await ex.flush()
    due, fired = await ex.journal.timer(
        scope.name, scope.gen, node.id, seconds=float(seconds), result=result
    )
    if not fired:
        raise Suspended(due)
    return result


async def _wait_schedule(ex: Execution, node: Node, scope: Scope) -> str:
    expr = str(node.config.get("cron_expr", ""))
    result = dumps({"scheduled": True})
    await ex.flush()
    try:
        due = await ex.journal.cron_next(expr)
    except Failed as exc:
        raise await _fail(ex, node, scope, exc.error) from exc
    # The first call fixes the timer; a replay gets the stored due time back.
    due, fired = await ex.journal.timer(scope.name, scope.gen, node.id, due_at=due, result=result)
    if not fired:
        raise Suspended(due)
    return result


async def _signal(ex: Execution, node: Node, scope: Scope) -> str:
    config = node.config
    name = str(config.get("signal_name", ""))
    timeout = config.get("timeout_seconds")
    await ex.flush()
    received = await ex.journal.consume_signal(scope.name, scope.gen, node.id, name)
    if received is not None:
        return received
    if timeout is None:
        raise Suspended(None, frozenset({name}))
    timed_out = dumps({"signal_name": name, "timed_out": True, "data": None})
    due, fired = await ex.journal.timer(
        scope.name, scope.gen, node.id, seconds=float(timeout), result=timed_out
    )
    if not fired:
        raise Suspended(due, frozenset({name}))
    return timed_out


EXECUTORS: dict[str, Callable[[Execution, Node, Scope], Awaitable[str]]] = {
    "SQL": _sql,
    "SLEEP": _sleep,
    "WAIT_SCHEDULE": _wait_schedule,
    "SIGNAL": _signal,
    "HTTP": run_http,
    "HTTP_MULTIPART": run_http,
    "PYTHON": run_code,
    "COMMAND": run_code,
}
