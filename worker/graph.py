"""The frozen workflow graph of one instance, as the worker executes it.

Built once per claim from ``pgdurable.load_v1`` (df.nodes plus the instance's
label, role and vars snapshot). Node ``query`` text is never modified;
substitution works on per-step copies (SPEC B §5). Extra links that
``df.start`` keeps in ``query`` (IF/LOOP ``condition_node``, JOIN
``extra_nodes``) are decoded here so executors see plain child ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Node:
    id: str
    type: str
    query: str | None
    result_name: str | None
    left: str | None
    right: str | None
    condition: str | None = None  # IF and conditional LOOP
    extras: tuple[str, ...] = ()  # JOIN branches after left and right

    @property
    def config(self) -> dict[str, Any]:
        """The query of a config node (SIGNAL, IF, BREAK…) as a JSON object."""
        try:
            value = json.loads(self.query or "{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


@dataclass
class Instance:
    id: str
    label: str | None
    root: str
    status: str
    role: str | None
    database: str | None
    control_database: str
    vars: dict[str, str]
    nodes: dict[str, Node]
    # Stored stamps (status, execution id) so replays skip redundant writes.
    stamps: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    # Journal rows keyed (scope, gen, node) -> row dict.
    journal: dict[tuple[str, int, str], dict[str, Any]] = field(default_factory=dict)
    role_is_superuser: bool = False
    superuser_allowed: bool = False

    def final_steps(self) -> dict[str, tuple[str, ...]]:
        """SQL leaves after which nothing runs, each with its ancestors.

        The root is in final position; so are the right child of a THEN and
        both branches of an IF in final position. Such a node's result is the
        root's, so the step that completes it can finish the instance too.
        Loops, JOIN/RACE and the extension nodes end the walk: what follows
        their children is decided at run time.
        """
        finals: dict[str, tuple[str, ...]] = {}
        pending = [(self.root, ())]
        seen: set[str] = set()  # a forged graph can loop (see graph_problem)
        while pending:
            node_id, ancestors = pending.pop()
            node = self.nodes.get(node_id)
            if node is None or node_id in seen:
                continue
            seen.add(node_id)
            if node.type == "SQL":
                finals[node_id] = ancestors
            elif node.type == "THEN" and node.right:
                pending.append((node.right, (*ancestors, node_id)))
            elif node.type == "IF":
                branches = [b for b in (node.left, node.right) if b]
                pending += [(branch, (*ancestors, node_id)) for branch in branches]
        return finals


def _links(node_type: str, query: str | None) -> tuple[str | None, tuple[str, ...]]:
    if node_type not in ("IF", "LOOP", "JOIN") or not query:
        return None, ()
    try:
        config = json.loads(query)
    except ValueError:
        return None, ()
    if not isinstance(config, dict):
        return None, ()
    extras = config.get("extra_nodes") if node_type == "JOIN" else None
    condition = config.get("condition_node") if node_type != "JOIN" else None
    if extras is None:
        extras = []
    elif not isinstance(extras, list):
        extras = [extras]  # not df.start's shape: graph_problem reports it
    return (condition if isinstance(condition, str) else None), tuple(extras)


def load_instance(data: dict[str, Any]) -> Instance:
    """An ``Instance`` from the JSON document ``pgdurable.load_v1`` returns."""
    nodes: dict[str, Node] = {}
    stamps: dict[str, tuple[str, str | None]] = {}
    for row in data["nodes"] or []:
        condition, extras = _links(row["type"], row["query"])
        nodes[row["id"]] = Node(
            id=row["id"],
            type=row["type"],
            query=row["query"],
            result_name=row["name"],
            left=row["left"],
            right=row["right"],
            condition=condition,
            extras=extras,
        )
        stamps[row["id"]] = (row["status"], row["exec"])
    journal = {(j["scope"], j["gen"], j["node"]): j for j in data["journal"] or []}
    return Instance(
        id=data["id"],
        label=data["label"],
        root=data["root"],
        status=data["status"],
        role=data["role"],
        database=data["database"],
        control_database=data["control_database"],
        vars={k: v if isinstance(v, str) else json.dumps(v) for k, v in data["vars"].items()},
        nodes=nodes,
        stamps=stamps,
        journal=journal,
        role_is_superuser=data["role_super"],
        superuser_allowed=data["super_allowed"],
    )


# Bounds of a graph df.start accepts (0007's flatten_graph): beyond them the
# rows were not written by df.start, and the worker refuses to walk them.
MAX_NODES = 10000
MAX_DEPTH = 257  # 256 levels of nesting below the root
TWO_CHILDREN = frozenset({"THEN", "IF", "JOIN", "RACE", "TRY"})
ONE_CHILD = frozenset({"LOOP", "RETRY", "TIMEOUT"})


def graph_problem(instance: Instance) -> str | None:
    """What makes the instance's graph one df.start could not have written, or
    None. Rows a role inserted into df.nodes directly can name children that
    do not exist (or belong to another instance), share a child, loop back to
    an ancestor or exceed the bounds; the interpreter would spin or recurse
    on them, so such an instance fails before anything runs.

    The graph must be a tree: every node reached from the root exactly once."""
    if len(instance.nodes) > MAX_NODES:
        return f"invalid graph: {len(instance.nodes)} nodes, more than the maximum of {MAX_NODES}"
    if instance.root not in instance.nodes:
        return f"invalid graph: root node {instance.root} does not exist"
    seen = {instance.root}
    pending = [(instance.root, 1)]
    while pending:
        node_id, depth = pending.pop()
        if depth > MAX_DEPTH:
            return f"invalid graph: deeper than {MAX_DEPTH} levels at node {node_id}"
        node = instance.nodes[node_id]
        if node.type in TWO_CHILDREN and not (node.left and node.right):
            return f"invalid graph: {node.type} node {node_id} needs two children"
        if node.type in ONE_CHILD and not node.left:
            return f"invalid graph: {node.type} node {node_id} needs a child"
        for child in (node.left, node.right, node.condition, *node.extras):
            if child is None:
                continue
            if not isinstance(child, str) or child not in instance.nodes:
                return f"invalid graph: node {node_id} names child {child!r}, not in this instance"
            if child in seen:
                return f"invalid graph: node {child} is reached twice (a cycle or a shared child)"
            seen.add(child)
            pending.append((child, depth + 1))
    return None
