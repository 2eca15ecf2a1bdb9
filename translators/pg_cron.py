"""The pg_cron translator: ``cron.job`` rows to scheduled workflows.

Readers (the only part that touches files or a database) turn a source into
``CronJob`` records, or ``Unreadable`` for a row they could not read:

* ``read_database(conninfo)``: ``cron.job`` of a live database, any pg_cron
  1.0-1.6 (the columns are detected: ``active`` came in 1.1, ``jobname`` in
  1.3), plus the extension version and ``cron.timezone``;
* ``read_file(path)``: a ``COPY cron.job TO ...`` export (text or CSV, with
  or without a header) or a SQL script of ``cron.schedule(...)``,
  ``cron.schedule_in_database(...)``, ``cron.alter_job(...)`` and
  ``cron.unschedule(...)`` calls, which is lexed and replayed against an
  in-memory job table the way pg_cron would apply it, never executed.

``translate(jobs, ctx)`` is pure. Each job becomes a workflow that loops
forever: wait for the schedule's next tick, then run the command::

    @> ( df.wait_for_schedule('<cron>') ~> pgdurable.try(<command>, df.sleep(0)) )

The ``try`` keeps a failed run from ending the schedule, as in pg_cron; with
``--portable`` it is left out and PGD204 says so. The mapping table and every
diagnostic are documented in MIGRATING.md.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pgdurable import model as m
from pgdurable.diagnostics import Collector, Diagnostic, Fidelity, SourceRef
from pgdurable.errors import SourceParseError
from pgdurable.sqltext import SqlLexError, comment, literal, tokenize
from pgdurable.translators import privileges, vixie
from pgdurable.translators.base import ItemResult, TranslateContext, Workflow, crash, registry
from pgdurable.translators.sqlcommand import PG_CRON, command_steps

SOURCE = "pg_cron"
COLUMNS_BY_COUNT = {  # cron.job column order per version, for exports without a header
    7: ["jobid", "schedule", "command", "nodename", "nodeport", "database", "username"],
    8: ["jobid", "schedule", "command", "nodename", "nodeport", "database", "username", "active"],
    9: [
        "jobid",
        "schedule",
        "command",
        "nodename",
        "nodeport",
        "database",
        "username",
        "active",
        "jobname",
    ],
}
UTC_NAMES = {"gmt", "utc", "etc/utc", "etc/gmt", "uct", "z", "zulu", "universal", "greenwich"}
# Tomorrow is the 1st: today is the last day of the month (in UTC, like the schedule).
LAST_DAY_SQL = "SELECT extract(day FROM now() AT TIME ZONE 'UTC' + interval '1 day') = 1"


@dataclass(frozen=True)
class CronJob:
    """One row of ``cron.job`` (fields a version lacks are None)."""

    schedule: str
    command: str
    ref: SourceRef
    jobid: int | None = None
    jobname: str | None = None
    database: str | None = None
    username: str | None = None
    active: bool = True
    nodename: str | None = None
    nodeport: int | None = None
    jobid_known: bool = True  # False for scripts: ids are those of a fresh install
    superuser: bool | None = None  # the username is a superuser (known from a live database)
    # what a script reader found about the job (a replayed UPDATE cron.job, a \\c before
    # the call, a statement it could not replay that may have changed the job)
    notes: tuple[Diagnostic, ...] = ()


@dataclass(frozen=True)
class Unreadable:
    """A row or statement a reader could not turn into a job."""

    name: str
    ref: SourceRef
    message: str
    code: str = "PGD102"  # the diagnostic of the item (failed: no workflow is written)


Item = CronJob | Unreadable


# -- readers ------------------------------------------------------------------


def _job_from_row(row: dict[str, str | None], ref: SourceRef) -> CronJob:
    def text(key: str) -> str | None:
        value = row.get(key)
        return None if value is None or value == "" else value

    active = text("active")
    jobid = text("jobid")
    port = text("nodeport")
    if text("schedule") is None or row.get("command") is None:
        raise ValueError("the row has no schedule or command column")
    return CronJob(
        schedule=row["schedule"] or "",
        command=row["command"] or "",
        ref=ref,
        jobid=int(jobid) if jobid is not None else None,
        jobname=text("jobname"),
        database=text("database"),
        username=text("username"),
        active=active is None or active.lower() in ("t", "true", "1", "yes", "on"),
        nodename=text("nodename"),
        nodeport=int(port) if port is not None else None,
    )


def read_database(conninfo: str) -> tuple[list[Item], TranslateContext]:
    """cron.job of a live database, with the pg_cron version and cron.timezone."""
    from pgdurable import db

    with db.connection(conninfo) as conn:
        found = conn.execute("SELECT to_regclass('cron.job') IS NOT NULL").fetchone()
        if not found or not found[0]:
            from pgdurable.errors import TranslationError

            raise TranslationError(
                f"no cron.job table in {db.describe_conninfo(conninfo)}: pg_cron is not "
                "installed in that database; point --from-db at the database named by "
                "cron.database_name"
            )
        version = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'"
        ).fetchone()
        timezone = conn.execute("SELECT current_setting('cron.timezone', true)").fetchone()
        rows = conn.execute(
            "SELECT to_jsonb(j), r.rolsuper FROM cron.job j "
            "LEFT JOIN pg_catalog.pg_roles r ON r.rolname = j.username ORDER BY j.jobid"
        ).fetchall()
    jobs: list[Item] = []
    for row, superuser in rows:
        data = {
            k: None if v is None else str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in row.items()
        }
        job = _job_from_row(data, SourceRef(f"cron.job#{row['jobid']}"))
        jobs.append(replace(job, superuser=superuser))
    ctx = TranslateContext(
        source_version=version[0] if version else None,
        timezone=(timezone[0] if timezone and timezone[0] else "GMT"),
    )
    return jobs, ctx


def read_file(path: Path) -> list[Item]:
    """A COPY/CSV export of cron.job or a SQL script of cron.* calls."""
    try:
        # bytes, decoded without newline translation: a CR inside a literal stays a CR,
        # as psql and COPY read it
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceParseError(
            f"{path}: not a UTF-8 text file (byte {exc.start}); export cron.job as UTF-8 text"
            " (COPY ... TO with ENCODING 'UTF8'). Nothing was written"
        ) from None
    if path.suffix == ".sql" or re.search(r"\bcron\s*\.\s*schedule", text, re.IGNORECASE):
        return read_script(text, str(path))
    return read_export(text, str(path))


def _unescape_copy(value: str) -> str | None:
    if value == "\\N":
        return None
    simple = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}
    return re.sub(r"\\(.)", lambda mo: simple.get(mo.group(1), mo.group(1)), value)


def read_export(text: str, file: str) -> list[Item]:
    """``COPY cron.job TO`` output: text format (tab-separated, ``\\N``) or CSV."""
    lines = text.splitlines()
    if not lines:
        return []
    tabbed = "\t" in lines[0]
    if tabbed:
        records = [
            (i + 1, [_unescape_copy(v) for v in line.split("\t")]) for i, line in enumerate(lines)
        ]
    else:
        reader = csv.reader(io.StringIO(text))
        records, start = [], 1
        try:
            for fields in reader:
                records.append((start, list(fields)))
                start = reader.line_num + 1
        except csv.Error as exc:  # e.g. an unterminated quote swallowing the file
            raise SourceParseError(
                f"{file}:{start}: not a readable CSV export of cron.job: {exc}. Nothing was written"
            ) from None
    records = [(n, r) for n, r in records if any(v not in (None, "") for v in r)]
    header: list[str] | None = None
    if records and "schedule" in [(v or "").lower() for v in records[0][1]]:
        header = [(v or "").lower() for v in records[0][1]]
        records = records[1:]
    jobs: list[Item] = []
    for line, fields in records:
        ref = SourceRef(file, line)
        columns = header or COLUMNS_BY_COUNT.get(len(fields))
        try:
            if columns is None or len(columns) != len(fields):
                raise ValueError(
                    f"{len(fields)} columns; expected a header row or the 7, 8 or 9 columns of "
                    "cron.job (pg_cron 1.0, 1.1-1.2, 1.3+)"
                )
            jobs.append(_job_from_row(dict(zip(columns, fields, strict=True)), ref))
        except ValueError as exc:
            jobs.append(Unreadable(f"line_{line}", ref, f"cannot read the row: {exc}"))
    return jobs


_PARAMS = {
    "schedule": ["job_name", "schedule", "command"],
    "schedule_in_database": ["job_name", "schedule", "command", "database", "username", "active"],
    "alter_job": ["job_id", "schedule", "command", "database", "username", "active"],
    "unschedule": ["job_id"],
}


def _job_id(text: str | None) -> int | None:
    """A jobid literal (ASCII digits only: '¹'.isdigit() is true in Python, not in SQL)."""
    return int(text) if text and re.fullmatch(r"[0-9]+", text) else None


def read_script(text: str, file: str) -> list[Item]:
    """Replay a script's statements on an empty job table, as pg_cron would
    (``pgcron_script``: calls, direct edits of cron.job, DO blocks, psql's \\c)."""
    from pgdurable.translators import pgcron_script

    return pgcron_script.read(text, file)


# -- translation ----------------------------------------------------------------


def unnamed_name(job: CronJob) -> str:
    """The name of a job without a jobname: from its schedule and command, which every
    source shows alike. A jobid would not do: a script's ids are those of a fresh
    install, the live database's come from a sequence that earlier jobs advanced, so
    the same job would get another file from a script than from the database."""
    digest = hashlib.sha256(f"{job.schedule}\0{job.command}".encode("utf-8", "surrogatepass"))
    return f"pgcron_job_{digest.hexdigest()[:10]}"


def _names(items: Sequence[Item]) -> list[str]:
    """Registry names: jobname, else ``unnamed_name``; a jobname used by several
    roles (pg_cron's unique key is (jobname, username)) gets the role; unnamed jobs
    with the same schedule and command are numbered in jobid order."""
    base = []
    for item in items:
        if isinstance(item, Unreadable):
            base.append(item.name)
        else:
            base.append(item.jobname or unnamed_name(item))
    counts = Counter(base)
    seen: Counter[str] = Counter()
    names = []
    for item, name in zip(items, base, strict=True):
        if counts[name] > 1 and isinstance(item, CronJob):
            if item.jobname and item.username:
                name = f"{name}__{item.username}"
            elif not item.jobname:
                seen[name] += 1
                name = f"{name}_{seen[name]}" if seen[name] > 1 else name
        names.append(name)
    return names


def _schedule_note(job: CronJob, ctx: TranslateContext, diag: Collector) -> None:
    tz = ctx.timezone
    if tz is None:
        if ctx.source_version is None:
            diag.add(
                "PGD206",
                "the schedule is evaluated in UTC; pg_cron used GMT (before 1.5) "
                "or cron.timezone (1.5+), which this source does not show: if it was not "
                "GMT/UTC, shift the hours",
            )
    elif tz.lower() not in UTC_NAMES:
        diag.add(
            "PGD207",
            f"pg_cron evaluated this schedule in cron.timezone = {tz}; the "
            "workflow evaluates it in UTC, so the hours (and DST changes) differ: "
            "adjust the hour field",
        )


# pg_cron's own objects a maintenance job touches (its history, its job table, its API).
_PG_CRON_OBJECT = re.compile(
    r"\bcron\s*\.\s*(job_run_details|job|schedule|schedule_in_database|unschedule|alter_job)\b",
    re.IGNORECASE,
)


def _pg_cron_objects(command: str) -> list[str]:
    """``cron.<object>`` names the command uses, outside comments (strings count: a
    dynamic ``EXECUTE 'DELETE FROM cron.job_run_details ...'`` maintains it too)."""
    try:
        text = " ".join(t.text for t in tokenize(command) if t.kind != "comment")
    except SqlLexError:
        text = command
    found = {f"cron.{m.group(1).lower()}" for m in _PG_CRON_OBJECT.finditer(text)}
    return sorted(found)


def _translate_one(job: CronJob, name: str, ctx: TranslateContext, roles: Roles) -> ItemResult:
    diag = Collector(job.ref)
    diag.items.extend(job.notes)
    try:
        schedule = vixie.parse(job.schedule)
    except vixie.ScheduleError as exc:
        diag.add("PGD101", str(exc))
        return ItemResult(name, job.ref, tuple(diag.items))
    command = command_steps(job.command, PG_CRON, diag, portable=ctx.portable)
    if maintained := _pg_cron_objects(job.command):
        diag.add(
            "PGD319",
            f"the job maintains pg_cron itself ({', '.join(maintained)}): after cut-over "
            "pg_cron records nothing more, so it cleans nothing, and it fails once pg_cron "
            "is dropped. Do not migrate it: pgdurable keeps its own run history "
            "(pgdurable.run_history, pruned by the workers to pgdurable.run_history_max_age "
            "and _max_runs); unschedule the job with the rest",
        )
    if command is None:
        return ItemResult(name, job.ref, tuple(diag.items))
    run, multi = command
    if run.source is None:  # the step is the job: show its name where the graph is drawn
        run = replace(run, source=replace(job.ref, what=f"job {name}"))
    if not ctx.portable:
        run = m.Try(run, m.Sleep(0))
    start = job.active
    description = [
        f"pg_cron job {job.jobid if job.jobid_known else '(from a script)'}"
        + (f' "{job.jobname}"' if job.jobname else " (unnamed)")
    ]

    if isinstance(schedule, vixie.CronSchedule) and vixie.never_fires(schedule):
        diag.add(
            "PGD305",
            f"'{job.schedule}' has a reversed range, so pg_cron never runs it; the file "
            "registers the command as a one-shot workflow, not started",
        )
        body: m.Node = replace(run.node if isinstance(run, m.Try) else run, source=job.ref)
        dsl = None
    elif isinstance(schedule, vixie.Reboot):
        diag.add(
            "PGD301",
            "@reboot runs once each time pg_cron starts; a workflow has no "
            "'server started' trigger. The file registers a one-shot workflow that is "
            "not started: start it from your start-up tooling (SELECT df.start(...)), "
            "or drop it",
        )
        body = replace(run.node if isinstance(run, m.Try) else run, source=job.ref)
        dsl = None
    elif isinstance(schedule, vixie.Seconds):
        n = schedule.seconds
        diag.add(
            "PGD202",
            f"'{job.schedule}': the workflow sleeps {n} s after each run ends "
            f"(a loop iteration takes at least 1 s), so runs drift by the run time; "
            f"pg_cron starts one every {n} s and queues at most one overdue run",
        )
        body = m.Loop(m.Seq((m.Sleep(n, source=job.ref), run)))
        dsl = f"every {n} s"
    else:
        if schedule.ignored:
            diag.add(
                "PGD201",
                f"pg_cron reads only the first five fields of '{job.schedule}' "
                f"and ignores '{schedule.ignored}' (a 6-field schedule is NOT every N "
                "seconds); the workflow keeps pg_cron's actual meaning. If seconds were "
                "intended, use the 'N seconds' form",
            )
        dom = None
        if schedule.last_day:
            if schedule.day_or:
                diag.add(
                    "PGD304",
                    "'$' with a day-of-week restriction (either may match) is "
                    "not translated; the workflow runs on the last day of the month only",
                )
                schedule = replace(
                    schedule, dow=replace(schedule.dow, star=True, values=vixie.ALL_WEEKDAYS)
                )
            diag.add(
                "PGD211",
                "'$' (last day of the month): the workflow wakes on days 28-31 "
                "and runs only when tomorrow is the 1st (a SQL check in UTC)",
            )
            dom = frozenset(range(28, 32))
            run = m.If(m.Sql(LAST_DAY_SQL), run, m.Sleep(0))
        expressions = vixie.to_dsl(schedule, dom=dom)
        waits = [m.WaitForSchedule(e) for e in expressions]
        if len(waits) == 2:
            diag.add(
                "PGD210",
                "both day fields are restricted, so pg_cron runs on days that "
                "match EITHER; the DSL needs both to match, so the workflow races "
                f"'{expressions[0]}' against '{expressions[1]}' and runs at the earlier",
            )
            wait: m.Node = m.Race(waits[0], waits[1], source=job.ref)
        else:
            wait = replace(waits[0], source=job.ref)
        body = m.Loop(m.Seq((wait, run)))
        dsl = " | ".join(expressions)
        _schedule_note(job, ctx, diag)
    if isinstance(body, m.Loop):
        diag.add(
            "PGD205",
            "pg_cron queues a run that comes due while the previous one is "
            "still running and starts it right after; this workflow waits for the next "
            "tick after a run ends, so such runs are skipped. If missed runs matter, "
            "make the command catch up itself",
        )
        if ctx.portable:
            diag.add(
                "PGD204",
                "--portable: a failed run fails the whole instance and ends "
                "the schedule; pg_cron records the failure and runs again at the next "
                "tick. Drop --portable to wrap each run in pgdurable.try",
            )
    if (
        job.nodename
        and job.nodename not in ("localhost", "127.0.0.1", "::1")
        and not (job.nodename.startswith("/"))
    ):
        diag.add(
            "PGD212",
            f"pg_cron ran this job through host={job.nodename} "
            f"port={job.nodeport}; the workflow runs in database "
            f"{job.database or '(the applying database)'} of the worker's cluster",
        )
    run_as = job.username or ctx.default_username
    if run_as is None:
        diag.add(
            "PGD306",
            "the source does not say which role runs this job; pass "
            "--default-username ROLE (the role that ran the script) and regenerate",
        )
    else:
        run_as = _identity(job, run_as, roles, diag, description)
    if not job.active:
        diag.add(
            "PGD208",
            "the job is inactive (active = false): the workflow is registered but not started",
        )
    if diag.fidelity >= Fidelity.MANUAL:
        start = False
    description.append(f"schedule: '{job.schedule}' (pg_cron) -> {dsl or 'none'} (df, UTC)")
    profile = m.PGDURABLE if (multi or m.uses_extensions(body)) else m.PORTABLE
    workflow = Workflow(
        name=name,
        source=SOURCE,
        body=body,
        profile=profile,
        schedule=job.schedule,
        run_as=run_as,
        database=job.database or ctx.default_database,
        start=start,
        description=tuple(description),
        cutover=_cutover(job),
        rollback=_rollback(job),
    )
    return ItemResult(name, job.ref, tuple(diag.items), workflow)


@dataclass(frozen=True)
class Roles:
    """``--run-as ROLE``: the role superuser jobs run as; ``--role-map OLD=NEW``: the
    role jobs of OLD run as (it wins over --run-as)."""

    run_as: str | None = None
    mapping: tuple[tuple[str, str], ...] = ()


# The bootstrap superuser: a script or an export does not say who is a superuser,
# but jobs scheduled as postgres are the common case.
_KNOWN_SUPERUSERS = {"postgres"}


def _identity(
    job: CronJob, owner: str, roles: Roles, diag: Collector, description: list[str]
) -> str:
    """The role the workflow runs as, and the diagnostics that move implies."""
    superuser = job.superuser if job.superuser is not None and owner == job.username else None
    if superuser is None:
        superuser = owner in _KNOWN_SUPERUSERS
    mapped = dict(roles.mapping).get(owner)
    how = f"--role-map {owner}={mapped}" if mapped else None
    if mapped is None and superuser and roles.run_as:
        mapped, how = roles.run_as, f"--run-as {roles.run_as}"
    if mapped is not None and mapped != owner:
        need = privileges.needs(job.command).lines(mapped)
        listing = "; ".join(need) if need else "nothing beyond df.grant_usage"
        diag.add(
            "PGD257",
            f"the job ran as {owner}{' (a superuser)' if superuser else ''} and runs as "
            f"{mapped} here ({how}): {mapped} needs df.grant_usage and what its SQL uses: "
            f"{listing}",
        )
        description.append(f"moved: runs as {mapped} instead of {owner} ({how})")
        description.extend(f"needs: {line}" for line in need)
        return mapped
    if superuser:
        known = "is a superuser" if job.superuser else "is the bootstrap superuser"
        diag.add(
            "PGD331",
            f"the job runs as {owner}, which {known}: workflows run as the role in the file "
            "header, and apply refuses to start a superuser's instance unless an administrator "
            "turned pg_durable.enable_superuser_instances on (server level). Run it as an "
            f"ordinary role instead: --role-map {owner}=ROLE or --run-as ROLE (the report then "
            "lists the privileges that role needs); the file registers the job, not started",
        )
    return owner


def _cutover(job: CronJob) -> str:
    label = comment(job.jobname or f"job {job.jobid}")
    if job.jobid_known and job.jobid is not None:
        return (
            f"SELECT cron.unschedule({job.jobid});  -- {label}\n"
            f"-- to pause instead: SELECT cron.alter_job({job.jobid}, active => false);"
        )
    if job.jobname:
        return f"SELECT cron.unschedule({literal(job.jobname)});  -- run as the job's owner" + (
            f" ({comment(job.username)})" if job.username else ""
        )
    return (
        f"-- unnamed job from {comment(job.ref)}: find its jobid in cron.job, "
        "then cron.unschedule(jobid)"
    )


def _rollback(job: CronJob) -> str:
    """The statement that re-creates ``job`` as it was read: by name, with schedule,
    command, database, role and active flag (pg_cron 1.4+ functions; a re-created job
    gets a new jobid, so nothing here names one)."""
    database = "current_database()" if job.database is None else literal(job.database)
    username = "current_user" if job.username is None else literal(job.username)
    active = "true" if job.active else "false"
    if job.jobname:
        # an upsert on (jobname, username): running it twice keeps one job
        return (
            f"SELECT cron.schedule_in_database({literal(job.jobname)}, {literal(job.schedule)},"
            f" {literal(job.command)}, {database}, {username}, {active});"
        )
    return (
        f"-- unnamed job from {comment(job.ref)}: run this once (it adds a job each time)\n"
        f"SELECT cron.alter_job(cron.schedule({literal(job.schedule)}, {literal(job.command)}),"
        f" database => {database}, username => {username}, active => {active});"
    )


def translate(
    items: Sequence[Item], ctx: TranslateContext, roles: Roles | None = None
) -> list[ItemResult]:
    """One result per job, in order; a bad job never stops the batch. ``roles``:
    ``--run-as`` / ``--role-map``, the roles jobs run as instead of their owner."""
    roles = roles or Roles()
    results = []
    for item, name in zip(items, _names(items), strict=True):
        if isinstance(item, Unreadable):
            results.append(
                ItemResult(name, item.ref, (Diagnostic(item.code, item.message, item.ref),))
            )
            continue
        try:
            results.append(_translate_one(item, name, ctx, roles))
        except Exception as exc:  # a bug must not lose the rest of the batch
            results.append(ItemResult(name, item.ref, (crash("PGD102", exc, item.ref),)))
    return results


registry.register(SOURCE, translate)
