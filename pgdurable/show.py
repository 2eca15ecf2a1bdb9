"""``pgdurable show``: a workflow's graph as Mermaid, Graphviz dot or text.

The graph is a flat map (id -> type, children, status), in the form
``df.explain`` uses: a running or finished instance
(``pgdurable.explain_instance_nodes``, with each node's live or inferred
status) or a registered workflow (``pgdurable.workflows``, by ``source/name``
or a unique ``name``) come from the database, with ``df.explain``'s labels; a
generated file is read offline (its ``definition =>`` expression parsed by
``pgdurable.dsl``, never applied), so it needs no database, and each step is
labelled with what its source calls it (``task load``, ``job nightly``) from
the file's source comments.

The picture is a control-flow graph: steps in sequence are joined by arrows,
``df.join``/``df.race`` fork and meet again, ``df.if`` is a decision with
yes/no edges, a loop points back to its head. Retry, timeout and try wrapped
around one step become badges on that step (``[retry 4x]``, ``[timeout
1800s]``, ``[failure goes on]``), as does a ``df.sleep(0)`` that only stands
for "nothing" (an if's empty branch, a try's no-op fallback); around several
steps they head them (a TRY's fallback hangs off a dashed "on failure" edge).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgdurable import db, steplabels
from pgdurable import model as m
from pgdurable.dsl import DslError, parse
from pgdurable.errors import PgDurableError

FORMATS = ("mermaid", "dot", "text")
_INSTANCE_ID = re.compile(r"^[0-9a-f]{8}$")


@dataclass
class Graph:
    """Boxes and arrows. ``shape``: box, decision, fork, point, loop. ``node_ids``
    maps a box to the instance node it draws (the dashboard links them)."""

    title: str
    nodes: dict[str, tuple[str, str, str | None]] = field(default_factory=dict)
    edges: list[tuple[str, str, str | None, bool]] = field(default_factory=list)
    badges: dict[str, list[str]] = field(default_factory=dict)
    node_ids: dict[str, str] = field(default_factory=dict)

    def add(
        self, label: str, shape: str = "box", status: str | None = None, node_id: str | None = None
    ) -> str:
        key = f"n{len(self.nodes) + 1}"
        self.nodes[key] = (label, shape, status)
        if node_id is not None:
            self.node_ids[key] = node_id
        return key

    def badge(self, key: str, text: str) -> None:
        self.badges.setdefault(key, []).insert(0, text)  # the outermost wrapper first

    def text(self, key: str) -> str:
        label, _, status = self.nodes[key]
        shown = _short(label) + "".join(f" [{b}]" for b in self.badges.get(key, []))
        return shown + (f" [{status}]" if status else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "nodes": [
                {"id": k, "label": label, "shape": shape, "status": status,
                 "badges": self.badges.get(k, [])}
                for k, (label, shape, status) in self.nodes.items()
            ],
            "edges": [
                {"from": a, "to": b, "label": label, "dashed": dashed}
                for a, b, label, dashed in self.edges
            ],
        }  # fmt: skip

    def edge(self, a: str, b: str, label: str | None = None, dashed: bool = False) -> None:
        self.edges.append((a, b, label, dashed))


# -- loading the flat map ---------------------------------------------------------


def is_file(target: str) -> bool:
    """A generated file (drawn offline) rather than an instance or a workflow name."""
    path = Path(target)
    return path.suffix in (".sql", ".json") and path.is_file()


def _load(conn: db.Connection, target: str) -> tuple[str, str, dict[str, Any], str]:
    """(title, root id, flat nodes, text tree) of an instance or a registered workflow."""
    if _INSTANCE_ID.match(target):
        row = conn.execute(
            "SELECT i.root_node, coalesce(i.label, ''), i.status,"
            " pgdurable.explain_instance_nodes(i.id), df.explain(i.id)"
            " FROM df.instances i WHERE i.id = %s",
            [target],
        ).fetchone()
        if row is not None:
            title = f"instance {target} {row[1]} ({row[2]})".replace("  ", " ")
            named = steplabels.of_workflow(conn, steplabels.workflow_of_label(row[1]))
            nodes = _explained(conn, row[3] or {})
            return title, row[0], *_source_labels(row[0], nodes, named, row[4])
    source, _, name = target.rpartition("/")
    rows = conn.execute(
        "SELECT source, name, definition FROM pgdurable.workflows"
        " WHERE name = %s AND (%s = '' OR source = %s) ORDER BY source",
        [name, source, source],
    ).fetchall()
    if not rows:
        raise PgDurableError(
            f"no instance, registered workflow or generated file named {target!r}; "
            "list workflows with: SELECT source, name FROM pgdurable.workflows"
        )
    if len(rows) > 1:
        raise PgDurableError(
            f"{name!r} is registered by several sources ("
            + ", ".join(r[0] for r in rows)
            + "); give SOURCE/NAME"
        )
    graph, title = rows[0][2], f"{rows[0][0]}/{rows[0][1]}"
    row = conn.execute(
        "SELECT nodes, error, df.explain(%s) FROM pgdurable.explain_durofut_nodes("
        "%s::jsonb, 'root', 0, '{}'::jsonb, NULL)",
        [graph, graph],
    ).fetchone()
    if row is None or row[1]:
        raise PgDurableError(f"invalid workflow graph: {row[1] if row else 'empty'}")
    nodes = _explained(conn, row[0])
    named = steplabels.of_workflow(conn, title)
    return title, "root", *_source_labels("root", nodes, named, row[2])


def _explained(conn: db.Connection, nodes: dict[str, Any]) -> dict[str, Any]:
    """``nodes`` with df.explain's label of each."""
    labels = dict(
        conn.execute(
            "SELECT key, pgdurable.explain_label(value) FROM jsonb_each(%s::jsonb)",
            [json.dumps(nodes)],
        ).fetchall()
    )
    return {k: {**v, "label": labels.get(k)} for k, v in nodes.items()}


