"""pgdurable's own reference executor of an Airflow DAG (``--reference builtin``).

It runs one DAG run task by task, the way Airflow's scheduler and its SQL
operators would, against the old side's clone. It shares the *static reading*
with the translator (``visitor.read``: which tasks, edges and arguments the
file declares) but none of the translator's run semantics: trigger rules,
skips, branches, short-circuits, retries, Jinja and transactions are
implemented here again, independently, from Airflow's documented behaviour
(SOURCES Part 2 §4) and checked against real Airflow runs
(``--reference airflow``, tests/verify/test_airflow_real.py). A translator
bug therefore shows up as a difference instead of being replayed on both
sides.

Execution model (Airflow 3, one DAG run, sequential):
- a task becomes ready when all its direct upstream tasks are finished; its
  trigger rule over their states (``_decide``) says run / skipped /
  upstream_failed. Airflow may start ``one_*`` rules earlier; which tasks run
  is the same, only the timing differs.
- A branch (BranchSQLOperator, a branch callable) marks its direct
  downstream tasks it does not follow ``skipped`` when it finishes; a falsy
  short-circuit marks every descendant (or, with
  ``ignore_downstream_trigger_rules=False``, the direct downstream tasks)
  ``skipped``. Marked tasks are never evaluated again.
- A failing task is retried ``retries`` times (delays are wall-clock only and
  not waited); then it is ``failed``.
- SQL operators open one connection per attempt; without ``autocommit`` all
  statements commit together at the end, and any error closes the connection
  uncommitted (rolled back). ``get_first``-style reads (checks, branches)
  never commit.
- The DAG run fails when a leaf task ends ``failed`` or ``upstream_failed``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pgdurable import db
from pgdurable.errors import VerificationError
from pgdurable.sqltext import SqlLexError, split_statements
from pgdurable.translators.airflow.dagfile import Dag, Task, Unknown

SUCCESS, FAILED, SKIPPED, UPSTREAM_FAILED = "success", "failed", "skipped", "upstream_failed"
FINISHED = {SUCCESS, FAILED, SKIPPED, UPSTREAM_FAILED}
RUN = "run"

# Operators that accept a conn_id and have no default for it in Airflow 3
# (BaseSQLOperator.conn_id is None): without one the task fails.
_NO_DEFAULT_CONN = {
    "sql",
    "sql_check",
    "sql_value_check",
    "sql_threshold_check",
    "branch_sql",
    "sql_decorated",
}


class TaskFailed(Exception):
    """The task's attempt failed (the message is what Airflow would log)."""


@dataclass
class TaskOutcome:
    state: str
    tries: int = 0
    error: str | None = None


@dataclass
class DagRunOutcome:
    states: dict[str, str]
    run_state: str  # success | failed
    errors: dict[str, str] = field(default_factory=dict)


def _decide(rule: str, states: list[str]) -> str:
    """Airflow's trigger-rule decision once every direct upstream task is finished.

    Written from Airflow's TriggerRuleDep counters (success, skipped, failed,
    upstream_failed, done), not from the translator's ``rules.py``."""
    if not states:
        return RUN
    total = len(states)
    success = states.count(SUCCESS)
    skipped = states.count(SKIPPED)
    failed = states.count(FAILED)
    upstream_failed = states.count(UPSTREAM_FAILED)
    if rule == "all_success":
        if failed or upstream_failed:
            return UPSTREAM_FAILED
        if skipped:
            return SKIPPED
        return RUN
    if rule == "all_failed":
        return SKIPPED if success or skipped else RUN
    if rule in ("all_done", "always", "dummy", "all_done_setup_success"):
        return RUN
    if rule == "all_skipped":
        return SKIPPED if total - skipped else RUN
    if rule == "one_success":
        if success:
            return RUN
        return SKIPPED if skipped == total else UPSTREAM_FAILED
    if rule == "one_failed":
        return RUN if failed or upstream_failed else SKIPPED
    if rule == "one_done":
        return RUN if success or failed else SKIPPED
    if rule == "none_failed":
        return UPSTREAM_FAILED if failed or upstream_failed else RUN
    if rule in ("none_failed_min_one_success", "none_failed_or_skipped"):
        if failed or upstream_failed:
            return UPSTREAM_FAILED
        return SKIPPED if skipped == total else RUN
    if rule == "none_skipped":
        return SKIPPED if skipped else RUN
    if rule == "all_done_min_one_success":
        return RUN if success else SKIPPED
    raise VerificationError(f"unknown trigger rule {rule!r}")


