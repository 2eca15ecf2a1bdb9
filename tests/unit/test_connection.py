"""Connection resolution order: --dsn, PGDURABLE_DSN, DATABASE_URL, PG*, embedded."""

from __future__ import annotations

import pytest

from pgdurable.connection import (
    SOURCE_DATABASE_URL,
    SOURCE_EMBEDDED,
    SOURCE_LIBPQ_ENV,
    SOURCE_OPTION,
    SOURCE_PGDURABLE_DSN,
    choose_source,
    resolve,
)

ALL = {
    "PGDURABLE_DSN": "dbname=from_pgdurable_dsn",
    "DATABASE_URL": "postgresql:///from_database_url",
    "PGHOST": "/run/postgresql",
    "PGDATABASE": "from_pgdatabase",
}


@pytest.mark.parametrize(
    ("dsn", "env", "expected"),
    [
        ("dbname=from_option", ALL, (SOURCE_OPTION, "dbname=from_option")),
        (None, ALL, (SOURCE_PGDURABLE_DSN, "dbname=from_pgdurable_dsn")),
        (
            None,
            {k: v for k, v in ALL.items() if k != "PGDURABLE_DSN"},
            (SOURCE_DATABASE_URL, "postgresql:///from_database_url"),
        ),
        (None, {"PGHOST": "/run/postgresql", "PGUSER": "x"}, (SOURCE_LIBPQ_ENV, "")),
        (None, {"PGDATABASE": "only_db"}, (SOURCE_LIBPQ_ENV, "")),
        # PGUSER or PGPORT alone do not pick a server: the embedded cluster is used.
        (None, {"PGUSER": "x", "PGPORT": "5433"}, (SOURCE_EMBEDDED, None)),
        (None, {}, (SOURCE_EMBEDDED, None)),
        # Empty values count as unset.
        ("", {"PGDURABLE_DSN": "", "DATABASE_URL": ""}, (SOURCE_EMBEDDED, None)),
    ],
)
def test_resolution_order(dsn, env, expected):
    assert choose_source(dsn, env) == expected


def test_resolve_reports_source_and_hides_password():
    target = resolve(None, {"DATABASE_URL": "postgresql://app:s3cret@db.example/prod"})
    assert target.source == SOURCE_DATABASE_URL
    described = target.describe()
    assert described.startswith("DATABASE_URL: ")
    assert "s3cret" not in described
    assert "db.example" in described
