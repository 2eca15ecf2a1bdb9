"""The old side of a queue job: one run of its action, as the queue's worker ran it.

* A ``psql`` command (Kubernetes CronJob, crontab line) runs the real
  ``psql`` program of the server's installation with the same parts in the
  same order: ``-c`` text is one query (one implicit transaction), a ``-f``
  script runs statement by statement (each its own transaction unless
  ``-1``), and ``ON_ERROR_STOP`` decides whether a failing statement stops
  the script. Using psql itself keeps these rules out of our code.
* A task whose body is code (Celery, Sidekiq, a script) is replayed as the
  SQL its ``--tasks`` mapping says it runs, sent as one query with ``$args``
  bound to the job's arguments (jsonb text), as the worker's code would.
* HTTP mappings and unmapped tasks cannot be replayed on a fixture database:
  verify says so instead of guessing.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pgdurable import db
from pgdurable.binaries import find_server_binaries
from pgdurable.errors import VerificationError
from pgdurable.translators.queue.jobs import Psql, QueueJob, Task
from pgdurable.translators.queue.tasks import TaskMap


@dataclass
class QueueRun:
    status: str  # succeeded | failed
    message: str


def role_of(job: QueueJob) -> str | None:
    if isinstance(job.action, Psql) and job.action.user:
        return job.action.user
    return job.run_as


def check_replayable(job: QueueJob, tasks: TaskMap) -> None:
    """Raise VerificationError when the job's action cannot run on a fixture database."""
    if isinstance(job.action, Task):
        mapping = tasks.lookup(job.action)
        if mapping is None or mapping.kind == "manual":
            raise VerificationError(
                f"job {job.name!r} ({job.ref}): the {job.action.kind} {job.action.name!r} is not "
                "mapped to SQL; pass the --tasks file the import used (verify replays the "
                "mapped SQL)"
            )
        if mapping.kind == "http":
            raise VerificationError(
                f"job {job.name!r} ({job.ref}): its task is mapped to HTTP; verify compares "
                "database state and does not call HTTP endpoints"
            )
    elif job.action is None:
        raise VerificationError(f"job {job.name!r} ({job.ref}) names nothing to run")
    elif any(part.missing for part in job.action.parts):
        raise VerificationError(f"job {job.name!r} ({job.ref}): a psql -f script is missing")


def _args_literal(args: object) -> str:
    return "'" + json.dumps(args).replace("'", "''") + "'"


def run_once(job: QueueJob, tasks: TaskMap, conninfo: str) -> QueueRun:
    """One run of the job's action against ``conninfo`` (the job's role and database)."""
    check_replayable(job, tasks)
    if isinstance(job.action, Task):
        mapping = tasks.lookup(job.action)
        assert mapping is not None and mapping.sql is not None
        text = mapping.sql.replace("$args", _args_literal(job.args))
        try:
            with db.connection(conninfo, autocommit=True) as conn:
                cursor = conn.execute(text.encode())
                while cursor.nextset():
                    pass
        except db.DatabaseError as exc:
            return QueueRun("failed", db.error_text(exc))
        return QueueRun("succeeded", "")
    assert isinstance(job.action, Psql)
    return _psql(job.action, conninfo)


def _psql(action: Psql, conninfo: str) -> QueueRun:
    params = db.conninfo_params(conninfo)
    program = find_server_binaries(None).program("psql")
    args = [program, "-X", "-q", "-v", f"ON_ERROR_STOP={1 if action.on_error_stop else 0}"]
    if action.single_transaction:
        args.append("-1")
    with tempfile.TemporaryDirectory(prefix="pgdurable-verify-psql-") as folder:
        for i, part in enumerate(action.parts):
            if part.file is None and not action.stdin_script:
                args += ["-c", part.sql or ""]
            else:
                # The script's text as the translator read it (psql variables already set).
                script = Path(folder) / f"part{i}.sql"
                script.write_text(part.sql or "", encoding="utf-8")
                args += ["-f", str(script)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(
            {
                "PGHOST": params.get("host", ""),
                "PGPORT": params.get("port", "5432"),
                "PGUSER": params.get("user", ""),
                "PGDATABASE": params.get("dbname", ""),
            }
        )
        if action.settings:
            # The server settings the source's environment made (PGOPTIONS, PGTZ ...),
            # as one PGOPTIONS: libpq escapes a space or a backslash with a backslash.
            def escaped(text: str) -> str:
                return text.replace("\\", "\\\\").replace(" ", "\\ ")

            env["PGOPTIONS"] = " ".join(
                f"-c {escaped(name)}={escaped(value)}" for name, value in action.settings
            )
        result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0 or "ERROR:" in result.stderr:
        return QueueRun("failed", result.stderr.strip())
    return QueueRun("succeeded", "")
