"""One Airflow task -> the workflow steps that do its work (its "work node").

Run semantics (trigger rules, skips, captured failures) are added around the
work node by ``compile.py``; retries and timeouts by ``policies``. Every
function here is pure: files are read through ``Context.read_template``.

SQL that must fail exactly when Airflow's check fails (check operators) is a
single ``DO`` block, so it stays portable: the query runs through
``EXECUTE ... INTO`` and a ``RAISE`` carries Airflow's message.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any

import libcst as cst

from pgdurable import model as m
from pgdurable.diagnostics import Collector, SourceRef
from pgdurable.sqltext import (
    SqlLexError,
    derived_identifier,
    dollar_quote,
    is_transaction_control,
    split_statements,
)
from pgdurable.sqltext import literal as sql_literal
from pgdurable.translators import session
from pgdurable.translators.airflow import (
    bash,
    dag_run_conf,
    external,
    python_isolated,
    python_operators,
    python_tasks,
    runtime_parameters,
    runtime_templates,
    templates,
    transaction_block,
)
from pgdurable.translators.airflow.connections import Connections
from pgdurable.translators.airflow.dagfile import Dag, Duration, Task, Unknown
from pgdurable.translators.base import INT_MAX, seconds, whole_number
from pgdurable.translators.sqlcommand import transaction_groups


@dataclass(frozen=True)
class Trigger:
    """A TriggerDagRunOperator's target, checked against the batch (PGD320)."""

    dag_id: str
    task_id: str
    ref: SourceRef


@dataclass
class Context:
    dag: Dag
    dag_dir: str
    generation: int
    connections: Connections
    portable: bool
    diag: Collector
    read_template: Callable[[str], str | None]
    env: templates.Env
    databases: dict[str, str | None] = field(default_factory=dict)  # task -> target db
    multi_statement: bool = False  # a step holds several statements (profile pgdurable)
    run_as: str | None = None
    settings: list[str] = field(default_factory=list)  # the task's hook_params set_config calls
    # --search-path-map: (old prefix, new prefix) applied to template_searchpath entries
    search_path_map: tuple[tuple[str, str], ...] = ()
    # one diagnostic per (code, key), naming every task it concerns: key -> (index, tasks)
    reported: dict[tuple[str, str], tuple[int, list[str]]] = field(default_factory=dict)
    triggers: list[Trigger] = field(default_factory=list)  # DAGs this one starts
    python_module: Any = None  # python_tasks.DagModule: the DAG's extracted callables

    def once(self, code: str, key: str, task: Task, message: Callable[[str], str]) -> None:
        """Report ``code`` for ``key`` (a conn_id, a missing file) once per DAG; later
        tasks are added to that diagnostic's task list instead of repeating it.
        ``message`` gets the quoted task list."""
        index, tasks = self.reported.get((code, key), (len(self.diag.items), []))
        if task.task_id not in tasks:
            tasks.append(task.task_id)
        self.reported[(code, key)] = (index, tasks)
        noun = "task" if len(tasks) == 1 else "tasks"
        text = message(f"{noun} {', '.join(repr(t) for t in tasks)}")
        if index == len(self.diag.items):
            self.diag.add(code, text, task.ref)
        else:
            first = self.diag.items[index]
            self.diag.items[index] = replace(first, message=text)

    def unmapped_conn(self, conn_id: str, task: Task) -> None:
        """Report an unmapped conn_id once, naming every task that uses it."""
        self.once(
            "PGD313",
            conn_id,
            task,
            lambda tasks: (
                f"conn_id {conn_id!r} ({tasks}) is not mapped to a database by "
                "--connections; its steps run in the workflow's database: add "
                f"`{conn_id}: {{database: NAME}}` (or `current`) to the connections file"
            ),
        )


@dataclass
class Work:
    """The steps of one task and what the run semantics need to know."""

    node: m.Node | None  # None: nothing to run (EmptyOperator)
    can_fail: bool = True
    state_node: bool = False  # node itself records st_<task> on every path (soft_fail)
    may_skip: bool = False  # may end skipped by itself
    follow: str | None = None  # SQL boolean (branch/short-circuit), read after success
    follow_static: set[str] | None = None  # task ids a static branch follows
    short_circuit: bool = False
    short_circuit_all: bool = True  # ignore_downstream_trigger_rules
    plain_sql: str | None = None  # a single SQL step's text (capturable in SQL)
    manual: bool = False
    branch_query: str | None = None  # BranchSQLOperator's query (capturable in SQL)
    policies_applied: bool = False  # retries/timeouts already wrap each part (mapped tasks)
    follow_ids: bool = False  # follow holds the task ids a Python branch chose (jsonb)


def sid(task_id: str) -> str:
    """A result-name-safe form of a task id."""
    return re.sub(r"\W", "_", task_id)


def literal(value: Any) -> str:
    """A Python value as a SQL literal (for ``parameters`` bind values)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _seconds(
    value: Any,
    default: float | None,
    minutes_if_int: bool = False,
    *,
    task: Task,
    name: str,
    minimum: float = 0,
) -> float | None:
    """Argument ``name`` of ``task``, a duration, in seconds (``default`` when it is not a
    literal); one Airflow refuses (negative, endless) raises BadValue (PGD108)."""
    if isinstance(value, Duration):
        result = value.seconds
    elif isinstance(value, int | float) and not isinstance(value, bool):
        result = value * 60 if minutes_if_int else value
    else:
        return default
    return seconds(result, _arg(task, name), line=task.ref.line, minimum=minimum)


def _arg(task: Task, name: str) -> str:
    return f"task {task.task_id!r}: {name}"


def stub(task: Task, why: str, ctx: Context, *, reported: bool = False) -> Work:
    """A step that fails loudly until a person replaces it (and the report says so).
    ``reported``: a manual diagnostic already names the cause (a missing template
    file, SQL not statically known), so PGD311 would only repeat it."""
    if not reported:
        ctx.diag.add("PGD311", f"task {task.task_id!r} ({task.operator}): {why}", task.ref)
    message = f"pgdurable: task {task.task_id} ({task.operator}) must be translated by hand"
    body = "DO $stub$ BEGIN RAISE EXCEPTION '%', " + literal(message) + "; END $stub$"
    return Work(m.Sql(body, source=task.ref), manual=True)


def fail_sql(message_sql: str) -> str:
    return "DO " + dollar_quote(f" BEGIN RAISE EXCEPTION '%', {message_sql}; END ", "fail")


# -- SQL text ------------------------------------------------------------------


def _conn(task: Task, ctx: Context, keys: tuple[str, ...]) -> None:
    conn_id = next((ctx.dag.task_arg(task, k) for k in keys if ctx.dag.task_arg(task, k)), None)
    if conn_id is None:
        # PostgresOperator's own default is postgres_default. The generic SQL operators
        # have none (conn_id=None): Airflow looks up the connection `None` and fails the
        # task ("The conn_id `None` isn't defined", measured on 2.10.5 and 3.3.2).
        # Either way the translation runs the task with postgres_default, and says so,
        # once per DAG naming its tasks.
        if task.operator == "PostgresOperator":
            ctx.once(
                "PGD250",
                "",
                task,
                lambda tasks: (
                    f"no postgres_conn_id is given for {tasks}: PostgresOperator uses its "
                    "default connection postgres_default, and so does the translation (the "
                    "workflow's database)"
                ),
            )
        else:
            ctx.once(
                "PGD251",
                "_generic",
                task,
                lambda tasks: (
                    f"no conn_id is given for {tasks} (nor in default_args): Airflow fails "
                    'such a task ("The conn_id `None` isn\'t defined", in Airflow 2 and 3); '
                    "the translation does not follow that and runs it with postgres_default "
                    "(the workflow's database). Add the conn_id the DAG should have had"
                ),
            )
    conn_id = conn_id or "postgres_default"
    if not isinstance(conn_id, str):
        ctx.diag.add("PGD313", f"task {task.task_id!r}: the conn_id is not a literal", task.ref)
        return
    known, database = ctx.connections.database(conn_id)
    if not known:
        ctx.unmapped_conn(conn_id, task)
    ctx.databases[task.task_id] = database
    # database= (the task's or default_args') overrides the connection's database
    database_arg = ctx.dag.task_arg(task, "database")
    if isinstance(database_arg, str):
        ctx.databases[task.task_id] = database_arg
    elif database_arg is not None:
        ctx.diag.add(
            "PGD313",
            f"task {task.task_id!r}: database= is not a literal; the step runs in the "
            "connection's database: set target_database in the generated file by hand",
            task.ref,
        )


def _sql_text(task: Task, ctx: Context, value: Any, what: str = "sql") -> list[str] | None:
    """The statements' text: a string, a list, or a template file; Jinja rendered."""
    if isinstance(value, str | list | tuple) and not isinstance(value, str):
        items = list(value)
    elif isinstance(value, str):
        items = [value]
    else:
        ctx.diag.add(
            "PGD315",
            f"task {task.task_id!r}: `{what}` is not statically known ({value}); "
            "write the SQL in the workflow by hand",
            task.ref,
        )
        return None
    texts: list[str] = []
    for item in items:
        if not isinstance(item, str):
            ctx.diag.add(
                "PGD315",
                f"task {task.task_id!r}: a `{what}` item is not a string ({str(item)[:60]})",
                task.ref,
            )
            return None
        if re.search(r"\.(sql|json)\s*$", item) and "\n" not in item and " " not in item.strip():
            found = _template_file(task, ctx, item.strip())
            if found is None:
                return None
            item = found
        texts.append(templates.render_sql(item, _env_for(task, ctx)))
    return texts


