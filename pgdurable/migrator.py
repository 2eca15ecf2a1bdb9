"""Applies ``schema/migrations/NNNN_description.sql`` in version order.

Each migration runs in its own transaction together with the row that records
it in ``pgdurable.schema_migrations``, so a failing migration leaves the
database as it was before that file. A transaction-scoped advisory lock
serialises concurrent installers; each re-reads the applied versions under the
lock, which makes ``install`` idempotent. Applied files are checksummed: a file
edited after it was applied is reported rather than silently ignored. With
``sql_out`` the same loop writes the statements instead of running them
(``pgdurable schema upgrade --sql``, alembic's offline mode).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import TextIO

from pgdurable.db import Connection, DatabaseError
from pgdurable.errors import MigrationFailed, SchemaError, SchemaNotInstalled
from pgdurable.schema import migrations_folder
from pgdurable.sqltext import literal

FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Arbitrary constant shared by every pgdurable installer: 'pgdm' in ASCII.
MIGRATION_LOCK_KEY = 0x7067646D


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@dataclass(frozen=True)
class SchemaStatus:
    installed_version: int | None
    latest_version: int
    pending: list[Migration] = field(default_factory=list)
    modified: list[int] = field(default_factory=list)  # applied, but the file changed since
    unknown: list[int] = field(default_factory=list)  # applied, but no such file here

    @property
    def up_to_date(self) -> bool:
        return self.installed_version is not None and not self.pending

    def as_dict(self) -> dict[str, object]:
        return {
            "installed": self.installed_version is not None,
            "installed_version": self.installed_version,
            "latest_version": self.latest_version,
            "up_to_date": self.up_to_date,
            "pending": [m.label for m in self.pending],
            "modified": self.modified,
            "unknown": self.unknown,
        }


def available_migrations() -> list[Migration]:
    """The bundled migrations, sorted; raises SchemaError on a misnamed or duplicate file."""
    found: dict[int, Migration] = {}
    for entry in migrations_folder().iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = FILE_NAME.match(entry.name)
        if not match:
            raise SchemaError(
                f"migration file {entry.name!r} is misnamed: use NNNN_description.sql "
                f"(four digits, lowercase words joined by underscores)"
            )
        version = int(match.group(1))
        if version in found:
            raise SchemaError(f"two migration files carry version {version:04d}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def _applied(conn: Connection) -> dict[int, str]:
    exists = conn.execute("SELECT to_regclass('pgdurable.schema_migrations')").fetchone()
    if exists is None or exists[0] is None:
        return {}
    rows = conn.execute("SELECT version, checksum FROM pgdurable.schema_migrations").fetchall()
    return {int(version): str(checksum) for version, checksum in rows}


def _status_from(applied: dict[int, str], migrations: list[Migration]) -> SchemaStatus:
    by_version = {m.version: m for m in migrations}
    return SchemaStatus(
        installed_version=max(applied) if applied else None,
        latest_version=migrations[-1].version if migrations else 0,
        pending=[m for m in migrations if m.version not in applied],
        modified=sorted(
            v
            for v, checksum in applied.items()
            if v in by_version and by_version[v].checksum != checksum
        ),
        unknown=sorted(v for v in applied if v not in by_version),
    )


def status(conn: Connection, migrations: list[Migration] | None = None) -> SchemaStatus:
    migrations = available_migrations() if migrations is None else migrations
    with conn.transaction():
        return _status_from(_applied(conn), migrations)


def require_current(conn: Connection) -> SchemaStatus:
    """Raise SchemaNotInstalled / SchemaOutOfDate unless every migration is applied."""
    from pgdurable.errors import SchemaOutOfDate

    current = status(conn)
    if current.installed_version is None:
        raise SchemaNotInstalled()
    if current.pending:
        raise SchemaOutOfDate(
            f"this database has schema version {current.installed_version}, pgdurable needs "
            f"{current.latest_version}: run `pgdurable schema upgrade`"
        )
    return current


LOCK_STATEMENT = f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"


def _record_statement(migration: Migration) -> str:
    return (
        "INSERT INTO pgdurable.schema_migrations (version, name, checksum) VALUES "
        f"({migration.version}, {literal(migration.name)}, {literal(migration.checksum)})"
    )


class _DatabaseSink:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def transaction(self) -> AbstractContextManager[object]:
        return self.conn.transaction()

    def execute(self, statement: str) -> None:
        self.conn.execute(statement.encode())  # bytes: one simple query, as psql sends it


class _PrintSink:
    """What ``_DatabaseSink`` would run, as a script (alembic's offline mode)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.out.write("BEGIN;\n")
        yield
        self.out.write("COMMIT;\n\n")

    def execute(self, statement: str) -> None:
        self.out.write(statement.rstrip().rstrip(";") + ";\n")


def apply(
    conn: Connection,
    migrations: Iterable[Migration] | None = None,
    *,
    progress: Callable[[Migration], None] = lambda migration: None,
    sql_out: TextIO | None = None,
) -> list[Migration]:
    """Apply every pending migration, one transaction each; returns those applied.

    ``conn`` must not be inside a transaction. On failure the failing migration
    is rolled back, earlier ones stay applied, and MigrationFailed names the file.
    With ``sql_out`` nothing is changed: the statements are written there instead
    (``conn`` only says which migrations are pending).
    """
    migrations = available_migrations() if migrations is None else list(migrations)
    sink = _DatabaseSink(conn) if sql_out is None else _PrintSink(sql_out)
    applied_before = _applied(conn) if sql_out is not None else None
    if applied_before is not None:
        _refuse_drift(_status_from(applied_before, migrations))
    applied_now: list[Migration] = []
    for migration in migrations:
        if applied_before is not None and migration.version in applied_before:
            continue
        try:
            with sink.transaction():
                sink.execute(LOCK_STATEMENT)
                if applied_before is None:  # re-read under the lock: another installer may
                    applied = _applied(conn)  # have applied it meanwhile
                    _refuse_drift(_status_from(applied, migrations))
                    if migration.version in applied:
                        continue
                progress(migration)
                sink.execute(f"-- {migration.label}.sql\n{migration.sql}")
                sink.execute(_record_statement(migration))
        except DatabaseError as exc:
            raise MigrationFailed(
                f"migration {migration.label}.sql failed and was rolled back, the database is "
                f"unchanged by it: {str(exc).strip()}"
            ) from exc
        applied_now.append(migration)
    return applied_now


def _refuse_drift(current: SchemaStatus) -> None:
    if current.modified:
        raise SchemaError(
            "migrations "
            + ", ".join(f"{v:04d}" for v in current.modified)
            + " changed after they were applied to this database; restore the original files "
            "(a released migration is never edited: add a new one instead)"
        )
    if current.unknown:
        raise SchemaError(
            "this database has migrations "
            + ", ".join(f"{v:04d}" for v in current.unknown)
            + " that this pgdurable does not know: it was installed by a newer pgdurable; "
            "upgrade pgdurable instead"
        )
