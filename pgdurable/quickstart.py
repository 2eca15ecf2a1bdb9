"""``pgdurable quickstart``: the bundled examples, end to end, in one command.

For each example of ``fixtures/examples/`` (a pg_cron script, an Airflow DAG
folder, a Kubernetes CronJob) it

1. creates the example's login role and (re)creates its fixture database from
   ``fixture/*.sql`` (schema, then seed data);
2. translates the source with the same pipeline as ``pgdurable import-*``
   into ``OUT/<example>/``;
3. applies the generated files (``pgdurable apply``), which registers each
   workflow and starts its schedule;
4. starts ONE run of every job now (the schedule's run body without the wait)
   and runs an in-process worker until those runs have finished;
5. checks the data the runs left with ``checks.sql`` (one ``(check, ok)`` row
   per statement), and replays each generated file against its original on
   clones of the fixture database (``pgdurable verify --all``).

Idempotent: a rerun recreates the fixture databases (only databases this
command created, recognised by their comment), re-applies unchanged files
(a no-op) and starts fresh runs. The generated files of the examples are
committed as golden files in ``fixtures/examples/<example>/expected/``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgdurable import db, migrator, model, pipeline
from pgdurable.errors import PgDurableError
from pgdurable.output import NOT_WORKFLOWS

DATABASE_COMMENT = "pgdurable quickstart example (recreated by pgdurable quickstart)"
TERMINAL = ("completed", "failed", "cancelled")
RUN_LABEL = "quickstart:{source}/{name}"


@dataclass(frozen=True)
class Example:
    """One example folder: its source, fixture database and the role its jobs run as."""

    name: str
    source: str
    database: str
    role: str
    # Why ``pgdurable verify`` cannot replay this example yet (None: it can).
    not_verified: str | None = None

    def translate(self, examples: Path, out: Path, dry_run: bool = False) -> pipeline.ImportReport:
        folder = examples / self.name
        if self.source == "pg_cron":
            return pipeline.import_pgcron(
                from_db=None,
                from_file=folder / "jobs.sql",
                out_dir=out,
                dry_run=dry_run,
                default_username=self.role,
                default_database=self.database,
            )
        if self.source == "airflow":
            return pipeline.import_airflow(
                paths=[folder / "dags"],
                out_dir=out,
                connections_file=folder / "connections.yaml",
                dry_run=dry_run,
                default_username=self.role,
            )
        (report,) = pipeline.import_queue([folder / "cronjob.yaml"], out_dir=out, dry_run=dry_run)
        return report


EXAMPLES = (
    Example("pg_cron", "pg_cron", "example_shop", "shop_app"),
    Example("airflow", "airflow", "example_analytics", "etl"),
    Example(
        "k8s",
        "k8s",
        "example_reports",
        "reporter",
        not_verified="verify runs a queue job whose psql names a database (PGDATABASE) in that "
        "database, not in its fixture clone",
    ),
)


@dataclass
class JobRun:
    example: str
    source: str
    name: str
    fidelity: str
    instance_id: str | None = None
    status: str = "not started"
    error: str | None = None


@dataclass
class Outcome:
    """Everything the summary shows; ``ok`` decides the exit code."""

    out_dir: Path
    reports: dict[str, pipeline.ImportReport] = field(default_factory=dict)
    runs: list[JobRun] = field(default_factory=list)
    checks: list[tuple[str, str, bool]] = field(default_factory=list)  # example, check, ok
    verification: list[dict[str, Any]] | None = None

    @property
    def ok(self) -> bool:
        return (
            all(r.status == "completed" for r in self.runs)
            and all(ok for _, _, ok in self.checks)
            and all(v["outcome"] in ("equal", "skipped") for v in self.verification or [])
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "out": str(self.out_dir),
            "reports": {name: r.as_dict() for name, r in self.reports.items()},
            "runs": [vars(r) for r in self.runs],
            "checks": [{"example": e, "check": c, "ok": ok} for e, c, ok in self.checks],
            "verification": self.verification,
        }

    def text(self) -> str:
        width = max([len(f"{r.source}/{r.name}") for r in self.runs] + [10])
        lines = [f"{'workflow':<{width}}  {'fidelity':<11}  run"]
        for r in self.runs:
            run = r.status + (f" ({r.error})" if r.error else "")
            lines.append(f"{r.source + '/' + r.name:<{width}}  {r.fidelity:<11}  {run}")
        lines.append("")
        for example, check, ok in self.checks:
            lines.append(f"{'ok  ' if ok else 'FAIL'}  {example}: {check}")
        for v in self.verification or []:
            mark = {"equal": "ok  ", "skipped": "skip"}.get(v["outcome"], "FAIL")
            detail = f" ({v['error']})" if v["error"] else ""
            lines.append(
                f"{mark}  verify {v['example']}: {Path(v['file']).name} {v['outcome']}{detail}"
            )
        passed = sum(ok for _, _, ok in self.checks)
        completed = sum(r.status == "completed" for r in self.runs)
        summary = f"{completed}/{len(self.runs)} runs completed, "
        summary += f"{passed}/{len(self.checks)} checks passed"
        if self.verification is not None:
            checked = [v for v in self.verification if v["outcome"] != "skipped"]
            equal = sum(v["outcome"] == "equal" for v in checked)
            summary += f", {equal}/{len(checked)} verified equal to their originals"
        lines += [
            "",
            f"{summary}; generated files in {self.out_dir}",
            "next: pgdurable show airflow/events_daily --format text;"
            " MIGRATING.md for your own jobs",
        ]
        return "\n".join(lines)


# -- fixture databases ------------------------------------------------------------


def ensure_role(conn: db.Connection, role: str) -> None:
    """A login role that may start instances (df.grant_usage)."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
    if not exists:
        conn.execute(db.sql.SQL("CREATE ROLE {} LOGIN").format(db.sql.Identifier(role)))
    conn.execute("SELECT df.grant_usage(%s)", [role])


