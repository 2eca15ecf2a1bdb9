"""Jinja in SQL text and operator arguments, rendered at translation time
where the value is static and mapped to run-time references otherwise.

* static: ``params.*`` (DAG params merged with task params), string literals;
* run dates: ``ds``, ``ds_nodash``, ``ts``, ``ts_nodash``, ``logical_date``,
  ``data_interval_start/end``, ``run_id``, ``macros.ds_add``,
  ``macros.ds_format``, ``<date>.strftime(...)`` become fields of the run's
  ``dag_run`` named result (computed by the first step of each run, see
  ``schedule.py``), e.g. ``$dag_run.ds``;
* ``var.value.X`` / ``var.json.X.Y`` become ``{X}`` / ``{X__Y}`` (df.vars,
  inserted raw as Jinja does; the report lists the ``df.setvar`` calls);
* ``ti.xcom_pull(task_ids='t')[0][0]`` becomes ``$r_t``, the first cell of
  that SQL task's named result; ``ti.xcom_pull(task_ids='t')`` of a task run
  as a Python step becomes ``$r_t`` too, its return value.

Anything else (``{% %}`` blocks, unknown names, ``xcom_pull`` of a whole
result) is reported as ``manual`` and left in the text; it is never passed
through silently.

SQL substitution quotes string values (SPEC B §5), while Jinja inserts raw
text, usually inside a quoted literal: ``'{{ ds }}'`` becomes ``$dag_run.ds``
and ``'x_{{ ds }}'`` becomes ``('x_' || $dag_run.ds)``. A run-time value in
an identifier (``sales_{{ ds_nodash }}``) cannot be expressed: ``manual``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_EXPR = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}|\{#.*?#\}", re.DOTALL)
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_]")

# Run-time names: dag_run field, and the Airflow generations that have it.
DATE_FIELDS = {
    "ds": "ds",
    "ds_nodash": "ds_nodash",
    "ts": "ts",
    "ts_nodash": "ts_nodash",
    "logical_date": "ts",
    "execution_date": "ts",
    "data_interval_start": "data_interval_start",
    "data_interval_end": "data_interval_end",
    "run_id": "run_id",
    "next_ds": "next_ds",
    "prev_ds": "prev_ds",
    "yesterday_ds": "yesterday_ds",
    "tomorrow_ds": "tomorrow_ds",
}
REMOVED_IN_3 = {"execution_date", "next_ds", "prev_ds", "yesterday_ds", "tomorrow_ds"}
DATE_OBJECTS = {"logical_date", "execution_date", "data_interval_start", "data_interval_end"}

# strftime -> to_char
_STRFTIME = {
    "%Y": "YYYY",
    "%m": "MM",
    "%d": "DD",
    "%H": "HH24",
    "%M": "MI",
    "%S": "SS",
    "%y": "YY",
    "%j": "DDD",
    "%b": "Mon",
    "%B": "FMMonth",
    "%a": "Dy",
    "%A": "FMDay",
}


@dataclass
class Env:
    params: dict[str, Any]
    generation: int
    xcom: dict[str, str]  # task id -> its named result
    problems: list[str] = field(default_factory=list)  # manual reasons
    variables: set[str] = field(default_factory=set)
    uses_dates: bool = False
    uses_xcom: set[str] = field(default_factory=set)
    python_results: set[str] = field(default_factory=set)  # tasks run as Python steps
    # names known when translating: dag.dag_id, task.task_id, ... -> the literal id
    names: dict[str, str] = field(default_factory=dict)


def static_names(dag_id: str, task_id: str) -> dict[str, str]:
    """The context names whose value is the DAG's or the task's id (both literal)."""
    names = {f"{obj}.dag_id": dag_id for obj in ("dag", "dag_run", "task", "ti", "task_instance")}
    names.update({f"{obj}.task_id": task_id for obj in ("task", "ti", "task_instance")})
    return names


class _Manual(Exception):
    pass


def to_char_format(fmt: str) -> str:
    out = []
    for piece in re.split(r"(%.)", fmt):
        if piece.startswith("%") and len(piece) == 2:
            if piece not in _STRFTIME:
                raise _Manual(f"strftime code {piece}")
            out.append(_STRFTIME[piece])
        elif piece:
            out.append('"' + piece.replace('"', "") + '"')
    return "".join(out)


def _string_arg(text: str) -> str:
    m = re.fullmatch(r"\s*(['\"])(.*)\1\s*", text, re.DOTALL)
    if not m:
        raise _Manual(text)
    return m.group(2)


def _expression(expr: str, env: Env) -> tuple[str, str]:
    """One Jinja expression -> ("static", text) or ("sql", SQL expression) or
    ("raw", DSL reference). Raises _Manual when it cannot be mapped."""
    e = expr.strip()
    if "|" in e:
        raise _Manual(e)
    if m := re.fullmatch(r"(['\"])(.*)\1", e, re.DOTALL):
        return "static", m.group(2)
    if m := re.fullmatch(r"params\.(\w+)|params\[\s*['\"](\w+)['\"]\s*\]", e):
        key = m.group(1) or m.group(2)
        if key not in env.params or not isinstance(env.params[key], str | int | float | bool):
            raise _Manual(f"{e} (no literal value for params.{key})")
        value = env.params[key]
        return "static", str(value)
    if e in env.names:
        return "static", env.names[e]
    if m := re.fullmatch(r"var\.value\.(\w+)|var\.value\.get\(\s*['\"](\w+)['\"].*\)", e):
        name = m.group(1) or m.group(2)
        env.variables.add(name)
        return "static", "{" + name + "}"
    if m := re.fullmatch(r"var\.json\.(\w+)((?:\.\w+)*)", e):
        name = m.group(1) + m.group(2).replace(".", "__")
        env.variables.add(name)
        return "static", "{" + name + "}"
    if e in DATE_FIELDS:
        if env.generation >= 3 and e in REMOVED_IN_3:
            raise _Manual(f"{e} (removed from the Airflow 3 context)")
        env.uses_dates = True
        return "ref", f"$dag_run.{DATE_FIELDS[e]}"
    if m := re.fullmatch(r"macros\.ds_add\(\s*ds\s*,\s*(-?\d+)\s*\)", e):
        env.uses_dates = True
        return "sql", f"to_char($dag_run.ds::date + {int(m.group(1))}, 'YYYY-MM-DD')"
    if m := re.fullmatch(r"macros\.ds_format\(\s*ds\s*,\s*(.+?)\s*,\s*(.+?)\s*\)", e):
        _string_arg(m.group(1))
        env.uses_dates = True
        return "sql", f"to_char($dag_run.ds::date, '{to_char_format(_string_arg(m.group(2)))}')"
    if m := re.fullmatch(r"(\w+)\.strftime\(\s*(.+?)\s*\)", e):
        if m.group(1) not in DATE_OBJECTS:
            raise _Manual(e)
        env.uses_dates = True
        field_ = DATE_FIELDS[m.group(1)]
        return "sql", (
            f"to_char($dag_run.{field_}::timestamptz AT TIME ZONE 'UTC', "
            f"'{to_char_format(_string_arg(m.group(2)))}')"
        )
    if m := re.fullmatch(
        r"(?:ti|task_instance)\.xcom_pull\(\s*(?:task_ids\s*=\s*)?['\"]([\w.-]+)['\"]\s*"
        r"(?:,\s*key\s*=\s*['\"]return_value['\"]\s*)?\)\s*\[\s*0\s*\]\s*\[\s*0\s*\]",
        e,
    ):
        task = m.group(1)
        if task not in env.xcom or task in env.python_results:
            raise _Manual(f"{e} (task {task!r} is not an upstream SQL task)")
        env.uses_xcom.add(task)
        return "ref", f"${env.xcom[task]}"
    if m := re.fullmatch(
        r"(?:ti|task_instance)\.xcom_pull\(\s*(?:task_ids\s*=\s*)?['\"]([\w.-]+)['\"]\s*"
        r"(?:,\s*key\s*=\s*['\"]return_value['\"]\s*)?\)",
        e,
    ):
        # a Python task's return value: the first cell of its row (python_tasks)
        task = m.group(1)
        if task not in env.xcom or task not in env.python_results:
            raise _Manual(
                f"{e} (task {task!r} is not an upstream Python task; the XCom of a SQL task "
                "is its rows: [0][0] reads the first cell)"
            )
        env.uses_xcom.add(task)
        return "ref", f"${env.xcom[task]}"
    raise _Manual(e)


def render_raw(text: str, env: Env) -> str:
    """Render for raw insertion (HTTP fields, shell commands): references stay
    ``$name.field`` (raw substitution inserts values unquoted)."""

    def replace(m: re.Match) -> str:
        if m.group(2) is not None:
            env.problems.append(f"Jinja block {{%{m.group(2)}%}}")
            return m.group(0)
        if m.group(1) is None:
            return ""  # {# comment #}
        try:
            kind, value = _expression(m.group(1), env)
        except _Manual as exc:
            env.problems.append(f"template {{{{{m.group(1).strip()}}}}}: {exc}")
            return m.group(0)
        if kind == "sql":
            env.problems.append(
                f"template {{{{{m.group(1).strip()}}}}} needs SQL to compute; "
                "not possible in this argument"
            )
            return m.group(0)
        return value

    return _EXPR.sub(replace, text)


def render_sql(text: str, env: Env) -> str:
    """Render Jinja inside SQL text (see the module docstring for quoting)."""
    if "{{" not in text and "{%" not in text and "{#" not in text:
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "'":
            j = i + 1
            while j < n:
                if text.startswith("{{", j) or text.startswith("{%", j):
                    # Jinja inside the literal may hold quotes of its own
                    close = text.find("}}" if text[j + 1] == "{" else "%}", j + 2)
                    j = n if close < 0 else close + 2
                elif text[j] == "'" and text[j + 1 : j + 2] == "'":
                    j += 2
                elif text[j] == "'":
                    break
                else:
                    j += 1
            out.append(_literal(text[i + 1 : j], env))
            i = j + 1
        elif text.startswith("{{", i) or text.startswith("{%", i) or text.startswith("{#", i):
            m = _EXPR.match(text, i)
            if m is None:
                out.append(c)
                i += 1
                continue
            out.append(_bare(m, text, env))
            i = m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _bare(m: re.Match, text: str, env: Env) -> str:
    if m.group(2) is not None:
        env.problems.append(f"Jinja block {{%{m.group(2)}%}}")
        return m.group(0)
    if m.group(1) is None:
        return ""
    try:
        kind, value = _expression(m.group(1), env)
    except _Manual as exc:
        env.problems.append(f"template {{{{{m.group(1).strip()}}}}}: {exc}")
        return m.group(0)
    if kind == "static":
        return value
    before = text[m.start() - 1] if m.start() > 0 else " "
    after = text[m.end()] if m.end() < len(text) else " "
    if _IDENT_CHAR.match(before) or _IDENT_CHAR.match(after):
        env.problems.append(
            f"template {{{{{m.group(1).strip()}}}}} builds an identifier at run time, "
            "which a SQL step cannot do"
        )
        return m.group(0)
    return value if kind == "ref" else f"({value})"


def _literal(body: str, env: Env) -> str:
    """A quoted SQL literal whose body may hold Jinja."""
    pieces: list[tuple[str, str]] = []  # (kind, text): text pieces are literal text
    last = 0
    for m in _EXPR.finditer(body):
        pieces.append(("text", body[last : m.start()]))
        last = m.end()
        if m.group(2) is not None:
            env.problems.append(f"Jinja block {{%{m.group(2)}%}}")
            pieces.append(("text", m.group(0)))
            continue
        if m.group(1) is None:
            continue
        try:
            kind, value = _expression(m.group(1), env)
        except _Manual as exc:
            env.problems.append(f"template {{{{{m.group(1).strip()}}}}}: {exc}")
            pieces.append(("text", m.group(0)))
            continue
        if kind == "static":
            # Jinja inserts raw text into the literal; keep it a valid literal.
            pieces.append(("text", value))  # raw, as Jinja inserts it
        else:
            pieces.append((kind, value))
    pieces.append(("text", body[last:]))
    dynamic = [p for p in pieces if p[0] != "text"]
    if not dynamic:
        return "'" + "".join(t for _, t in pieces) + "'"
    parts = [p for p in pieces if not (p[0] == "text" and p[1] == "")]
    if len(parts) == 1:
        kind, value = parts[0]
        return value if kind == "ref" else f"({value})"
    rendered = []
    for kind, value in parts:
        rendered.append(f"'{value}'" if kind == "text" else value)
    return "(" + " || ".join(rendered) + ")"