def _env_for(task: Task, ctx: Context) -> templates.Env:
    params = (
        dict(ctx.dag.args.get("params") or {})
        if isinstance(ctx.dag.args.get("params"), dict)
        else {}
    )
    own = task.args.get("params")
    if isinstance(own, dict):
        params.update(own)
    ctx.env.params = params
    ctx.env.names = templates.static_names(ctx.dag.dag_id, task.task_id)
    return ctx.env


def map_search_path(path: str, mapping: tuple[tuple[str, str], ...]) -> str:
    """``path`` with the first ``--search-path-map OLD=NEW`` whose OLD is a whole-
    component prefix of it replaced by NEW (``/opt/airflow/sql`` -> ``./sql``)."""
    for old, new in mapping:
        old = old.rstrip("/") or "/"
        if path == old or path.startswith(old.rstrip("/") + "/"):
            rest = path[len(old) :].lstrip("/")
            return str(PurePosixPath(new) / rest) if rest else new
    return path


def _template_file(task: Task, ctx: Context, name: str) -> str | None:
    paths = ctx.dag.args.get("template_searchpath")
    if isinstance(paths, str):
        paths = [paths]
    candidates = []
    for base in [*(paths if isinstance(paths, list) else []), ctx.dag_dir]:
        if not isinstance(base, str):
            continue
        path = PurePosixPath(base) / name if not name.startswith("/") else PurePosixPath(name)
        if not path.is_absolute():
            path = PurePosixPath(ctx.dag_dir) / path if base != ctx.dag_dir else path
        candidate = map_search_path(str(path), ctx.search_path_map)
        if candidate not in candidates:
            candidates.append(candidate)
    for candidate in candidates:
        text = ctx.read_template(candidate)
        if text is not None:
            return text
    absolute = [c for c in candidates if c.startswith("/")]
    hint = (
        f"; if the files live elsewhere on this machine, pass --search-path-map "
        f"{PurePosixPath(absolute[0]).parent}=LOCAL_FOLDER"
        if absolute and not ctx.search_path_map
        else ""
    )
    ctx.once(
        "PGD317",
        name,
        task,
        lambda tasks: (
            f"template file {name!r} ({tasks}) not found (looked in "
            f"{', '.join(candidates) or 'nowhere'}){hint}"
        ),
    )
    return None


def _bind(text: str, parameters: Any, task: Task, ctx: Context) -> str:
    """Driver bind parameters (%(name)s / %s) as literals."""
    if parameters is None:
        return text
    if isinstance(parameters, dict):

        def named(mo: re.Match) -> str:
            key = mo.group(1)
            if key not in parameters or isinstance(parameters[key], Unknown):
                ctx.diag.add(
                    "PGD315",
                    f"task {task.task_id!r}: parameter {key!r} is not known"
                    + (f" ({parameters[key]})" if key in parameters else " (not in parameters)"),
                    task.ref,
                )
                return mo.group(0)
            return literal(parameters[key])

        return re.sub(r"%\((\w+)\)s", named, text)
    if isinstance(parameters, list | tuple):
        values = iter(parameters)
        return re.sub(r"%s", lambda _: literal(next(values, None)), text)
    ctx.diag.add(
        "PGD315",
        f"task {task.task_id!r}: `parameters` is not a literal ({str(parameters)[:60]})",
        task.ref,
    )
    return text


def _statements(texts: list[str], split: bool) -> list[str]:
    if not split:
        return [t.strip().rstrip(";").strip() for t in texts if t.strip()]
    out: list[str] = []
    for text in texts:
        try:
            out.extend(s.text for s in split_statements(text))
        except SqlLexError:
            out.append(text.strip())
    return out


def sql_steps(task: Task, ctx: Context, texts: list[str], *, autocommit: bool, split: bool) -> Work:
    """SQL operator semantics: one task is one transaction unless autocommit."""
    statements = _statements(texts, split or len(texts) > 1)
    statements = [_bind(s, ctx.dag.task_arg(task, "parameters"), task, ctx) for s in statements]
    if not statements:
        return stub(task, "the SQL is empty", ctx)
    groups = _between_transaction_control(task, ctx, statements)
    if groups is not None:
        if not groups:
            return stub(task, "the SQL holds only transaction control statements", ctx)
        parts = [_group_steps(task, ctx, g, autocommit) for g in groups]
        if len(parts) == 1:
            return parts[0]
        return Work(m.Seq(tuple(p.node for p in parts if p.node is not None)))
    return _group_steps(task, ctx, statements, autocommit)


