"""The new side: apply the generated file to its clone and run the workflow to completion.

The generated file is applied exactly as ``pgdurable apply`` applies it (the
same ``DatabaseSink``), so what is verified is the file a person would deploy
(an edited file included), read back from ``pgdurable.workflows``.

**One tick, deterministically.** A scheduled workflow is a loop that waits
for its schedule (``LOOP(THEN(WAIT_SCHEDULE, run...))``); waiting for the next
real minute or night would make verification slow and its dates arbitrary.
So the long-running instance that ``deploy_workflow`` started is cancelled
before any worker sees it, and one run is started directly: the loop's body
with its leading wait replaced by ``df.sleep(0)`` (an unscheduled workflow
runs as it is). Everything after the wait (the ``pgdurable.try`` that keeps a
schedule alive, the enqueue call of a queue job, the Airflow run's steps)
runs unchanged but one thing: the ``pgdurable.try(run, df.sleep(0))`` that keeps
a schedule alive after a failed run is unwrapped, so the run's own outcome (a
failed pg_cron command, a failed DAG run) is the instance's and is compared
with the old side's, instead of being swallowed (issue 18). Every failed step's
error text is read back, including failures a ``pgdurable.try`` inside the run
recovered from.

**Dates.** An Airflow run computes its dates first (the ``dag_run`` step,
from ``now()``). That step's clock is pinned: ``now()`` becomes the instant
``T`` at which the schedule would start the run whose logical date is the
requested one (``T = D`` for trigger timetables and manual runs; ``D`` plus
one interval for Airflow 2 interval timetables, found by evaluating the step
itself at ``D``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgdurable import apply as applying
from pgdurable import db
from pgdurable.errors import ApplyFailed, VerificationError
from pgdurable.render import literal
from pgdurable.verify.subjects import run_as_of

if TYPE_CHECKING:
    from pgdurable.worker.code_roots import CodeConfig

WAITS = ("WAIT_SCHEDULE", "SLEEP", "RACE")
# Nodes whose failure is only a child's failure passed on (their error repeats it);
# a TIMEOUT's own "timed out after N s" is kept.
CONTAINERS = ("THEN", "IF", "JOIN", "LOOP", "RACE", "TRY", "RETRY")


@dataclass
class Deployed:
    source: str
    name: str
    graph: dict[str, Any]
    run_as: str | None
    target_database: str | None


@dataclass
class NewRun:
    instance_id: str
    status: str  # completed | failed | cancelled
    error: str | None
    states: dict[str, str] = field(default_factory=dict)  # st_<task> -> state
    step_errors: list[str] = field(default_factory=list)  # every failed step, in order

    @property
    def failed(self) -> bool:
        return self.status != "completed"

    @property
    def errors(self) -> list[str]:
        """Every failed step's error; the instance's own when no step failed."""
        if self.step_errors:
            return self.step_errors
        return [self.error] if self.error and self.failed else []


_TARGET_DATABASE = re.compile(r"^(\s*target_database => )'(?:[^']|'')*'", re.MULTILINE)


# The database argument of a queue job's enqueue function: the last argument of
# its ``RETURN df.start(graph, label, database);`` (translators/queue/enqueue.py).
_ENQUEUE_DATABASE = re.compile(
    r"(\n    RETURN df\.start\(\n(?:        .*\n)*?        )'(?:[^']|'')*'(\n    \);\nEND;)"
)


def in_clone(text: str, database: str) -> str:
    """The file with its ``target_database`` made the clone: a job of database ``app``
    is replayed in this side's copy of the fixture, never in a database named app.
    The same for the database a queue job's enqueue function starts its runs in
    (a psql job's ``-d``, ``PGDATABASE`` or libpq's default, the user name)."""
    text = _TARGET_DATABASE.sub(lambda m: m.group(1) + literal(database), text)
    return _ENQUEUE_DATABASE.sub(lambda m: m.group(1) + literal(database) + m.group(2), text)


def deploy(
    conninfo: str, path: Path, text: str, run_as: str | None, database: str | None = None
) -> Deployed:
    """Apply one generated file (as ``pgdurable apply`` does) and stop what it started;
    with ``database``, the file's target database is that one (``in_clone``)."""
    if database is not None:
        text = in_clone(text, database)
    with db.connection(conninfo) as conn:
        # the file's own role starts the instance on apply (cancelled below); run_as,
        # when --run-as differs, starts the verified run
        for role in sorted({run_as, run_as_of(text)} - {None}):
            with conn.transaction():
                conn.execute("SELECT df.grant_usage(%s)", [role])
        try:
            applying.DatabaseSink(conn).run_file(path, text)
        except ApplyFailed as exc:
            raise VerificationError(f"the generated file does not apply: {exc.message}") from exc
        rows = conn.execute(
            "SELECT source, name, definition, run_as, target_database, instance_id"
            " FROM pgdurable.workflows"
        ).fetchall()
        if len(rows) != 1:
            raise VerificationError(
                f"{path} deployed {len(rows)} workflows; verify expects a file that deploys one "
                "(a file generated by pgdurable import-*)"
            )
        source, name, definition, role, target, instance = rows[0]
        if instance:
            # Cancel before any worker can claim it: the run is started below, once per tick.
            conn.execute("SELECT df.cancel(%s, 'pgdurable verify runs one tick')", [instance])
        conn.commit()
    return Deployed(source, name, json.loads(definition), role, target)


