"""One verification from start to verdict, and the ``--all`` batch.

Order of work: read and translate the source (nothing touches a database
before the input is known to be good), make sure the roles exist, build the
fixture template, clone it twice, replay the old job on one clone, apply and
run the generated workflow on the other, compare. The ``Sandbox`` drops every
database it made whatever happens; a dedicated cluster (``--chaos-db``) is
removed as a whole.
"""

from __future__ import annotations

import functools
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pgdurable import db, migrator
from pgdurable.errors import PgDurableError, VerificationError
from pgdurable.output import NOT_WORKFLOWS
from pgdurable.verify import chaos, code, compare, newside, pgcron, queue, subjects
from pgdurable.verify.airflow_builtin import (
    DagRunOutcome,
    Reference,
    check_one_database,
    conn_ids,
)
from pgdurable.verify.report import BatchItem, RunOutcome, StateDiff, Verification
from pgdurable.verify.sandbox import Sandbox

REFERENCES = ("builtin", "airflow")
# The role both sides run as when neither the source nor --run-as names one. Workflows
# never run as a superuser (df.start refuses), so an ordinary role stands in; fixtures
# grant it what the job needs (GRANT ... TO PUBLIC is simplest).
DEFAULT_ROLE = "pgdurable_verify"


@dataclass
class Options:
    fixture: Path
    reference: str = "builtin"
    logical_date: datetime | None = None
    runs: int = 1
    chaos: int = 0
    chaos_db: bool = False
    seed: int | None = None
    compare: compare.Options = field(default_factory=compare.Options)
    workflow: Path | None = None  # a generated file to use instead of translating now
    tasks_file: Path | None = None
    run_as: str | None = None
    accept_failures: bool = False  # both sides failing a run is accepted as equal
    from_db: str | None = None  # pg_cron jobs from this database's cron.job
    airflow_version: str | None = None  # --reference airflow: "2" or "3" (default: the DAG's)
    code_paths: list[Path] = field(default_factory=list)  # the new side's code roots
    allow_programs: list[str] = field(default_factory=list)  # absolute programs it may run


def _logical_dates(subject: subjects.Subject, options: Options) -> list[datetime]:
    first = options.logical_date
    if first is None:
        start = subject.item.args.get("start_date") if subject.kind == "airflow" else None
        iso = getattr(start, "iso", None)
        try:
            first = datetime.fromisoformat(iso) if iso else None
        except ValueError:
            first = None
        if first is None:
            first = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if first.tzinfo is None:
        first = first.replace(tzinfo=UTC)
    return newside.daily(first, options.runs)


def verify(
    kind: str,
    spec: str,
    options: Options,
    admin_conninfo: str | None,
    progress: Callable[[str], None] = lambda _: None,
) -> Verification:
    """Verify one source item; ``admin_conninfo`` is a superuser login to the server
    (ignored with ``chaos_db``, which starts a dedicated cluster)."""
    if options.reference not in REFERENCES:
        raise VerificationError(f"--reference must be one of {', '.join(REFERENCES)}")
    if options.reference == "airflow" and kind != "airflow":
        raise VerificationError("--reference airflow only applies to --airflow")
    if options.runs < 1:
        raise VerificationError("--runs must be at least 1")
    from_db = options.from_db
    if from_db is None and kind == "pgcron" and subjects.db_ref(spec) is not None:
        from_db = _cron_database(admin_conninfo)
    subject = subjects.load(
        kind,
        spec,
        workflow=options.workflow,
        tasks_file=options.tasks_file,
        run_as=options.run_as,
        from_db=from_db,
    )
    if kind == "queue":
        queue.check_replayable(subject.item, subject.extra["tasks"])
    cluster, folder = None, None
    try:
        if options.chaos_db:
            from pgdurable.embedded import EmbeddedCluster

            folder = Path(tempfile.mkdtemp(prefix="pgdurable-verify-"))
            folder.chmod(0o755)  # the server account (when we are root) must enter it
            progress(f"starting a dedicated PostgreSQL for --chaos-db in {folder}")
            cluster = EmbeddedCluster(folder / "c", settings={"fsync": "off"})
            cluster.start()
            admin_conninfo = cluster.conninfo("postgres")
        if admin_conninfo is None:
            raise VerificationError("no server to verify on: pass --dsn (a superuser login)")
        with Sandbox(admin_conninfo) as sandbox:
            return _verify(subject, options, sandbox, cluster, progress)
    finally:
        if cluster is not None:
            try:
                cluster.stop(mode="immediate")
            finally:
                shutil.rmtree(folder, ignore_errors=True)