def _between_transaction_control(
    task: Task, ctx: Context, statements: list[str]
) -> list[list[str]] | None:
    """The statements between top-level BEGIN/COMMIT/ROLLBACK (dropped), or None
    when there are none. The database session the hook drives commits at an
    explicit COMMIT, so the parts become separate steps; kept in one step they
    would be refused by df.start (a step is one transaction with its completion)."""
    try:
        parsed = [st for text in statements for st in split_statements(text)]
    except SqlLexError:
        return None
    if not any(is_transaction_control(st) for st in parsed):
        return None
    ctx.diag.add(
        "PGD209",
        f"task {task.task_id!r}: its SQL contains BEGIN/COMMIT/ROLLBACK; it is split at "
        "those points into separate steps (the hook's session commits the part before a "
        "COMMIT; a ROLLBACK no longer undoes the part before it)",
        task.ref,
    )
    return [
        [st.text for st in group] for group in transaction_groups(parsed, is_transaction_control)
    ]


def _group_steps(task: Task, ctx: Context, statements: list[str], autocommit: bool) -> Work:
    if ctx.settings:
        # one transaction per step: each step gets the connection's settings first
        prefix = ";\n".join(ctx.settings) + ";\n"
        ctx.multi_statement = True
        if autocommit:
            steps = [
                m.Sql(prefix + s, source=task.ref if i == 0 else None)
                for i, s in enumerate(statements)
            ]
            return Work(steps[0] if len(steps) == 1 else m.Seq(tuple(steps)))
        text = prefix + ";\n".join(statements)
        return Work(m.Sql(text, source=task.ref), plain_sql=text)
    if autocommit or len(statements) == 1:
        steps = [m.Sql(s, source=task.ref if i == 0 else None) for i, s in enumerate(statements)]
        node: m.Node = steps[0] if len(steps) == 1 else m.Seq(tuple(steps))
        return Work(node, plain_sql=statements[0] if len(statements) == 1 else None)
    if ctx.portable:
        ctx.diag.add(
            "PGD203",
            f"--portable: task {task.task_id!r} runs its {len(statements)} statements as "
            "separate steps; Airflow commits them together, so a failure no longer rolls "
            "back the earlier ones",
            task.ref,
        )
        return Work(m.Seq(tuple(m.Sql(s) for s in statements)))
    ctx.multi_statement = True
    text = ";\n".join(statements)
    return Work(m.Sql(text, source=task.ref), plain_sql=text)


def _one_query(task: Task, ctx: Context, key: str = "sql") -> str | None:
    texts = _sql_text(task, ctx, task.args.get(key), key)
    if texts is None:
        return None
    statements = _statements(texts, True)
    if len(statements) != 1:
        ctx.diag.add("PGD315", f"task {task.task_id!r}: `{key}` must be one query", task.ref)
        return None
    return _bind(statements[0], ctx.dag.task_arg(task, "parameters"), task, ctx)


def _dollar(text: str, tag: str = "q") -> str:
    return dollar_quote(text, tag)


# Python truthiness of one value as jsonb (0, '', null, false, [] and {} are falsy).
_FALSY = (
    "(v = 'null'::jsonb OR v = 'false'::jsonb OR v = '\"\"'::jsonb OR v = '[]'::jsonb"
    " OR v = '{}'::jsonb OR (jsonb_typeof(v) = 'number' AND v::text::numeric = 0))"
)
# Every cell of the row r (json, not jsonb: row_to_json keeps each of several
# columns of the same name, `SELECT count(*) = 0, count(*) > 0` has two "?column?";
# to_jsonb would keep only the last), each as jsonb v.
_CELLS = "json_each(r) AS e(k, j) CROSS JOIN LATERAL (SELECT j::jsonb AS v) AS cell"


def check_sql(query: str) -> str:
    """SQLCheckOperator: the first row must exist and every value be truthy."""
    return (
        "DO $check$\nDECLARE r json;\nBEGIN\n"
        f"    EXECUTE 'SELECT row_to_json(q) FROM (' || {_dollar(query)} || ') AS q LIMIT 1' INTO r;\n"
        "    IF r IS NULL THEN\n"
        "        RAISE EXCEPTION 'The following query returned zero rows: %', "
        f"{_dollar(query)};\n"
        "    END IF;\n"
        f"    IF EXISTS (SELECT 1 FROM {_CELLS} WHERE {_FALSY}) THEN\n"
        "        RAISE EXCEPTION 'Test failed. Query: %  Results: %', "
        f"{_dollar(query)}, r;\n"
        "    END IF;\nEND\n$check$"
    )


def value_check_sql(query: str, pass_value: Any, tolerance: Any) -> str:
    numeric = _as_float(pass_value)
    if numeric is not None:
        tol = _as_float(tolerance) or 0.0
        test = (
            f"(jsonb_typeof(v) = 'number' OR (jsonb_typeof(v) = 'string' AND (v #>> '{{}}') ~ "
            "'^\\s*[-+]?[0-9.eE]+\\s*$')) AND "
            f"abs((v #>> '{{}}')::float8 - {numeric!r}) <= {tol!r} * abs({numeric!r})"
        )
    else:
        test = f"(v #>> '{{}}') = {literal(str(pass_value))}"
    return (
        "DO $check$\nDECLARE r json;\nBEGIN\n"
        f"    EXECUTE 'SELECT row_to_json(q) FROM (' || {_dollar(query)} || ') AS q LIMIT 1' INTO r;\n"
        "    IF r IS NULL THEN\n"
        "        RAISE EXCEPTION 'The following query returned zero rows: %', "
        f"{_dollar(query)};\n"
        "    END IF;\n"
        f"    IF EXISTS (SELECT 1 FROM {_CELLS} WHERE NOT coalesce({test}, false)) THEN\n"
        f"        RAISE EXCEPTION 'Test failed. Pass value:{pass_value} Tolerance:{tolerance} Query: %  Results: %', "
        f"{_dollar(query)}, r;\n"
        "    END IF;\nEND\n$check$"
    )


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def threshold_sql(query: str, low: Any, high: Any) -> str:
    def bound(value: Any) -> str:
        number = _as_float(value)
        if number is not None:
            return repr(number)
        return (
            f"({value})::float8"
            if not isinstance(value, str)
            else f"(SELECT ({value.strip().rstrip(';')}))::float8"
        )

    return (
        "DO $check$\nDECLARE cell text; n bigint; r float8; lo float8; hi float8;\nBEGIN\n"
        "    EXECUTE 'SELECT (SELECT value #>> ''{}'' FROM json_each(row_to_json(q)) LIMIT 1) FROM ('"
        f" || {_dollar(query)} || ') AS q LIMIT 1' INTO cell;\n"
        "    GET DIAGNOSTICS n = ROW_COUNT;\n"
        "    IF n = 0 THEN\n"
        f"        RAISE EXCEPTION 'The following query returned zero rows: %', {_dollar(query)};\n"
        "    END IF;\n"
        f"    r := cell::float8; lo := {bound(low)}; hi := {bound(high)};\n"
        "    IF r IS NULL OR NOT (lo <= r AND r <= hi) THEN\n"
        "        RAISE EXCEPTION 'Test failed. Result % is not within [%, %]', r, lo, hi;\n"
        "    END IF;\nEND\n$check$"
    )