def _keeps_alive(node: dict[str, Any] | None) -> bool:
    """``pgdurable.try(run, df.sleep(0))``: the translators' keep-the-schedule-going wrapper."""
    if not node or node.get("node_type") != "TRY":
        return False
    fallback = node.get("right_node") or {}
    return fallback.get("node_type") == "SLEEP" and str(fallback.get("query")).strip() == "0"


def one_tick(graph: dict[str, Any]) -> dict[str, Any]:
    """The graph of one run: a schedule loop's body with its leading wait made instant
    and the run's keep-alive ``pgdurable.try`` unwrapped (its outcome is what counts)."""
    if graph.get("node_type") != "LOOP" or graph.get("condition_node"):
        return graph
    body = json.loads(json.dumps(graph["left_node"]))
    parent, node = None, body
    while node.get("node_type") == "THEN":
        parent, node = node, node["left_node"]
    if node.get("node_type") in WAITS and not node.get("result_name"):
        instant = {"node_type": "SLEEP", "query": "0"}
        if parent is None:
            return instant
        parent["left_node"] = instant
        # the run follows the wait: THEN(wait, run) or THEN(THEN(wait, run), ...)
        if _keeps_alive(parent.get("right_node")):
            parent["right_node"] = parent["right_node"]["left_node"]
    return body


def _nodes(graph: dict[str, Any]):
    yield graph
    for key in ("left_node", "right_node", "condition_node"):
        if isinstance(graph.get(key), dict):
            yield from _nodes(graph[key])
    for extra in graph.get("extra_nodes") or []:
        yield from _nodes(extra)


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def pin_dates(conninfo: str, graph: dict[str, Any], logical: datetime) -> dict[str, Any]:
    """The graph with its ``dag_run`` step evaluated at the instant that gives ``logical``."""
    graph = json.loads(json.dumps(graph))
    steps = [n for n in _nodes(graph) if n.get("result_name") == "dag_run"]
    if not steps:
        return graph
    query = steps[0]["query"]

    def at(instant: datetime) -> str:
        return query.replace("now()", f"timestamptz '{instant.isoformat()}'")

    with db.connection(conninfo, autocommit=True) as conn:
        row = conn.execute(f"SELECT data_interval_start FROM ({at(logical)}) AS r").fetchone()
        start = _iso(row[0])
        tick = logical if start == logical else logical + (logical - start)
        check = conn.execute(f"SELECT data_interval_start FROM ({at(tick)}) AS r").fetchone()
        if _iso(check[0]) != logical:
            raise VerificationError(
                f"logical date {logical.isoformat()} is not a tick of this schedule "
                f"(the nearest run has logical date {check[0]}): pass a --logical-date the "
                "schedule fires at"
            )
    for step in steps:
        step["query"] = at(tick)
    return graph


