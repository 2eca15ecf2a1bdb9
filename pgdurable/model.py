"""Workflow models: one frozen dataclass per DSL node (SPEC B §1.1) plus the
``pgdurable`` extension nodes (SPEC A.4).

Translators build these values and never SQL strings. Two things are derived
from a model:

* ``encode(node)``: the compact graph JSON that the ``df.*`` constructors
  build for the same graph, byte for byte (key order ``node_type, left_node,
  right_node, condition_node, extra_nodes, query, result_name``; empty keys
  omitted; strings escape only ``"``, ``\\`` and control characters, like
  PostgreSQL's ``to_json(text)``). The round-trip tests evaluate the rendered
  DSL text in PostgreSQL and compare it with this encoding.
* ``render.render(node)``: readable DSL text (see ``pgdurable.render``).

Every node may carry ``name`` (``df.as`` / ``|=>``) and ``source`` (where it
came from, for the renderer's comments; never encoded, never compared).

Extension nodes (``Retry``, ``Timeout``, ``Try``) encode with node types
``RETRY``, ``TIMEOUT`` and ``TRY``: the child is ``left_node``, ``Try``'s
fallback is ``right_node`` and parameters are a JSON config in ``query``,
byte for byte what the ``pgdurable.retry/timeout/try`` constructors
(migration 0007) build; they validate their arguments the same way. Code
steps (``Python``, ``Command``, migration 0014) are leaves whose config is
jsonb's text form, as their constructors build it. A model that uses one has
profile ``pgdurable`` (SPEC A.5).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Union

from pgdurable.diagnostics import SourceRef

PORTABLE = "portable"
PGDURABLE = "pgdurable"

HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")


@dataclass(frozen=True, kw_only=True)
class NodeBase:
    """Fields every node has: the result name and the source location."""

    name: str | None = None
    source: SourceRef | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Sql(NodeBase):
    """A SQL step (``df.sql``; a bare string literal in DSL text)."""

    query: str


@dataclass(frozen=True)
class Seq(NodeBase):
    """Steps run one after another (``~>``). Two or more; encoded left-nested,
    as ``a ~> b ~> c`` parses: ``THEN(THEN(a, b), c)``."""

    steps: tuple[Node, ...]

    def __post_init__(self) -> None:
        if len(self.steps) < 2:
            raise ValueError("Seq needs at least two steps")


@dataclass(frozen=True)
class Join(NodeBase):
    """Branches run concurrently (``df.join`` / ``df.join3``). More than three
    branches nest as ``df.join3(a, b, <join of the rest>)``, so the result of
    such a join is a nested array."""

    branches: tuple[Node, ...]

    def __post_init__(self) -> None:
        if len(self.branches) < 2:
            raise ValueError("Join needs at least two branches")


@dataclass(frozen=True)
class Race(NodeBase):
    """The first branch to finish wins (``df.race`` / ``|``)."""

    left: Node
    right: Node


@dataclass(frozen=True)
class If(NodeBase):
    """``df.if(condition, then, else)``."""

    condition: Node
    then: Node
    otherwise: Node


@dataclass(frozen=True)
class IfRows(NodeBase):
    """``df.if_rows(result_name, then, else)``: tests a named result's row count."""

    result_name: str
    then: Node
    otherwise: Node


@dataclass(frozen=True)
class Loop(NodeBase):
    """``df.loop(body[, condition])`` (prefix ``@>`` without a condition)."""

    body: Node
    condition: Node | None = None


@dataclass(frozen=True)
class Break(NodeBase):
    """``df.break([value])``; the value is a literal, never a node."""

    value: str | None = None


@dataclass(frozen=True)
class Sleep(NodeBase):
    """``df.sleep(seconds)``: a durable timer."""

    seconds: int

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError("Sleep duration must be non-negative")


@dataclass(frozen=True)
class WaitForSchedule(NodeBase):
    """``df.wait_for_schedule(cron)`` with the DSL's cron rules (SPEC A.2.5)."""

    cron: str


@dataclass(frozen=True)
class WaitForSignal(NodeBase):
    """``df.wait_for_signal(signal_name[, timeout_seconds])``."""

    signal_name: str
    timeout_seconds: int | None = None


@dataclass(frozen=True)
class Http(NodeBase):
    """``df.http(url, method, body, headers, timeout_seconds)``. Headers are
    (key, value) string pairs; they encode in jsonb's key order."""

    url: str
    method: str = "POST"
    body: str | None = None
    headers: tuple[tuple[str, str], ...] | None = None
    timeout_seconds: int = 30

    def __post_init__(self) -> None:
        if self.method.upper() not in HTTP_METHODS:
            raise ValueError(f"Invalid HTTP method: {self.method}")


# -- pgdurable extension nodes (SPEC A.4) -------------------------------------