def interval_sql(
    table: str, metrics: dict, days_back: int, column: str, formula: str, ignore_zero: bool
) -> str:
    names = sorted(metrics)
    select = ", ".join(f"{name} AS m{i}" for i, name in enumerate(names))
    current = f"SELECT {select} FROM {table} WHERE {column} = $dag_run.ds"
    reference = (
        f"SELECT {select} FROM {table} WHERE {column} = "
        f"to_char($dag_run.ds::date + {int(days_back)}, 'YYYY-MM-DD')"
    )
    checks = []
    for i, name in enumerate(names):
        ratio = (
            f"greatest(c.m{i}, r.m{i})::float8 / least(c.m{i}, r.m{i})"
            if formula == "max_over_min"
            else f"abs(c.m{i} - r.m{i})::float8 / r.m{i}"
        )
        zero = "true" if ignore_zero else "false"
        checks.append(
            f"(CASE WHEN c.m{i} = 0 OR r.m{i} = 0 THEN {zero} ELSE {ratio} < {float(metrics[name])!r} END)"
        )
    return (
        "DO $check$\nBEGIN\n"
        f"    IF NOT EXISTS ({current}) OR NOT EXISTS ({reference}) THEN\n"
        "        RAISE EXCEPTION 'The query returned None';\n    END IF;\n"
        f"    IF NOT (SELECT {' AND '.join(checks)} FROM ({current}) AS c, ({reference}) AS r) THEN\n"
        f"        RAISE EXCEPTION 'The following tests have failed: {', '.join(names)}';\n"
        "    END IF;\nEND\n$check$"
    )


# -- kinds ---------------------------------------------------------------------


# hook_params that only change Airflow's logging: nothing to carry.
_LOG_ONLY_HOOK_PARAMS = {"log_sql", "enable_log_db_messages"}
_SETTING = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def _hook_settings(task: Task, ctx: Context) -> list[str]:
    """``hook_params={"options": "-c statement_timeout=5000"}``: libpq options that
    set server settings for the task's connection, as transaction-local
    ``set_config`` calls run before the task's SQL (the task's connection lives as
    long as its transaction here). What cannot be carried is reported."""
    params = ctx.dag.task_arg(task, "hook_params")
    if params is None:
        return []
    if not isinstance(params, dict):
        ctx.diag.add(
            "PGD252",
            f"task {task.task_id!r}: hook_params is not a literal dict ({params}); the "
            "connection options it sets are not carried",
            task.ref,
        )
        return []
    settings: list[tuple[str, str]] = []
    lost: list[str] = []
    for key, value in params.items():
        if key in _LOG_ONLY_HOOK_PARAMS:
            ctx.diag.add(
                "PGD225", f"task {task.task_id!r}: hook_params {key!r} only affects logging"
            )
        elif key == "options" and isinstance(value, str):
            parsed = _libpq_options(value)
            if parsed is None:
                lost.append(f"options {value!r}")
            else:
                settings.extend(parsed)
        else:
            lost.append(f"{key!r}")
    if lost:
        ctx.diag.add(
            "PGD252",
            f"task {task.task_id!r}: hook_params {', '.join(lost)} not carried (only "
            "options of the form -c name=value are); set it in the step's SQL by hand",
            task.ref,
        )
    if not settings:
        return []
    shown = ", ".join(f"{n}={v}" for n, v in settings)
    if ctx.portable:
        ctx.diag.add(
            "PGD252",
            f"--portable: task {task.task_id!r}: hook_params options ({shown}) are not "
            "carried (a setting needs a second statement in the step's transaction)",
            task.ref,
        )
        return []
    ctx.diag.add(
        "PGD253",
        f"task {task.task_id!r}: hook_params options ({shown}) are set for the task's "
        "transaction with set_config(..., true), as its Airflow connection set them",
        task.ref,
    )
    return [f"SELECT set_config({sql_literal(n)}, {sql_literal(v)}, true)" for n, v in settings]


def _libpq_options(text: str) -> list[tuple[str, str]] | None:
    """``-c a=1 -cb=2 --c=3`` as (name, value) pairs; None when something else is there."""
    try:
        words = shlex.split(text)
    except ValueError:
        return None
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c" and i + 1 < len(words):
            item, i = words[i + 1], i + 2
        elif word.startswith("-c"):
            item, i = word[2:], i + 1
        elif word.startswith("--") and "=" in word:  # --statement-timeout=5s
            name, value = word[2:].split("=", 1)
            item, i = f"{name.replace('-', '_')}={value}", i + 1
        else:
            return None
        name, sep, value = item.partition("=")
        if not sep or not _SETTING.fullmatch(name):
            return None
        pairs.append((name, value))
    return pairs


def compile_work(task: Task, ctx: Context) -> Work:
    kind = task.kind
    ctx.settings = (
        [*_hook_settings(task, ctx), *runtime_parameters.settings(task, ctx)]
        if kind in _SQL_KINDS
        else []
    )
    try:
        work = _compile_work(task, ctx)
    finally:
        settings, ctx.settings = ctx.settings, []
    if settings and kind not in _SETTINGS_CARRIED:
        ctx.diag.add(
            "PGD252",
            f"task {task.task_id!r}: hook_params options are not carried for {task.operator} "
            "(its steps are built without them); set them in the step's SQL by hand",
            task.ref,
        )
    return work


_SQL_KINDS = (
    "sql",
    "sql_check",
    "sql_value_check",
    "sql_threshold_check",
    "sql_interval_check",
    "branch_sql",
    "sql_sensor",
)
_SETTINGS_CARRIED = ("sql", "sql_check", "sql_value_check", "sql_threshold_check")


def _compile_work(task: Task, ctx: Context) -> Work:
    kind = task.kind
    handler = _HANDLERS.get(kind)
    if handler is None:
        own = python_operators.operator_work(task, ctx)  # a class defined in the DAG file
        if own is not None:
            return own
        if task.qualified and not task.qualified.startswith("airflow"):
            line = f" at line {task.ref.line}" if task.ref.line else ""
            return stub(
                task,
                f"{task.qualified}{line} is an operator class pgdurable does not know (a "
                "plugin or your own package): its code is not in the DAG file. Write what "
                "its execute() does as SQL in the generated stub step",
                ctx,
            )
        return stub(task, f"{task.operator} has no workflow equivalent", ctx)
    if kind in _SQL_KINDS:
        _conn(task, ctx, ("conn_id", "postgres_conn_id"))
    return handler(task, ctx)


def _sql(task: Task, ctx: Context) -> Work:
    texts = _sql_text(task, ctx, task.args.get("sql"))
    if texts is None:
        return stub(task, "the SQL is not statically known", ctx, reported=True)
    split = bool(task.args.get("split_statements", False))
    autocommit = bool(task.args.get("autocommit", False))
    if transaction_block.check(task, ctx, texts, autocommit):  # Airflow fails every run
        return stub(task, "the statement cannot run in a transaction block", ctx, reported=True)
    return sql_steps(task, ctx, texts, autocommit=autocommit, split=split)


def _check(task: Task, ctx: Context) -> Work:
    query = _one_query(task, ctx)
    if query is None:
        return stub(task, "the check query is not statically known", ctx, reported=True)
    return _single(check_sql(query), task, ctx)


def _value_check(task: Task, ctx: Context) -> Work:
    query = _one_query(task, ctx)
    if query is None or isinstance(task.args.get("pass_value"), Unknown):
        return stub(
            task,
            "the check query or pass_value is not statically known",
            ctx,
            reported=query is None,
        )
    sql = value_check_sql(query, task.args.get("pass_value"), task.args.get("tolerance"))
    return _single(sql, task, ctx)