def roles(subject: subjects.Subject, run_as: str | None) -> tuple[str, str, list[str]]:
    """(old side's role, new side's role, notes): the identity of the import.

    ``--run-as`` wins for both sides. Otherwise the new side runs as the role the
    generated file's header names (``run_as``), and the old side as the role the
    source runs the job as (pg_cron's ``username``, a queue entry's user), else the
    same header role, so a fixture that grants to the job's real role works on both
    sides. Only when nothing names a role is the stand-in ``pgdurable_verify`` used,
    and the report says so."""
    if run_as:
        return run_as, run_as, [f"both sides ran as {run_as} (--run-as)"]
    header, own = subject.run_as, _old_role(subject)
    old, new = own or header, header or own
    notes = []
    if old is None or new is None:
        notes.append(
            f"neither the source nor the generated file names a role: both sides ran as the "
            f"stand-in {DEFAULT_ROLE}; pass --run-as ROLE (the role the job really runs as)"
        )
    old, new = old or DEFAULT_ROLE, new or DEFAULT_ROLE
    if old != new:
        notes.append(
            f"the old side ran as {old} (the source's role), the new side as {new} "
            "(run_as in the generated file)"
        )
    return old, new, notes


def _reference_label(subject: subjects.Subject, options: Options) -> str:
    if subject.kind != "airflow":
        return "source semantics"
    if options.reference != "airflow":
        return options.reference
    from pgdurable.verify import airflow_real

    major = airflow_real.major_for(options.airflow_version, subject.extra.get("generation"))
    return f"airflow (Apache Airflow {airflow_real.VERSIONS[major]})"


def _cron_database(admin_conninfo: str | None) -> str | None:
    """The database holding cron.job on the verify server (``cron.database_name``), if
    pg_cron is loaded there: a ``--from-db`` folder's jobs are read from it by default."""
    if admin_conninfo is None:
        return None
    try:
        with db.connection(db.conninfo_with(admin_conninfo, dbname="postgres")) as conn:
            row = conn.execute("SELECT current_setting('cron.database_name', true)").fetchone()
    except db.DatabaseError:
        return None
    return db.conninfo_with(admin_conninfo, dbname=row[0]) if row and row[0] else None


def _verify(subject, options, sandbox: Sandbox, cluster, progress) -> Verification:
    old_role, new_role, role_notes = roles(subject, options.run_as)
    for role in {old_role, new_role, subject.run_as}:
        sandbox.ensure_role(role)  # the header's role too: applying the file names it
    progress(f"building fixture {options.fixture}")
    template = sandbox.build_template(options.fixture)
    old_db = sandbox.clone(template, "old")
    new_db = sandbox.clone(template, "new")
    with db.connection(sandbox.conninfo(new_db)) as conn:
        migrator.apply(conn)
    result = Verification(
        subject.label,
        subject.kind,
        _reference_label(subject, options),
        str(options.fixture),
        accept_failures=options.accept_failures,
        roles={"old": old_role, "new": new_role},
    )
    result.notes += role_notes
    dates = _logical_dates(subject, options)

    progress(f"old side: replaying {subject.label}")
    references = _old_side(subject, options, sandbox, old_db, old_role, dates, result)

    progress(f"new side: applying {subject.generated_path} and running the workflow")
    code_setup = code.prepare(
        subject.generated_text,
        options.workflow,
        options.code_paths,
        options.allow_programs,
        sandbox.conninfo(new_db),
        new_role,
    )
    if code_setup is not None:
        result.notes.append(code_setup.note)
    deployed = newside.deploy(
        sandbox.conninfo(new_db),
        subject.generated_path,
        subject.generated_text,
        new_role,
        database=new_db,
    )
    config = code_setup.config if code_setup is not None else None
    runner = functools.partial(newside.run_worker_until_idle, code=config)
    if options.chaos:
        rng = random.Random(options.seed)
        runner = chaos.runner(
            options.chaos,
            rng,
            result.chaos,
            cluster if options.chaos_db else None,
            code_setup.worker_args() if code_setup is not None else (),
        )
    elif options.chaos_db:
        raise VerificationError("--chaos-db needs --chaos N (how many chaos points)")
    runs = newside.run_ticks(
        sandbox.conninfo(new_db),
        sandbox.conninfo(new_db, new_role),
        deployed,
        dates if subject.kind == "airflow" else [None] * options.runs,
        runner,
    )
    for run in runs:
        line = f"{run.status} (instance {run.instance_id})"
        if run.error and run.status != "completed":
            line += f": {run.error[:200]}"
        result.new_runs.append(line)
        # A pg_cron run fails when any part of its command fails, even one a hand-edited
        # file wraps in its own pgdurable.try (the DAG and crontab translations recover
        # from failures inside a run on purpose: there the run's outcome counts).
        failed = run.failed or (subject.kind == "pgcron" and bool(run.step_errors))
        result.new_outcomes.append(RunOutcome(failed, line, run.errors))

    progress("comparing")
    old_tables = compare.snapshot(sandbox.conninfo(old_db), options.compare)
    new_tables = compare.snapshot(sandbox.conninfo(new_db), options.compare)
    result.tables = compare.diff(old_tables, new_tables)
    written = compare.targets(subject.generated_text)
    result.not_compared = compare.not_compared(sandbox.conninfo(old_db), written, set(old_tables))
    if subject.kind == "airflow":
        _compare_states(subject, references, runs, result)
    return result


