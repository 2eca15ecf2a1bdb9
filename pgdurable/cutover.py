"""``pgdurable cutover`` / ``rollback`` / ``retire``: move a folder's jobs from their
source system to the workflows, and back.

``cutover`` runs the folder's workflow files and its ``cutover.sql`` in ONE
transaction, so a pg_cron job stops in the very commit that starts its workflow:
no tick runs in both systems, and none in neither as long as a worker takes the
new instance before the next tick (each workflow waits for the first tick after
the worker reaches its wait, which is why a live worker is required). ``rollback``
runs ``rollback.sql`` in one transaction: the jobs come back as they were
imported, then the workflows are retired. As with ``apply`` (alembic's offline
mode), one function serves both execution and ``--sql``: only the sink differs,
so what is printed is exactly what would run.

Sources outside the database (Kubernetes, Celery beat, Sidekiq, crontab,
Airflow) cannot share that transaction: their ``cutover.sql`` lines are comments
starting with ``OUTSIDE`` saying exactly what to run, which ``outside_steps``
returns for the command to print after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from pgdurable import db
from pgdurable.apply import apply_file, files_to_apply
from pgdurable.errors import ApplyFailed, PgDurableError
from pgdurable.output import CUTOVER, NOT_WORKFLOWS, ROLLBACK
from pgdurable.sqltext import SqlLexError, tokenize
from pgdurable.translators.base import OUTSIDE

# A worker that refreshed its liveness row this recently counts as running
# (it refreshes every 5 s).
LIVE_WORKER_SECONDS = 15


@dataclass(frozen=True)
class Step:
    path: Path
    text: str


def _read(path: Path) -> Step:
    return Step(path, path.read_text(encoding="utf-8"))


def _control_file(directory: Path, name: str) -> Path:
    path = directory / name
    if not path.is_file():
        raise ApplyFailed(
            f"{directory} has no {name}: it is written by `pgdurable import-*` next to the "
            "workflow files; import again"
        )
    return path


def cutover_steps(directory: Path) -> list[Step]:
    """The workflow files in name order, then ``cutover.sql``."""
    control = _control_file(directory, CUTOVER)
    return [_read(p) for p in files_to_apply(directory)] + [_read(control)]


def rollback_steps(directory: Path) -> list[Step]:
    if not directory.is_dir():
        raise ApplyFailed(f"{directory} is not a directory of generated files: run an import first")
    return [_read(_control_file(directory, ROLLBACK))]


def outside_steps(steps: list[Step]) -> list[str]:
    """What a person must do outside the database, in file order."""
    return [
        line[len(OUTSIDE) :].strip()
        for step in steps
        for line in step.text.splitlines()
        if line.startswith(OUTSIDE)
    ]


def _uses_pg_cron(steps: list[Step]) -> bool:
    """Whether the folder's own cutover/rollback statements call pg_cron (a job's
    command inside a workflow file may mention cron.* too: that is not a call)."""
    return any(
        line.lstrip().upper().startswith("SELECT CRON.")
        for step in steps
        if step.path.name in NOT_WORKFLOWS
        for line in step.text.splitlines()
    )


class Sink(Protocol):
    def run(self, steps: list[Step]) -> list[tuple[Path, str | None]]: ...


@dataclass
class DatabaseSink:
    """Runs every step in one transaction; refuses to cut over with no live worker."""

    conn: db.Connection
    require_worker: bool = False

    def run(self, steps: list[Step]) -> list[tuple[Path, str | None]]:
        with self.conn.transaction():
            self._check(steps)
            return [(s.path, apply_file(self.conn, s.path, s.text)) for s in steps]

    def _check(self, steps: list[Step]) -> None:
        here = self.conn.execute("SELECT current_database()").fetchone()[0]
        if (
            _uses_pg_cron(steps)
            and self.conn.execute("SELECT to_regclass('cron.job')").fetchone()[0] is None
        ):
            raise ApplyFailed(
                f"database {here} has no cron.job: the pg_cron jobs can stop in the commit "
                "that starts their workflows only where both live. Install the pgdurable "
                "schema in the database named by cron.database_name (`pgdurable schema "
                "install --dsn ...`) and cut over there; the workflows still run their steps "
                "in each job's own database"
            )
        if self.require_worker:
            live = self.conn.execute(
                "SELECT count(*) FROM df._worker_epoch"
                " WHERE last_seen_at > now() - make_interval(secs => %s)",
                [LIVE_WORKER_SECONDS],
            ).fetchone()[0]
            if not live:
                raise ApplyFailed(
                    f"no worker is running against database {here}: a workflow waits for "
                    "the first tick after a worker reaches it, so starting it now could "
                    "leave a tick to neither system. Start `pgdurable worker` first (or "
                    "pass --without-worker if missing a tick is acceptable)"
                )


@dataclass
class PrintSink:
    """Prints exactly what ``DatabaseSink`` would execute."""

    out: TextIO

    def run(self, steps: list[Step]) -> list[tuple[Path, str | None]]:
        self.out.write("BEGIN;\n")
        for s in steps:
            self.out.write(f"-- {s.path}\n{s.text.rstrip()}\n\n")
        self.out.write("COMMIT;\n")
        return [(s.path, None) for s in steps]


# -- retire -------------------------------------------------------------------------


def workflows_in(directory: Path) -> list[tuple[str, str]]:
    """(source, name) of every workflow file of ``directory``, read from its
    ``deploy_workflow`` call (the literals are decoded by the SQL lexer)."""
    found = []
    for path in files_to_apply(directory):
        try:
            tokens = [t for t in tokenize(path.read_text(encoding="utf-8")) if t.kind != "space"]
        except SqlLexError as exc:
            raise ApplyFailed(f"{path}:{exc}: not a file generated by pgdurable") from None
        args: dict[str, str] = {}
        for key, arrow, value in zip(tokens, tokens[1:], tokens[2:], strict=False):
            if (
                key.kind == "ident"
                and key.text.lower() in ("source", "workflow_name")
                and arrow.text == "=>"
                and value.kind == "string"
                and value.value is not None
            ):
                args.setdefault(key.text.lower(), value.value)
        if set(args) != {"source", "workflow_name"}:
            raise ApplyFailed(f"{path} is not a file generated by pgdurable (no deploy call)")
        found.append((args["source"], args["workflow_name"]))
    return found


def resolve_workflow(conn: db.Connection, target: str) -> tuple[str, str]:
    """``SOURCE/NAME`` (registered or not: its leftover functions are still dropped),
    or a NAME registered by exactly one source."""
    source, slash, name = target.partition("/")
    if slash and source and name:
        return source, name
    rows = conn.execute(
        "SELECT source, name FROM pgdurable.workflows WHERE name = %s ORDER BY source", [target]
    ).fetchall()
    if len(rows) == 1:
        return rows[0][0], rows[0][1]
    if not rows:
        raise PgDurableError(
            f"no registered workflow named {target!r}; give SOURCE/NAME or a folder "
            "(list them with: SELECT source, name FROM pgdurable.workflows)"
        )
    raise PgDurableError(
        f"{target!r} is registered by several sources ("
        + ", ".join(r[0] for r in rows)
        + "); give SOURCE/NAME"
    )


def retire(conn: db.Connection, workflows: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Retire ``workflows`` in one transaction (pgdurable.retire, migration 0013)."""
    with conn.transaction():
        try:
            return [
                conn.execute("SELECT pgdurable.retire(%s, %s)", [s, n]).fetchone()[0]
                for s, n in workflows
            ]
        except db.DatabaseError as exc:
            hint = (
                ": run `pgdurable schema upgrade` (migration 0013 adds pgdurable.retire)"
                if getattr(exc, "sqlstate", None) == "42883"
                else ""
            )
            raise PgDurableError(
                f"retire failed and was rolled back: {db.error_text(exc)}{hint}"
            ) from exc
