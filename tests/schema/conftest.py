"""Fixtures for the df schema tests: ordinary login roles with df usage
granted, and instances and nodes written straight into the catalog, stamped the
way the worker stamps them, so every inference case can be set up exactly (RLS
is not forced, so the superuser may insert)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest


@dataclass
class Node:
    """One df.nodes row; ``stamp`` is the ``<scope>::<gen>`` execution id."""

    id: str
    node_type: str
    query: str | None = None
    left: str | None = None
    right: str | None = None
    status: str = "pending"
    result: Any = None
    stamp: str | None = None
    name: str | None = None


@dataclass
class Instance:
    id: str
    nodes: list[Node]
    status: str = "pending"
    label: str | None = None
    owner: str = "postgres"
    created_at: str | None = None
    completed_at: str | None = None
    executions: list[dict[str, Any]] = field(default_factory=list)


def insert(database: Any, instance: Instance) -> str:
    """Write one instance, its nodes and its execution rows in one transaction."""
    root = instance.nodes[0].id
    with database.connect() as conn, conn.transaction():
        conn.execute(
            "INSERT INTO df.instances (id, label, root_node, status, submitted_by, created_at,"
            " completed_at) VALUES (%s, %s, %s, %s, %s::regrole,"
            " coalesce(%s::timestamptz, now()), %s::timestamptz)",
            [
                instance.id,
                instance.label,
                root,
                instance.status,
                instance.owner,
                instance.created_at,
                instance.completed_at,
            ],
        )
        for n in instance.nodes:
            conn.execute(
                "INSERT INTO df.nodes (id, instance_id, node_type, query, result_name, left_node,"
                " right_node, status, result, submitted_by, status_details)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::regrole, %s::jsonb)",
                [
                    n.id,
                    instance.id,
                    n.node_type,
                    n.query,
                    n.name,
                    n.left,
                    n.right,
                    n.status,
                    None if n.result is None else json.dumps(n.result),
                    instance.owner,
                    None if n.stamp is None else json.dumps({"execution_id": n.stamp}),
                ],
            )
        for row in instance.executions:
            conn.execute(
                "INSERT INTO pgdurable.executions (instance_id, execution_id, status, event_count,"
                " started_at, completed_at, output) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    instance.id,
                    row["execution_id"],
                    row["status"],
                    row.get("event_count", 0),
                    row.get("started_at", "2026-01-01T00:00:00Z"),
                    row.get("completed_at"),
                    row.get("output"),
                ],
            )
    return instance.id


def pad(*lines: str) -> str:
    """The explain tree layout rule, by hand: every line right-padded to the
    longest line plus four spaces, joined by newlines."""
    width = max(len(line) for line in lines) + 4
    return "\n".join(line.ljust(width) for line in lines)


@pytest.fixture
def catalog(database: Any) -> SimpleNamespace:
    """``Node``, ``Instance``, ``add(instance) -> id`` and ``pad(*lines)``."""
    return SimpleNamespace(
        Node=Node, Instance=Instance, pad=pad, add=lambda instance: insert(database, instance)
    )


@pytest.fixture
def alice(database):
    """A login role with df.grant_usage in this test's database."""
    database.create_role("alice")
    database.execute("SELECT df.grant_usage('alice')")
    return "alice"


@pytest.fixture
def bob(database):
    database.create_role("bob")
    database.execute("SELECT df.grant_usage('bob')")
    return "bob"