@dataclass(frozen=True)
class Retry(NodeBase):
    """``pgdurable.retry(node, max_attempts, delay_seconds, backoff, max_delay_seconds)``."""

    node: Node
    max_attempts: int
    delay_seconds: int
    backoff: float = 1.0
    max_delay_seconds: int | None = None

    def __post_init__(self) -> None:
        # The constructor's bounds; within them the backoff encodes the same
        # way in Python and in SQL (no exponent, shortest form).
        if self.max_attempts < 1:
            raise ValueError("pgdurable.retry: max_attempts must be at least 1")
        if self.delay_seconds < 0:
            raise ValueError("pgdurable.retry: delay_seconds must be non-negative")
        if not 1.0 <= self.backoff <= 1000.0:
            raise ValueError("pgdurable.retry: backoff must be between 1.0 and 1000.0")
        if self.max_delay_seconds is not None and self.max_delay_seconds < 0:
            raise ValueError("pgdurable.retry: max_delay_seconds must be non-negative or NULL")


@dataclass(frozen=True)
class Timeout(NodeBase):
    """``pgdurable.timeout(node, seconds)``."""

    node: Node
    seconds: int

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError("pgdurable.timeout: seconds must be positive")


@dataclass(frozen=True)
class Try(NodeBase):
    """``pgdurable.try(node, on_failure)``: a failure of ``node`` runs ``on_failure``."""

    node: Node
    on_failure: Node


@dataclass(frozen=True)
class Python(NodeBase):
    """``pgdurable.python(callable, args, kwargs)``: a function under the worker's code roots.
    ``args`` and ``kwargs`` hold JSON values (str, int, bool, None, lists, dicts)."""

    callable: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Command(NodeBase):
    """``pgdurable.command(argv, env, cwd)``: a program under the worker's code roots."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] | None = None
    cwd: str | None = None

    def __post_init__(self) -> None:
        if not self.argv or not self.argv[0]:
            raise ValueError("pgdurable.command: argv must be a non-empty array of strings")


Node = Union[  # noqa: UP007 - a runtime alias used by singledispatch users
    Sql,
    Seq,
    Join,
    Race,
    If,
    IfRows,
    Loop,
    Break,
    Sleep,
    WaitForSchedule,
    WaitForSignal,
    Http,
    Retry,
    Timeout,
    Try,
    Python,
    Command,
]
EXTENSION_NODES = (Retry, Timeout, Try, Python, Command)


# -- JSON encoding ------------------------------------------------------------


def json_string(text: str) -> str:
    """A JSON string escaped exactly as PostgreSQL's to_json(text) does."""
    return json.dumps(text, ensure_ascii=False)


def _envelope(
    node_type: str,
    *,
    left: str | None = None,
    right: str | None = None,
    condition: str | None = None,
    extra: tuple[str, ...] = (),
    query: str | None = None,
    result_name: str | None = None,
) -> str:
    parts = [f'"node_type":{json_string(node_type)}']
    if left is not None:
        parts.append(f'"left_node":{left}')
    if right is not None:
        parts.append(f'"right_node":{right}')
    if condition is not None:
        parts.append(f'"condition_node":{condition}')
    if extra:
        parts.append(f'"extra_nodes":[{",".join(extra)}]')
    if query is not None:
        parts.append(f'"query":{json_string(query)}')
    if result_name is not None:
        parts.append(f'"result_name":{json_string(result_name)}')
    return "{" + ",".join(parts) + "}"


def _config(pairs: list[tuple[str, str]]) -> str:
    """A compact JSON object from already-encoded values, in the given order."""
    return "{" + ",".join(f"{json_string(k)}:{v}" for k, v in pairs) + "}"


def _opt_string(value: str | None) -> str:
    return "null" if value is None else json_string(value)


def _jsonb_headers(headers: tuple[tuple[str, str], ...]) -> str:
    # jsonb keeps the last duplicate and orders keys by byte length, then bytes.
    merged = dict(headers)
    keys = sorted(merged, key=lambda k: (len(k.encode()), k.encode()))
    return _config([(k, json_string(merged[k])) for k in keys])


