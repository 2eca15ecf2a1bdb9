"""``--connections FILE``: where Airflow ``conn_id``s point.

YAML mapping conn_id -> either ``{database: NAME}`` (a database on the
worker's server), ``{database: null}`` / ``current`` (the database the
workflow file is applied to) or ``{url: https://...}`` (an HTTP base URL)::

    postgres_default: current
    warehouse: {database: analytics}
    api: {url: https://api.example.com}

``postgres_default`` maps to the current database unless the file says
otherwise. Reading the file is the only I/O here; lookups are pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pgdurable.translators import yamlguard

CURRENT = object()  # the database the workflow file is applied to


class ConnectionsError(ValueError):
    pass


@dataclass(frozen=True)
class Connections:
    databases: dict[str, str | None] = field(default_factory=lambda: {"postgres_default": None})
    urls: dict[str, str] = field(default_factory=dict)

    def database(self, conn_id: str) -> tuple[bool, str | None]:
        """(known, database name or None for the current database)."""
        if conn_id in self.databases:
            return True, self.databases[conn_id]
        return False, None

    def url(self, conn_id: str) -> str | None:
        return self.urls.get(conn_id)


def parse(text: str, origin: str = "connections") -> Connections:
    try:
        data = yamlguard.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConnectionsError(f"{origin}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConnectionsError(f"{origin}: expected a mapping of conn_id to a target")
    databases: dict[str, str | None] = {"postgres_default": None}
    urls: dict[str, str] = {}
    for conn_id, target in data.items():
        if target in (None, "current") or (
            isinstance(target, dict) and target.get("database", 0) is None
        ):
            databases[str(conn_id)] = None
        elif isinstance(target, dict) and isinstance(target.get("database"), str):
            databases[str(conn_id)] = target["database"]
        elif isinstance(target, dict) and isinstance(target.get("url"), str):
            urls[str(conn_id)] = target["url"].rstrip("/")
        else:
            raise ConnectionsError(
                f"{origin}: {conn_id}: expected `current`, {{database: NAME}} or {{url: URL}}"
            )
    return Connections(databases, urls)


def load(path: Path | None) -> Connections:
    if path is None:
        return Connections()
    return parse(path.read_text(encoding="utf-8"), str(path))
