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
        while pending:
            node_id, ancestors = pending.pop()
            node = self.nodes.get(node_id)
            if node is None:
                continue
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
    return (condition if isinstance(condition, str) else None), tuple(extras or ())


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