def _single(sql: str, task: Task, ctx: Context) -> Work:
    """One single-statement step (capturable inside its own transaction), after the
    task's hook_params settings."""
    if ctx.settings:
        ctx.multi_statement = True
        sql = ";\n".join([*ctx.settings, sql])
    return Work(m.Sql(sql, source=task.ref), plain_sql=sql)


def _threshold(task: Task, ctx: Context) -> Work:
    query = _one_query(task, ctx)
    low, high = task.args.get("min_threshold"), task.args.get("max_threshold")
    if query is None or isinstance(low, Unknown) or isinstance(high, Unknown):
        return stub(
            task, "the query or a threshold is not statically known", ctx, reported=query is None
        )
    return _single(threshold_sql(query, low, high), task, ctx)


def _interval(task: Task, ctx: Context) -> Work:
    table, metrics = task.args.get("table"), task.args.get("metrics_thresholds")
    if not isinstance(table, str) or not isinstance(metrics, dict):
        return stub(task, "table or metrics_thresholds is not statically known", ctx)
    ctx.env.uses_dates = True
    sql = interval_sql(
        table,
        metrics,
        int(task.args.get("days_back", -7)),
        str(task.args.get("date_filter_column", "ds")),
        str(task.args.get("ratio_formula", "max_over_min")),
        bool(task.args.get("ignore_zero", True)),
    )
    return Work(m.Sql(sql, source=task.ref))


def _branch_sql(task: Task, ctx: Context) -> Work:
    query = _one_query(task, ctx)
    if query is None:
        return stub(task, "the branch query is not statically known", ctx, reported=True)
    name = f"br_{sid(task.task_id)}"
    follow = branch_follow(f"${name}::text")
    return Work(m.Sql(query, name=name, source=task.ref), follow=follow, branch_query=query)


def branch_follow(cell: str) -> str:
    """Airflow's reading of BranchSQLOperator's first cell: bool, int (nonzero =
    true) or a string y/yes/t/true/on/1 or n/no/f/false/off/0; anything else
    fails the task (here: a failing cast carrying Airflow's message)."""
    return (
        f"CASE WHEN lower(trim({cell})) IN ('true','t','y','yes','on','1') THEN true "
        f"WHEN lower(trim({cell})) IN ('false','f','n','no','off','0') THEN false "
        f"WHEN {cell} ~ '^-?[0-9]+$' THEN {cell}::bigint <> 0 "
        f"ELSE ('unexpected query return result ' || {cell})::boolean END"
    )


def guarded_branch(query: str, name: str, ref: SourceRef) -> m.Sql:
    """A BranchSQLOperator whose failure is recorded: one transaction that reads
    the first cell, decides, and returns ``state`` and ``follow``."""
    return m.Sql(
        "DO $task$\nDECLARE cell text; n bigint;\nBEGIN\n"
        "    EXECUTE 'SELECT (SELECT value #>> ''{}'' FROM json_each(row_to_json(q)) LIMIT 1) FROM ('"
        f" || {_dollar(query)} || ') AS q LIMIT 1' INTO cell;\n"
        "    GET DIAGNOSTICS n = ROW_COUNT;\n"
        "    IF n = 0 OR cell IS NULL THEN\n"
        "        RAISE EXCEPTION 'No rows returned from sql query. Operator expected True or False return value.';\n"
        "    END IF;\n"
        f"    PERFORM set_config('pgdurable.branch_follow', ({branch_follow('cell')})::text, true);\n"
        "EXCEPTION WHEN OTHERS THEN\n"
        "    PERFORM set_config('pgdurable.task_error', SQLERRM, true);\nEND\n$task$;\n"
        "SELECT CASE WHEN coalesce(current_setting('pgdurable.task_error', true), '') = ''\n"
        "            THEN 'success' ELSE 'failed' END AS state,\n"
        "       nullif(current_setting('pgdurable.branch_follow', true), '')::boolean AS follow",
        name=name,
        source=ref,
    )


def _sensor_loop(task: Task, ctx: Context, poke: m.Node, prefix: str) -> Work:
    """Poke, sleep ``poke_interval``, until success or ``timeout`` (from the first poke)."""
    interval = int(
        _seconds(ctx.dag.task_arg(task, "poke_interval"), 60, task=task, name="poke_interval") or 60
    )
    timeout = int(
        _seconds(ctx.dag.task_arg(task, "timeout"), 604800, task=task, name="timeout") or 604800
    )
    key = sid(task.task_id)
    started = m.Sql("SELECT now() AS started", name=f"{prefix}_start_{key}", source=task.ref)
    body = m.If(poke, m.Break("1"), m.Sleep(interval))
    until = m.Sql(
        f"SELECT now() < ${prefix}_start_{key}::timestamptz + interval '{timeout} seconds'"
    )
    loop = m.Loop(body, until, name=f"{prefix}_{key}")
    ok = f"SELECT ${prefix}_{key}::text = '1'"
    soft = bool(ctx.dag.task_arg(task, "soft_fail", False))
    st = f"st_{key}"
    if soft:
        finish: m.Node = m.If(
            m.Sql(ok),
            m.Sql("SELECT 'success' AS state", name=st),
            m.Sql("SELECT 'skipped' AS state", name=st),
        )
        return Work(m.Seq((started, loop, finish)), state_node=True, may_skip=True)
    message = f"Sensor has timed out; run duration exceeded timeout={timeout}"
    finish = m.If(m.Sql(ok), m.Sleep(0), m.Sql(fail_sql(literal(message))))
    return Work(m.Seq((started, loop, finish)))


def _sql_sensor(task: Task, ctx: Context) -> Work:
    query = _one_query(task, ctx)
    for unsupported in ("success", "failure", "selector"):
        if task.args.get(unsupported) is not None:
            return stub(task, f"SqlSensor `{unsupported}` is a Python callable", ctx)
    if query is None:
        return stub(task, "the sensor query is not statically known", ctx, reported=True)
    ctx.diag.add(
        "PGD233",
        f"task {task.task_id!r}: the poke result is tested with the DSL's truthiness (strings "
        "'false', 'no', '0' count as false; Python counts any non-empty string as true)",
        task.ref,
    )
    return _sensor_loop(task, ctx, m.Sql(query), "poke")


def _time_delta(task: Task, ctx: Context) -> Work:
    delta = _seconds(
        task.args.get("delta"),
        None,
        minutes_if_int=ctx.generation >= 3,
        task=task,
        name="delta",
        minimum=-INT_MAX,  # a target in the past: the sensor succeeds at once
    )
    if delta is None:
        return stub(task, "delta is not statically known", ctx)
    ctx.env.uses_dates = True
    interval = int(
        _seconds(ctx.dag.task_arg(task, "poke_interval"), 60, task=task, name="poke_interval") or 60
    )
    target = f"$dag_run.data_interval_end::timestamptz + interval '{int(delta)} seconds'"
    wait = m.Loop(m.Sleep(min(interval, max(int(delta), 1))), m.Sql(f"SELECT now() < {target}"))
    return Work(m.If(m.Sql(f"SELECT now() < {target}"), wait, m.Sleep(0), source=task.ref))


