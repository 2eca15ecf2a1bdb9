"""Dataset/Asset schedules: a DAG runs once every asset it waits for was updated.

Airflow records an asset event when a task with ``outlets=[Dataset(uri)]``
(``Asset``) succeeds, and queues a run of each DAG scheduled on that asset;
the run starts once every asset of the schedule has a queued event (a list,
``DatasetAll``/``AssetAll``), and several events of one asset before that
count once. The translation wires the same rule with signals:

* the consumer's schedule is a loop that waits for one signal per asset
  (``df.wait_for_signal('asset:<key>')``; a list and ``&`` join the waits,
  ``|`` races them), then takes every signal still pending (a wait of one
  second per asset, in parallel) and runs: Airflow clears the DAG's queued
  events when it creates the run, so an update before that counts for this
  run and one during the run for the next;
* after a producing task succeeds, a SQL step signals every running
  instance that waits for that asset, unless one such signal is already
  pending (several updates count once, as Airflow's queue does).

The consumer's instance must be visible to the producer's role (the same
role, as an import with ``--default-username`` gives): ``df.signal`` works
on the caller's instances. An asset is identified by its name
(``Asset("name", uri=...)``) or its URI (``Dataset(uri)``, ``Asset(uri=...)``).
"""

from __future__ import annotations

import libcst as cst

from pgdurable import model as m
from pgdurable.sqltext import SqlLexError, literal, tokenize
from pgdurable.translators.airflow import schedule as base
from pgdurable.translators.airflow.dagfile import Asset

PREFIX = "asset:"
ALL = {"DatasetAll", "AssetAll"}
ANY = {"DatasetAny", "AssetAny"}
ONE = {"Dataset", "Asset"}


class NotStatic(Exception):
    """An asset expression the translator cannot read without running the file."""


class Aliased(Exception):
    """An ``AssetAlias``/``DatasetAlias`` in the schedule: the assets behind it are added
    at run time by the producing tasks (``outlet_events[alias].add(Asset(...))``)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class Watched(Exception):
    """An asset updated by an ``AssetWatcher`` (a trigger polled by Airflow's triggerer:
    a file deleted, a message queue): events no task of any DAG emits."""

    def __init__(self, key: str, source: str) -> None:
        super().__init__(key)
        self.key = key
        self.source = source


def _key(call: cst.Call) -> str:
    args = [a for a in call.args if a.keyword is None]
    named = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
    node = named.get("name") or (args[0].value if args else None) or named.get("uri")
    if not isinstance(node, cst.SimpleString):
        raise NotStatic
    value = node.evaluated_value
    return value.decode() if isinstance(value, bytes) else value


def _expression(node: cst.BaseExpression) -> tuple[str, list]:
    """("all" | "any" | "one", parts): the schedule's tree, each leaf an asset key."""
    match node:
        case cst.List(elements=els) | cst.Tuple(elements=els):
            return "all", [_expression(e.value) for e in els]
        case cst.BinaryOperation(left=a, operator=cst.BitAnd(), right=b):
            return "all", [_expression(a), _expression(b)]
        case cst.BinaryOperation(left=a, operator=cst.BitOr(), right=b):
            return "any", [_expression(a), _expression(b)]
        case cst.Call(func=func) as call:
            name = (
                func.attr.value if isinstance(func, cst.Attribute) else getattr(func, "value", "")
            )
            if name in ("AssetAlias", "DatasetAlias"):
                raise Aliased(_key(call))
            if name in ONE:
                key = _key(call)
                for a in call.args:
                    if a.keyword is not None and a.keyword.value == "watchers":
                        raise Watched(key, cst.Module([]).code_for_node(a.value))
                return "one", [key]
            if name in ALL | ANY:
                return ("all" if name in ALL else "any"), [_expression(a.value) for a in call.args]
    raise NotStatic


def _text(value: object) -> str | None:
    if isinstance(value, Asset):
        return value.text
    if isinstance(value, list) and value and all(isinstance(v, Asset) for v in value):
        return "[" + ", ".join(v.text for v in value) + "]"
    return None


def keys(value: object) -> list[str] | None:
    """Every asset key of an ``outlets`` value (an Asset or a list of them), or None."""
    text = _text(value)
    if text is None:
        return None
    try:
        tree = _expression(cst.parse_expression(f"({text})"))
    except (cst.ParserSyntaxError, NotStatic, Watched, Aliased):
        return None
    return sorted(set(_leaves(tree)))


def _leaves(tree: tuple[str, list]) -> list[str]:
    kind, parts = tree
    return list(parts) if kind == "one" else [k for p in parts for k in _leaves(p)]


def signal_name(key: str) -> str:
    return PREFIX + key


def _wait(tree: tuple[str, list]) -> m.Node:
    kind, parts = tree
    if kind == "one":
        return m.WaitForSignal(signal_name(parts[0]))
    nodes = [_wait(p) for p in parts]
    node = nodes[-1]
    for other in reversed(nodes[:-1]):
        node = m.Join((other, node)) if kind == "all" else m.Race(other, node)
    return node


def _drain(key: str, index: int) -> m.Node:
    """Take the signals of ``key`` still pending, ending after a one-second wait with none."""
    name = f"asset_drain_{index}"
    taken = m.WaitForSignal(signal_name(key), 1, name=name)
    return m.Loop(taken, m.Sql(f"SELECT NOT ${name}.timed_out::boolean"))


