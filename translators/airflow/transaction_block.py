"""SQL tasks whose statement PostgreSQL refuses inside a transaction block
(VACUUM, CREATE INDEX CONCURRENTLY, CREATE DATABASE, ALTER SYSTEM, ...)
while the operator does not set ``autocommit=True``.

The SQL hooks (PostgresHook, DbApiHook.run) open the connection with
autocommit off, so psycopg starts a transaction before the first statement and
PostgreSQL answers ``VACUUM cannot run inside a transaction block``: every
Airflow run of that task fails. The worker would run the statement (it retries
such a step outside a transaction), so translating it as working would hide a
difference in the other direction; the task is manual (PGD366) until the DAG
says what it means.
"""

from __future__ import annotations

from typing import Any

from pgdurable.sqltext import SqlLexError, needs_autocommit, split_statements


def refused(texts: list[str]) -> str | None:
    """The first statement of ``texts`` that cannot run in a transaction block, or None."""
    for text in texts:
        try:
            statements = split_statements(text)
        except SqlLexError:
            continue
        for statement in statements:
            if needs_autocommit(statement):
                return " ".join(statement.text.split())[:60]
    return None


def check(task: Any, ctx: Any, texts: list[str], autocommit: bool) -> bool:
    """Report PGD366 (and return True) when Airflow fails every run of ``task``."""
    if autocommit:
        return False
    statement = refused(texts)
    if statement is None:
        return False
    ctx.diag.add(
        "PGD366",
        f"task {task.task_id!r}: {statement!r} cannot run inside a transaction block and "
        f"{task.operator} runs its SQL in one (autocommit is off), so every Airflow run of "
        "this task fails; add autocommit=True to the task if the statement is meant to run "
        "(then it translates), or remove it",
        task.ref,
    )
    return True