def jsonb_text(value: Any) -> str:
    """``value`` as PostgreSQL prints it as jsonb: keys by byte length then
    bytes (the last duplicate wins), ``", "`` and ``": "`` separators."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        # jsonb keeps a number as numeric: the shortest digits, never an exponent
        return format(Decimal(repr(value)), "f")
    if isinstance(value, str):
        return json_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(jsonb_text(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return "{" + ", ".join(f"{json_string(k)}: {jsonb_text(value[k])}" for k in keys) + "}"
    raise TypeError(f"a code step argument must be JSON text, numbers or null, not {value!r}")


def _float_text(value: float) -> str:
    # serde_json prints whole floats with ".0", like Python's repr.
    return repr(float(value))


def encode(node: Node) -> str:
    """The compact graph JSON the df.* constructors build for ``node``."""
    n = node.name
    match node:
        case Sql(query=q):
            return _envelope("SQL", query=q, result_name=n)
        case Seq(steps=steps):
            acc = encode(steps[0])
            for i, step in enumerate(steps[1:], start=2):
                last = i == len(steps)
                acc = _envelope(
                    "THEN", left=acc, right=encode(step), result_name=n if last else None
                )
            return acc
        case Join(branches=b):
            if len(b) == 2:
                return _envelope("JOIN", left=encode(b[0]), right=encode(b[1]), result_name=n)
            rest = b[2] if len(b) == 3 else Join(b[2:])
            return _envelope(
                "JOIN", left=encode(b[0]), right=encode(b[1]), extra=(encode(rest),), result_name=n
            )
        case Race(left=a, right=b):
            return _envelope("RACE", left=encode(a), right=encode(b), result_name=n)
        case If(condition=c, then=t, otherwise=e):
            return _envelope(
                "IF", left=encode(t), right=encode(e), condition=encode(c), result_name=n
            )
        case IfRows(result_name=r, then=t, otherwise=e):
            query = _config(
                [("condition_type", '"result_has_rows"'), ("result_name", json_string(r))]
            )
            return _envelope("IF", left=encode(t), right=encode(e), query=query, result_name=n)
        case Loop(body=b, condition=c):
            cond = None if c is None else encode(c)
            return _envelope("LOOP", left=encode(b), condition=cond, result_name=n)
        case Break(value=v):
            return _envelope(
                "BREAK", query=_config([("break_value", _opt_string(v))]), result_name=n
            )
        case Sleep(seconds=s):
            return _envelope("SLEEP", query=str(s), result_name=n)
        case WaitForSchedule(cron=c):
            return _envelope(
                "WAIT_SCHEDULE", query=_config([("cron_expr", json_string(c))]), result_name=n
            )
        case WaitForSignal(signal_name=s, timeout_seconds=t):
            timeout = "null" if t is None else str(t)
            query = _config([("signal_name", json_string(s)), ("timeout_seconds", timeout)])
            return _envelope("SIGNAL", query=query, result_name=n)
        case Http(url=u, method=m, body=b, headers=h, timeout_seconds=t):
            query = _config(
                [
                    ("url", json_string(u)),
                    ("method", json_string(m.upper())),
                    ("body", _opt_string(b)),
                    ("headers", "null" if h is None else _jsonb_headers(h)),
                    ("timeout_seconds", str(t)),
                ]
            )
            return _envelope("HTTP", query=query, result_name=n)
        case Retry(node=c, max_attempts=a, delay_seconds=d, backoff=bo, max_delay_seconds=md):
            query = _config(
                [
                    ("max_attempts", str(a)),
                    ("delay_seconds", str(d)),
                    ("backoff", _float_text(bo)),
                    ("max_delay_seconds", "null" if md is None else str(md)),
                ]
            )
            return _envelope("RETRY", left=encode(c), query=query, result_name=n)
        case Timeout(node=c, seconds=s):
            query = _config([("timeout_seconds", str(s))])
            return _envelope("TIMEOUT", left=encode(c), query=query, result_name=n)
        case Try(node=c, on_failure=f):
            return _envelope("TRY", left=encode(c), right=encode(f), result_name=n)
        case Python(callable=c, args=a, kwargs=k):
            config = {"callable": c, "args": list(a), "kwargs": dict(k)}
            return _envelope("PYTHON", query=jsonb_text(config), result_name=n)
        case Command(argv=a, env=e, cwd=d):
            config = {"argv": list(a), "env": None if e is None else dict(e), "cwd": d}
            return _envelope("COMMAND", query=jsonb_text(config), result_name=n)
    raise TypeError(f"not a workflow node: {node!r}")


def children(node: Node) -> Iterator[Node]:
    """The direct child nodes, in encoding order."""
    match node:
        case Seq(steps=s):
            yield from s
        case Join(branches=b):
            yield from b
        case Race(left=a, right=b):
            yield from (a, b)
        case If(condition=c, then=t, otherwise=e):
            yield from (t, e, c)
        case IfRows(then=t, otherwise=e):
            yield from (t, e)
        case Loop(body=b, condition=c):
            yield b
            if c is not None:
                yield c
        case Retry(node=c) | Timeout(node=c):
            yield c
        case Try(node=c, on_failure=f):
            yield from (c, f)


def walk(node: Node) -> Iterator[Node]:
    """Every node of the graph, pre-order."""
    yield node
    for child in children(node):
        yield from walk(child)


def uses_extensions(node: Node) -> bool:
    """True when the graph needs pgdurable's extension nodes (profile pgdurable)."""
    return any(isinstance(n, EXTENSION_NODES) for n in walk(node))
