"""What the source calls each step: task ids and job names as node labels.

The generated files name each step in a source comment (``-- source:
dags/etl.py:12:5 (task ingest)``, kept by the offline parser as
``source.what``); the registry stores only the graph. ``pgdurable apply``
records them per workflow (``pgdurable.workflow_step_labels``, migration
0016) and ``pgdurable show`` and the dashboard put them on an instance's
nodes.

A leaf step is keyed by its node type and query, not by its position: a
workflow's runs (a tick's body started once, a queue job's run) are other
trees than the registered loop, with the same steps. Steps with the same key
are told apart by their order in a pre-order walk (left, right, condition,
extras), which the model and an instance's node tree share.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from pgdurable import db
from pgdurable import model as m
from pgdurable.errors import PgDurableError

# Instance labels that name a workflow: "source/name" (deploy_workflow),
# "prefix:source/name" (quickstart's one-off runs), "source/name#suffix" (queue
# runs, the dashboard's re-runs), "airflow:<dag_id>" (Airflow trigger functions).
_LABEL = re.compile(r"^(?:[A-Za-z0-9_.-]+:)?([A-Za-z0-9_.-]+)/([^#]+)(?:#.*)?$")
_AIRFLOW_TRIGGER = re.compile(r"^airflow:([^/#]+)$")
# The registry key a generated file deploys (its literal()-quoted arguments).
_DEPLOY = re.compile(
    r"deploy_workflow\(\s*source => '((?:[^']|'')*)',\s*workflow_name => '((?:[^']|'')*)'"
)


def workflow_of_label(label: str | None) -> str | None:
    """``source/name`` an instance label belongs to, or None."""
    trigger = _AIRFLOW_TRIGGER.match(label or "")
    if trigger:
        return f"airflow/{trigger.group(1)}"
    match = _LABEL.match(label or "")
    return f"{match.group(1)}/{match.group(2)}" if match else None


def key(node_type: str, query: str | None) -> str:
    return hashlib.md5(f"{node_type}\n{query or ''}".encode()).hexdigest()


def _leaf_type_and_query(node: m.Node) -> tuple[str, str | None]:
    encoded = json.loads(m.encode(node))
    return encoded["node_type"], encoded.get("query")


def of_model(root: m.Node) -> dict[str, list[str | None]]:
    """key -> labels (None where the source names no step) in pre-order. A name on
    a retry, timeout or try around one step (the translators put the task's
    source comment there) is that step's."""
    labels: dict[str, list[str | None]] = {}
    for node, what in _leaves(root, None):
        labels.setdefault(key(*_leaf_type_and_query(node)), []).append(what)
    return labels if any(w for names in labels.values() for w in names) else {}


def _what(node: m.Node) -> str | None:
    return node.source.what if node.source is not None else None


def _leaves(node: m.Node, inherited: str | None):
    """(leaf, its name) in the order df.start numbers an instance's nodes: a
    sequence is left-nested THEN nodes (the steps in order); then left, right,
    condition, extras."""
    if isinstance(node, (m.Retry, m.Timeout)):
        yield from _leaves(node.node, _what(node) or inherited)
        return
    if isinstance(node, m.Try):
        yield from _leaves(node.node, _what(node) or inherited)
        yield from _leaves(node.on_failure, None)
        return
    if isinstance(node, m.Seq):
        children = list(node.steps)
    elif isinstance(node, m.Join):
        children = list(node.branches)
    elif isinstance(node, m.Race):
        children = [node.left, node.right]
    elif isinstance(node, m.If):
        children = [node.then, node.otherwise, node.condition]
    elif isinstance(node, m.IfRows):
        children = [node.then, node.otherwise]
    elif isinstance(node, m.Loop):
        children = [node.body, node.condition]
    else:
        yield node, _what(node) or inherited
        return
    for child in children:
        if child is not None and not isinstance(child, str):
            yield from _leaves(child, None)


def deployed_by(text: str) -> tuple[str, str] | None:
    """The (source, name) a generated file's deploy_workflow call registers."""
    match = _DEPLOY.search(text)
    if match is None:
        return None
    return match.group(1).replace("''", "'"), match.group(2).replace("''", "'")


def record(conn: db.Connection, path: Path, text: str) -> bool:
    """Store the step labels of the workflow file just applied on ``conn`` (in
    its transaction); False when the file names no step or deploys nothing."""
    from pgdurable.show import model_of_file  # show draws with these labels

    deployed = deployed_by(text)
    if deployed is None or "definition =>" not in text or not _has_table(conn):
        return False
    try:
        labels = of_model(model_of_file(path, text))
    except (PgDurableError, ValueError):
        return False  # applied, but not readable offline: its steps keep df's labels
    if not labels:
        return False
    row = conn.execute(
        "INSERT INTO pgdurable.workflow_step_labels"
        " (source, name, run_as, definition_hash, labels)"
        " SELECT w.source, w.name, w.run_as, w.definition_hash, %s::jsonb"
        " FROM pgdurable.workflows w WHERE w.source = %s AND w.name = %s"
        " ON CONFLICT (source, name) DO UPDATE SET run_as = excluded.run_as,"
        " definition_hash = excluded.definition_hash, labels = excluded.labels"
        " RETURNING 1",
        [json.dumps(labels), *deployed],
    ).fetchone()
    return row is not None


def of_workflow(conn: db.Connection, workflow: str | None) -> dict[str, list[str | None]]:
    """The stored labels of ``source/name`` the role may read, or {}."""
    if not workflow:
        return {}
    source, _, name = workflow.partition("/")
    if not _has_table(conn):
        return {}
    row = conn.execute(
        "SELECT labels FROM pgdurable.workflow_step_labels WHERE source = %s AND name = %s",
        [source, name],
    ).fetchone()
    return row[0] if row else {}


def _has_table(conn: db.Connection) -> bool:
    """False on a schema before migration 0016."""
    found = conn.execute("SELECT to_regclass('pgdurable.workflow_step_labels')").fetchone()
    return found[0] is not None


def assign(root: str, nodes: dict[str, Any], labels: dict[str, list[str | None]]) -> dict[str, str]:
    """node id -> label for an instance's flat node map (``explain_instance_nodes``):
    the k-th leaf with a key gets the k-th label of that key. When the counts
    differ (the instance runs part of the graph), a step gets its label only
    when every step with that key is called the same."""
    if not labels:
        return {}
    leaves: dict[str, list[str]] = {}
    for node_id in preorder(root, nodes):
        node = nodes[node_id]
        if node.get("left") or node.get("right") or node.get("cond") or node.get("extras"):
            continue
        leaves.setdefault(key(node.get("type") or "", node.get("query")), []).append(node_id)
    out: dict[str, str] = {}
    for k, ids in leaves.items():
        names = labels.get(k) or []
        if len(names) == len(ids):
            out.update({i: n for i, n in zip(ids, names, strict=True) if n})
        elif names and len(set(names)) == 1 and names[0]:
            out.update({i: names[0] for i in ids})
    return out


def preorder(root: str, nodes: dict[str, Any]) -> list[str]:
    """An instance's flat node map (``explain_instance_nodes``) in pre-order:
    left, right, condition, extras."""
    order, stack = [], [root]
    while stack:
        node_id = stack.pop()
        node = nodes.get(node_id)
        if node is None:
            continue
        order.append(node_id)
        children = [node.get("left"), node.get("right"), node.get("cond")]
        children += node.get("extras") or []
        stack.extend(reversed([c for c in children if c]))
    return order
