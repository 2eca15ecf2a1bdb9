"""One claim of one instance, from load to release (the unit the worker runs).

``drive`` takes the instance as its claim loaded it, replays it
(``interpreter.Execution``) and ends the claim in exactly one way:

- finished: root stamped, instance ``completed``/``failed``, run row removed;
- suspended: the run is released with its wake time and awaited signals;
- cancelled (df.cancel): the run row is removed, status stays ``cancelled``,
  also when the cancel interrupted a running step (the task is cancelled with
  ``CANCELLED_BY_USER``): such a run is never claimed again;
- lease lost: nothing is written (another worker owns the instance);
- shutting down (SIGTERM): released at a step boundary, claimable at once;
- retry (connection trouble) or task cancellation (shutdown, lost lease):
  released to be claimed again at once; replay resumes where the journal ends.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from pgdurable.worker.graph import graph_problem, load_instance
from pgdurable.worker.interpreter import BREAK_OUTSIDE_LOOP, Execution, Scope
from pgdurable.worker.journal import Journal
from pgdurable.worker.logs import event
from pgdurable.worker.outcomes import (
    Broke,
    Cancelled,
    Failed,
    LeaseLost,
    Retry,
    ShuttingDown,
    Suspended,
)
from pgdurable.worker.results import dumps
from pgdurable.worker.runs import may_be_run
from pgdurable.worker.steps import Services

log = logging.getLogger("pgdurable.worker")

# The message of a task cancellation caused by df.cancel (see Worker._listen).
CANCELLED_BY_USER = "df.cancel"


def _role_gone(instance) -> str | None:
    if instance.role:
        return None
    return f"Instance {instance.id}: submitted_by role no longer exists in pg_roles"


def _identity_problem(instance) -> str | None:
    if instance.role_is_superuser and not instance.superuser_allowed:
        return (
            f'current_user "{instance.role}" is a superuser and '
            "pg_durable.enable_superuser_instances is off; start workflows as an ordinary role"
        )
    return None


async def drive(services: Services, journal: Journal, loaded: dict | None) -> str:
    """Run one claimed instance as far as it goes; returns how the claim ended.

    ``loaded`` is the instance as the claim loaded it (``load_v1``'s JSON)."""
    try:
        instance = load_instance(loaded) if loaded else None
        if instance is None:
            return "gone"
        if instance.status == "cancelled":
            # Cancelled while it waited: claimed only to remove its run.
            await journal.finish("cancelled", [], None)
            event("instance_cancelled", instance=instance.id)
            return "cancelled"
        if instance.status not in ("pending", "running"):
            return "gone"  # finished by a worker that had it before; nothing to do
        invalid = graph_problem(instance)
        if invalid is not None and instance.root not in instance.nodes:
            await journal.finish("failed", [], invalid)  # no root to stamp
            event("instance_failed", instance=instance.id, error=invalid)
            return "failed"
        # A started run of a registered workflow is recorded at its first claim.
        run = await journal.begin_run() if may_be_run(instance.label) else None
        execution = Execution(instance, journal, services)
        root = instance.nodes[instance.root]
        root_scope = Scope(instance.id, 1)
        problem = _identity_problem(instance) or invalid
        execution.refused = _role_gone(instance)
        try:
            if problem:
                raise Failed(problem)
            result = await execution.run(root, root_scope)
        except Failed as failure:
            execution.stamp(root, root_scope, "failed", dumps(failure.error))
            await journal.finish("failed", execution.take_stamps(), failure.error)
            event("instance_failed", instance=instance.id, error=failure.error)
            return "failed"
        except Broke:
            execution.stamp(root, root_scope, "failed", dumps(BREAK_OUTSIDE_LOOP))
            await journal.finish("failed", execution.take_stamps(), BREAK_OUTSIDE_LOOP)
            return "failed"
        except Suspended as wait:
            await execution.flush()
            wake = wait.wake_at if wait.wake_at is not None else "infinity"
            await journal.release(wake, sorted(wait.signals))
            event("instance_suspended", instance=instance.id, wake_at=wait.wake_at)
            return "suspended"
        except Cancelled:
            await journal.finish("cancelled", [], None)
            event("instance_cancelled", instance=instance.id)
            return "cancelled"
        except ShuttingDown:
            await execution.flush()
            await _release_soon(journal, seconds=0)
            event("instance_released", instance=instance.id, reason="shutdown")
            return "released"
        if not execution.finished:  # else the last step's completion finished it
            await journal.finish("completed", execution.take_stamps(), result)
        elif run is not None:  # and ended its run, which the database judged
            await journal.run_ended()
        event("instance_completed", instance=instance.id)
        return "completed"
    except LeaseLost:
        return "lease_lost"
    except Retry as exc:
        log.warning("instance %s: connection problem, will retry: %s", journal.instance_id, exc)
        await _release_soon(journal, seconds=1)
        return "retry"
    except asyncio.CancelledError as exc:
        if exc.args == (CANCELLED_BY_USER,):
            await asyncio.shield(_end_cancelled(journal))
        else:
            await asyncio.shield(_release_soon(journal, seconds=0))
        raise
    finally:
        journal.runs.claim_ended(journal.instance_id)


async def _end_cancelled(journal: Journal) -> None:
    """Remove the run of an instance df.cancel stopped mid-step. Its status
    is already ``cancelled``; the step's transaction, which would have carried
    its completion, never commits."""
    try:
        await journal.finish("cancelled", [], None)
        event("instance_cancelled", instance=journal.instance_id)
    except Exception:  # e.g. the lease was lost meanwhile: the next owner removes it
        log.debug("ending cancelled %s failed", journal.instance_id, exc_info=True)


async def _release_soon(journal: Journal, *, seconds: float) -> None:
    try:
        await journal.release(datetime.now(UTC) + timedelta(seconds=seconds), [])
    except Exception:  # the lease simply expires instead
        log.debug("release of %s failed", journal.instance_id, exc_info=True)
