"""``QueueJob`` -> ``ItemResult``: the translation every queue format shares.

A job becomes two things in one generated file:

* the RUN, started by ``pgdurable_jobs.enqueue_<name>(args)`` (``enqueue``):
  the job's action (``psql`` steps, or its ``--tasks`` mapping), wrapped in
  ``pgdurable.retry`` when the source retries and in ``pgdurable.timeout``
  when it limits the job's duration (both dropped with ``--portable``, which
  reports the loss);
* the SCHEDULE, the deployed workflow (``schedules``): a loop that calls the
  enqueue function on each tick. It only ever runs that one call, so it is
  ``df.*`` only and one failed run never ends the schedule.

Fidelity is the worst diagnostic; a manual item is registered with
``start => false`` so nothing half-finished runs.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import replace

from pgdurable import model as m
from pgdurable.diagnostics import Collector, Diagnostic, Fidelity
from pgdurable.sqltext import comment, dollar_quote, literal
from pgdurable.translators.base import OUTSIDE, ItemResult, TranslateContext, Workflow, crash
from pgdurable.translators.queue import codetasks, commands, crontab, enqueue, psql, schedules
from pgdurable.translators.queue.jobs import Item, Psql, QueueJob, Task, Unreadable
from pgdurable.translators.queue.tasks import EMPTY, TaskMap
from pgdurable.translators.sqlcommand import Runner, command_steps

TASK_SQL = Runner("the --tasks SQL", "as one simple query commits them")
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}


def _stub(message: str) -> m.Sql:
    """A step that fails with ``message``: what a manual item runs until finished."""
    body = f" BEGIN RAISE EXCEPTION '%', {literal(message)}; END "
    return m.Sql(f"DO {dollar_quote(body, 'stub')}")


def _task_action(
    job: QueueJob,
    task: Task,
    tasks: TaskMap,
    diag: Collector,
    portable: bool,
    code: codetasks.CodeOptions,
    role: str | None,
):
    mapping = tasks.lookup(task)
    if mapping is None and job.format == crontab.FORMAT and not portable:
        command = commands.step(job, task, diag)
        if command is not None:
            return command, False
    if mapping is None and not portable:
        before = len(diag.items)
        found = codetasks.step(job, task, code, diag, job.run_as or role)
        if found is not None:
            return found, False
        # A reason of its own (a bound task, arguments that are not JSON) has the fix.
        if len(diag.items) > before or codetasks.unreadable_args(job, task):
            return _stub(f"pgdurable: {task.kind} {task.name} needs a person"), False
    if mapping is None or mapping.kind == "manual":
        how = "is marked manual in --tasks" if mapping else "is not mapped"
        diag.add(
            "PGD307",
            f"the {task.kind} '{task.name}' {how}: its body is code the translator cannot "
            "read. Map it to SQL or HTTP in a --tasks file (see tasks.template.yaml in the "
            "output folder) and regenerate; the run is a stub that fails until then",
        )
        return _stub(f"pgdurable: {task.kind} {task.name} is not mapped to SQL yet"), False
    if mapping.kind == "http":
        return (
            m.Http(
                mapping.url or "",
                mapping.method,
                mapping.body,
                mapping.headers,
                mapping.timeout_seconds,
            ),
            False,
        )
    return command_steps(mapping.sql or "", TASK_SQL, diag, portable=portable)


def _action(
    job: QueueJob,
    ctx: TranslateContext,
    tasks: TaskMap,
    diag: Collector,
    code: codetasks.CodeOptions,
):
    """(run node, needs pgdurable profile, database, role) or None when it cannot run."""
    action = job.action
    database, role = job.database, job.run_as
    if isinstance(action, Task):
        result = _task_action(job, action, tasks, diag, ctx.portable, code, ctx.default_username)
    elif isinstance(action, Psql):
        for code, message in action.caveats:
            diag.add(code, message)
        result = psql.steps(action, diag, ctx.portable)
        if result is None and any(p.missing for p in action.parts):
            missing = next(p for p in action.parts if p.missing)
            result = _stub(f"pgdurable: psql script {missing.file} was not found"), False
        database = action.database or database
        role = action.user or role
        if action.host and action.host not in LOCAL_HOSTS and not action.host.startswith("/"):
            diag.add(
                "PGD212",
                f"{action.program} connected to host {action.host}; the run executes in database "
                f"{database or '(the applying database)'} of the worker's cluster",
            )
    else:
        diag.add("PGD102", "the entry names nothing to run (no task, class or command)")
        return None
    if result is None:
        return None
    node, multi = result
    return node, multi, database, role


def _policies(job: QueueJob, run: m.Node, ctx: TranslateContext, diag: Collector) -> m.Node:
    if job.retry is not None and job.retry.max_attempts > 1:
        r = job.retry
        if ctx.portable:
            diag.add(
                "PGD217",
                f"--portable: the source retries a failed run ({r.origin}: up to "
                f"{r.max_attempts} attempts); df.* has no retry, so a failed run stays "
                "failed. Drop --portable to keep the retries",
            )
        else:
            if r.approximate:
                diag.add("PGD216", r.approximate)
            if r.assumed:
                diag.add("PGD224", r.assumed)
            run = m.Retry(run, r.max_attempts, r.delay_seconds, r.backoff, r.max_delay_seconds)
    if job.time_limit is not None:
        if ctx.portable:
            diag.add(
                "PGD217",
                f"--portable: the source stops a run after {job.time_limit} s; df.* has no "
                "time limit. Drop --portable to keep it",
            )
        else:
            run = m.Timeout(run, job.time_limit)
    return run


def _uses_args(node: m.Node) -> bool:
    for n in m.walk(node):
        texts = (
            [n.query]
            if isinstance(n, m.Sql)
            else [n.url, n.body or ""]
            if isinstance(n, m.Http)
            else []
        )
        if any("$args" in t for t in texts):
            return True
    return False


def _translate_one(
    job: QueueJob, ctx: TranslateContext, tasks: TaskMap, code: codetasks.CodeOptions
) -> ItemResult:
    diag = Collector(job.ref)
    diag.items.extend(job.notes)
    # The schedule first: a schedule the source rejects fails the item outright.
    fire = m.Sql(enqueue.call(job.name))
    start = job.enabled
    if job.schedule is None:
        body: m.Node = fire
        dsl = "none (enqueue only)"
        start = False
    else:
        scheduled = schedules.scheduler(job.schedule, fire, diag)
        if scheduled is None:
            return ItemResult(job.name, job.ref, tuple(diag.items))
        body, dsl = scheduled
        if body is fire:
            start = False
    action = _action(job, ctx, tasks, diag, code)
    if action is None:
        return ItemResult(job.name, job.ref, tuple(diag.items))
    run, multi, database, role = action
    run = replace(
        _policies(job, run, ctx, diag), source=replace(job.ref, what=f"{job.format} {job.name}")
    )
    database = database or ctx.default_database
    role = role or ctx.default_username
    uses_args = _uses_args(run)
    setup = enqueue.function_sql(
        job_name=job.name,
        format_name=job.format,
        run=run,
        uses_args=uses_args,
        default_args=job.args,
        concurrency=job.concurrency,
        run_as=role,
        database=database,
    )
    if job.concurrency == "forbid":
        diag.add(
            "PGD221",
            "one run at a time: a tick (or enqueue call) while a run is pending or running "
            "is skipped, as the source's Forbid/uniqueness does",
        )
    elif job.concurrency == "replace":
        diag.add(
            "PGD222",
            "Replace: each new run cancels the one still going (df.cancel); SQL that "
            "was already sent finishes on the server, where the source killed the process",
        )
    if job.starting_deadline is not None:
        diag.add(
            "PGD223",
            f"startingDeadlineSeconds: {job.starting_deadline}: the workflow never catches "
            "up missed ticks (as if the deadline were shorter than the period), it waits "
            "for the next one",
        )
    if role is None:
        diag.add(
            "PGD306",
            "the source does not say which database role runs this job; pass "
            "--default-username ROLE and regenerate",
        )
    if not job.enabled:
        diag.add(
            "PGD208",
            f"the entry is disabled ({job.disabled_by}): the workflow is registered but "
            "not started",
        )
    if diag.fidelity >= Fidelity.MANUAL:
        start = False
    original = job.schedule and getattr(job.schedule, "original", None)
    source_text = original or (job.schedule and job.schedule.text) or "none"
    tz = getattr(job.schedule, "timezone", None)
    description = [
        f"{job.format} entry {job.name!r}",
        f"schedule: '{source_text}'{f' ({tz})' if tz else ''} -> {dsl} (df, UTC)",
        f"run: {enqueue.SCHEMA}.{enqueue.function_name(job.name)}(args jsonb) starts one "
        f"run (label {enqueue.run_label(job.format, job.name)}, concurrency {job.concurrency})",
        *job.description,
    ]
    if database is not None:
        # The header's "runs as" line is the schedule loop's; the run itself starts
        # in the enqueue function's database: say which, and why.
        why = ""
        if isinstance(job.action, Psql) and job.action.database_is_user:
            why = f" ({job.action.program} names no database: libpq's default is the user name)"
        description.append(
            f"database: each run starts in database {database}{why}; the schedule loop "
            "(runs as, below) calls the enqueue function where this file is applied"
        )
    if job.args is not None:
        description.append(f"args: {json.dumps(job.args)}" + ("" if uses_args else " (unused)"))
    needs = multi or m.uses_extensions(run)
    workflow = Workflow(
        name=job.name,
        source=job.format,
        body=replace(body, source=job.ref) if body is not fire else body,
        profile=m.PGDURABLE if needs else m.PORTABLE,
        schedule=source_text if job.schedule else None,
        run_as=role,
        database=None,  # the schedule loop only calls the enqueue function, here
        start=start,
        description=tuple(description),
        cutover=_cutover(job),
        rollback=_rollback(job),
        setup_sql=(setup,),
    )
    return ItemResult(job.name, job.ref, tuple(diag.items), workflow)


def _where(job: QueueJob) -> str:
    return f"{comment(job.name)} ({comment(job.ref)})"


def _cutover(job: QueueJob) -> str:
    """What retires ``job`` at its source: one line a person runs or does, exactly."""
    name = comment(shlex.quote(job.name))
    if job.format == "k8s":
        if job.namespace:
            how = f"kubectl delete cronjob {name} -n {comment(shlex.quote(job.namespace))}"
        else:
            how = f"kubectl delete cronjob {name}  (the manifest names no namespace: yours)"
    elif job.format == "celery":
        how = (
            f"delete the entry {comment(repr(job.name))} from beat_schedule in "
            f"{comment(job.ref)}, then restart celery beat"
        )
    elif job.format == "sidekiq":
        how = (
            f"delete the entry {comment(repr(job.name))} from {comment(job.ref)} "
            f"(sidekiq-cron: Sidekiq::Cron::Job.destroy({comment(repr(job.name))}))"
        )
    else:  # crontab, graphile: the line itself
        line = comment(job.source_line) if job.source_line is not None else "(see the file)"
        how = f"remove line {comment(job.ref)} from the crontab: {line}"
    return f"{OUTSIDE}{how}"


def _rollback(job: QueueJob) -> str:
    """What restores ``job`` at its source after a cutover."""
    if job.format == "k8s":
        ns = f" -n {comment(shlex.quote(job.namespace))}" if job.namespace else ""
        manifest = comment(shlex.quote(job.ref.file))
        how = f"kubectl apply -f {manifest}{ns}  (re-creates {_where(job)})"
    elif job.format in ("crontab", "graphile") and job.source_line is not None:
        how = f"add back to the crontab ({comment(job.ref)}): {comment(job.source_line)}"
    else:
        how = f"put {_where(job)} back (e.g. from version control) and restart the scheduler"
    return f"{OUTSIDE}{how}"


def translate(
    items: Sequence[Item],
    ctx: TranslateContext,
    tasks: TaskMap = EMPTY,
    code: codetasks.CodeOptions = codetasks.NONE,
) -> list[ItemResult]:
    """One result per item, in order; a bad item never stops the batch."""
    results = []
    for item in items:
        if isinstance(item, Unreadable):
            diag = Diagnostic(item.code, item.message, item.ref)
            results.append(ItemResult(item.name, item.ref, (diag,)))
            continue
        try:
            results.append(_translate_one(item, ctx, tasks, code))
        except Exception as exc:  # a bug must not lose the rest of the batch
            results.append(ItemResult(item.name, item.ref, (crash("PGD102", exc, item.ref),)))
    return results
