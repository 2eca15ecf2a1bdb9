"""Fixtures of the reliability suite (issue 11): a PostgreSQL cluster of a
test's own that can be crashed (``pg_ctl stop -m immediate``) and restarted
without disturbing the session cluster. Worker processes come from
``pgdurable.testing.spawn_worker``.

Budgets: every test here is sized for CI (the whole folder adds a few
minutes); ``--long`` selects the long variants (see ``long_run``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgdurable import db, migrator
from pgdurable.embedded import EmbeddedCluster
from pgdurable.testing import wait_for

# Like the session cluster, minus the settings that would make a server crash
# lose acknowledged commits: synchronous_commit stays on, so a step whose
# COMMIT was acknowledged survives ``-m immediate``. fsync stays off because
# only the server process dies here, never the operating system.
CRASHABLE_SETTINGS = {"fsync": "off", "max_connections": "300"}


class CrashableCluster:
    """A cluster of this test alone, with the schema installed in ``pgdurable``."""

    def __init__(self, home: Path) -> None:
        self.cluster = EmbeddedCluster(home, settings=CRASHABLE_SETTINGS)
        self.crashes = 0

    def start(self) -> None:
        self.cluster.start()

    def crash(self) -> None:
        """Stop the server the way a power cut would look to the data: no checkpoint."""
        self.cluster.stop(mode="immediate")
        self.crashes += 1

    def conninfo(self, user: str = "postgres") -> str:
        return self.cluster.conninfo(user=user)

    def connect(self, user: str = "postgres") -> db.Connection:
        return db.connect(self.conninfo(user), autocommit=True)

    def execute(self, query: str, params=None, *, user: str = "postgres") -> list[tuple]:
        with self.connect(user) as conn:
            cursor = conn.execute(query.encode() if params is None else query, params)
            return cursor.fetchall() if cursor.description else []

    def value(self, query: str, params=None, *, user: str = "postgres"):
        rows = self.execute(query, params, user=user)
        return rows[0][0] if rows else None


@pytest.fixture
def crashable_cluster() -> Iterator[CrashableCluster]:
    # A short path: the server's socket lives in the data directory.
    base = Path(tempfile.mkdtemp(prefix="pgd-chaos-"))
    base.chmod(0o755)  # the server account must enter it when we run as root
    crashable = CrashableCluster(base / "c")
    try:
        crashable.start()
        with db.connection(crashable.conninfo()) as conn:
            migrator.apply(conn)
        yield crashable
    finally:
        try:
            crashable.cluster.stop(mode="immediate")
        finally:
            shutil.rmtree(base, ignore_errors=True)


class Flows:
    """Starts and inspects instances of one role in the test's database
    (the worker tests' ``wf`` helper, reduced to what this suite needs)."""

    def __init__(self, database, user: str) -> None:
        self.database = database
        self.user = user

    @staticmethod
    def sql(query: str) -> dict:
        return {"node_type": "SQL", "query": query}

    @staticmethod
    def then(*nodes: dict) -> dict:
        result = nodes[0]
        for following in nodes[1:]:
            result = {"node_type": "THEN", "left_node": result, "right_node": following}
        return result

    def start(self, graph: dict | str, *, user: str | None = None) -> str:
        text = graph if isinstance(graph, str) else json.dumps(graph)
        return self.database.value("SELECT df.start(%s)", [text], user=user or self.user)

    def status(self, instance_id: str) -> str:
        return self.database.value("SELECT status FROM df.instances WHERE id = %s", [instance_id])

    def result(self, instance_id: str):
        return self.database.value(
            "SELECT n.result FROM df.instances i JOIN df.nodes n"
            " ON n.instance_id = i.id AND n.id = i.root_node"
            " WHERE i.id = %s AND n.status = 'completed'",
            [instance_id],
        )

    def output(self, instance_id: str) -> str | None:
        return self.database.value(
            "SELECT n.result #>> '{}' FROM df.instances i JOIN df.nodes n"
            " ON n.instance_id = i.id AND n.id = i.root_node WHERE i.id = %s",
            [instance_id],
        )

    def wait_status(self, instance_id: str, status: str, timeout: float = 20) -> None:
        terminal = ("completed", "failed", "cancelled")
        wait_for(
            lambda: self.status(instance_id) in terminal,
            timeout=timeout,
            what=f"{instance_id} to finish",
        )
        assert self.status(instance_id) == status, self.output(instance_id)


@pytest.fixture
def alice(database) -> str:
    database.create_role("alice")
    database.execute("SELECT df.grant_usage('alice')")
    return "alice"


@pytest.fixture
def wf(database, alice) -> Flows:
    return Flows(database, alice)
