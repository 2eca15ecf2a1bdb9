"""Substitution of ``{var}``, ``{sys_*}`` and ``$name`` references (SPEC B §5).

Two passes over a per-step copy of the node text; df.nodes is never changed.

1. Braces, one left-to-right pass whose insertions are not rescanned:
   ``{sys_instance_id}``, ``{sys_label}``, then ``{identifier}`` user vars,
   inserted raw. Anything else (unknown names, non-identifiers, an unclosed
   ``{``) stays as written.
2. ``$`` references to named results, on pass 1's output (so a ``$x`` that
   came in through a variable resolves too). There is no SQL lexing: quoted
   text is substituted as well. At each ``$`` the result names are tried
   longest first, and for each the forms ``$N.*``, ``$N.col[?]``, ``$N?`` and
   ``$N`` (at a word boundary) in that order.

``for_sql`` selects rendering: SQL literals (strings quoted with ``''``
escaping, numbers and booleans bare, JSON quoted) or raw text (HTTP fields).
Results are JSON text, as stored. Errors raise ``SubstitutionError`` with the
reference's wording; the step then fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pgdurable.worker.results import dumps

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_ROWSET_EXPANSION = 10_000


class SubstitutionError(Exception):
    pass


def substitute(
    text: str,
    results: Mapping[str, str],
    variables: Mapping[str, str],
    instance_id: str,
    label: str | None,
    *,
    for_sql: bool,
) -> str:
    return substitute_results(
        substitute_braces(text, variables, instance_id, label), results, for_sql=for_sql
    )


def substitute_braces(
    text: str, variables: Mapping[str, str], instance_id: str, label: str | None
) -> str:
    out: list[str] = []
    pos = 0
    while True:
        opening = text.find("{", pos)
        if opening < 0:
            out.append(text[pos:])
            return "".join(out)
        closing = text.find("}", opening + 1)
        if closing < 0:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:opening])
        name = text[opening + 1 : closing]
        if name == "sys_instance_id":
            replacement: str | None = instance_id
        elif name == "sys_label":
            replacement = label or ""
        elif IDENTIFIER.fullmatch(name):
            replacement = variables.get(name)
        else:
            replacement = None
        out.append(text[opening : closing + 1] if replacement is None else replacement)
        pos = closing + 1


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _render(value: Any, for_sql: bool) -> str:
    if isinstance(value, str):
        return _quote(value) if for_sql else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return dumps(value)
    text = dumps(value)
    return _quote(text) if for_sql else text


def _parse(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def _scalar(name: str, text: str, null_safe: bool, for_sql: bool) -> str:
    ok, value = _parse(text)
    if not ok or not (isinstance(value, dict) and isinstance(value.get("rows"), list)):
        # Not a row set: the whole text (HTTP envelopes, JOIN arrays, signals…).
        return _quote(text) if for_sql else text
    rows = value["rows"]
    if not rows:
        if null_safe:
            return "NULL"
        raise SubstitutionError(f"${name} has no rows — query returned zero results")
    first = rows[0]
    if not isinstance(first, dict):
        raise SubstitutionError(f"${name}: first row is not an object")
    if not first:
        raise SubstitutionError(f"${name}: first row has no columns")
    cell = next(iter(first.values()))
    if cell is None:
        if null_safe:
            return "NULL"
        raise SubstitutionError(f"${name} is NULL — first column of first row is NULL")
    return _render(cell, for_sql)


def _field(name: str, text: str, column: str, null_safe: bool, for_sql: bool) -> str:
    ok, value = _parse(text)
    if not ok:
        raise SubstitutionError(f"${name}.{column}: result is not valid JSON")
    if isinstance(value, dict) and isinstance(value.get("rows"), list):
        rows = value["rows"]
        if not rows:
            if null_safe:
                return "NULL"
            raise SubstitutionError(f"${name} has no rows — query returned zero results")
        fields = rows[0]
        if not isinstance(fields, dict):
            raise SubstitutionError(f"${name}.{column}: first row is not an object")
    elif isinstance(value, dict):
        fields = value
    else:
        raise SubstitutionError(f"${name}.{column}: result is neither a row set nor a JSON object")
    if column not in fields:
        # SQL leaves the reference for PostgreSQL to reject; raw text has no
        # such parser, so it fails here. With '?' the text stays in both.
        if not for_sql and not null_safe:
            available = ", ".join(sorted(fields))
            raise SubstitutionError(
                f"${name}.{column}: result has no field '{column}' (available: {available})"
            )
        return f"${name}.{column}" + ("?" if null_safe else "")
    cell = fields[column]
    if cell is None:
        if null_safe:
            return "NULL"
        raise SubstitutionError(f"${name}.{column} is NULL")
    return _render(cell, for_sql)


def _row_set(name: str, text: str, for_sql: bool) -> str:
    ok, value = _parse(text)
    if not ok:
        raise SubstitutionError(f"${name}.* — invalid result JSON")
    rows = value.get("rows") if isinstance(value, dict) else None
    if not isinstance(rows, list):
        raise SubstitutionError(f"${name}.* — invalid result format")
    if len(rows) > MAX_ROWSET_EXPANSION:
        raise SubstitutionError(
            f"${name}.* — result has {len(rows)} rows, exceeding the maximum of "
            f"{MAX_ROWSET_EXPANSION} for row-set expansion. Use pagination or intermediate "
            f"tables for large result sets."
        )
    if not for_sql:
        return dumps(rows)
    quoted = '"' + name.replace('"', '""') + '"'
    if not rows:
        return f"(SELECT NULL WHERE false) AS {quoted}"
    if not all(isinstance(row, dict) for row in rows):
        raise SubstitutionError(f"${name}.* — row is not an object")
    columns = list(rows[0])

    def literal(cell: Any) -> str:
        if cell is None:
            return "NULL"
        if isinstance(cell, bool):
            return "true" if cell else "false"
        if isinstance(cell, int | float):
            return dumps(cell)
        return _quote(cell if isinstance(cell, str) else dumps(cell)) + "::text"

    values = ", ".join(
        "(" + ",".join(literal(row.get(column)) for column in columns) + ")" for row in rows
    )
    column_list = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    return f"(VALUES {values}) AS {quoted}({column_list})"


def substitute_results(text: str, results: Mapping[str, str], *, for_sql: bool) -> str:
    if not results or "$" not in text:
        return text
    names = sorted(results, key=len, reverse=True)
    out: list[str] = []
    pos = 0
    while True:
        dollar = text.find("$", pos)
        if dollar < 0:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:dollar])
        pos = dollar + 1
        for name in names:
            if not text.startswith(name, pos):
                continue
            after = pos + len(name)
            json_text = results[name]
            if text.startswith(".*", after):
                out.append(_row_set(name, json_text, for_sql))
                pos = after + 2
                break
            if text.startswith(".", after):
                column = IDENTIFIER.match(text, after + 1)
                if column:
                    end = column.end()
                    null_safe = text.startswith("?", end)
                    out.append(_field(name, json_text, column.group(), null_safe, for_sql))
                    pos = end + (1 if null_safe else 0)
                    break
            if text.startswith("?", after):
                out.append(_scalar(name, json_text, True, for_sql))
                pos = after + 1
                break
            if after == len(text) or not (
                text[after].isascii() and (text[after].isalnum() or text[after] == "_")
            ):
                out.append(_scalar(name, json_text, False, for_sql))
                pos = after
                break
            # An identifier continues: try shorter names.
        else:
            out.append("$")


def is_whole_value_reference(value: str) -> bool:
    """``$x``, ``$x?``, ``$x.c``, ``$x.c?`` or ``{v}`` and nothing else (multipart data)."""
    value = value.strip()
    return bool(
        re.fullmatch(r"\$[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?\??", value)
        or re.fullmatch(r"\{[A-Za-z_][A-Za-z0-9_]*\}", value)
    )