def start(conninfo_as: str, graph: dict[str, Any], label: str) -> str:
    """df.start the run as the workflow's role (the worker then logs in as that role)."""
    with db.connection(conninfo_as, autocommit=True) as conn:
        return conn.execute("SELECT df.start(%s, %s)", [json.dumps(graph), label]).fetchone()[0]


def run_worker_until_idle(conninfo: str, code: CodeConfig | None = None) -> None:
    """A worker in this process until nothing is runnable; ``code``: its code roots."""
    from pgdurable.worker import run_worker

    asyncio.run(
        run_worker(conninfo, until_idle=True, poll_interval=0.2, lease_seconds=5.0, code=code)
    )


def outcome(conninfo: str, instance_id: str) -> NewRun:
    """Status, error and the recorded Airflow task states (``st_<task>``) of a run."""
    with db.connection(conninfo, autocommit=True) as conn:
        status, error = conn.execute(
            "SELECT i.status, CASE WHEN i.status <> 'completed' THEN n.result #>> '{}' END"
            " FROM df.instances i JOIN df.nodes n ON n.instance_id = i.id AND n.id = i.root_node"
            " WHERE i.id = %s",
            [instance_id],
        ).fetchone()
        rows = conn.execute(
            "SELECT result_name, result FROM df.nodes WHERE instance_id = %s"
            " AND result_name LIKE 'st\\_%%' AND status = 'completed'",
            [instance_id],
        ).fetchall()
        # Leaf steps that failed, whether or not a TRY recovered from it (containers
        # only pass a child's failure on). Their result is the error text.
        failures = conn.execute(
            "SELECT node_type, result #>> '{}' FROM df.nodes WHERE instance_id = %s"
            " AND status = 'failed' AND node_type <> ALL(%s) ORDER BY updated_at, id",
            [instance_id, list(CONTAINERS)],
        ).fetchall()
    states = {}
    for name, result in rows:
        state = _state_of(result)
        if state:
            states[name] = state
    step_errors = [f"{kind} step: {text}" for kind, text in failures if text]
    return NewRun(instance_id, status, error, states, step_errors)


def _state_of(result: Any) -> str | None:
    """The ``state`` column of a state step's result (``{"rows": [{"state": ...}]}``)."""
    if isinstance(result, dict) and isinstance(result.get("rows"), list):
        result = result["rows"]
    if isinstance(result, list) and result:
        result = result[0]
    if isinstance(result, dict):
        value = result.get("state")
        return value if isinstance(value, str) else None
    return None


def run_ticks(
    conninfo_admin: str,
    conninfo_as: str,
    deployed: Deployed,
    dates: list[datetime | None],
    runner: Callable[[str], None] = run_worker_until_idle,
) -> list[NewRun]:
    """One run per date, each to completion before the next (as the schedule would)."""
    runs = []
    tick = one_tick(deployed.graph)
    for i, date in enumerate(dates):
        graph = pin_dates(conninfo_admin, tick, date) if date is not None else tick
        instance = start(conninfo_as, graph, f"verify/{deployed.source}/{deployed.name}#{i + 1}")
        runner(conninfo_admin)
        run = outcome(conninfo_admin, instance)
        if run.status not in ("completed", "failed", "cancelled"):
            raise VerificationError(
                f"the workflow run {instance} did not finish (status {run.status}); "
                "a step waits for a signal or a timer verify cannot shorten"
            )
        runs.append(run)
    return runs


def daily(first: datetime, count: int) -> list[datetime]:
    return [first + timedelta(days=i) for i in range(count)]
