"""Airflow's date and schedule control operators -> a branch decided in SQL.

``BranchDateTimeOperator``, ``BranchDayOfWeekOperator`` and ``LatestOnlyOperator``
decide, when they run, which downstream tasks go on. Each becomes no step of
its own: its ``follow`` (a SQL boolean over the clock or the run's dates) is
written into the task's state row when its turn comes, and ``compile.py``'s
branch machinery skips the side not followed (``follow_task_ids_if_true`` /
``_if_false``), exactly as for ``BranchSQLOperator``.

The rules are Airflow's own (read from 2.10.5 ``airflow/operators/*.py`` and the
3.x standard provider 1.21.0; 1.10 for LatestOnly):

* BranchDateTime: ``now`` is ``utcnow()`` or the logical date (both UTC); a
  ``time`` target is combined with ``now``'s UTC *date*, then a naive target is
  placed in the DAG's timezone; two time targets with upper < lower get
  upper + 1 day (a window across midnight); true when lower <= now <= upper.
* BranchDayOfWeek: the ISO weekday of ``utcnow()`` in the DAG's timezone, or of
  the logical date in UTC.
* LatestOnly: proceed when the schedule's next interval contains now
  (``data_interval_end < now <= data_interval_end + period``); manual runs
  always proceed; 1.10 skips every descendant, 2.x/3.x the direct downstream.

Every function is pure, like ``tasks.py`` (which dispatches here).
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

from pgdurable.translators.airflow.dagfile import ClockTime, Duration, Task, Timestamp, Unknown
from pgdurable.translators.airflow.tasks import Context, Work, literal, stub

CLOCK = "now()"  # the PostgreSQL server's clock at the branch step (Airflow: utcnow())
LOGICAL = "($dag_run.ts)::timestamptz"  # the run's logical date (the dag_run step)

_DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
_WEEKDAY_MEMBER = re.compile(r"^(?:[A-Za-z_]\w*\.)*WeekDay\.([A-Z]+)$")


def dag_timezone(ctx: Context) -> str | None:
    """The DAG's timezone as Airflow derives it: start_date's zone, else
    ``default_timezone`` (UTC unless configured; a naive start_date is read in
    UTC throughout the translator). None when start_date cannot be read."""
    dag = ctx.dag
    start = dag.args.get("start_date", dag.default("start_date"))
    if start is None or (isinstance(start, Timestamp) and start.iso.startswith("days_ago")):
        return "UTC"  # days_ago() is UTC-aware
    if isinstance(start, Timestamp) and not start.zone_unknown:
        zone = start.timezone or "UTC"
        return zone if known_zone(zone) else None
    return None


def known_zone(name: str) -> bool:
    """An IANA zone name Python (pendulum) accepts; anything else is refused by
    Airflow when the DAG is read, and is never put into SQL here."""
    try:
        ZoneInfo(name)
    except (ValueError, OSError, KeyError):
        return False
    return True


def _logical_flag(task: Task, ctx: Context) -> bool | Work:
    """use_task_logical_date (or 2.x's deprecated use_task_execution_date)."""
    flag = task.args.get("use_task_logical_date", False)
    old = task.args.get("use_task_execution_date")
    if old is not None and ctx.generation >= 3:
        return stub(
            task,
            "use_task_execution_date was removed in Airflow 3 (the DAG does not import there); "
            "rename it to use_task_logical_date",
            ctx,
        )
    if old is True:
        flag = True
    if not isinstance(flag, bool):
        return stub(task, f"use_task_logical_date is not a literal ({flag})", ctx)
    return flag


def _follow_problem(task: Task, ctx: Context) -> str | None:
    """Why the branch's follow lists cannot be used, if so: they must be literal
    task ids of this DAG (a task group id would need its root tasks)."""
    for key in ("follow_task_ids_if_true", "follow_task_ids_if_false"):
        value = task.args.get(key)
        ids = [value] if isinstance(value, str) else value
        if not isinstance(ids, list | tuple) or not all(isinstance(i, str) for i in ids):
            return f"{key} is not a literal task id or list of task ids"
        missing = [i for i in ids if i not in ctx.dag.tasks]
        if missing:
            return (
                f"{key} names {', '.join(repr(i) for i in missing[:4])}, not a task of the "
                "DAG (a task group id?): list the group's first tasks instead"
            )
    return None


# -- BranchDateTimeOperator ----------------------------------------------------------


def _stamp_sql(stamp: Timestamp, zone: str) -> str:
    """A datetime target as timestamptz: an aware one in its zone, a naive one in
    the DAG's timezone (Airflow's coerce_datetime)."""
    return f"(timestamp {literal(stamp.iso)} AT TIME ZONE {literal(stamp.timezone or zone)})"


def _clock_sql(clock: ClockTime, now: str, zone: str, days: int = 0) -> str:
    """A time target combined with the UTC date of ``now`` (datetime.combine keeps
    the date of the UTC instant), then read in the DAG's timezone."""
    shift = f" + interval '{days} day'" if days else ""
    return (
        f"((({now} AT TIME ZONE 'UTC')::date + time {literal(clock.iso)}{shift}) "
        f"AT TIME ZONE {literal(zone)})"
    )


def branch_datetime(task: Task, ctx: Context) -> Work:
    if problem := _follow_problem(task, ctx):
        return stub(task, problem, ctx)
    logical = _logical_flag(task, ctx)
    if isinstance(logical, Work):
        return logical
    lower, upper = task.args.get("target_lower"), task.args.get("target_upper")
    targets = [t for t in (lower, upper) if t is not None]
    if not targets:
        return stub(
            task, "target_lower and target_upper are both None (Airflow refuses the DAG)", ctx
        )
    unreadable = [
        t.text if isinstance(t, Unknown) else repr(t)
        for t in targets
        if not isinstance(t, Timestamp | ClockTime)
        or t.zone_unknown
        or (isinstance(t, Timestamp) and t.timezone is not None and not known_zone(t.timezone))
    ]
    if unreadable:
        ctx.diag.add(
            "PGD340",
            f"task {task.task_id!r}: the target {unreadable[0]} is not a literal datetime/time "
            "with a named zone; write the window as a condition by hand",
            task.ref,
        )
        return stub(task, "a target is not a literal", ctx, reported=True)
    kinds = {type(t) for t in targets}
    if len(kinds) > 1:
        ctx.diag.add(
            "PGD340",
            f"task {task.task_id!r}: target_lower and target_upper mix a datetime and a time; "
            "Airflow then compares them as given (failing for an aware datetime): use two "
            "datetimes or two times",
            task.ref,
        )
        return stub(task, "the targets mix a datetime and a time", ctx, reported=True)
    zone = dag_timezone(ctx)
    naive = any(isinstance(t, ClockTime) or t.timezone is None for t in targets)
    if naive and zone is None:
        zone = "UTC"
        ctx.diag.add(
            "PGD280",
            f"task {task.task_id!r}: the DAG's timezone cannot be read (start_date is not a "
            "literal), so the naive targets are read in UTC; Airflow reads them in the DAG's "
            "timezone",
            task.ref,
        )
    elif naive and zone != "UTC":
        ctx.diag.add(
            "PGD281",
            f"task {task.task_id!r}: the targets are local times in {zone}; inside a "
            "daylight-saving change a local time that does not exist or occurs twice may be "
            "placed an hour apart from Airflow's (pendulum's) choice",
            task.ref,
        )
    zone = zone or "UTC"
    if logical:
        ctx.env.uses_dates = True
    now = LOGICAL if logical else CLOCK

    def bound(target: Any, days: int = 0) -> str | None:
        if target is None:
            return None
        if isinstance(target, ClockTime):
            return _clock_sql(target, now, zone, days)
        return _stamp_sql(target, zone)

    across = isinstance(lower, ClockTime) and isinstance(upper, ClockTime) and upper.iso < lower.iso
    low, high = bound(lower), bound(upper, 1 if across else 0)
    tests = [t for t in (f"{now} >= {low}" if low else None, f"{now} <= {high}" if high else None)]
    follow = " AND ".join(t for t in tests if t)
    return Work(None, can_fail=False, follow=f"({follow})")


# -- BranchDayOfWeekOperator ---------------------------------------------------------


def week_days(value: Any) -> set[int] | str:
    """Airflow's WeekDay.validate_week_day: ISO day numbers, or why not readable."""
    items = value if isinstance(value, list | tuple | dict) else [value]
    if isinstance(value, dict):
        items = list(value)
    days: set[int] = set()
    for item in items:
        if isinstance(item, Unknown) and (match := _WEEKDAY_MEMBER.match(item.text.strip())):
            name = match.group(1)
        elif isinstance(item, str):
            name = item.upper()
        else:
            return f"week_day {item.text if isinstance(item, Unknown) else repr(item)}"
        if name not in _DAYS:
            return f"week_day {name!r} is not a day name (Airflow refuses the DAG)"
        days.add(_DAYS.index(name) + 1)
    if not days:
        return "week_day is empty"
    return days


def weekday_sql(days: set[int], logical: bool, ctx: Context) -> str:
    """The ISO weekday test: of the logical date in UTC, or of now in the DAG's zone."""
    if logical:
        ctx.env.uses_dates = True
        local = f"({LOGICAL} AT TIME ZONE 'UTC')"
    else:
        local = f"({CLOCK} AT TIME ZONE {literal(dag_timezone(ctx) or 'UTC')})"
    listed = ", ".join(str(d) for d in sorted(days))
    return f"(extract(isodow FROM {local})::int IN ({listed}))"


def branch_day_of_week(task: Task, ctx: Context) -> Work:
    if problem := _follow_problem(task, ctx):
        return stub(task, problem, ctx)
    logical = _logical_flag(task, ctx)
    if isinstance(logical, Work):
        return logical
    days = week_days(task.args.get("week_day"))
    if isinstance(days, str):
        ctx.diag.add(
            "PGD341",
            f"task {task.task_id!r}: {days} is not a literal day name, set of names or "
            "WeekDay member; write the weekday test by hand",
            task.ref,
        )
        return stub(task, "week_day is not literal", ctx, reported=True)
    if not logical and dag_timezone(ctx) is None:
        ctx.diag.add(
            "PGD280",
            f"task {task.task_id!r}: the DAG's timezone cannot be read (start_date is not a "
            "literal), so today's weekday is taken in UTC; Airflow takes it in the DAG's "
            "timezone",
            task.ref,
        )
    return Work(None, can_fail=False, follow=weekday_sql(days, logical, ctx))


# -- LatestOnlyOperator --------------------------------------------------------------


def _period(ctx: Context) -> tuple[str, float | None]:
    """(how the DAG is scheduled, the fixed period in seconds when it has one):
    ``none`` (only manual runs), ``period``, or ``other``."""
    from pgdurable.translators.airflow import compile as compile_  # compile imports tasks
    from pgdurable.translators.airflow import schedule

    value, present = compile_.schedule_args(ctx.dag, ctx.generation)
    if not present:
        value = "@daily" if ctx.generation < 3 else None
    if value is None:
        return "none", None
    if isinstance(value, Duration) and value.seconds > 0:
        return "period", value.seconds
    if isinstance(value, str) and value not in ("@once", "@continuous"):
        try:
            fixed = schedule._period(schedule.PRESETS.get(value, value))
        except (ValueError, KeyError, TypeError, AttributeError):
            fixed = None
        except Exception:  # croniter's own errors: the schedule is reported elsewhere
            fixed = None
        if fixed is not None:
            return "period", float(fixed[0])
    return "other", None


def latest_only(task: Task, ctx: Context) -> Work:
    kind, period = _period(ctx)
    if kind == "none":
        # every run is manual (externally triggered), so Airflow always proceeds
        return Work(None, can_fail=False)
    if kind == "other" or period is None:
        ctx.diag.add(
            "PGD342",
            f"task {task.task_id!r}: LatestOnlyOperator needs the schedule's next interval; "
            "pgdurable computes it only for a cron with a fixed period or a timedelta "
            "schedule: write `now() <= <next tick>` as a condition by hand",
            task.ref,
        )
        return stub(task, "the schedule has no fixed period", ctx, reported=True)
    ctx.env.uses_dates = True
    end = "($dag_run.data_interval_end)::timestamptz"
    follow = f"({CLOCK} > {end} AND {CLOCK} <= {end} + interval '{int(period)} seconds')"
    scope = "every task after it" if ctx.generation < 2 else "its direct downstream tasks"
    ctx.diag.add(
        "PGD282",
        f"task {task.task_id!r}: LatestOnlyOperator skips {scope} unless now is within the "
        "next schedule interval, as in Airflow; but a run started on demand (the trigger "
        "function, TriggerDagRunOperator) is not known as manual, so it too is skipped when it "
        "reaches this task after the next tick (Airflow always proceeds for manual runs), and "
        "no catch-up runs exist to be skipped",
        task.ref,
    )
    return Work(
        None,
        can_fail=False,
        follow=follow,
        short_circuit=True,
        # 1.10 skips every descendant itself; 2.x/3.x is a branch of the direct downstream
        short_circuit_all=ctx.generation < 2,
    )
