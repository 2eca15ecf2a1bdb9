"""Fixtures for verify tests: the server verify runs on, repo paths, leftovers check."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgdurable import db

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
DAGS = FIXTURES / "verify" / "dags"
SEED = FIXTURES / "seed"


def leftovers(admin: str) -> list[str]:
    with db.connection(admin, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'pgdurable\\_verify\\_%'"
        ).fetchall()
    return [r[0] for r in rows]


@pytest.fixture
def admin(pg_cluster) -> str:
    """A superuser login to the session cluster; checks verify dropped what it made."""
    conninfo = pg_cluster.conninfo("postgres")
    yield conninfo
    assert leftovers(conninfo) == [], "verify left throwaway databases behind"
