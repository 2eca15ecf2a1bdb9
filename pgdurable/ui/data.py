"""What the dashboard shows, read from the database as the signed-in role.

Every function takes an open connection of the person looking: row-level
security on ``df.instances``/``df.nodes`` decides which instances they see,
and the registry (``pgdurable.workflows``), the timers (``pgdurable.runs``)
are read only when the role may (administrators); otherwise workflows are
found through the labels of the role's own instances. The actions call the
same SQL functions as the CLI (``df.cancel``, ``df.signal``,
``pgdurable.retire_workflow``). ``runs_of`` is the one place that decides
which instances are the runs of a workflow.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pgdurable import db, show
from pgdurable.errors import PgDurableError

TERMINAL = ("completed", "failed", "cancelled")
FIDELITIES = ("exact", "approximate", "manual", "failed")
# A timer this far in the past that has not fired means no worker is running.
OVERDUE_AFTER = timedelta(minutes=1)
# Instance labels that name a workflow: "source/name" (deploy_workflow),
# "prefix:source/name" (quickstart's one-off runs), "source/name#suffix" (queue runs).
_LABEL = re.compile(r"^(?:[A-Za-z0-9_.-]+:)?([A-Za-z0-9_.-]+)/([^#]+)(?:#.*)?$")
_INSTANCE_ID = re.compile(r"^[0-9a-f]{8}$")
# When an instance ended: df.instances.completed_at is set for completed ones only
# (as in the reference); a failed or cancelled one ended at its last update.
_ENDED = "coalesce(completed_at, CASE WHEN status IN ('failed', 'cancelled') THEN updated_at END)"


class ActionError(PgDurableError):
    """The database refused an action (the message says why)."""


def workflow_of_label(label: str | None) -> str | None:
    """``source/name`` an instance label belongs to, or None."""
    match = _LABEL.match(label or "")
    return f"{match.group(1)}/{match.group(2)}" if match else None


def _may_read(conn: db.Connection, table: str) -> bool:
    return bool(
        conn.execute("SELECT pg_catalog.has_table_privilege(%s, 'SELECT')", [table]).fetchone()[0]
    )


def whoami(conn: db.Connection) -> str:
    return conn.execute("SELECT current_user").fetchone()[0]


# -- page 1: workflows ---------------------------------------------------------------


@dataclass
class WorkflowRow:
    workflow: str  # source/name
    source: str
    name: str
    fidelity: str | None = None
    schedule: str | None = None
    run_as: str | None = None
    database: str | None = None
    instance_id: str | None = None
    instance_status: str | None = None
    last_outcome: str | None = None
    last_run_at: datetime | None = None
    next_due: datetime | None = None
    overdue: bool = False
    registered: bool = False


@dataclass
class WorkflowList:
    rows: list[WorkflowRow]
    counts: dict[str, int]
    registry_readable: bool
    timers_readable: bool


def workflows(conn: db.Connection, query: str = "", fidelity: str = "") -> WorkflowList:
    """The registry (or, without read access to it, the workflows the role's
    instances name), with last run outcome, next due time and overdue flag;
    filtered by a text in source/name/role/schedule and by fidelity. Counts
    are of the whole (unfiltered) list the role sees."""
    registry = _may_read(conn, "pgdurable.workflows")
    timers = _may_read(conn, "pgdurable.runs")
    rows: dict[str, WorkflowRow] = {}
    if registry:
        # A registered workflow is shown to the roles it runs as (and their
        # members, superusers included), as row-level security shows instances.
        for r in conn.execute(
            "SELECT w.source, w.name, w.fidelity, w.schedule, w.run_as, w.target_database,"
            " w.instance_id FROM pgdurable.workflows w"
            " WHERE w.run_as IS NULL OR pg_catalog.pg_has_role(w.run_as, 'MEMBER')"
            " ORDER BY w.source, w.name"
        ).fetchall():
            key = f"{r[0]}/{r[1]}"
            rows[key] = WorkflowRow(key, r[0], r[1], r[2], r[3], r[4], r[5], r[6], registered=True)
    for label, instance_id, status, created, ended in conn.execute(
        f"SELECT label, id, status, created_at, {_ENDED} FROM df.instances"
        " WHERE label IS NOT NULL ORDER BY created_at DESC, id"
    ).fetchall():
        key = workflow_of_label(label)
        if key is None:
            continue
        row = rows.get(key)
        if row is None:
            if registry:
                continue  # a label that looks like a workflow, but none is registered
            source, _, name = key.partition("/")
            row = rows[key] = WorkflowRow(key, source, name)
        if instance_id == row.instance_id or (row.instance_id is None and label == key):
            row.instance_id, row.instance_status = instance_id, status
        if status in TERMINAL:
            _last_run(row, status, ended or created)
    # A scheduled workflow's own instance is a root loop: each finished iteration
    # (an execution continued as new) is a completed run.
    for instance_id, ended in conn.execute(
        "SELECT instance_id, max(completed_at) FROM pgdurable.executions"
        " WHERE instance_id = ANY(%s) AND status = 'ContinuedAsNew' GROUP BY instance_id",
        [[r.instance_id for r in rows.values() if r.instance_id]],
    ).fetchall():
        for row in rows.values():
            if row.instance_id == instance_id:
                _last_run(row, "completed", ended)
    ids = [r.instance_id for r in rows.values() if r.instance_id]
    if timers:  # when the worker will next look at the instance, whatever it waits for
        due_sql = (
            "SELECT instance_id, wake_at FROM pgdurable.runs WHERE instance_id = ANY(%s)"
            " AND wake_at > '-infinity' AND wake_at < 'infinity'"
        )
    else:  # the schedule a running wait is on, from when it started waiting (its timer)
        due_sql = (
            "SELECT instance_id, min(pgdurable.cron_next("
            "pgdurable.jsonb_or_null(query) ->> 'cron_expr', updated_at)) FROM df.nodes"
            " WHERE instance_id = ANY(%s) AND node_type = 'WAIT_SCHEDULE'"
            " AND status = 'running' GROUP BY instance_id"
        )
    due = dict(conn.execute(due_sql, [ids]).fetchall())
    now = conn.execute("SELECT now()").fetchone()[0]
    for row in rows.values():
        row.next_due = due.get(row.instance_id)
        row.overdue = row.next_due is not None and row.next_due < now - OVERDUE_AFTER
    everything = sorted(rows.values(), key=lambda r: r.workflow)
    counts = {f: sum(1 for r in everything if r.fidelity == f) for f in FIDELITIES}
    needle = query.strip().lower()
    shown = [
        r
        for r in everything
        if (not fidelity or r.fidelity == fidelity)
        and (
            not needle
            or any(needle in (v or "").lower() for v in (r.workflow, r.run_as, r.schedule))
        )
    ]
    return WorkflowList(shown, counts, registry, timers)


def _last_run(row: WorkflowRow, outcome: str, at: datetime) -> None:
    if row.last_run_at is None or at > row.last_run_at:
        row.last_outcome, row.last_run_at = outcome, at


# -- page 2: a workflow's runs ---------------------------------------------------------


@dataclass
class Step:
    node_id: str
    label: str
    status: str
    error: str | None = None
    updated_at: datetime | None = None


@dataclass
class Run:
    instance_id: str
    label: str | None
    status: str
    created_at: datetime
    ended_at: datetime | None
    steps: dict[str, Step] = field(default_factory=dict)  # column key -> step

    @property
    def duration(self) -> timedelta | None:
        return self.ended_at - self.created_at if self.ended_at else None


@dataclass
class RunGrid:
    workflow: str
    columns: list[str]  # column keys, in graph order
    column_labels: dict[str, str]
    runs: list[Run]


def runs_of(conn: db.Connection, workflow: str, limit: int = 25) -> list[tuple[str, Any]]:
    """The runs of ``workflow`` (``source/name``), newest first, as
    ``(instance_id, label, status, created_at, ended_at)`` rows: today the
    instances the role sees whose label names the workflow (its registered
    instance, one-off runs such as quickstart's, queue runs)."""
    return conn.execute(
        f"SELECT id, label, status, created_at, {_ENDED} FROM df.instances"
        " WHERE label = %(w)s OR label LIKE %(prefixed)s OR label LIKE %(suffixed)s"
        " ORDER BY created_at DESC, id LIMIT %(limit)s",
        {
            "w": workflow,
            "prefixed": "%:" + _like(workflow),
            "suffixed": _like(workflow) + "#%",
            "limit": limit,
        },
    ).fetchall()


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def run_grid(conn: db.Connection, workflow: str, limit: int = 25) -> RunGrid:
    """Runs x steps: each run's leaf steps in graph order, matched across runs by
    their label (and its occurrence number when a label repeats in one graph)."""
    runs = [
        Run(r[0], r[1], r[2], r[3], r[4])
        for r in runs_of(conn, workflow, limit)
        if workflow_of_label(r[1]) == workflow
    ]
    columns: list[str] = []
    column_labels: dict[str, str] = {}
    for run in runs:
        seen: dict[str, int] = {}
        for step in _leaf_steps(conn, run.instance_id):
            seen[step.label] = seen.get(step.label, 0) + 1
            key = f"{step.label}#{seen[step.label]}"
            run.steps[key] = step
            if key not in column_labels:
                column_labels[key] = step.label
                columns.append(key)
    return RunGrid(workflow, columns, column_labels, runs)


def _flat(conn: db.Connection, instance_id: str) -> tuple[str, dict[str, Any]] | None:
    row = conn.execute(
        "SELECT root_node, pgdurable.explain_instance_nodes(id) FROM df.instances WHERE id = %s",
        [instance_id],
    ).fetchone()
    return (row[0], row[1] or {}) if row else None


def _preorder(root: str, nodes: dict[str, Any]) -> list[str]:
    order, stack = [], [root]
    while stack:
        key = stack.pop()
        node = nodes.get(key)
        if node is None:
            continue
        order.append(key)
        children = [node.get("left"), node.get("right"), node.get("cond")]
        children += node.get("extras") or []
        stack.extend(reversed([c for c in children if c]))
    return order


def _labels(conn: db.Connection, nodes: dict[str, Any]) -> dict[str, str]:
    return dict(
        conn.execute(
            "SELECT key, pgdurable.explain_label(value) FROM jsonb_each(%s::jsonb)",
            [json.dumps(nodes)],
        ).fetchall()
    )


def _leaf_steps(conn: db.Connection, instance_id: str) -> list[Step]:
    flat = _flat(conn, instance_id)
    if flat is None:
        return []
    root, nodes = flat
    labels = _labels(conn, nodes)
    facts = _node_facts(conn, instance_id)
    steps = []
    for key in _preorder(root, nodes):
        node = nodes[key]
        if node.get("left") or node.get("right") or node.get("cond") or node.get("extras"):
            continue
        error, updated = facts.get(key, (None, None, None))[1:]
        steps.append(Step(key, labels.get(key) or node["type"], node["status"], error, updated))
    return steps


def _node_facts(conn: db.Connection, instance_id: str) -> dict[str, tuple[Any, Any, Any]]:
    """node id -> (result, error text, updated_at)."""
    return {
        r[0]: (r[1], r[2], r[3])
        for r in conn.execute(
            "SELECT id, result,"
            " CASE WHEN status = 'failed' THEN coalesce(status_details->>'error', error,"
            " result #>> '{}') END, updated_at"
            " FROM df.nodes WHERE instance_id = %s",
            [instance_id],
        ).fetchall()
    }


# -- page 3: an instance ------------------------------------------------------------------


@dataclass
class NodeFact:
    node_id: str
    node_type: str
    label: str
    status: str
    result: Any
    error: str | None
    details: dict[str, Any]


@dataclass
class InstanceView:
    instance_id: str
    label: str | None
    status: str
    created_at: datetime
    ended_at: datetime | None
    workflow: str | None
    graph: show.Graph
    nodes: list[NodeFact]
    waiting_signals: list[str]

    @property
    def running(self) -> bool:
        return self.status not in TERMINAL


def instance(conn: db.Connection, instance_id: str) -> InstanceView | None:
    """An instance the role sees, its graph (``pgdurable show``'s model) and every
    node's status, result, error and worker details; None when not visible."""
    if not _INSTANCE_ID.match(instance_id):
        return None
    row = conn.execute(
        f"SELECT label, status, created_at, {_ENDED} FROM df.instances WHERE id = %s",
        [instance_id],
    ).fetchone()
    flat = _flat(conn, instance_id)
    if row is None or flat is None:
        return None
    graph, _ = show.build(conn, instance_id)
    root, nodes = flat
    labels = _labels(conn, nodes)
    facts = _node_facts(conn, instance_id)
    view = [
        NodeFact(
            key,
            nodes[key]["type"],
            labels.get(key) or nodes[key]["type"],
            nodes[key]["status"],
            facts.get(key, (None,))[0],
            facts.get(key, (None, None))[1],
            nodes[key].get("details") or {},
        )
        for key in _preorder(root, nodes)
    ]
    signals = sorted(
        {
            _signal_name(node.get("query"))
            for node in nodes.values()
            if node["type"] == "SIGNAL" and node["status"] in ("pending", "running")
        }
        - {""}
    )
    return InstanceView(
        instance_id,
        row[0],
        row[1],
        row[2],
        row[3],
        workflow_of_label(row[0]),
        graph,
        view,
        signals,
    )


def _signal_name(config: str | None) -> str:
    try:
        value = json.loads(config or "{}")
    except ValueError:
        return ""
    return str(value.get("signal_name") or "") if isinstance(value, dict) else ""


# -- page 4: migration reports ----------------------------------------------------------


@dataclass
class ReportItem:
    name: str
    source_ref: str
    fidelity: str
    profile: str | None
    output: Path | None
    diagnostics: list[dict[str, Any]]
    verify: dict[str, Any] | None = None


@dataclass
class Report:
    path: Path
    source: str
    summary: dict[str, int]
    items: list[ReportItem]


def read_reports(paths: list[Path]) -> list[Report]:
    """The import reports (``pgdurable import-* --report FILE``; a folder stands for
    the ``*.json`` files in it) with, when a ``verify --all DIR --json`` answer is
    among them, each item's verify outcome. A file that is neither raises."""
    files: list[Path] = []
    for path in paths:
        files += sorted(path.glob("*.json")) if path.is_dir() else [path]
    verified: dict[str, dict[str, Any]] = {}
    reports: list[tuple[Path, dict[str, Any]]] = []
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PgDurableError(f"{path}: not a readable JSON report ({exc})") from exc
        if isinstance(data, dict) and isinstance(data.get("items"), list):
            if all(isinstance(i, dict) and "fidelity" in i for i in data["items"]):
                reports.append((path, data))
                continue
            for item in data["items"]:  # a verify --json answer: one item per file
                if isinstance(item, dict) and item.get("file"):
                    verified[str(_beside(path, item["file"]))] = item
            continue
        raise PgDurableError(
            f"{path}: neither an import report (--report) nor a verify --json answer"
        )
    out = []
    for path, data in reports:
        items = []
        for i in data["items"]:
            output = _beside(path, i["output"]) if i.get("output") else None
            items.append(
                ReportItem(
                    str(i.get("name", "")),
                    str(i.get("source_ref", "")),
                    str(i.get("fidelity", "")),
                    i.get("profile"),
                    output,
                    [d for d in i.get("diagnostics") or [] if isinstance(d, dict)],
                    verified.get(str(output)) if output else None,
                )
            )
        summary = {k: int(v) for k, v in (data.get("summary") or {}).items()}
        out.append(Report(path, str(data.get("source", "")), summary, items))
    return out


def _beside(json_file: Path, named: str) -> Path:
    """A path a report names, absolute. The commands write them relative to the
    folder they ran in, which is usually where the JSON was saved: that folder
    first, then the dashboard's own working folder."""
    given = Path(named)
    if given.is_absolute():
        return given
    candidate = json_file.parent / given
    return candidate.resolve() if candidate.exists() else given.resolve()


# -- actions (the CLI's SQL functions) ----------------------------------------------------


def _act(conn: db.Connection, query: str, params: list[Any]) -> Any:
    try:
        row = conn.execute(query, params).fetchone()
    except db.DatabaseError as exc:
        raise ActionError(db.error_text(exc)) from exc
    return row[0] if row else None


def cancel(conn: db.Connection, instance_id: str) -> Any:
    return _act(conn, "SELECT df.cancel(%s)", [instance_id])


def signal(conn: db.Connection, instance_id: str, name: str, data: str) -> Any:
    return _act(conn, "SELECT df.signal(%s, %s, %s)", [instance_id, name, data or "{}"])


def retire(conn: db.Connection, workflow: str) -> bool:
    source, _, name = workflow.partition("/")
    return bool(_act(conn, "SELECT pgdurable.retire_workflow(%s, %s)", [source, name]))
