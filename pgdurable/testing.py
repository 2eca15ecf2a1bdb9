"""pytest fixtures that give every test a real PostgreSQL.

Loaded with ``-p pgdurable.testing`` (see pyproject.toml). One throwaway
cluster is started per test session through the same ``EmbeddedCluster`` code
users run (fsync off, since it is discarded). A template database gets the
pgdurable schema once; each test then receives its own clone, so tests never
see each other's rows. A missing server binary fails the session with the
installation hint; it never skips.

The server is the one ``pgdurable.binaries`` finds: the highest installed, or
exactly the folder ``$PGDURABLE_PG_BINDIR`` names (CI runs the suite once per
PostgreSQL major version this way; the header of the run names the server).
Tests that need pg_cron ask for the ``pg_cron_cluster`` fixture, which marks
them ``pg_cron`` so a run on a server without pg_cron deselects them explicitly
(``-m "not pg_cron"``) and fails them with a clear message otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pgdurable import db, migrator
from pgdurable.binaries import find_server_binaries
from pgdurable.embedded import SUPERUSER, EmbeddedCluster
from pgdurable.errors import ServerBinariesNotFound

TEMPLATE_DATABASE = "pgdurable_template"
TEST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.01, what: str = ""
) -> T:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or repr(condition)}"
            )
        time.sleep(interval)


def sql_literal(text: str) -> str:
    """``text`` as a SQL string literal (quotes doubled), for SQL built as text in tests."""
    return "'" + text.replace("'", "''") + "'"


def spawn_worker(conninfo: str, *extra: str, log: Path | None = None) -> subprocess.Popen:
    """``pgdurable worker`` in a process of its own, so a test can SIGKILL,
    SIGSTOP or restart it; its stderr goes to ``log`` when given."""
    stderr = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "pgdurable", "worker", "--dsn", conninfo, *extra],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "PYTHONSAFEPATH": "1"},
        )
    finally:
        if log is not None:
            stderr.close()


def stop_process(process: subprocess.Popen) -> None:
    """SIGKILL a process the test started, if it still runs, and reap it."""
    if process.poll() is None:
        process.kill()
    process.wait(30)


@dataclass
class TestDatabase:
    """A database of the session cluster that belongs to one test."""

    __test__ = False  # not a test class, despite the name

    cluster: EmbeddedCluster
    name: str

    def conninfo(self, user: str = SUPERUSER) -> str:
        return self.cluster.conninfo(dbname=self.name, user=user)

    def connect(self, user: str = SUPERUSER, *, autocommit: bool = True) -> db.Connection:
        """A connection logged in as ``user`` (a real login, not SET ROLE)."""
        return db.connect(self.conninfo(user), autocommit=autocommit)

    def execute(
        self, query: str, params: Sequence[Any] | None = None, *, user: str = SUPERUSER
    ) -> list[tuple[Any, ...]]:
        """Run one statement as ``user`` in its own transaction; returns its rows (if any)."""
        with self.connect(user) as conn:
            cursor = conn.execute(query.encode() if params is None else query, params)
            return cursor.fetchall() if cursor.description else []

    def value(
        self, query: str, params: Sequence[Any] | None = None, *, user: str = SUPERUSER
    ) -> Any:
        """The first column of the first row."""
        rows = self.execute(query, params, user=user)
        return rows[0][0] if rows else None

    def create_role(self, name: str, *, login: bool = True, superuser: bool = False) -> str:
        """Create a cluster role (kept for the session; roles are cluster-wide)."""
        options = ("LOGIN" if login else "NOLOGIN") + (" SUPERUSER" if superuser else "")
        with self.connect() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone()
            if not exists:
                conn.execute(
                    db.sql.SQL("CREATE ROLE {} " + options).format(db.sql.Identifier(name))
                )
        return name


PG_CRON_MARKER = "pg_cron"
PG_CRON_FIXTURE = "pg_cron_cluster"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{PG_CRON_MARKER}: needs the pg_cron extension (set by the {PG_CRON_FIXTURE} fixture); "
        f'runs on servers without pg_cron deselect these with -m "not {PG_CRON_MARKER}"',
    )


def pytest_report_header(config: pytest.Config) -> str:
    try:
        binaries = find_server_binaries()
    except ServerBinariesNotFound as exc:
        return f"postgresql: none found ({exc.message})"
    source = "PGDURABLE_PG_BINDIR" if os.environ.get("PGDURABLE_PG_BINDIR") else "search"
    return f"postgresql: {binaries.version} from {binaries.bindir} ({source})"


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PG_CRON_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(PG_CRON_MARKER)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[EmbeddedCluster]:
    """A PostgreSQL cluster started for this test session and removed after it."""
    base = Path(tempfile.mkdtemp(prefix="pgdurable-test-"))
    # mkdtemp makes a 0700 folder; the server account (when we run as root) must enter it.
    base.chmod(0o755)
    cluster = EmbeddedCluster(base / "cluster", settings=TEST_SETTINGS)
    try:
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cron_cluster(pg_cluster: EmbeddedCluster) -> EmbeddedCluster:
    """The session cluster, which must have pg_cron preloaded (its ``pgdurable`` database
    is pg_cron's ``cron.database_name``). Fails, never skips, when pg_cron is missing."""
    with db.connection(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        available = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_cron'"
        ).fetchone()
        preloaded = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
    if not available or "pg_cron" not in preloaded:
        pytest.fail(
            f"this test needs pg_cron, which the PostgreSQL {version} server of this run does "
            f"not have (install postgresql-15-cron and use PostgreSQL 15), or deselect "
            f'pg_cron tests with -m "not {PG_CRON_MARKER}"',
            pytrace=False,
        )
    return pg_cluster


@pytest.fixture(scope="session")
def template_database(pg_cluster: EmbeddedCluster) -> str:
    """A database with the full pgdurable schema, cloned by ``database``."""
    db.create_database_if_missing(pg_cluster.conninfo("postgres"), TEMPLATE_DATABASE)
    with db.connection(pg_cluster.conninfo(TEMPLATE_DATABASE)) as conn:
        migrator.apply(conn)
    return TEMPLATE_DATABASE


def _clone(cluster: EmbeddedCluster, template: str) -> TestDatabase:
    name = f"test_{uuid.uuid4().hex[:12]}"
    db.create_database_if_missing(cluster.conninfo("postgres"), name, template=template)
    return TestDatabase(cluster, name)


def _drop(database: TestDatabase) -> None:
    with db.connection(database.cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(
            db.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                db.sql.Identifier(database.name)
            )
        )


@pytest.fixture
def database(pg_cluster: EmbeddedCluster, template_database: str) -> Iterator[TestDatabase]:
    """A fresh database with the pgdurable schema installed, dropped after the test."""
    clone = _clone(pg_cluster, template_database)
    yield clone
    _drop(clone)


@pytest.fixture
def empty_database(pg_cluster: EmbeddedCluster) -> Iterator[TestDatabase]:
    """A fresh database without the pgdurable schema, dropped after the test."""
    clone = _clone(pg_cluster, "template0")
    yield clone
    _drop(clone)