def _source_labels(
    root: str, nodes: dict[str, Any], named: dict[str, list[str | None]], tree: str
) -> tuple[dict[str, Any], str]:
    """``nodes`` with each step the source names (``pgdurable apply`` recorded
    them) labelled by that name, as a generated file is drawn offline, and the
    text tree: df.explain's, or with those names a plain tree of the labels
    (and live statuses)."""
    by_id = steplabels.assign(root, nodes, named)
    for node_id, what in by_id.items():
        name = nodes[node_id].get("name")
        nodes[node_id] = {**nodes[node_id], "label": what + (f" |=> '{name}'" if name else "")}
    return nodes, "\n".join(_tree(nodes, root)) if by_id else tree


def model_of_file(path: Path, text: str | None = None) -> m.Node:
    """The workflow of a generated .sql file (its ``definition =>``), read offline;
    ``text`` is the file's content when the caller has it (or it exists only in memory)."""
    if text is None:
        text = path.read_text(encoding="utf-8")
    match = re.search(r"^\s*definition =>\n(.*?)\n\);\n", text, re.S | re.M)
    if match is None:
        raise PgDurableError(f"{path} is not a file generated by pgdurable (no definition =>)")
    offset = text[: match.start(1)].count("\n")
    try:
        return parse(match.group(1))
    except DslError as exc:
        raise PgDurableError(f"{path}:{offset + exc.line}: {exc.reason}") from None


def _flatten(node: m.Node, nodes: dict[str, Any], path: str = "root") -> str:
    """Add ``node`` to the flat map as df.explain would list it; returns its id."""
    if isinstance(node, m.Seq):  # THEN nodes, left-nested as the encoding has them
        first = _flatten(node.steps[0], nodes, path + ".0")
        for i, step in enumerate(node.steps[1:], start=1):
            right = _flatten(step, nodes, f"{path}.{i}")
            key = path if i == len(node.steps) - 1 else f"{path}.then{i}"
            nodes[key] = {"type": "THEN", "left": first, "right": right, "label": "SEQUENCE"}
            first = key
        return first
    entry: dict[str, Any] = {"label": _label(node), "status": None}
    children: dict[str, m.Node | None] = {}
    extras: list[m.Node] = []
    if isinstance(node, m.Join):
        children = {"left": node.branches[0], "right": node.branches[1]}
        extras = list(node.branches[2:])
    elif isinstance(node, m.Race):
        children = {"left": node.left, "right": node.right}
    elif isinstance(node, m.If):
        children = {"left": node.then, "right": node.otherwise, "cond": node.condition}
    elif isinstance(node, m.IfRows):
        children = {"left": node.then, "right": node.otherwise}
    elif isinstance(node, m.Loop):
        children = {"left": node.body, "cond": node.condition}
    elif isinstance(node, (m.Retry, m.Timeout)):
        children = {"left": node.node}
    elif isinstance(node, m.Try):
        children = {"left": node.node, "right": node.on_failure}
    entry["type"] = _TYPES[type(node)]
    entry["zero_sleep"] = isinstance(node, m.Sleep) and node.seconds == 0
    for key, child in children.items():
        entry[key] = None if child is None else _flatten(child, nodes, f"{path}.{key}")
    entry["extras"] = [_flatten(c, nodes, f"{path}.x{i}") for i, c in enumerate(extras)]
    nodes[path] = entry
    return path


