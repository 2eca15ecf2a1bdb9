"""What the dashboard shows, read from the database as the signed-in role.

Every function takes an open connection of the person looking: row-level
security on ``df.instances``/``df.nodes`` decides which instances they see,
and the registry (``pgdurable.workflows``), the timers (``pgdurable.runs``)
are read only when the role may (administrators); otherwise workflows are
found through the labels of the role's own instances. The actions call the
same SQL functions as the CLI (``df.cancel``, ``df.signal``,
``pgdurable.retire``, a run's enqueue/trigger function or ``df.start``).
``runs_of`` is the one place that decides what the runs of a workflow are
(the run history, and labelled instances it does not know).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pgdurable import db, show, steplabels
from pgdurable.errors import PgDurableError

TERMINAL = ("completed", "failed", "cancelled")
FIDELITIES = ("exact", "approximate", "manual", "failed")
# A timer this far in the past that has not fired means no worker is running.
OVERDUE_AFTER = timedelta(minutes=1)
_INSTANCE_ID = re.compile(r"^[0-9a-f]{8}$")
# When an instance ended: df.instances.completed_at is set for completed ones only
# (as in the reference); a failed or cancelled one ended at its last update.
_ENDED = "coalesce(completed_at, CASE WHEN status IN ('failed', 'cancelled') THEN updated_at END)"


class ActionError(PgDurableError):
    """The database refused an action (the message says why)."""


workflow_of_label = steplabels.workflow_of_label


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
    state: str | None = None  # pgdurable.workflow_health's (failing, running, waiting, …)
    last_error: str | None = None


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
    _health(conn, rows)
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


def _health(conn: db.Connection, rows: dict[str, WorkflowRow]) -> None:
    """A registered workflow's state, last outcome and error, next due time and
    overdue flag from the run history (``pgdurable.workflow_health``): a
    workflow whose latest run failed is failing, whether or not its loop goes on."""
    for workflow, state, outcome, ended, error, due, overdue, schedule in conn.execute(
        "SELECT workflow, state, last_outcome, last_ended_at, last_error, next_due_at, overdue,"
        " schedule FROM pgdurable.workflow_health WHERE workflow = ANY(%s)",
        [list(rows)],
    ).fetchall():
        row = rows[workflow]  # the view shows a role its own workflows, as df.instances
        row.state, row.schedule = state, row.schedule or schedule
        if outcome is not None:
            row.last_outcome = "completed" if outcome == "succeeded" else outcome
            row.last_run_at = ended
            row.last_error = error if outcome == "failed" else None
        if due is not None or overdue:
            row.next_due, row.overdue = due, overdue


def _last_run(row: WorkflowRow, outcome: str, at: datetime) -> None:
    if row.last_run_at is None or at > row.last_run_at:
        row.last_outcome, row.last_run_at = outcome, at


# -- page 2: a workflow's runs ---------------------------------------------------------

# A step whose outcome in a run is not kept any more: df.nodes holds each step's
# latest status only, and the journal only the current iteration's outcomes.
UNKNOWN = "unknown"


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
    status: str  # completed, failed, cancelled, running (instance words)
    created_at: datetime
    ended_at: datetime | None
    execution: str | None = None  # '<instance>::<gen>' of a run in the run history
    kind: str | None = None  # tick, run (run history), None for a plain instance
    run_number: int | None = None
    error: str | None = None
    runid: int | None = None
    steps: dict[str, Step] = field(default_factory=dict)  # column key -> step

    @property
    def duration(self) -> timedelta | None:
        return self.ended_at - self.created_at if self.ended_at else None

    @property
    def unknown_steps(self) -> bool:
        return any(s.status == UNKNOWN for s in self.steps.values())


@dataclass
class RunGrid:
    workflow: str
    columns: list[str]  # column keys, in graph order
    column_labels: dict[str, str]
    runs: list[Run]


def runs_of(conn: db.Connection, workflow: str, limit: int = 25) -> list[Run]:
    """The runs of ``workflow`` (``source/name``) the role sees, newest first:
    its rows of the run history (``pgdurable.run_history``: each tick of its
    schedule loop, each run its enqueue/trigger function started) and the
    instances whose label names it that the history does not know (one-off runs
    such as quickstart's, workflows that were never registered)."""
    runs = [
        Run(r[0], r[1], "completed" if r[2] == "succeeded" else r[2], r[3], r[4], r[5], r[6],
            r[7], r[8], r[9])
        for r in conn.execute(
            "SELECT h.instance_id, i.label, h.outcome, h.started_at, h.ended_at, h.execution,"
            " h.kind, h.run_number, h.error, h.runid FROM pgdurable.run_history h"
            " LEFT JOIN df.instances i ON i.id = h.instance_id"
            " WHERE h.workflow = %s ORDER BY h.runid DESC LIMIT %s",
            [workflow, limit],
        ).fetchall()
    ]  # fmt: skip
    known = {r.instance_id for r in runs}
    source, _, name = workflow.partition("/")
    for r in conn.execute(
        f"SELECT id, label, status, created_at, {_ENDED} FROM df.instances"
        " WHERE (label = %(w)s OR label LIKE %(prefixed)s OR label LIKE %(suffixed)s"
        " OR label = %(trigger)s) AND NOT id = ANY(%(known)s)"
        " ORDER BY created_at DESC, id LIMIT %(limit)s",
        {
            "w": workflow,
            "prefixed": "%:" + _like(workflow),
            "suffixed": _like(workflow) + "#%",
            "trigger": f"airflow:{name}" if source == "airflow" else None,
            "known": list(known),
            "limit": limit,
        },
    ).fetchall():
        if workflow_of_label(r[1]) == workflow:
            runs.append(Run(r[0], r[1], r[2], r[3], r[4]))
    runs.sort(key=lambda r: r.created_at, reverse=True)
    return runs[:limit]


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def run_grid(conn: db.Connection, workflow: str, limit: int = 25) -> RunGrid:
    """Runs x steps: each run's leaf steps in graph order, matched across runs by
    their label (and its occurrence number when a label repeats in one graph).
    A run of the history gets the statuses of its own execution: a step whose
    latest status is from another tick takes its outcome from the journal when
    the role may read it and it is still there, else it is ``unknown``."""
    runs = runs_of(conn, workflow, limit)
    columns: list[str] = []
    column_labels: dict[str, str] = {}
    trees: dict[str, tuple[list[Step], dict[str, str | None]]] = {}
    journal = _may_read(conn, "pgdurable.journal")
    latest: dict[str, str] = {}  # instance -> its newest run's execution
    for run in runs:
        if run.execution:
            latest.setdefault(run.instance_id, run.execution)
    for run in runs:
        if run.instance_id not in trees:
            trees[run.instance_id] = _leaf_steps(conn, run.instance_id, workflow)
        steps, stamps = trees[run.instance_id]
        outcomes = _journal(conn, run) if journal and run.execution else {}
        seen: dict[str, int] = {}
        for step in steps:
            seen[step.label] = seen.get(step.label, 0) + 1
            key = f"{step.label}#{seen[step.label]}"
            run.steps[key] = _in_run(step, stamps.get(step.node_id), run, latest, outcomes)
            if key not in column_labels:
                column_labels[key] = step.label
                columns.append(key)
    return RunGrid(workflow, columns, column_labels, runs)


def _in_run(
    step: Step,
    stamp: str | None,
    run: Run,
    latest: dict[str, str],
    outcomes: dict[str, tuple[str, str | None, datetime]],
) -> Step:
    """What ``step`` did in ``run``."""
    if (
        run.execution is None
        or stamp == run.execution
        or (stamp or "").startswith(run.execution + "::")
    ):
        return step  # a plain instance, or the step's latest status is this run's
    if step.node_id in outcomes:
        outcome, error, at = outcomes[step.node_id]
        return replace(step, status="failed" if outcome == "failed" else "completed",
                       error=error, updated_at=at)  # fmt: skip
    if stamp is None and step.status == "pending":
        return step  # never ran in any run
    if run.status == "running" and latest.get(run.instance_id) == run.execution:
        return replace(step, status="pending", error=None, updated_at=None)  # not reached yet
    return replace(step, status=UNKNOWN, error=None, updated_at=None)


def _journal(conn: db.Connection, run: Run) -> dict[str, tuple[str, str | None, datetime]]:
    """node id -> (outcome, error, when) the journal still holds for the run's
    execution (its current iteration's; finished ones are dropped)."""
    return {
        r[0]: (r[1], r[2], r[3])
        for r in conn.execute(
            "SELECT node_id, outcome, error, recorded_at FROM pgdurable.journal"
            " WHERE instance_id = %(i)s AND (scope || '::' || gen = %(e)s"
            " OR starts_with(scope || '::' || gen, %(nested)s))",
            {"i": run.instance_id, "e": run.execution, "nested": run.execution + "::"},
        ).fetchall()
    }


def _flat(conn: db.Connection, instance_id: str) -> tuple[str, dict[str, Any]] | None:
    row = conn.execute(
        "SELECT root_node, pgdurable.explain_instance_nodes(id) FROM df.instances WHERE id = %s",
        [instance_id],
    ).fetchone()
    return (row[0], row[1] or {}) if row else None


def _labels(
    conn: db.Connection, root: str, nodes: dict[str, Any], workflow: str | None
) -> dict[str, str]:
    """node id -> label: what the source calls the step (recorded by ``pgdurable
    apply``), else df.explain's label."""
    labels = dict(
        conn.execute(
            "SELECT key, pgdurable.explain_label(value) FROM jsonb_each(%s::jsonb)",
            [json.dumps(nodes)],
        ).fetchall()
    )
    labels.update(steplabels.assign(root, nodes, steplabels.of_workflow(conn, workflow)))
    return labels


def _leaf_steps(
    conn: db.Connection, instance_id: str, workflow: str
) -> tuple[list[Step], dict[str, str | None]]:
    """The instance's leaf steps in graph order and each one's execution stamp."""
    flat = _flat(conn, instance_id)
    if flat is None:
        return [], {}
    root, nodes = flat
    labels = _labels(conn, root, nodes, workflow)
    facts = _node_facts(conn, instance_id)
    steps, stamps = [], {}
    for key in steplabels.preorder(root, nodes):
        node = nodes[key]
        if node.get("left") or node.get("right") or node.get("cond") or node.get("extras"):
            continue
        error, updated = facts.get(key, (None, None, None))[1:]
        steps.append(Step(key, labels.get(key) or node["type"], node["status"], error, updated))
        stamps[key] = (node.get("details") or {}).get("execution_id")
    return steps, stamps


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

    @property
    def output(self) -> dict[str, Any] | None:
        """A code step's exit code and the tails of its stdout and stderr (what the
        worker keeps in status_details), or None for other steps."""
        if self.node_type not in ("COMMAND", "PYTHON") or "exit_code" not in self.details:
            return None
        keep = ("exit_code", "stdout_tail", "stderr_tail", "output_truncated")
        return {k: self.details[k] for k in keep if k in self.details}


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
    labels = _labels(conn, root, nodes, workflow_of_label(row[0]))
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
        for key in steplabels.preorder(root, nodes)
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


def retire(conn: db.Connection, workflow: str) -> dict[str, Any]:
    """``pgdurable retire``: cancel the instance, unregister, drop the generated
    enqueue/trigger functions; the answer says what it did."""
    source, _, name = workflow.partition("/")
    return _act(conn, "SELECT pgdurable.retire(%s, %s)", [source, name])


_WAITS = ("WAIT_SCHEDULE", "SLEEP", "RACE", "IF")


def tick_body(graph: dict[str, Any]) -> dict[str, Any] | None:
    """What a schedule loop runs on each tick: ``@> (wait ~> run)`` gives ``run``
    (the graph JSON form of quickstart's ``run_body``). None for another shape."""
    if graph.get("node_type") != "LOOP" or graph.get("condition_node"):
        return None

    def without_first(seq: dict[str, Any]) -> dict[str, Any] | None:
        if seq.get("node_type") != "THEN":
            return None
        left = seq.get("left_node") or {}
        if left.get("node_type") == "THEN":
            rest = without_first(left)
            return None if rest is None else {**seq, "left_node": rest}
        return seq.get("right_node") if left.get("node_type") in _WAITS else None

    return without_first(graph.get("left_node") or {})


def rerun(conn: db.Connection, runid: int) -> str:
    """Start a failed (or any) run of the run history again, as the role it ran
    as; the new instance's id. A started run calls the same generated
    enqueue/trigger function again (with its default arguments); a tick (or a
    started run of a workflow without such a function: an earlier re-run of a
    tick) starts the registered loop's body once, labelled as a run of the
    workflow (the worker records it in the run history). The database decides:
    the signed-in role must be allowed to become the run's role, to read the
    registry (a tick) and to call the function."""
    # username is a regrole's text (quoted when it needs quotes): the role's own name
    row = conn.execute(
        "SELECT h.kind, h.workflow, h.username, r.rolname FROM pgdurable.run_history h"
        " LEFT JOIN pg_catalog.pg_roles r ON r.oid = pg_catalog.to_regrole(h.username)"
        " WHERE h.runid = %s",
        [runid],
    ).fetchone()
    if row is None:
        raise ActionError(f"run {runid} not found, or not yours to see")
    kind, workflow, username, role = row
    if role is None:
        raise ActionError(f"run {runid} ran as {username}, a role that no longer exists")
    try:
        with conn.transaction():
            function = None if kind == "tick" else _run_function(conn, workflow)
            if function is None:
                graph, label, database = _tick_run(conn, workflow)
                _become(conn, role)
                started = conn.execute("SELECT df.start(%s, %s, %s)", [graph, label, database])
            else:
                _become(conn, role)
                started = conn.execute(db.sql.SQL("SELECT {}()").format(function))
            instance_id = started.fetchone()[0]
    except db.DatabaseError as exc:
        raise ActionError(db.error_text(exc)) from exc
    return str(instance_id)


def _run_function(conn: db.Connection, workflow: str) -> db.sql.Composable | None:
    """The generated enqueue (queue job) or trigger (Airflow DAG) function that
    starts a run of ``workflow``: the one whose comment names it, in the two
    schemas generated files create (as ``pgdurable.retire`` finds them)."""
    found = conn.execute(
        "SELECT n.nspname, p.proname FROM pg_catalog.pg_proc p"
        " JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname IN ('pgdurable_jobs', 'airflow_dags')"
        " AND pg_catalog.obj_description(p.oid, 'pg_proc') IN (%s, %s)"
        " ORDER BY 1, 2 LIMIT 1",
        [f"{workflow}#run", f"{workflow}#trigger"],
    ).fetchone()
    return None if found is None else db.sql.Identifier(*found)


def _tick_run(conn: db.Connection, workflow: str) -> tuple[str, str, str | None]:
    """(graph, label, database) of one run of a registered loop's body."""
    source, _, name = workflow.partition("/")
    found = conn.execute(
        "SELECT definition, target_database FROM pgdurable.workflows"
        " WHERE source = %s AND name = %s",
        [source, name],
    ).fetchone()
    if found is None:
        raise ActionError(f"{workflow} is not registered any more: nothing to re-run")
    body = tick_body(json.loads(found[0]))
    if body is None:
        raise ActionError(
            f"{workflow} is no schedule loop and has no enqueue or trigger function: "
            "nothing to re-run"
        )
    return json.dumps(body), f"{workflow}#run", found[1]


def _become(conn: db.Connection, role: str) -> None:
    """Act as ``role`` for the rest of the transaction, when not already it."""
    if role != whoami(conn):
        conn.execute(db.sql.SQL("SET LOCAL ROLE {}").format(db.sql.Identifier(role)))
