"""Deciding which PostgreSQL to talk to.

Order: ``--dsn``, ``$PGDURABLE_DSN``, ``$DATABASE_URL``, libpq's own ``PG*``
variables when ``PGHOST`` or ``PGDATABASE`` is set, otherwise the embedded
cluster (started on demand). Every command reports which one it used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

SOURCE_OPTION = "--dsn"
SOURCE_PGDURABLE_DSN = "PGDURABLE_DSN"
SOURCE_DATABASE_URL = "DATABASE_URL"
SOURCE_LIBPQ_ENV = "libpq environment (PG* variables)"
SOURCE_EMBEDDED = "embedded"


@dataclass(frozen=True)
class ConnectionTarget:
    """A connection string (empty means 'libpq decides from PG*') and where it came from."""

    conninfo: str
    source: str

    def describe(self) -> str:
        from pgdurable.db import describe_conninfo

        shown = describe_conninfo(self.conninfo)
        if self.source == SOURCE_LIBPQ_ENV:
            keys = sorted(k for k in os.environ if k.startswith("PG") and k != "PGPASSWORD")
            shown = " ".join(f"{k}={os.environ[k]}" for k in keys)
        return f"{self.source}: {shown}"

    def as_dict(self) -> dict[str, str]:
        return {"source": self.source, "target": self.describe().split(": ", 1)[1]}


def choose_source(dsn: str | None, env: Mapping[str, str]) -> tuple[str, str | None]:
    """Which source wins, and its connection string (None for the embedded cluster)."""
    if dsn:
        return SOURCE_OPTION, dsn
    if env.get("PGDURABLE_DSN"):
        return SOURCE_PGDURABLE_DSN, env["PGDURABLE_DSN"]
    if env.get("DATABASE_URL"):
        return SOURCE_DATABASE_URL, env["DATABASE_URL"]
    if env.get("PGHOST") or env.get("PGDATABASE"):
        return SOURCE_LIBPQ_ENV, ""
    return SOURCE_EMBEDDED, None


def resolve(
    dsn: str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    progress: Callable[[str], None] = lambda message: None,
) -> ConnectionTarget:
    """The target to connect to; starts the embedded cluster when that is the answer."""
    source, conninfo = choose_source(dsn, os.environ if env is None else env)
    if conninfo is not None:
        return ConnectionTarget(conninfo, source)
    from pgdurable.embedded import EmbeddedCluster, default_home

    cluster = EmbeddedCluster(default_home(env=env))
    cluster.start(progress=progress)
    return ConnectionTarget(cluster.conninfo(), SOURCE_EMBEDDED)