def _method_problem(task: Task) -> str | None:
    """Why df.http cannot send the task's method (a template, an unknown verb), if so."""
    method = task.args.get("method", "POST" if task.kind == "http" else "GET")
    if isinstance(method, str) and method.upper() in m.HTTP_METHODS:
        return None
    shown = method.text if isinstance(method, Unknown) else repr(method)
    return f"method {shown} is not one of {', '.join(m.HTTP_METHODS)}, which df.http sends"


def _http_request(task: Task, ctx: Context) -> m.Http | None:
    conn_id = ctx.dag.task_arg(task, "http_conn_id") or "http_default"
    base = ctx.connections.url(str(conn_id))
    if base is None:
        ctx.diag.add(
            "PGD313",
            f"task {task.task_id!r}: http_conn_id {conn_id!r} has no base URL in --connections",
            task.ref,
        )
        base = f"https://{conn_id}.invalid"
    endpoint = task.args.get("endpoint") or ""
    data = task.args.get("data")
    headers = task.args.get("headers")
    if isinstance(endpoint, Unknown) or isinstance(data, Unknown) or isinstance(headers, Unknown):
        return None
    env = _env_for(task, ctx)
    url = base + ("" if str(endpoint).startswith("/") or not endpoint else "/") + str(endpoint)
    body = None
    if isinstance(data, dict):
        body = json.dumps(data)
    elif data is not None:
        body = str(data)
    method = str(task.args.get("method", "POST" if task.kind == "http" else "GET")).upper()
    return m.Http(
        templates.render_raw(url, env),
        method=method,
        body=None if body is None else templates.render_raw(body, env),
        headers=tuple((str(k), str(v)) for k, v in headers.items())
        if isinstance(headers, dict)
        else None,
        source=task.ref,
    )


def _http(task: Task, ctx: Context) -> Work:
    for unsupported in ("response_check", "response_filter"):
        if task.args.get(unsupported) is not None:
            return stub(task, f"HttpOperator `{unsupported}` is a Python callable", ctx)
    if problem := _method_problem(task):
        return stub(task, problem, ctx)
    request = _http_request(task, ctx)
    if request is None:
        return stub(task, "the endpoint or data is not statically known", ctx)
    name = f"http_{sid(task.task_id)}"
    # df.http succeeds on 4xx; Airflow's HttpOperator raises on any status >= 400.
    check = m.Sql(
        f"DO $http$ BEGIN IF ${name}.status >= 400 THEN RAISE EXCEPTION "
        f"'HTTP error: %', ${name}.status; END IF; END $http$"
    )
    return Work(
        m.Seq(
            (
                m.Http(
                    request.url,
                    request.method,
                    request.body,
                    request.headers,
                    name=name,
                    source=task.ref,
                ),
                check,
            )
        )
    )


def _http_sensor(task: Task, ctx: Context) -> Work:
    if task.args.get("response_check") is not None:
        return stub(task, "HttpSensor `response_check` is a Python callable", ctx)
    if problem := _method_problem(task):
        return stub(task, problem, ctx)
    request = _http_request(task, ctx)
    if request is None:
        return stub(task, "the endpoint is not statically known", ctx)
    name = f"http_{sid(task.task_id)}"
    poke = m.Seq(
        (
            m.Http(request.url, request.method, request.body, request.headers, name=name),
            m.Sql(
                f"DO $http$ BEGIN IF ${name}.status >= 400 AND ${name}.status <> 404 THEN "
                f"RAISE EXCEPTION 'HTTP error: %', ${name}.status; END IF; END $http$"
            ),
            m.Sql(f"SELECT ${name}.status < 400"),
        )
    )
    return _sensor_loop(task, ctx, poke, "poke")


def trigger_function(dag_id: str) -> str:
    return "airflow_dags." + derived_identifier("trigger_", dag_id, quoted=True)


def _trigger(task: Task, ctx: Context) -> Work:
    target = task.args.get("trigger_dag_id")
    if task.args.get("python_callable") is not None:
        # Airflow 1.10: the callable gets (context, dag_run_obj) and triggers the run only
        # when it returns the object (with its payload); None skips the trigger.
        return stub(
            task,
            f"TriggerDagRunOperator(python_callable=...) ({_describe_callable(task)}): the "
            f"callable decides at run time, in Python, whether {target!r} is triggered (and "
            "with which payload); "
            "write that decision as a condition around the trigger step",
            ctx,
        )
    if not isinstance(target, str) or "{{" in target:
        return stub(task, "trigger_dag_id is not a literal", ctx)
    ctx.triggers.append(Trigger(target, task.task_id, task.ref))
    conf = task.args.get("conf")
    conf_sql = dag_run_conf.argument(conf) if conf else None
    if conf and conf_sql is None:
        ctx.diag.add(
            "PGD346",
            f"task {task.task_id!r}: TriggerDagRunOperator conf `{conf}` is not a static JSON "
            "dict without templates, so it is not passed to the started workflow: write it "
            "as a dict literal (render its values in the target DAG's tasks)",
            task.ref,
        )
    arguments = f"NULL, {conf_sql}" if conf_sql else ""
    start = m.Sql(
        f"SELECT {trigger_function(target)}({arguments}) AS instance_id", source=task.ref
    )
    passed = [k for k in ("logical_date", "execution_date", "trigger_run_id") if task.args.get(k)]
    if passed and not task.args.get("wait_for_completion"):
        ctx.diag.add(
            "PGD311",
            f"task {task.task_id!r}: TriggerDagRunOperator {'/'.join(passed)} is not passed "
            "to the started workflow (its run has its own start time as logical date and "
            "run id); drop it or start the run yourself",
            task.ref,
        )
    if task.args.get("wait_for_completion"):
        problem = external.wait_problem(task)
        if problem is not None:
            return stub(task, f"wait_for_completion: {problem}", ctx)
        return Work(external.wait_for_run(task, start, sid(task.task_id)))
    return Work(start)


