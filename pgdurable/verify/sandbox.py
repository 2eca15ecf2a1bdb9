"""Throwaway databases for one verification: the fixture template and its clones.

A fixture (a ``.sql`` file, or a folder of them run in name order) is built
once into a template database; every side of every replay gets its own
``CREATE DATABASE ... TEMPLATE`` clone, so the old job and the new workflow
start from byte-identical data and never see each other's writes.

Invariant: everything a ``Sandbox`` creates (databases, and roles it had to
create) is dropped by ``close()``, which ``with`` guarantees even when the
replay fails half-way. Nothing else on the server is touched.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from pgdurable import db
from pgdurable.errors import VerificationError

FIXTURES_FOLDER = Path("fixtures")


def fixture_files(fixture: Path) -> list[Path]:
    """The SQL files of a fixture, in the order they run. A bare name that does
    not exist is also looked up under ``fixtures/`` (and ``fixtures/seed/``)."""
    candidates = [fixture, FIXTURES_FOLDER / fixture, FIXTURES_FOLDER / "seed" / fixture]
    if fixture.suffix != ".sql":
        candidates += [c.with_name(c.name + ".sql") for c in candidates]
    found = next((c for c in candidates if c.exists()), None)
    if found is None:
        raise VerificationError(
            f"fixture {fixture} not found (looked for {', '.join(str(c) for c in candidates)}): "
            "pass a .sql file or a folder of .sql files (schema and seed data)"
        )
    if found.is_dir():
        files = sorted(p for p in found.rglob("*.sql") if p.is_file())
        if not files:
            raise VerificationError(f"fixture folder {found} holds no .sql file")
        return files
    return [found]


def _line_of(text: str, position: int | None) -> int | None:
    if not position:
        return None
    return text.count("\n", 0, position - 1) + 1


class Sandbox:
    """The databases of one verification on one server (``admin`` is a superuser login)."""

    def __init__(self, admin_conninfo: str) -> None:
        self.admin = admin_conninfo
        self.prefix = f"pgdurable_verify_{uuid.uuid4().hex[:10]}"
        self.databases: list[str] = []
        self.roles: list[str] = []

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def conninfo(self, dbname: str, user: str | None = None) -> str:
        return db.conninfo_with(self.admin, dbname=dbname, user=user)

    def _admin(self):
        return db.connection(self.conninfo("postgres"), autocommit=True)

    def ensure_role(self, name: str | None) -> None:
        """Create the login role a job runs as when the server does not have it
        (roles are cluster-wide; the ones created here are dropped at close)."""
        if not name:
            return
        with self._admin() as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
                return
            conn.execute(db.sql.SQL("CREATE ROLE {} LOGIN").format(db.sql.Identifier(name)))
        self.roles.append(name)

    def build_template(self, fixture: Path) -> str:
        """Create the template database from the fixture's SQL files."""
        files = fixture_files(fixture)
        name = self._create(f"{self.prefix}_tpl", None)
        with db.connection(self.conninfo(name), autocommit=True) as conn:
            for path in files:
                text = path.read_text(encoding="utf-8")
                try:
                    conn.execute(text.encode())  # bytes: one simple query, like psql -c
                except db.DatabaseError as exc:
                    position = getattr(getattr(exc, "diag", None), "statement_position", None)
                    line = _line_of(text, int(position) if position else None)
                    where = f"{path}:{line}" if line else str(path)
                    raise VerificationError(
                        f"fixture {where}: {db.error_text(exc)}; fix the fixture's SQL "
                        "(it runs as a superuser in a new, empty database)"
                    ) from exc
        return name

    def clone(self, template: str, side: str) -> str:
        return self._create(f"{self.prefix}_{re.sub(r'[^a-z0-9_]', '_', side.lower())}", template)

    def _create(self, name: str, template: str | None) -> str:
        name = name[:63]
        if name in self.databases:
            raise VerificationError(f"internal: database {name} created twice")
        db.create_database_if_missing(self.conninfo("postgres"), name, template=template)
        self.databases.append(name)
        return name

    def drop(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(
                db.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    db.sql.Identifier(name)
                )
            )
        if name in self.databases:
            self.databases.remove(name)

    def close(self) -> None:
        """Drop every database and role this sandbox created (best effort for roles:
        a role that still owns something elsewhere is left, never forced)."""
        for name in reversed(list(self.databases)):
            try:
                self.drop(name)
            except db.DatabaseError:
                pass
            except Exception:  # the server may be gone (chaos); nothing left to drop then
                break
        for role in self.roles:
            try:
                with self._admin() as conn:
                    conn.execute(
                        db.sql.SQL("DROP ROLE IF EXISTS {}").format(db.sql.Identifier(role))
                    )
            except Exception:
                pass
        self.roles = []