_TYPES: dict[type, str] = {
    m.Sql: "SQL", m.Join: "JOIN", m.Race: "RACE", m.If: "IF", m.IfRows: "IF",
    m.Loop: "LOOP", m.Break: "BREAK", m.Sleep: "SLEEP", m.WaitForSchedule: "WAIT_SCHEDULE",
    m.WaitForSignal: "SIGNAL", m.Http: "HTTP", m.Retry: "RETRY", m.Timeout: "TIMEOUT",
    m.Try: "TRY",
}  # fmt: skip


def _label(node: m.Node) -> str:
    """A node's label, as df.explain words it, but a step the source names by its name."""
    named = f" |=> '{node.name}'" if node.name else ""
    what = node.source.what if node.source is not None else None
    if what and not isinstance(node, (m.Loop, m.Join, m.Race, m.If, m.IfRows, m.Retry,
                                      m.Timeout, m.Try, m.WaitForSchedule)):  # fmt: skip
        return what + named
    if isinstance(node, m.Sql):
        return "SQL: " + _short(node.query, 50) + named
    if isinstance(node, m.Sleep):
        return f"SLEEP {node.seconds}s{named}"
    if isinstance(node, m.WaitForSchedule):
        return f"WAIT '{node.cron}'{named}"
    if isinstance(node, m.WaitForSignal):
        timeout = f" ({node.timeout_seconds}s)" if node.timeout_seconds is not None else ""
        return f"SIGNAL '{node.signal_name}'{timeout}{named}"
    if isinstance(node, m.Http):
        return f"HTTP {node.method.upper()} {_short(node.url, 40)}{named}"
    if isinstance(node, m.Loop):
        return ("LOOP (while)" if node.condition is not None else "LOOP (infinite)") + named
    if isinstance(node, m.Break):
        return "BREAK" + (f" '{_short(node.value, 20)}'" if node.value is not None else "") + named
    if isinstance(node, m.Join):
        return f"JOIN ({len(node.branches)}){named}"
    if isinstance(node, m.Retry):
        return _retry_badge(node) + named
    if isinstance(node, m.Timeout):
        return f"TIMEOUT {node.seconds}s{named}"
    return _TYPES[type(node)] + named


def _retry_badge(node: m.Retry) -> str:
    backoff = f", x{node.backoff}" if node.backoff != 1 else ""
    cap = f", max {node.max_delay_seconds}s" if node.max_delay_seconds is not None else ""
    return f"RETRY ({node.max_attempts} attempts, {node.delay_seconds}s{backoff}{cap})"


def _tree(nodes: dict[str, Any], key: str, depth: int = 0) -> list[str]:
    """A plain indented tree of the flat map (``--format text`` offline)."""
    node = nodes[key]
    status = f" [{node['status']}]" if node.get("status") else ""
    lines = ["  " * depth + (node.get("label") or node.get("type") or "?") + status]
    children = [node.get("cond"), node.get("left"), node.get("right")]
    for child in children + list(node.get("extras") or []):
        if child:
            lines += _tree(nodes, child, depth + 1)
    return lines


# -- the control-flow graph ------------------------------------------------------------


def build(conn: db.Connection | None, target: str) -> tuple[Graph, str]:
    """The graph of ``target`` and a text tree of it (df.explain's, for the database)."""
    if is_file(target):
        path = Path(target)
        if path.suffix == ".json":
            if conn is None:
                raise PgDurableError(f"{path}: drawing node JSON needs a database (--dsn)")
            title, root, nodes, tree = _load_json(conn, path)
        else:
            nodes = {}
            root = _flatten(model_of_file(path), nodes)
            title, tree = path.stem, "\n".join(_tree(nodes, root))
    else:
        if conn is None:
            raise PgDurableError(f"drawing {target!r} needs a database (--dsn)")
        title, root, nodes, tree = _load(conn, target)
    graph = Graph(title)
    _flow(graph, root, nodes)
    return graph, tree