def recreate_database(conninfo: str, name: str, fixture: Path) -> None:
    """Drop (when this command made it) and create ``name``, then run ``fixture/*.sql``."""
    with db.connection(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            [name],
        ).fetchone()
        if row is not None:
            if row[0] != DATABASE_COMMENT:
                raise PgDurableError(
                    f"database {name} exists and was not made by pgdurable quickstart; "
                    "drop or rename it, or use another database server (--dsn)"
                )
            conn.execute(
                db.sql.SQL("DROP DATABASE {} WITH (FORCE)").format(db.sql.Identifier(name))
            )
        conn.execute(db.sql.SQL("CREATE DATABASE {}").format(db.sql.Identifier(name)))
        conn.execute(
            db.sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                db.sql.Identifier(name), db.sql.Literal(DATABASE_COMMENT)
            )
        )
    with db.connection(db.conninfo_with(conninfo, dbname=name)) as conn:
        for path in sorted(fixture.glob("*.sql")):
            conn.execute(path.read_text(encoding="utf-8").encode())
        conn.commit()


def run_checks(conninfo: str, path: Path) -> list[tuple[str, bool]]:
    """Each statement of ``checks.sql`` returns one row ``(check, ok)``."""
    results = []
    with db.connection(conninfo, autocommit=True) as conn:
        cursor = conn.cursor()
        cursor.execute(path.read_text(encoding="utf-8").encode())
        while True:
            if cursor.description:
                results += [(str(name), bool(ok)) for name, ok in cursor.fetchall()]
            if not cursor.nextset():
                break
    return results


# -- one run of each job -----------------------------------------------------------


def run_body(node: model.Node) -> model.Node | None:
    """The part of a schedule loop that runs on each tick: ``@> (wait ~> run)`` gives
    ``run``. None when the workflow is not such a loop."""
    if not isinstance(node, model.Loop) or node.condition is not None:
        return None
    body = node.body
    if not isinstance(body, model.Seq):
        return None
    first, rest = body.steps[0], body.steps[1:]
    waits = (model.WaitForSchedule, model.Race, model.Sleep, model.If)
    if not isinstance(first, waits):
        return None
    return rest[0] if len(rest) == 1 else model.Seq(rest)


def start_run(conn: db.Connection, result) -> str | None:
    """Start one run of a translated job now, as the job's role; its instance id."""
    workflow = result.workflow
    if workflow is None or not workflow.start:
        return None
    run = run_body(workflow.body)
    if run is None:
        return None
    with conn.transaction():
        if workflow.run_as:
            conn.execute(db.sql.SQL("SET LOCAL ROLE {}").format(db.sql.Identifier(workflow.run_as)))
        if isinstance(run, model.Sql) and run.query.startswith("SELECT pgdurable_jobs.enqueue_"):
            # A queue job's tick only enqueues: call the enqueue function directly.
            row = conn.execute(run.query.encode()).fetchone()
        else:
            label = RUN_LABEL.format(source=workflow.source, name=workflow.name)
            row = conn.execute(
                "SELECT df.start(%s, %s, %s)", [model.encode(run), label, workflow.database]
            ).fetchone()
    return row[0] if row else None


async def _run_worker_until(conninfo: str, instances: list[str], timeout: float) -> None:
    from pgdurable.worker import Worker, WorkerOptions

    worker = Worker(conninfo, WorkerOptions(concurrency=4, poll_interval=0.2))
    task = asyncio.create_task(worker.run())

    def finished() -> bool:
        with db.connection(conninfo, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT count(*) FROM df.instances WHERE id = ANY(%s) AND status = ANY(%s)",
                [instances, list(TERMINAL)],
            ).fetchone()
        return rows is not None and rows[0] == len(instances)

    deadline = time.monotonic() + timeout
    try:
        while not task.done() and time.monotonic() < deadline:
            if await asyncio.to_thread(finished):
                break
            await asyncio.sleep(0.2)
    finally:
        worker.stop()
        await task


