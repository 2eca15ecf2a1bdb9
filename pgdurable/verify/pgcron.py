"""The old side of a pg_cron job: run its command the way pg_cron's launcher does.

pg_cron (libpq mode, SOURCES Part 1 §1.3) opens a new connection to the
job's database as the job's user and sends the whole command with
``PQsendQuery``: the simple query protocol, so a multi-statement command is
one implicit transaction (a failing statement rolls back the earlier ones), an
explicit ``COMMIT`` inside it commits what came before, and ``VACUUM`` works
only alone. A failed run is recorded and the schedule goes on. Here the
"job's database" is this side's clone of the fixture.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgdurable import db


@dataclass
class CronRun:
    status: str  # succeeded | failed (cron.job_run_details.status)
    return_message: str


def run_command(conninfo_as_user: str, command: str) -> CronRun:
    """One run of a pg_cron job's command (a fresh connection, like the launcher's)."""
    try:
        # autocommit: the server, not the driver, wraps the string in its implicit
        # transaction, exactly as for PQsendQuery; bytes keep psycopg on the simple protocol.
        with db.connection(conninfo_as_user, autocommit=True) as conn:
            cursor = conn.execute(command.encode())
            message = cursor.statusmessage or ""
            while cursor.nextset():
                message = cursor.statusmessage or message
    except db.DatabaseError as exc:
        return CronRun("failed", f"ERROR:  {db.error_text(exc)}")
    return CronRun("succeeded", message)
