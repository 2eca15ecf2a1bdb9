"""Readable DSL text for a workflow model: the single renderer.

``render(node)`` returns a SQL expression that, evaluated in PostgreSQL with
the ``df`` schema (``SELECT <text>``), builds exactly ``model.encode(node)``.
Layout: one step per line, children indented four spaces, a ``-- source:
file:line (what)`` comment above each node that carries a source location
(``what``: the source's name for it, e.g. ``task load``).

Why the parentheses: every DSL operator (``~>``, ``|=>``, ``&``, ``|``,
``@>``) has the same precedence in PostgreSQL and is left-associative (SPEC B
§1.3), so any operator expression used as an operand is wrapped. Joins,
races, ifs and the extension nodes use function-call syntax, which needs no
wrapping. A SQL step is a plain string literal unless its text could be taken
for a Durofut by auto-wrap (it starts with ``{``); then it is ``df.sql(...)``.
"""

from __future__ import annotations

import re
from functools import singledispatch

from pgdurable import model as m
from pgdurable.sqltext import comment, literal

__all__ = ["INDENT", "literal", "render"]  # literal: re-exported for the translators

INDENT = "    "


def render(node: m.Node, indent: int = 0) -> str:
    """The DSL text of ``node``; continuation lines are indented ``indent`` levels."""
    text = _render(node, indent)
    if node.name is not None:
        text = f"{_operand(text, node)} |=> {literal(node.name)}"
    return _with_source(node, text, indent)


def _with_source(node: m.Node, text: str, indent: int) -> str:
    if node.source is None:
        return text
    what = f" ({comment(node.source.what)})" if node.source.what else ""
    return f"-- source: {comment(node.source)}{what}\n{INDENT * indent}{text}"


def _is_operator_expression(node: m.Node) -> bool:
    return (
        node.name is not None
        or isinstance(node, m.Seq)
        or (isinstance(node, m.Loop) and node.condition is None)
    )


def _operand(text: str, node: m.Node) -> str:
    """``text`` (the unnamed node) made safe as the left operand of ``|=>``."""
    bare_operator = isinstance(node, m.Seq) or (isinstance(node, m.Loop) and node.condition is None)
    return f"({text})" if bare_operator else text


def _child(node: m.Node, indent: int) -> str:
    """A node used as a function argument or operand, on its own line(s)."""
    text = render(node, indent)
    if _is_operator_expression(node):
        # keep a leading source comment outside the parentheses
        if text.startswith("-- source:"):
            note, rest = text.split("\n", 1)
            return f"{note}\n{INDENT * indent}({rest.lstrip()})"
        return f"({text})"
    return text


def _call(function: str, args: list[str], indent: int) -> str:
    pad = INDENT * (indent + 1)
    body = ",\n".join(pad + a for a in args)
    return f"{function}(\n{body}\n{INDENT * indent})"


@singledispatch
def _render(node: object, indent: int) -> str:
    raise TypeError(f"cannot render {node!r}")


@_render.register
def _(node: m.Sql, indent: int) -> str:
    text = literal(node.query)
    if re.match(r"^\s*\{", node.query):
        return f"df.sql({text})"
    return text


@_render.register
def _(node: m.Seq, indent: int) -> str:
    lines = [_child(node.steps[0], indent)]
    for step in node.steps[1:]:
        child = _child(step, indent)
        if child.startswith("-- source:"):
            note, rest = child.split("\n", 1)
            lines.append(f"{note}\n{INDENT * indent}~> {rest.lstrip()}")
        else:
            lines.append(f"~> {child}")
    return f"\n{INDENT * indent}".join(lines)


@_render.register
def _(node: m.Join, indent: int) -> str:
    b = node.branches
    if len(b) == 2:
        return _call("df.join", [_child(x, indent + 1) for x in b], indent)
    rest = b[2] if len(b) == 3 else m.Join(b[2:])
    return _call("df.join3", [_child(x, indent + 1) for x in (b[0], b[1], rest)], indent)


@_render.register
def _(node: m.Race, indent: int) -> str:
    return _call("df.race", [_child(node.left, indent + 1), _child(node.right, indent + 1)], indent)


@_render.register
def _(node: m.If, indent: int) -> str:
    args = [node.condition, node.then, node.otherwise]
    return _call("df.if", [_child(x, indent + 1) for x in args], indent)


@_render.register
def _(node: m.IfRows, indent: int) -> str:
    args = [literal(node.result_name)] + [
        _child(x, indent + 1) for x in (node.then, node.otherwise)
    ]
    return _call("df.if_rows", args, indent)


@_render.register
def _(node: m.Loop, indent: int) -> str:
    if node.condition is None:
        pad = INDENT * (indent + 1)
        return f"@> (\n{pad}{render(node.body, indent + 1)}\n{INDENT * indent})"
    args = [_child(node.body, indent + 1), _child(node.condition, indent + 1)]
    return _call("df.loop", args, indent)


@_render.register
def _(node: m.Break, indent: int) -> str:
    return "df.break()" if node.value is None else f"df.break({literal(node.value)})"


@_render.register
def _(node: m.Sleep, indent: int) -> str:
    return f"df.sleep({node.seconds})"


@_render.register
def _(node: m.WaitForSchedule, indent: int) -> str:
    return f"df.wait_for_schedule({literal(node.cron)})"


@_render.register
def _(node: m.WaitForSignal, indent: int) -> str:
    if node.timeout_seconds is None:
        return f"df.wait_for_signal({literal(node.signal_name)})"
    return f"df.wait_for_signal({literal(node.signal_name)}, {node.timeout_seconds})"


@_render.register
def _(node: m.Http, indent: int) -> str:
    args = [f"url => {literal(node.url)}", f"method => {literal(node.method)}"]
    if node.body is not None:
        args.append(f"body => {literal(node.body)}")
    if node.headers is not None:
        headers = m._config([(k, m.json_string(v)) for k, v in node.headers])
        args.append(f"headers => {literal(headers)}::jsonb")
    args.append(f"timeout_seconds => {node.timeout_seconds}")
    return f"df.http({', '.join(args)})"


@_render.register
def _(node: m.Retry, indent: int) -> str:
    max_delay = "NULL" if node.max_delay_seconds is None else str(node.max_delay_seconds)
    args = [
        _child(node.node, indent + 1),
        f"max_attempts => {node.max_attempts}",
        f"delay_seconds => {node.delay_seconds}",
        f"backoff => {float(node.backoff)!r}",
        f"max_delay_seconds => {max_delay}",
    ]
    return _call("pgdurable.retry", args, indent)


@_render.register
def _(node: m.Timeout, indent: int) -> str:
    return _call("pgdurable.timeout", [_child(node.node, indent + 1), str(node.seconds)], indent)


@_render.register
def _(node: m.Try, indent: int) -> str:
    args = [_child(node.node, indent + 1), _child(node.on_failure, indent + 1)]
    return _call("pgdurable.try", args, indent)


@_render.register
def _(node: m.Python, indent: int) -> str:
    args = m.jsonb_text(list(node.args))
    kwargs = m.jsonb_text(dict(node.kwargs))
    return f"pgdurable.python({literal(node.callable)}, {literal(args)}, {literal(kwargs)})"


@_render.register
def _(node: m.Command, indent: int) -> str:
    argv = ", ".join(literal(a) for a in node.argv)
    env = "NULL" if node.env is None else f"{literal(m.jsonb_text(dict(node.env)))}::jsonb"
    cwd = "NULL" if node.cwd is None else literal(node.cwd)
    return f"pgdurable.command(ARRAY[{argv}]::text[], {env}, {cwd})"