def _psql(command: str, task: Task, ctx: Context) -> Work | None:
    """``psql ... -c SQL`` / ``psql ... -f FILE`` as SQL steps; None otherwise."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words or PurePosixPath(words[0]).name != "psql":
        return None
    sql: list[tuple[str, str]] = []
    i = 1
    while i < len(words):
        word = words[i]
        if word in ("-c", "--command") and i + 1 < len(words):
            sql.append(("c", words[i + 1]))
            i += 2
        elif word in ("-f", "--file") and i + 1 < len(words):
            sql.append(("f", words[i + 1]))
            i += 2
        elif word.startswith("--command="):
            sql.append(("c", word.split("=", 1)[1]))
            i += 1
        elif word in ("-d", "-h", "-p", "-U", "-v", "--set", "--dbname"):
            i += 2
        else:
            i += 1
    if not sql:
        return None
    steps: list[m.Node] = []
    for mode, value in sql:
        if mode == "c":
            # psql -c sends the text as one query: its statements commit together.
            text = templates.render_sql(value, _env_for(task, ctx))
            work = sql_steps(task, ctx, [text], autocommit=False, split=True)
        else:
            found = _template_file(task, ctx, value)
            if found is None:
                return stub(task, f"psql -f {value}: file not found", ctx, reported=True)
            text = templates.render_sql(found, _env_for(task, ctx))
            # psql -f runs each statement in its own transaction.
            work = sql_steps(task, ctx, [text], autocommit=True, split=True)
            ctx.diag.add(
                "PGD234",
                f"task {task.task_id!r}: psql -f stops at the first error only with "
                "ON_ERROR_STOP; the workflow always stops (and fails the task)",
                task.ref,
            )
        if work.node is not None:
            steps.append(work.node)
    node = steps[0] if len(steps) == 1 else m.Seq(tuple(steps))
    # One psql session: a SET in an earlier statement (or PGOPTIONS/PGTZ in the
    # operator's env=) holds in the later steps.
    where = f"task {task.task_id!r}: psql"
    env = task.args.get("env")
    settings, caveats = session.env_settings(env if isinstance(env, dict) else {})
    for code, message in caveats:
        ctx.diag.add(code, f"{where}: {message}", task.ref)
    base = {name.lower(): session.local_setting(name, value) for name, value in settings}
    node, prefixed = session.carry(node, ctx.diag, where, portable=ctx.portable, base=base)
    ctx.multi_statement = ctx.multi_statement or prefixed
    return Work(node)


def _bash(task: Task, ctx: Context) -> Work:
    command = task.args.get("bash_command")
    if not isinstance(command, str):
        return stub(
            task,
            f"bash_command `{str(command)[:120]}` is not known without running the file "
            "(literals, f-strings, concatenation, module constants, textwrap.dedent and "
            "os.path.join of literals are): write it as a string",
            ctx,
        )
    work = _psql(command.strip(), task, ctx)
    if work is None:
        _env_for(task, ctx)  # the task's params, which the compile-time rendering reads
        if not runtime_templates.compiles(task, ctx, command.strip()):
            node = runtime_templates.steps(task, ctx, command.strip())
            if not isinstance(node, str):
                return Work(node)
            runtime_templates.manual(task, ctx, node)
        step = bash.command_step(task, ctx, command.strip(), _env_for(task, ctx))
        if step is not None:
            return Work(step)
        return stub(task, f"the shell command {command.strip()[:60]!r} is not a psql call", ctx)
    return work


def _empty(task: Task, ctx: Context) -> Work:
    return Work(None, can_fail=False)


def _external_sensor(task: Task, ctx: Context) -> Work:
    return stub(task, external.sensor_problem(task), ctx)


def _external_marker(task: Task, ctx: Context) -> Work:
    ctx.diag.add("PGD297", external.marker_note(task), task.ref)
    return Work(None, can_fail=False)


def _describe_callable(task: Task) -> str:
    fn = task.callable
    if fn is None:
        return "no python_callable found"
    info = getattr(fn, "summary", None) or {}
    parts = [f"callable {fn.name}() at line {fn.ref.line if fn.ref else '?'}"]
    if info.get("params"):
        parts.append(f"arguments ({', '.join(info['params'])})")
    if info.get("hooks"):
        parts.append(f"uses {', '.join(sorted(info['hooks']))}")
    if info.get("calls"):
        parts.append(f"calls {', '.join(info['calls'][:6])}")
    return "; ".join(parts)


def _code_step(task: Task, ctx: Context, mode: str, name: str) -> m.Python | str:
    """The Python step of a task's extracted callable, or why it stays manual."""
    if ctx.portable or ctx.python_module is None:
        reason = "code steps are not portable (--portable)" if ctx.portable else "no task module"
        return f"{reason}; {_describe_callable(task)}"
    try:
        step = python_tasks.python_step(task, ctx, mode, name)
    except python_tasks.Refused as exc:
        return f"{exc}; {_describe_callable(task)}"
    except Exception as exc:  # an extractor bug keeps the task manual, not the DAG failed
        return f"pgdurable could not extract it ({type(exc).__name__}: {exc})"
    python_tasks.report(step, task, ctx)
    return step.node


def _run_time_parameters(calls: list[dict[str, Any]]) -> bool:
    """A hook call binds a value known only when the callable runs (an XCom, ``ds``):
    its SQL cannot be written out, the callable has to run."""
    for call in calls:
        parameters = call.get("parameters")
        values = parameters.values() if isinstance(parameters, dict) else parameters
        if isinstance(values, Unknown) or (
            isinstance(values, list | tuple | type({}.values()))
            and any(isinstance(v, Unknown) for v in values)
        ):
            return True
    return False


def _python(task: Task, ctx: Context) -> Work:
    fn = task.callable
    sql_calls = getattr(fn, "sql_calls", None) if fn is not None else None
    if sql_calls and _run_time_parameters(sql_calls):
        sql_calls = None
    if not sql_calls:
        step = _code_step(task, ctx, "python", f"r_{sid(task.task_id)}")
        if isinstance(step, str):
            return stub(task, f"a Python callable: {step}", ctx)
        return python_operators.skippable(task, step)
    steps: list[m.Node] = []
    for call in sql_calls:
        conn = call.get("conn") or "postgres_default"
        known, database = ctx.connections.database(conn)
        if not known:
            ctx.unmapped_conn(conn, task)
        ctx.databases[task.task_id] = database
        text = _bind(call["sql"], call.get("parameters"), task, ctx)
        work = sql_steps(task, ctx, [text], autocommit=bool(call.get("autocommit")), split=False)
        if work.node is not None:
            steps.append(work.node)
    node = steps[0] if len(steps) == 1 else m.Seq(tuple(steps))
    ctx.diag.add(
        "PGD235",
        f"task {task.task_id!r}: the callable {fn.name}() only runs SQL through a hook; "
        "translated as its SQL (each hook call is its own transaction, as in Airflow)",
        task.ref,
    )
    plain = sql_calls[0]["sql"] if len(sql_calls) == 1 else None
    return Work(node, plain_sql=plain if isinstance(node, m.Sql) else None)


def _constant(fn: Any) -> bool:
    """The callable always returns its ``static_return``: a lambda of a literal, or a
    ``def`` whose whole body is one ``return <literal>`` (after a docstring). Another
    literal ``return`` among other statements may not be the one that runs."""
    if fn is None or not hasattr(fn, "static_return"):
        return False
    node = fn.node
    if isinstance(node, cst.Lambda):
        return True
    body = list(node.body.body)
    if body and _is_docstring(body[0]):
        body = body[1:]
    return (
        len(body) == 1
        and isinstance(body[0], cst.SimpleStatementLine)
        and len(body[0].body) == 1
        and isinstance(body[0].body[0], cst.Return)
    )


def _is_docstring(statement: Any) -> bool:
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and isinstance(statement.body[0], cst.Expr)
        and isinstance(statement.body[0].value, cst.SimpleString | cst.ConcatenatedString)
    )


def _branch_python(task: Task, ctx: Context) -> Work:
    """A constant choice is followed statically; any other callable runs at run time
    and its task ids (``follow``) decide the downstream tasks, so a branch on the
    date picks per run as Airflow does."""
    fn = task.callable
    value = fn.static_return if _constant(fn) else None
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return Work(None, can_fail=False, follow_static=set(value))
    name = f"r_{sid(task.task_id)}"
    step = _code_step(task, ctx, "branch", name)
    if isinstance(step, str):
        return stub(task, f"the branch callable is Python: {step}", ctx)
    return Work(step, follow=f"${name}.follow::jsonb", follow_ids=True)