def plan(value: object) -> base.Plan | None:
    """The plan of an asset schedule, or None when it cannot be read statically."""
    text = _text(value)
    if text is None:
        return None
    try:
        tree = _expression(cst.parse_expression(f"({text})"))
    except (cst.ParserSyntaxError, NotStatic):
        return None
    except Aliased as alias:
        return base.Plan(
            "manual",
            f"assets {text}",
            notes=[
                (
                    "PGD358",
                    f"the schedule waits for the asset alias {alias.name!r}: which assets it "
                    "stands for is decided at run time by the producing tasks "
                    "(outlet_events[AssetAlias(...)].add(Asset(...))), so it is not resolved "
                    "statically. When you know those assets, schedule on them "
                    "(schedule=[Asset(...)]: translated, each producer signals this workflow)",
                )
            ],
        )
    except Watched as watched:
        return base.Plan(
            "manual",
            f"assets {text}",
            notes=[
                (
                    "PGD355",
                    f"the schedule's asset {watched.key!r} is updated by an AssetWatcher "
                    f"({watched.source[:120]}): a trigger Airflow's triggerer polls (a file, "
                    "a message queue), which no workflow runs. Run that check yourself (a "
                    "sensor-like workflow, or the system that writes the file/message) and "
                    "emit the event with: " + emit_sql(watched.key),
                )
            ],
        )
    wait = _wait(tree)
    assets = sorted(set(_leaves(tree)))
    drains = [_drain(key, i) for i, key in enumerate(assets)]
    drain = drains[0] if len(drains) == 1 else m.Join(tuple(drains))

    def build(run: m.Node) -> m.Node:
        return m.Loop(m.Seq((wait, drain, run)))

    found = base.Plan("timetable", f"assets {text}", build=build, triggered=True)
    found.summary = (
        "a run once the expression's assets were updated (`|`: any of them; `&` or a list: "
        "all of them), signalled as "
        + ", ".join(f"df.wait_for_signal('{signal_name(a)}')" for a in assets)
    )
    found.dates_sql = base.run_dates("date_trunc('second', now())", None, False, "asset_triggered")
    found.rule = (
        "asset-triggered: a run's dates are the time it starts (Airflow 2 uses the time it "
        "was queued; Airflow 3 gives asset-triggered runs no logical date)"
    )
    found.notes.append(
        (
            "PGD278",
            "the DAG runs when the assets it is scheduled on were updated (Airflow's rule: a "
            "list needs all of them, updates before the run count once): it waits for a "
            "signal per asset ("
            + ", ".join(signal_name(a) for a in assets)
            + "), which each producing task's workflow sends when the task succeeds; the "
            "producers must run as the same role as this workflow (or one that sees its "
            "instances). A person can also mark an update: SELECT df.signal(<instance id>, "
            f"{literal(signal_name(assets[0]))})",
        )
    )
    return found


def _signal_parts(key: str, who: str) -> list[str]:
    """The lines of the statement that signals every waiting consumer of ``key`` once
    (a key may hold line breaks: join the lines, never split the text)."""
    name = literal(signal_name(key))
    return [
        f"SELECT count(df.signal(c.instance_id, {name}, {literal(who)})) AS asset_updates",
        f"FROM (SELECT DISTINCT n.instance_id, {name} AS asset_signal",
        "      FROM df.nodes n JOIN df.instances i ON i.id = n.instance_id",
        "      WHERE n.node_type = 'SIGNAL'",
        f"        AND n.query::jsonb ->> 'signal_name' = {name}",
        "        AND i.status NOT IN ('completed', 'failed', 'cancelled')) AS c",
        "WHERE NOT EXISTS (SELECT 1 FROM pgdurable.signals s",
        f"                  WHERE s.instance_id = c.instance_id AND s.name = {name})",
    ]


def producer_step(key: str, who: str) -> m.Sql:
    """The step after a producing task: signal each waiting consumer of ``key`` once."""
    return m.Sql("\n".join(_signal_parts(key, who)))


def emit_sql(key: str) -> str:
    """The one statement a person (or another system) runs to record an update of
    ``key``, as a producing task's step does: every waiting consumer, once. It works
    on the caller's instances (``df.signal``): run it as the consumers' role."""
    return " ".join(part.strip() for part in _signal_parts(key, "{}"))


def signalled(node: m.Node) -> set[str]:
    """Asset keys a workflow's producer steps signal: the string literal before
    ``AS asset_signal``, read with the SQL lexer (a key with a quote or a line break
    is dollar-quoted)."""
    found: set[str] = set()
    for n in m.walk(node):
        if isinstance(n, m.Sql) and "AS asset_signal" in n.query:
            try:
                tokens = [t for t in tokenize(n.query) if t.kind not in ("space", "comment")]
            except SqlLexError:
                continue
            for a, b, c in zip(tokens, tokens[1:], tokens[2:], strict=False):
                if (
                    a.kind == "string"
                    and b.text.upper() == "AS"
                    and c.text == "asset_signal"
                    and (a.value or "").startswith(PREFIX)
                ):
                    found.add((a.value or "").removeprefix(PREFIX))
    return found


def awaited(node: m.Node) -> set[str]:
    """Asset keys a workflow's schedule waits for."""
    return {
        n.signal_name.removeprefix(PREFIX)
        for n in m.walk(node)
        if isinstance(n, m.WaitForSignal) and n.signal_name.startswith(PREFIX)
    }