def _truthy(value: Any) -> bool:
    return bool(value)


def _branch_value(cell: Any) -> bool:
    """BranchSQLOperator's reading of the first cell."""
    if isinstance(cell, bool):
        return cell
    if isinstance(cell, str):
        lowered = cell.lower()
        if lowered in ("true", "y", "yes", "1", "on"):
            return True
        if lowered in ("false", "n", "no", "0", "off"):
            return False
    elif isinstance(cell, int):
        return bool(cell)
    raise TaskFailed(f"Unexpected query return result '{cell}' type '{type(cell).__name__}'")


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class _XCom:
    """``ti`` in templates: ``ti.xcom_pull(task_ids=...)``."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def xcom_pull(self, task_ids: str | list[str] | None = None, key: str = "return_value"):
        if isinstance(task_ids, list):
            return [self.values.get(t) for t in task_ids]
        return self.values.get(task_ids or "")


@dataclass
class Reference:
    dag: Dag
    dag_path: Path
    conninfo_for: Callable[[str], str]  # conn_id -> conninfo on the old side
    logical: datetime
    xcom: dict[str, Any] = field(default_factory=dict)

    # -- templates -------------------------------------------------------------

    def _context(self, task: Task) -> dict[str, Any]:
        import jinja2  # noqa: F401 (imported here: only the reference needs it)

        d = self.logical
        params: dict[str, Any] = {}
        for source in (self.dag.args.get("params"), task.args.get("params")):
            if isinstance(source, dict):
                params.update(source)

        class Macros:
            @staticmethod
            def ds_add(ds: str, days: int) -> str:
                return (datetime.strptime(ds, "%Y-%m-%d") + timedelta(days=days)).strftime(
                    "%Y-%m-%d"
                )

            @staticmethod
            def ds_format(ds: str, input_format: str, output_format: str) -> str:
                return datetime.strptime(ds, input_format).strftime(output_format)

        return {
            "ds": d.strftime("%Y-%m-%d"),
            "ds_nodash": d.strftime("%Y%m%d"),
            "ts": d.isoformat(),
            "ts_nodash": d.strftime("%Y%m%dT%H%M%S"),
            "logical_date": d,
            "data_interval_start": d,
            "data_interval_end": d,
            "run_id": f"manual__{d.isoformat()}",
            "params": params,
            "macros": Macros,
            "ti": _XCom(self.xcom),
            "task_instance": _XCom(self.xcom),
        }

    def render(self, text: str, task: Task) -> str:
        import jinja2

        env = jinja2.Environment(undefined=jinja2.StrictUndefined)
        try:
            return env.from_string(text).render(**self._context(task))
        except jinja2.TemplateError as exc:
            raise TaskFailed(f"template error: {exc}") from exc

    def _template_file(self, name: str) -> str | None:
        paths = self.dag.args.get("template_searchpath")
        folders = [paths] if isinstance(paths, str) else list(paths or [])
        folders = [Path(f) for f in folders if isinstance(f, str)] + [self.dag_path.parent]
        for folder in folders:
            candidate = folder / name if not Path(name).is_absolute() else Path(name)
            if candidate.is_file():
                return candidate.read_text(encoding="utf-8")
        return None

    def sql_texts(self, task: Task, value: Any) -> list[str]:
        """The statements' source texts: a string, a list, or template files; rendered."""
        if isinstance(value, Unknown) or value is None:
            raise _unsupported(task, "its SQL is not statically known")
        items = list(value) if isinstance(value, list | tuple) else [value]
        texts = []
        for item in items:
            if not isinstance(item, str):
                raise _unsupported(task, "an SQL item is not a literal string")
            stripped = item.strip()
            if stripped.endswith((".sql", ".json")) and " " not in stripped:
                found = self._template_file(stripped)
                if found is None:
                    raise TaskFailed(f"TemplateNotFound: {stripped}")
                item = found
            texts.append(self.render(item, task))
        return texts

    # -- SQL -------------------------------------------------------------------

    def _conninfo(self, task: Task, conn_id: Any) -> str:
        if conn_id is None:
            raise TaskFailed("The conn_id `None` isn't defined")
        if not isinstance(conn_id, str):
            raise _unsupported(task, "its conn_id is not a literal")
        return self.conninfo_for(conn_id)

    def _conn_id(self, task: Task) -> Any:
        if task.operator.endswith("PostgresOperator"):
            return self.dag.task_arg(task, "postgres_conn_id") or self.dag.task_arg(
                task, "conn_id", "postgres_default"
            )
        value = self.dag.task_arg(task, "conn_id")
        if value is None and task.kind not in _NO_DEFAULT_CONN:
            return "postgres_default"
        return value

    @staticmethod
    def _execute(cursor, statement: str, parameters: Any) -> None:
        if parameters is None:
            cursor.execute(statement.encode())
        else:
            cursor.execute(statement, parameters)

    def run_statements(
        self, conninfo: str, statements: list[str], parameters: Any, autocommit: bool, fetch: bool
    ) -> Any:
        """DbApiHook.run: one connection, one cursor, commit once unless autocommit."""
        if not statements:
            raise TaskFailed("List of SQL statements is empty")
        results = []
        try:
            with db.client_connection(conninfo, autocommit=autocommit) as conn:
                cursor = conn.cursor()
                for statement in statements:
                    self._execute(cursor, statement, parameters)
                    results.append(
                        [list(r) for r in cursor.fetchall()] if cursor.description else None
                    )
                if not autocommit:
                    conn.commit()
        except db.DatabaseError as exc:
            raise TaskFailed(db.error_text(exc)) from exc
        return results[-1] if fetch and results else None

    def first_row(self, conninfo: str, statement: str, parameters: Any) -> list[Any] | None:
        """DbApiHook.get_first: a read whose connection is closed without commit."""
        try:
            with db.client_connection(conninfo, autocommit=False) as conn:
                cursor = conn.cursor()
                self._execute(cursor, statement, parameters)
                row = cursor.fetchone() if cursor.description else None
                conn.rollback()
        except db.DatabaseError as exc:
            raise TaskFailed(db.error_text(exc)) from exc
        return None if row is None else list(row)

    def _statements(self, task: Task, texts: list[str], split: bool) -> list[str]:
        if len(texts) > 1 or split:
            out = []
            for text in texts:
                try:
                    out += [s.text for s in split_statements(text)]
                except SqlLexError:
                    out.append(text.strip())
            return [s for s in out if s.strip()]
        return [t.strip().rstrip(";").strip() for t in texts if t.strip()]

    def _one_query(self, task: Task, key: str = "sql") -> str:
        statements = self._statements(task, self.sql_texts(task, task.args.get(key)), False)
        if len(statements) != 1:
            raise TaskFailed(f"{key} must be one query")
        return statements[0]

    # -- one attempt of one task -----------------------------------------------

    def attempt(self, task: Task) -> dict[str, Any]:
        """Run the task once; returns what it decided ({"follow": ids} for branches,
        {"short_circuit": bool} for short-circuits). Raises TaskFailed."""
        kind = task.kind
        params = self.dag.task_arg(task, "parameters")
        if isinstance(params, Unknown):
            raise _unsupported(task, "its parameters are not literal")
        if kind == "empty":
            return {}
        if kind in ("sql", "sql_decorated"):
            conninfo = self._conninfo(task, self._conn_id(task))
            if kind == "sql_decorated":
                fn = task.callable
                value = getattr(fn, "static_return", None) if fn is not None else None
                if not isinstance(value, str):
                    raise _unsupported(task, "@task.sql does not return a literal")
                texts = [self.render(value, task)]
            else:
                texts = self.sql_texts(task, task.args.get("sql"))
            split = bool(task.args.get("split_statements", False))
            statements = self._statements(task, texts, split)
            autocommit = bool(self.dag.task_arg(task, "autocommit", False))
            result = self.run_statements(conninfo, statements, params, autocommit, fetch=True)
            if self.dag.task_arg(task, "do_xcom_push", True):
                self.xcom[task.task_id] = result
            return {}
        if kind in ("sql_check", "sql_value_check", "sql_threshold_check", "branch_sql"):
            conninfo = self._conninfo(task, self._conn_id(task))
            row = self.first_row(conninfo, self._one_query(task), params)
            return self._judge(task, kind, row, conninfo)
        if kind == "python":
            return self._hook_calls(task)
        if kind == "branch_python":
            fn = task.callable
            value = getattr(fn, "static_return", None) if fn is not None else None
            if value is None and fn is not None and hasattr(fn, "static_return"):
                return {"follow": set()}
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _unsupported(task, "the branch callable's result is not a literal")
            return {"follow": set(value)}
        if kind == "short_circuit":
            fn = task.callable
            if fn is not None and hasattr(fn, "static_return"):
                return {"short_circuit": _truthy(fn.static_return)}
            calls = getattr(fn, "sql_calls", None) if fn is not None else None
            if calls:
                result = self._hook_calls(task)
                return {"short_circuit": _truthy(result.get("value"))}
            raise _unsupported(task, "the short-circuit callable is Python")
        raise _unsupported(task, f"{task.operator} ({kind})")

    def _judge(self, task: Task, kind: str, row: list[Any] | None, conninfo: str) -> dict:
        if kind == "branch_sql":
            if not row:
                raise TaskFailed(
                    "No rows returned from sql query. Operator expected True or False return value."
                )
            follow_true = _ids(task.args.get("follow_task_ids_if_true"))
            follow_false = _ids(task.args.get("follow_task_ids_if_false"))
            return {"follow": follow_true if _branch_value(row[0]) else follow_false}
        if not row:
            raise TaskFailed("The following query returned zero rows")
        if kind == "sql_check":
            if not all(_truthy(v) for v in row):
                raise TaskFailed(f"Test failed. Results: {row}")
            return {}
        if kind == "sql_value_check":
            pass_value = task.args.get("pass_value")
            tolerance = _float(task.args.get("tolerance"))
            numeric = _float(pass_value) if not isinstance(pass_value, bool) else None
            if numeric is not None:
                values = []
                for v in row:
                    f = _float(v)
                    if f is None:
                        raise TaskFailed(f"Converting a result to float failed: {v!r}")
                    values.append(f)
                if tolerance is not None:
                    low, high = numeric * (1 - tolerance), numeric * (1 + tolerance)
                    tests = [low <= v <= high for v in values]
                else:
                    tests = [v == numeric for v in values]
            else:
                tests = [str(v) == str(pass_value) for v in row]
            if not all(tests):
                raise TaskFailed(f"Test failed. Pass value:{pass_value} Results: {row}")
            return {}
        # threshold: the bounds are numbers or queries whose first cell is the bound
        bounds = []
        for key in ("min_threshold", "max_threshold"):
            value = task.args.get(key)
            number = _float(value)
            if number is None and isinstance(value, str):
                bound_row = self.first_row(conninfo, self.render(value, task), None)
                number = _float(bound_row[0]) if bound_row else None
            if number is None:
                raise _unsupported(task, f"{key} is not a number or a query")
            bounds.append(number)
        result = _float(row[0])
        if result is None or not (bounds[0] <= result <= bounds[1]):
            raise TaskFailed(f"Threshold check failed: {row[0]} not in [{bounds[0]}, {bounds[1]}]")
        return {}

    def _hook_calls(self, task: Task) -> dict[str, Any]:
        """A callable that only runs SQL through a hook: each call is its own connection;
        ``run`` commits, the reads (``get_records``/``get_first``) do not."""
        fn = task.callable
        calls = getattr(fn, "sql_calls", None) if fn is not None else None
        if not calls:
            raise _unsupported(task, "a Python callable")
        value: Any = None
        for call in calls:
            conninfo = self._conninfo(task, call.get("conn") or "postgres_default")
            method = call.get("method", "run")
            if method == "run":
                value = self.run_statements(
                    conninfo,
                    [call["sql"]],
                    call.get("parameters"),
                    bool(call.get("autocommit")),
                    fetch=False,
                )
            elif method == "get_first":
                value = self.first_row(conninfo, call["sql"], call.get("parameters"))
            else:
                try:
                    with db.client_connection(conninfo, autocommit=False) as conn:
                        cursor = conn.cursor()
                        self._execute(cursor, call["sql"], call.get("parameters"))
                        value = [list(r) for r in cursor.fetchall()] if cursor.description else []
                        conn.rollback()
                except db.DatabaseError as exc:
                    raise TaskFailed(db.error_text(exc)) from exc
        return {"value": value if calls[-1].get("returns") else None}

    # -- the DAG run -------------------------------------------------------------

    def run(self) -> DagRunOutcome:
        tasks = self.dag.tasks
        edges = [(u, d) for u, d in self.dag.edges if u in tasks and d in tasks]
        upstream: dict[str, list[str]] = {t: [] for t in tasks}
        downstream: dict[str, list[str]] = {t: [] for t in tasks}
        for u, d in edges:
            upstream[d].append(u)
            downstream[u].append(d)
        states: dict[str, str] = {}
        errors: dict[str, str] = {}
        while len(states) < len(tasks):
            ready = [
                t
                for t in tasks
                if t not in states and all(states.get(u) in FINISHED for u in upstream[t])
            ]
            if not ready:
                raise VerificationError(f"DAG {self.dag.dag_id}: the tasks form a cycle")
            tid = ready[0]
            task = tasks[tid]
            rule = self.dag.task_arg(task, "trigger_rule", "all_success")
            if not isinstance(rule, str):
                raise _unsupported(task, "its trigger_rule is not a literal")
            decision = _decide(rule.lower(), [states[u] for u in upstream[tid]])
            if decision != RUN:
                states[tid] = decision
                continue
            outcome, decided = self._with_retries(task)
            states[tid] = outcome.state
            if outcome.error:
                errors[tid] = outcome.error
            if outcome.state != SUCCESS:
                continue
            if "follow" in decided:
                for d in downstream[tid]:
                    if d not in decided["follow"] and d not in states:
                        states[d] = SKIPPED
            if decided.get("short_circuit") is False:
                if self.dag.task_arg(task, "ignore_downstream_trigger_rules", True) is False:
                    stopped = downstream[tid]
                else:
                    stopped = _descendants(tid, downstream)
                for d in stopped:
                    states.setdefault(d, SKIPPED)
        leaves = [t for t in tasks if not downstream[t]]
        failed = any(states[t] in (FAILED, UPSTREAM_FAILED) for t in leaves)
        return DagRunOutcome(states, "failed" if failed else "success", errors)

    def _with_retries(self, task: Task) -> tuple[TaskOutcome, dict[str, Any]]:
        retries = self.dag.task_arg(task, "retries", 0)
        if not isinstance(retries, int):
            raise _unsupported(task, "retries is not a literal")
        error = None
        for attempt in range(1, retries + 2):
            try:
                decided = self.attempt(task)
            except TaskFailed as exc:
                error = str(exc)
                continue
            return TaskOutcome(SUCCESS, attempt), decided
        return TaskOutcome(FAILED, retries + 1, error), {}