def _short_circuit(task: Task, ctx: Context) -> Work:
    fn = task.callable
    all_downstream = bool(task.args.get("ignore_downstream_trigger_rules", True))
    if _constant(fn):
        return Work(
            None,
            can_fail=False,
            follow="true" if fn.static_return else "false",
            short_circuit=True,
            short_circuit_all=all_downstream,
        )
    calls = getattr(fn, "sql_calls", None) if fn is not None else None
    if not (calls and calls[-1].get("returns")):
        name = f"r_{sid(task.task_id)}"
        step = _code_step(task, ctx, "short_circuit", name)
        if not isinstance(step, str):
            return Work(
                step,
                follow=f"${name}.follow",
                short_circuit=True,
                short_circuit_all=all_downstream,
            )
        return stub(task, f"the short-circuit callable is Python: {step}", ctx)
    name = f"r_{sid(task.task_id)}"
    work = _python(task, ctx)
    assert work.node is not None
    node = work.node
    named = m.Sql(node.query, name=name, source=task.ref) if isinstance(node, m.Sql) else node
    follow = (
        f"coalesce(NULLIF(NULLIF(NULLIF(${name}?::text, '0'), ''), 'false') IS NOT NULL, false)"
    )
    return Work(named, follow=follow, short_circuit=True, short_circuit_all=all_downstream)


def _sql_decorated(task: Task, ctx: Context) -> Work:
    fn = task.callable
    value = getattr(fn, "static_return", None) if fn is not None else None
    if not isinstance(value, str):
        return stub(task, "@task.sql does not return a literal SQL string", ctx)
    _conn(task, ctx, ("conn_id",))
    texts = [templates.render_sql(value, _env_for(task, ctx))]
    return sql_steps(task, ctx, texts, autocommit=False, split=False)


def _bash_decorated(task: Task, ctx: Context) -> Work:
    fn = task.callable
    value = getattr(fn, "static_return", None) if fn is not None else None
    work = _psql(value.strip(), task, ctx) if isinstance(value, str) else None
    if work is None and isinstance(value, str) and value.strip():
        _env_for(task, ctx)
        if not runtime_templates.compiles(task, ctx, value.strip()):
            node = runtime_templates.steps(task, ctx, value.strip())
            if not isinstance(node, str):
                return Work(node)
            runtime_templates.manual(task, ctx, node)
        step = bash.command_step(task, ctx, value.strip(), _env_for(task, ctx))
        if step is not None:
            return Work(step)
    if work is None:  # the callable runs, its returned command is rendered and run
        node = runtime_templates.steps(task, ctx, None)
        if not isinstance(node, str):
            return Work(node)
        return stub(task, f"@task.bash: its callable cannot run as a Python step: {node}", ctx)
    return work


def _control(name: str) -> Callable[[Task, Context], Work]:
    """A handler of ``controls.py`` or ``sensors.py`` (imported when used: they build on
    this module)."""

    def handler(task: Task, ctx: Context) -> Work:
        from pgdurable.translators.airflow import controls, sensors

        module = sensors if name.endswith("_sensor") else controls
        work: Work = getattr(module, name)(task, ctx)
        return work

    return handler


_HANDLERS: dict[str, Callable[[Task, Context], Work]] = {
    "branch_datetime": _control("branch_datetime"),
    "branch_day_of_week": _control("branch_day_of_week"),
    "latest_only": _control("latest_only"),
    "python_sensor": _control("python_sensor"),
    "day_of_week_sensor": _control("day_of_week_sensor"),
    "time_sensor": _control("time_sensor"),
    "date_time_sensor": _control("date_time_sensor"),
    "bash_sensor": _control("bash_sensor"),
    "file_sensor": _control("file_sensor"),
    "wait_sensor": _control("wait_sensor"),
    "sql": _sql,
    "sql_check": _check,
    "sql_value_check": _value_check,
    "sql_threshold_check": _threshold,
    "sql_interval_check": _interval,
    "branch_sql": _branch_sql,
    "sql_sensor": _sql_sensor,
    "time_delta_sensor": _time_delta,
    "http": _http,
    "http_sensor": _http_sensor,
    "trigger_dagrun": _trigger,
    "bash": _bash,
    "empty": _empty,
    "external_marker": _external_marker,
    "external_sensor": _external_sensor,
    "python": _python,
    "branch_python": _branch_python,
    "short_circuit": _short_circuit,
    "sql_decorated": _sql_decorated,
    "bash_decorated": _bash_decorated,
}
_HANDLERS.update(python_isolated.HANDLERS)  # virtualenv / external Python tasks


def policies(task: Task, work: m.Node, ctx: Context) -> m.Node:
    """retries / retry_delay / backoff / execution_timeout via the pgdurable nodes."""
    dag = ctx.dag
    retries = dag.task_arg(task, "retries", 0)
    timeout = _seconds(
        dag.task_arg(task, "execution_timeout"), None, task=task, name="execution_timeout"
    )
    node = work
    lost: list[str] = []
    if timeout:
        if ctx.portable:
            lost.append(f"execution_timeout {int(timeout)} s")
        else:
            node = m.Timeout(node, max(1, int(timeout)))
    if isinstance(retries, int) and not isinstance(retries, bool) and retries > 0:
        retries = whole_number(
            retries, _arg(task, "retries"), line=task.ref.line, maximum=INT_MAX - 1
        )
        raw_delay = dag.task_arg(task, "retry_delay")
        if isinstance(raw_delay, Duration) and raw_delay.seconds < 0:
            # Airflow accepts it: the retry is due at once
            ctx.diag.add(
                "PGD216",
                f"task {task.task_id!r}: retry_delay is negative ({raw_delay.seconds:g} s), so "
                "Airflow retries at once; the workflow retries without a delay",
                task.ref,
            )
            delay = 0
        else:
            delay = int(_seconds(raw_delay, 300, task=task, name="retry_delay") or 300)
        backoff_arg = dag.task_arg(task, "retry_exponential_backoff", False)
        if isinstance(backoff_arg, bool) or isinstance(backoff_arg, Unknown) or backoff_arg is None:
            backoff = 2.0 if backoff_arg is True else 1.0
        else:
            backoff = float(
                seconds(backoff_arg, _arg(task, "retry_exponential_backoff"), line=task.ref.line)
            )
        backoff = min(max(backoff, 1.0), 1000.0)
        max_delay = _seconds(
            dag.task_arg(task, "max_retry_delay"), None, task=task, name="max_retry_delay"
        )
        if backoff > 1.0:
            max_delay = min(max_delay or 86400, 86400)
            ctx.diag.add(
                "PGD236",
                f"task {task.task_id!r}: exponential backoff without Airflow's hash jitter "
                "(Airflow waits between d and 2d)",
                task.ref,
            )
        if ctx.portable:
            lost.append(f"retries={retries}")
        else:
            node = m.Retry(
                node, retries + 1, delay, backoff, None if max_delay is None else int(max_delay)
            )
    elif isinstance(retries, Unknown):
        ctx.diag.add(
            "PGD315", f"task {task.task_id!r}: retries is not a literal ({retries})", task.ref
        )
    if lost:
        ctx.diag.add(
            "PGD217",
            f"--portable: task {task.task_id!r} loses {' and '.join(lost)} "
            "(pgdurable.retry/timeout are not df.*)",
            task.ref,
        )
    return node


def source(task: Task) -> SourceRef:
    return task.ref