def _old_role(subject: subjects.Subject) -> str | None:
    if subject.kind == "pgcron":
        return subject.item.username
    if subject.kind == "queue":
        return queue.role_of(subject.item)
    return None


def _old_side(subject, options, sandbox, old_db, role, dates, result) -> list[DagRunOutcome]:
    conninfo = sandbox.conninfo(old_db, role)
    outcomes: list[DagRunOutcome] = []
    for i in range(options.runs):
        if subject.kind == "pgcron":
            run = pgcron.run_command(conninfo, subject.item.command)
            line = f"{run.status}: {run.return_message}"
            failed = run.status != "succeeded"
            errors = [run.return_message] if failed else []
        elif subject.kind == "queue":
            run = queue.run_once(subject.item, subject.extra["tasks"], conninfo)
            line = run.status + (f": {run.message}" if run.message else "")
            failed = run.status != "succeeded"
            errors = [run.message or "failed"] if failed else []
        else:
            outcome = _airflow_run(subject, options, conninfo, dates[i])
            outcomes.append(outcome)
            result.reference_states.append(dict(sorted(outcome.states.items())))
            failed_tasks = sorted(t for t, s in outcome.states.items() if s == "failed")
            line = f"DAG run {outcome.run_state} on {dates[i].date()}" + (
                f" (failed: {', '.join(failed_tasks)})" if failed_tasks else ""
            )
            failed = outcome.run_state != "success"
            errors = [
                f"task {t}: {outcome.errors.get(t) or 'failed (the reference gave no error text)'}"
                for t in failed_tasks
            ]
        result.old_runs.append(line)
        result.old_outcomes.append(RunOutcome(failed, line, errors))
    return outcomes


def _airflow_run(subject, options, conninfo: str, date: datetime) -> DagRunOutcome:
    dag = subject.item
    database = check_one_database(dag)
    if options.reference == "airflow":
        if database is not None:
            raise VerificationError(
                f"the DAG's SQL tasks name database={database!r}, which makes a real Airflow "
                "connect to that database instead of the fixture clone: verify it with "
                "--reference builtin (which runs them in the clone, like the new side)"
            )
        from pgdurable.verify import airflow_real

        connections = {cid: conninfo for cid in conn_ids(dag)}
        major = airflow_real.major_for(options.airflow_version, subject.extra.get("generation"))
        return airflow_real.run_dag(subject.source_file, dag.dag_id, date, connections, major)
    return Reference(dag, subject.source_file, lambda _cid: conninfo, date).run()


def _sid(task_id: str) -> str:
    from pgdurable.translators.airflow.tasks import sid

    return sid(task_id)


def _compare_states(subject, references: list[DagRunOutcome], runs, result) -> None:
    """Task states the workflow records (``st_<task>``) against the reference's (the
    run's outcome is compared for every kind, in ``report``)."""
    unrecorded: set[str] = set()
    for i, (ref, run) in enumerate(zip(references, runs, strict=True), 1):
        for task_id, state in sorted(ref.states.items()):
            recorded = run.states.get(f"st_{_sid(task_id)}")
            if recorded is None:
                unrecorded.add(task_id)
            elif recorded != state:
                result.states.append(StateDiff(i, task_id, state, recorded))
    if unrecorded:
        result.notes.append(
            "the workflow records no state for "
            + ", ".join(sorted(unrecorded))
            + ": these tasks are compared only through the data they write and the run's outcome"
        )


def verify_all(
    folder: Path,
    options: Options,
    admin_conninfo: str | None,
    progress: Callable[[int, int, str], None] = lambda i, n, name: None,
) -> list[BatchItem]:
    """Verify every generated workflow file of a migration folder; never raises per file."""
    if not folder.is_dir():
        raise VerificationError(f"{folder} is not a folder of generated workflow files")
    files = sorted(p for p in folder.glob("*.sql") if p.name not in NOT_WORKFLOWS)
    if not files:
        raise VerificationError(f"{folder} holds no generated workflow file")
    items = []
    for i, path in enumerate(files, 1):
        progress(i, len(files), path.name)
        try:
            kind, spec = subjects.from_generated(path)
            one = Options(**{**options.__dict__, "workflow": path})
            if kind != "airflow":
                one.reference = "builtin"
            verification = verify(kind, spec, one, admin_conninfo)
            outcome = verification.verdict.lower()  # equal | different | both failed
            items.append(BatchItem(str(path), verification.subject, outcome, verification))
        except PgDurableError as exc:
            items.append(BatchItem(str(path), "", "failed", error=exc.message))
        except Exception as exc:  # one bad file never stops the batch
            items.append(BatchItem(str(path), "", "failed", error=f"{type(exc).__name__}: {exc}"))
    return items