def _load_json(conn: db.Connection, path: Path) -> tuple[str, str, dict[str, Any], str]:
    graph = path.read_text(encoding="utf-8")
    row = conn.execute(
        "SELECT nodes, error, df.explain(%s) FROM pgdurable.explain_durofut_nodes("
        "%s::jsonb, 'root', 0, '{}'::jsonb, NULL)",
        [graph, graph],
    ).fetchone()
    if row is None or row[1]:
        raise PgDurableError(f"invalid workflow graph: {row[1] if row else 'empty'}")
    labels = dict(
        conn.execute(
            "SELECT key, pgdurable.explain_label(value) FROM jsonb_each(%s::jsonb)",
            [json.dumps(row[0])],
        ).fetchall()
    )
    return path.stem, "root", {k: {**v, "label": labels.get(k)} for k, v in row[0].items()}, row[2]


def _nothing(nodes: dict[str, Any], key: str | None) -> bool:
    """A ``df.sleep(0)``: the translators' "do nothing" (an empty branch or fallback)."""
    node = nodes.get(key) if key else None
    if node is None or node.get("type") != "SLEEP":
        return False
    return bool(node.get("zero_sleep")) or (node.get("query") or "").strip() == "0"


def _leaf(g: Graph, entry: str, exit_: str) -> bool:
    return entry == exit_ and g.nodes[entry][1] == "box"


def _flow(g: Graph, node_id: str, nodes: dict[str, Any]) -> tuple[str, str]:
    """Add ``node_id``'s flow to ``g``; returns its (entry, exit) boxes."""
    node = nodes[node_id]
    kind, status = node.get("type"), node.get("status")
    label = node.get("label") or kind or "?"
    left, right, cond = node.get("left"), node.get("right"), node.get("cond")
    if kind == "THEN":
        e1, x1 = _flow(g, left, nodes)
        e2, x2 = _flow(g, right, nodes)
        g.edge(x1, e2)
        return e1, x2
    if kind in ("JOIN", "RACE"):
        fork = g.add(label, "fork", status, node_id)
        meet = g.add("all done" if kind == "JOIN" else "first wins", "point")
        for child in [left, right, *(node.get("extras") or [])]:
            entry, exit_ = _flow(g, child, nodes)
            g.edge(fork, entry)
            g.edge(exit_, meet)
        return fork, meet
    if kind == "IF":
        if cond:
            ce, cx = _flow(g, cond, nodes)
            decision = g.add("true?", "decision", status, node_id)
            g.edge(cx, decision)
        else:
            ce = decision = g.add(label, "decision", status, node_id)
        meet = g.add("", "point")
        for child, answer in ((left, "yes"), (right, "no")):
            if _nothing(nodes, child):  # an empty branch: straight on
                g.edge(decision, meet, answer)
                continue
            entry, exit_ = _flow(g, child, nodes)
            g.edge(decision, entry, answer)
            g.edge(exit_, meet)
        return ce, meet
    if kind == "LOOP":
        head = g.add(label, "loop", status, node_id)
        entry, exit_ = _flow(g, left, nodes)
        g.edge(head, entry)
        if cond:
            ce, cx = _flow(g, cond, nodes)
            g.edge(exit_, ce)
            g.edge(cx, head, "again while true", dashed=True)
            return head, cx
        g.edge(exit_, head, "again", dashed=True)
        return head, exit_
    if kind in ("RETRY", "TIMEOUT") and left:
        entry, exit_ = _flow(g, left, nodes)
        if _leaf(g, entry, exit_):  # one step: the wrapper is a badge on it
            g.badge(entry, _badge(label))
            return entry, exit_
        head = g.add(label, "box", status, node_id)
        g.edge(head, entry)
        return head, exit_
    if kind == "TRY" and left and right:
        entry, exit_ = _flow(g, left, nodes)
        if _nothing(nodes, right):  # a failure is recorded and the flow goes on
            if _leaf(g, entry, exit_):
                g.badge(entry, "failure goes on")
                return entry, exit_
            head = g.add("TRY (a failure goes on)", "box", status, node_id)
            g.edge(head, entry)
            return head, exit_
        head = g.add(label, "box", status, node_id)
        meet = g.add("", "point")
        g.edge(head, entry)
        g.edge(exit_, meet)
        fe, fx = _flow(g, right, nodes)
        g.edge(head, fe, "on failure", dashed=True)
        g.edge(fx, meet)
        return head, meet
    box = g.add(label, "box", status, node_id)
    return box, box


