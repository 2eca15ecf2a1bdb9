"""pgdurable: move pg_cron jobs, Airflow DAGs and queue-worker schedules onto
durable SQL workflows (pg_durable's DSL) that run inside PostgreSQL.

This module stays import-light on purpose: importing ``pgdurable.worker`` or
``pgdurable.schema`` must not pull in the database driver or the CLI.
"""

from __future__ import annotations

from pgdurable.errors import (
    DatabaseUnavailable,
    PgDurableError,
    SchemaError,
    SchemaNotInstalled,
    SchemaOutOfDate,
    ServerBinariesNotFound,
)

__version__ = "0.1.0"

__all__ = [
    "DatabaseUnavailable",
    "PgDurableError",
    "SchemaError",
    "SchemaNotInstalled",
    "SchemaOutOfDate",
    "ServerBinariesNotFound",
    "__version__",
]