def run_jobs(conninfo: str, runs: list[JobRun], timeout: float) -> None:
    """Run the worker until every started run has finished (or ``timeout``)."""
    started = [r.instance_id for r in runs if r.instance_id]
    if started:
        asyncio.run(_run_worker_until(conninfo, started, timeout))
    with db.connection(conninfo, autocommit=True) as conn:
        for r in runs:
            if r.instance_id is None:
                continue
            row = conn.execute(
                "SELECT i.status, n.status_details->>'error'"
                " FROM df.instances i LEFT JOIN df.nodes n"
                " ON n.instance_id = i.id AND n.id = i.root_node WHERE i.id = %s",
                [r.instance_id],
            ).fetchone()
            if row:
                r.status = row[0] if row[0] in TERMINAL else f"{row[0]} (timed out waiting)"
                r.error = row[1] if row[0] == "failed" else None


# -- the whole command ---------------------------------------------------------------


def run(
    conninfo: str,
    examples: Path,
    out_dir: Path,
    *,
    timeout: float = 120.0,
    verify: bool = True,
    progress: Callable[[str], None] = lambda _: None,
) -> Outcome:
    """Translate, apply, run and check every bundled example against ``conninfo``."""
    from pgdurable import apply as applying

    if not (examples / EXAMPLES[0].name).is_dir():
        raise PgDurableError(
            f"{examples} holds no examples: run from a clone of the pgdurable repository "
            "or pass --examples DIR"
        )
    outcome = Outcome(out_dir)
    with db.connection(conninfo) as conn:
        applied = migrator.apply(conn, progress=lambda m: progress(f"applying {m.label}.sql"))
        if not applied:
            progress("schema up to date")
    with db.connection(conninfo, autocommit=True) as conn:
        for ex in EXAMPLES:
            progress(f"{ex.name}: role {ex.role}, fixture database {ex.database}")
            ensure_role(conn, ex.role)
            recreate_database(conninfo, ex.database, examples / ex.name / "fixture")
            report = ex.translate(examples, out_dir / ex.name)
            outcome.reports[ex.name] = report
            progress(report.text().splitlines()[0])
    with db.connection(conninfo) as conn:
        for ex in EXAMPLES:
            outcomes = applying.apply_directory(
                out_dir / ex.name, applying.DatabaseSink(conn), progress=progress
            )
            progress(f"{ex.name}: applied {len(outcomes)} file(s)")
    with db.connection(conninfo, autocommit=True) as conn:
        for ex in EXAMPLES:
            for result in outcome.reports[ex.name].results:
                job = JobRun(ex.name, ex.source, result.name, str(result.fidelity))
                job.instance_id = start_run(conn, result)
                if job.instance_id:
                    job.status = "pending"
                outcome.runs.append(job)
    progress(f"running {sum(1 for r in outcome.runs if r.instance_id)} job(s) on the worker")
    run_jobs(conninfo, outcome.runs, timeout)
    for ex in EXAMPLES:
        checks = run_checks(
            db.conninfo_with(conninfo, dbname=ex.database), examples / ex.name / "checks.sql"
        )
        outcome.checks += [(ex.name, check, ok) for check, ok in checks]
    if verify:
        outcome.verification = verify_examples(conninfo, examples, out_dir, progress)
    return outcome


def verify_examples(
    conninfo: str, examples: Path, out_dir: Path, progress: Callable[[str], None]
) -> list[dict[str, Any]] | None:
    """Replay every generated file against its original on clones of the example's
    fixture database (``pgdurable verify --all``); None without a verify command."""
    try:
        from pgdurable import verify as verifying
    except ImportError:
        return None
    results: list[dict[str, Any]] = []
    for ex in EXAMPLES:
        folder = out_dir / ex.name
        if ex.not_verified:
            results += [
                {"example": ex.name, "file": str(p), "outcome": "skipped", "error": ex.not_verified}
                for p in sorted(folder.glob("*.sql"))
                if p.name not in NOT_WORKFLOWS
            ]
            continue
        options = verifying.Options(fixture=examples / ex.name / "fixture")
        items = verifying.verify_all(
            folder,
            options,
            conninfo,
            lambda i, n, name, ex=ex: progress(f"verify {ex.name}: {i}/{n} {name}"),
        )
        results += [
            {"example": ex.name, "file": str(i.path), "outcome": i.outcome, "error": i.error}
            for i in items
        ]
    return results