def _badge(label: str) -> str:
    """``RETRY (4 attempts, 300s, x2.0)`` -> ``retry 4x, 300s, x2.0``; ``TIMEOUT 30s`` ->
    ``timeout 30s`` (live details in brackets are kept)."""
    if label.startswith("RETRY ("):
        attempts, _, rest = label[len("RETRY (") :].partition(" attempts")
        return f"retry {attempts}x{rest.replace(')', '', 1)}"
    return label.replace("TIMEOUT", "timeout", 1)


# -- output formats ----------------------------------------------------------------

_MERMAID_SHAPES = {
    "box": '["{}"]',
    "decision": '{{"{}"}}',
    "fork": '[["{}"]]',
    "point": '(("{}"))',
    "loop": '(["{}"])',
}
_STATUS_COLOURS = {
    "completed": "#c8e6c9",
    "running": "#fff59d",
    "failed": "#ffcdd2",
    "skipped": "#eeeeee",
}


def _short(label: str, limit: int = 60) -> str:
    one_line = " ".join(label.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def mermaid(g: Graph) -> str:
    lines = ["flowchart TD", f"    %% {' '.join(g.title.split())}"]
    for key, (_, shape, _) in g.nodes.items():
        text = g.text(key).replace('"', "#quot;") or " "
        lines.append(f"    {key}{_MERMAID_SHAPES[shape].format(text)}")
    for a, b, label, dashed in g.edges:
        arrow = "-.->" if dashed else "-->"
        lines.append(f"    {a} {arrow}{f'|{label}|' if label else ''} {b}")
    for status, colour in _STATUS_COLOURS.items():
        keys = [k for k, (_, _, s) in g.nodes.items() if s == status]
        if keys:
            lines.append(f"    classDef {status} fill:{colour}")
            lines.append(f"    class {','.join(keys)} {status}")
    return "\n".join(lines)


_DOT_SHAPES = {
    "box": "box",
    "decision": "diamond",
    "fork": "box3d",
    "point": "circle",
    "loop": "ellipse",
}


def _dot_string(text: str) -> str:
    """A DOT quoted string: only ``"`` and ``\\`` are escaped, so non-ASCII text (the
    ellipsis of a cut label) stays itself instead of a ``\\u2026`` Graphviz prints as is."""
    one_line = " ".join(text.split())
    return '"' + one_line.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(g: Graph) -> str:
    lines = ["digraph workflow {", f"    label={_dot_string(g.title)};", "    node [fontsize=10];"]
    for key, (_, shape, status) in g.nodes.items():
        attrs = [f"label={_dot_string(g.text(key))}", f"shape={_DOT_SHAPES[shape]}"]
        if status in _STATUS_COLOURS:
            attrs += ["style=filled", f'fillcolor="{_STATUS_COLOURS[status]}"']
        lines.append(f"    {key} [{', '.join(attrs)}];")
    for a, b, label, dashed in g.edges:
        attrs = ([f"label={_dot_string(label)}"] if label else []) + (
            ["style=dashed"] if dashed else []
        )
        lines.append(f"    {a} -> {b}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    lines.append("}")
    return "\n".join(lines)


def draw(graph: Graph, tree: str, fmt: str) -> str:
    if fmt == "mermaid":
        return mermaid(graph)
    if fmt == "dot":
        return dot(graph)
    return tree if tree.startswith("Instance:") else f"{graph.title}\n{tree}"


def render(conn: db.Connection | None, target: str, fmt: str) -> str:
    """``target`` (instance id, ``[source/]name`` or file) drawn in ``fmt``; a
    generated .sql file needs no connection."""
    graph, tree = build(conn, target)
    return draw(graph, tree, fmt)