def _ids(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, list | tuple):
        return {v for v in value if isinstance(v, str)}
    return set()


def _descendants(tid: str, downstream: dict[str, list[str]]) -> list[str]:
    seen: list[str] = []
    stack = list(downstream[tid])
    while stack:
        t = stack.pop()
        if t not in seen:
            seen.append(t)
            stack += downstream[t]
    return seen


def _unsupported(task: Task, why: str) -> VerificationError:
    return VerificationError(
        f"task {task.task_id!r} ({task.ref}): the builtin reference cannot replay it: {why}; "
        "use --reference airflow to run the DAG with Apache Airflow"
    )


def conn_ids(dag: Dag) -> set[str]:
    """Every connection id the DAG's tasks name (for the real Airflow run's environment)."""
    found = {"postgres_default"}
    for task in dag.tasks.values():
        for key in ("conn_id", "postgres_conn_id"):
            value = dag.task_arg(task, key)
            if isinstance(value, str):
                found.add(value)
        fn = task.callable
        for call in getattr(fn, "sql_calls", None) or []:
            if isinstance(call.get("conn"), str):
                found.add(call["conn"])
    return found


def databases_named(dag: Dag) -> dict[str, str]:
    """task_id -> the ``database=`` a SQL task names (its own or default_args'): it
    overrides the connection's database in Airflow, as ``target_database`` does in
    the translation."""
    found = {}
    for task in dag.tasks.values():
        value = dag.task_arg(task, "database")
        if isinstance(value, str):
            found[task.task_id] = value
    return found


def check_one_database(dag: Dag) -> str | None:
    """The one database the DAG's ``database=`` arguments name (None: none does).

    Each side of a verification is one clone of the fixture, so every task runs in
    it: a task's ``database='analytics'`` is modelled as that clone on both sides,
    exactly as the generated file's ``target_database`` is. Tasks naming two
    databases cannot be replayed on one clone and are refused."""
    named = databases_named(dag)
    if not named:
        return None
    names = set(named.values())
    if len(names) > 1:
        parts = [f"{t} -> {d}" for t, d in sorted(named.items())]
        raise VerificationError(
            "the DAG's tasks run in different databases (" + ", ".join(parts) + "); verify "
            "replays a DAG on one fixture clone per side: verify a DAG whose tasks share "
            "one database"
        )
    return next(iter(names))


def to_json(outcome: DagRunOutcome) -> str:
    return json.dumps({"states": outcome.states, "run_state": outcome.run_state})
