"""The worker process: claim runnable instances, drive them, keep leases alive.

One asyncio loop runs many claims at once. Coordination with other workers
happens only in PostgreSQL (SPEC A.2.4):

- claims use ``FOR UPDATE SKIP LOCKED`` and bump the run's epoch;
- every durable write checks (epoch, token); the token is this process's
  random secret, stored only as a sha256 hash;
- a heartbeat extends held leases; a lease that could not be extended is
  abandoned (its task cancelled) because another worker may own it now;
- LISTEN ``pgdurable_wake`` wakes the loop at once (start, signal, cancel);
  polling (``poll_interval``, or sooner when a timer falls due) covers lost
  notifications and timers;
- SIGTERM/``stop()``: stop claiming; no claim starts another step, so each
  in-flight step finishes and its claim is released at that boundary; steps
  still running after ``grace`` seconds are cancelled (their claims are
  released too and the journal decides what runs again);
- the database going away (restart, crash) does not end the process: the
  loop retries with backoff, broken pooled connections are dropped, and
  interrupted claims resume from the journal once their leases expire.

Bounds: at most ``concurrency`` instances claimed and at most ``concurrency``
SQL steps in flight (JOIN/RACE branches share the step bound), both shared
fairly by roles (``fairness``: a role below its share may borrow the slots
others hold beyond theirs, so up to twice as many while that lasts). Waiting
instances are rows, not tasks: 10 000 sleeping instances cost nothing here.

Step sessions: logged in as the instance's role, started with the guard
setting, ``standard_conforming_strings`` on (``step_text`` reads quotes that
way) and ``idle_in_transaction_session_timeout`` of one lease, so a frozen
worker's open step transaction ends on the server about when another worker
may take its lease over. A role dropped and created again under its name
gets new pools: a claim tells the role's oid, and pools of an older oid are
closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
from collections import Counter
from dataclasses import dataclass, field

from pgdurable import db
from pgdurable.worker import fairness, housekeeping, liveness, step_group
from pgdurable.worker.claims import CANCELLED_BY_USER, drive
from pgdurable.worker.code_roots import CodeConfig
from pgdurable.worker.journal import Journal
from pgdurable.worker.logs import event
from pgdurable.worker.metrics import Metrics
from pgdurable.worker.runs import RunEvents
from pgdurable.worker.steps import Services

log = logging.getLogger("pgdurable.worker")

CHANNEL = "pgdurable_wake"
WORKFLOW_APPLICATION_NAME = "pg_durable:worker:workflow-sql"


@dataclass
class WorkerOptions:
    concurrency: int = 10
    until_idle: bool = False
    lease_seconds: float = 30.0
    poll_interval: float = 2.0
    grace: float = 10.0
    # host:port to serve Prometheus metrics on (None: not served); a
    # non-loopback host needs metrics_allow_remote.
    metrics_address: str | None = None
    metrics_allow_remote: bool = False
    code: CodeConfig = field(default_factory=CodeConfig)  # code steps' roots and limits
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


class Worker:
    def __init__(self, conninfo: str, options: WorkerOptions | None = None) -> None:
        self.conninfo = conninfo
        self.options = options or WorkerOptions()
        self.token = secrets.token_bytes(32)
        self.token_hash = hashlib.sha256(self.token).digest()
        self.active: dict[str, tuple[asyncio.Task, Journal]] = {}
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.pool = db.async_pool(
            conninfo,
            max_size=self.options.concurrency + 3,
            name="pgdurable-worker",
            autocommit=True,
        )
        self.user_pools: dict[tuple[str, str | None], db.AsyncPool] = {}
        self.role_oids: dict[str, int] = {}  # role name -> oid its pools log in as
        self.claimed_roles: dict[str, int] = {}  # instance id -> role oid, for fair claims
        self.closing: set[asyncio.Task] = set()
        self.services = Services(
            self._user_pool, fairness.FairSlots(self.options.concurrency), code=self.options.code
        )
        self.outcomes: dict[str, int] = {}
        self.metrics = Metrics()
        self.metrics.count_claimed(lambda: len(self.active))
        self.runs = RunEvents(self.metrics)

    # -- pools ----------------------------------------------------------------

    async def _user_pool(self, role: str, database: str | None) -> db.AsyncPool:
        """A pool of connections logged in as ``role`` (the instance's identity)."""
        key = (role, database)
        pool = self.user_pools.get(key)
        if pool is None:
            conninfo = db.conninfo_with(
                self.conninfo,
                user=role,
                dbname=database,
                application_name=WORKFLOW_APPLICATION_NAME,
                options="-c df.in_workflow=true -c standard_conforming_strings=on"
                f" -c idle_in_transaction_session_timeout={self._idle_limit_ms()}",
            )
            pool = db.async_pool(
                conninfo,
                max_size=self.options.concurrency,
                name=f"pgdurable-{role}",
                autocommit=True,
                user_steps=True,
                on_connect=self._register_step_session,
            )
            self.user_pools[key] = pool
            await pool.open()
        return pool

    def _idle_limit_ms(self) -> int:
        return max(int(self.options.lease_seconds * 1000), 1000)

    def _note_role(self, name: str, oid: int) -> None:
        """Close the pools of a role that was dropped and created again: their
        sessions belong to the old role (its oid), not to this one."""
        known = self.role_oids.get(name)
        self.role_oids[name] = oid
        if known is None or known == oid:
            return
        for key in [key for key in self.user_pools if key[0] == name]:
            closing = asyncio.create_task(self.user_pools.pop(key).close())
            self.closing.add(closing)
            closing.add_done_callback(self.closing.discard)

    async def _register_step_session(self, conn: db.AsyncConnection) -> None:
        """Mark a new step connection's backend as a workflow session, from our
        own connection: the step can reset its settings, not this row."""
        async with self.pool.connection() as own:
            await own.execute(
                "SELECT pgdurable.register_step_session_v1(%s)", [conn.info.backend_pid]
            )
        await step_group.note_session(conn)  # may its steps share a transaction?

    # -- the main loop --------------------------------------------------------

    async def run(self) -> dict[str, int]:
        address = self.options.metrics_address
        server = None
        if address is not None:  # refused addresses fail before anything starts
            server = self.metrics.serve(address, allow_remote=self.options.metrics_allow_remote)
        await self.pool.open()
        async with self.pool.connection() as conn:
            cursor = await conn.execute("SELECT step_timeout FROM pgdurable.worker_limits_v1()")
            self.services.step_timeout = (await cursor.fetchone())[0]
        event(
            "worker_started",
            worker=self.options.name,
            concurrency=self.options.concurrency,
            step_timeout=self.services.step_timeout,
        )
        if address is not None:
            event("metrics_serving", address=address)
        listener = asyncio.create_task(self._listen())
        heartbeat = asyncio.create_task(self._heartbeat())
        alive = asyncio.create_task(liveness.keep_alive(self.pool))
        chores = asyncio.create_task(
            housekeeping.keep_house(self.pool, self.metrics if server is not None else None)
        )
        try:
            await self._serve()
        finally:
            await self._drain()
            for task in (listener, heartbeat, alive, chores):
                task.cancel()
            await asyncio.gather(listener, heartbeat, alive, chores, return_exceptions=True)
            if server is not None:
                server.shutdown()
                server.server_close()
            for pool in self.user_pools.values():
                await pool.close()
            await asyncio.gather(*self.closing, return_exceptions=True)
            await self.pool.close()
            event("worker_stopped", worker=self.options.name, outcomes=self.outcomes)
        return self.outcomes

    def stop(self) -> None:
        """Stop claiming; running steps finish, then their claims are released."""
        if not self.stopping.is_set():
            event("worker_stopping", worker=self.options.name, active=len(self.active))
        self.stopping.set()
        self.services.stopping.set()
        self.wake.set()

    async def _serve(self) -> None:
        backoff = 0.0
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                claimed = await self._claim()
                if claimed:
                    backoff = 0.0
                    continue  # there may be more work right away
                if claimed is None:
                    # Slots are busy: the next finished claim wakes us, and
                    # timers can wait until a slot is free.
                    next_wake, timed_runs = None, 1
                else:
                    next_wake, timed_runs = await self._next_wake()
            except db.DatabaseError as exc:
                if not db.is_connection_error(exc):
                    raise
                # The server is down or restarting: keep the process, retry with
                # backoff; claims in flight fail on their own and are resumed
                # from the journal once the database is back.
                backoff = min(max(backoff * 2, 0.1), 2.0)
                event(
                    "database_unavailable",
                    logging.WARNING,
                    worker=self.options.name,
                    retry_in=backoff,
                    error=db.error_text(exc),
                )
                await self._check_pools()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), backoff)
                continue
            backoff = 0.0
            timeout = self.options.poll_interval
            if next_wake is not None:
                timeout = min(timeout, max(next_wake, 0.005))
            if self.options.until_idle and not self.active and not timed_runs:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)

    async def _check_pools(self) -> None:
        """Drop broken idle connections (after a server restart) so the next
        steps get live ones instead of failing one by one."""
        for pool in (self.pool, *self.user_pools.values()):
            with contextlib.suppress(Exception):
                await pool.check()

    async def _claim(self) -> int | None:
        """Claim runnable instances into free slots: how many, or None when the
        slots were too busy to try."""
        slots = self.options.concurrency
        free = slots - len(self.active)
        held = Counter(self.claimed_roles.values())
        # Claim in batches of at least a quarter of the slots while work is
        # running: a claim is a round trip and a commit, and refilling one
        # slot at a time made it one per instance. An idle worker claims at
        # once; a full one only when another role could borrow a slot.
        if free <= 0 or (self.active and free < max(1, slots // 4)):
            if free > 0 or not fairness.borrowable(slots, held):
                return None
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT instance_id, epoch, role_oid, instance"
                " FROM pgdurable.claim_v3(%s, %s, %s, %s::jsonb, %s)",
                [
                    self.options.name,
                    self.token_hash,
                    slots,
                    json_text({str(oid): n for oid, n in held.items()}),
                    self.options.lease_seconds,
                ],
            )
            rows = await cursor.fetchall()
        if not rows and free <= 0:
            return None  # full, and no role could borrow: wait for a slot or a wake-up
        for instance_id, epoch, role_oid, instance in rows:
            if instance and instance.get("role"):
                self._note_role(instance["role"], role_oid)
            self.claimed_roles[instance_id] = role_oid
            journal = Journal(self.pool, instance_id, epoch, self.token, self.runs)
            task = asyncio.create_task(self._drive(journal, instance))
            self.active[instance_id] = (task, journal)
        return len(rows)

    async def _drive(self, journal: Journal, loaded: dict | None) -> None:
        try:
            outcome = await drive(self.services, journal, loaded)
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            if outcome == "lease_lost":
                self.runs.lease_lost()
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            if isinstance(exc, db.DatabaseError) and db.is_connection_error(exc):
                log.warning("instance %s: database unavailable (%s)", journal.instance_id, exc)
            else:
                log.exception(
                    "instance %s: unexpected error; it will be retried", journal.instance_id
                )
            await asyncio.sleep(1)  # a bug should not spin; the lease expires and it is retried
        finally:
            self.active.pop(journal.instance_id, None)
            self.claimed_roles.pop(journal.instance_id, None)
            self.wake.set()

    async def _next_wake(self) -> tuple[float | None, int]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute("SELECT seconds, timed_runs FROM pgdurable.next_wake_v1()")
            seconds, timed_runs = await cursor.fetchone()
        return seconds, timed_runs

    async def _drain(self) -> None:
        if not self.active:
            return
        tasks = [task for task, _ in self.active.values()]
        _, pending = await asyncio.wait(tasks, timeout=self.options.grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # -- background tasks -----------------------------------------------------

    async def _listen(self) -> None:
        while True:
            try:
                conn = await db.async_connect(self.conninfo, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    async for notice in conn.notifies():
                        kind, _, instance_id = notice.payload.partition(":")
                        if kind == "cancel" and instance_id in self.active:
                            # The claim ends the run instead of releasing it.
                            self.active[instance_id][0].cancel(CANCELLED_BY_USER)
                        self.wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("LISTEN connection lost; polling until it is back", exc_info=True)
                await asyncio.sleep(1)

    async def _heartbeat(self) -> None:
        interval = self.options.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            if not self.active:
                continue
            held = {iid: journal.epoch for iid, (_, journal) in self.active.items()}
            try:
                async with self.pool.connection() as conn:
                    cursor = await conn.execute(
                        "SELECT instance_id FROM pgdurable.heartbeat_v1(%s, %s::jsonb, %s)",
                        [self.token, json_text(held), self.options.lease_seconds],
                    )
                    kept = {row[0] for row in await cursor.fetchall()}
            except db.DatabaseError:
                log.warning("heartbeat failed", exc_info=True)
                continue
            for instance_id in set(held) - kept:
                entry = self.active.get(instance_id)
                if entry is not None and entry[1].epoch == held[instance_id]:
                    log.warning("instance %s: lease lost, abandoning it", instance_id)
                    self.runs.lease_lost()
                    entry[0].cancel()


def json_text(value: object) -> str:
    import json

    return json.dumps(value)


async def run_worker(
    conninfo: str,
    *,
    concurrency: int = 10,
    until_idle: bool = False,
    lease_seconds: float = 30.0,
    poll_interval: float = 2.0,
    grace: float = 10.0,
    code: CodeConfig | None = None,
    install_signal_handlers: bool = False,
    metrics_address: str | None = None,
    metrics_allow_remote: bool = False,
) -> dict[str, int]:
    """Run a worker until stopped (or, with ``until_idle``, until nothing is
    runnable and no timer is pending). Returns counts of claim outcomes."""
    worker = Worker(
        conninfo,
        WorkerOptions(
            concurrency=concurrency,
            until_idle=until_idle,
            lease_seconds=lease_seconds,
            poll_interval=poll_interval,
            grace=grace,
            metrics_address=metrics_address,
            metrics_allow_remote=metrics_allow_remote,
            code=code or CodeConfig(),
        ),
    )
    if install_signal_handlers:
        import signal

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
    return await worker.run()
