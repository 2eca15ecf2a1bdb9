"""Airflow schedules -> how the workflow waits, and the run's dates.

* cron strings and presets go through ``translators/vixie.py`` (Airflow uses
  croniter, whose five-field grammar is Vixie's, with either day field
  matching when both are restricted) to the DSL's cron rules;
* ``timedelta`` becomes a cron when it divides an hour or a day evenly from
  the start date, else a ``df.sleep`` loop (approximate);
* ``@once`` runs once; ``None`` (and the 3.x default) only on demand;
  ``@continuous`` loops without waiting; timetables are read by
  ``timetables``, Dataset/Asset schedules by ``assets``.

The **logical date rule** depends on the generation (SOURCES Part 2 §4): in
1.x/2.x a cron or timedelta run's logical date is the *start* of the interval
that just ended (``ds`` of the run at 2024-01-02 00:00 for ``@daily`` is
2024-01-01); in 3.x it is the trigger time. The first step of every run
(``dag_run``) computes it from the current tick: for schedules with a fixed
period P and a known tick A, tick = A + floor((now - A) / P) * P, so a run
that starts late still gets its own dates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from croniter import croniter

from pgdurable import model as m
from pgdurable.translators import cron_extensions, vixie
from pgdurable.translators.airflow.dagfile import Asset, Duration, OrTime, Timestamp, Unknown
from pgdurable.translators.queue.schedules import is_utc, zone

PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


@dataclass
class Plan:
    kind: str  # cron | sleep | once | on_demand | continuous | timetable | manual
    text: str  # the Airflow schedule, for the header and registry
    crons: list[str] = field(default_factory=list)  # DSL expressions (two: race them)
    sleep_seconds: int = 0
    dates_sql: str = ""  # SELECT ... the dag_run row
    rule: str = ""  # the logical date rule, for the header
    notes: list[tuple[str, str]] = field(default_factory=list)  # (code, message)
    # timetable: the scheduled body around one run, and how it waits (for the header)
    build: Callable[[m.Node], m.Node] | None = None
    summary: str = ""
    # runs come from asset events, not ticks: nothing to catch up, nothing skipped
    triggered: bool = False


def run_dates(
    tick: str, period: str | None, interval: bool, run_type: str, interval_start: str | None = None
) -> str:
    """The dag_run row; ``tick`` is the SQL timestamptz of the run's tick
    (``interval_start``: the interval's start when it is not ``tick - period``)."""
    start, end = (f"{tick} - {period}", tick) if interval and period else (tick, tick)
    if interval and interval_start:
        start = interval_start
    iso = '\'YYYY-MM-DD"T"HH24:MI:SS"+00:00"\''
    return (
        "SELECT to_char(l, 'YYYY-MM-DD') AS ds, to_char(l, 'YYYYMMDD') AS ds_nodash,\n"
        f"       to_char(l, {iso}) AS ts, to_char(l, 'YYYYMMDD\"T\"HH24MISS') AS ts_nodash,\n"
        f"       to_char(l, {iso}) AS data_interval_start, to_char(e, {iso}) AS data_interval_end,\n"
        f"       '{run_type}__' || to_char(l, {iso}) AS run_id,\n"
        "       to_char(e, 'YYYY-MM-DD') AS next_ds, to_char(l - (e - l), 'YYYY-MM-DD') AS prev_ds,\n"
        "       to_char(l - interval '1 day', 'YYYY-MM-DD') AS yesterday_ds,\n"
        "       to_char(l + interval '1 day', 'YYYY-MM-DD') AS tomorrow_ds\n"
        f"FROM (SELECT ({start}) AT TIME ZONE 'UTC' AS l, ({end}) AT TIME ZONE 'UTC' AS e) AS run"
    )


def _period(expr: str) -> tuple[int, int] | None:
    """(period seconds, a tick as epoch seconds) when the cron fires at a fixed period."""
    base = datetime(2024, 1, 1, tzinfo=UTC)
    it = croniter(expr, base)
    ticks = [it.get_next(float) for _ in range(60)]
    gaps = {b - a for a, b in zip(ticks, ticks[1:], strict=False)}
    if len(gaps) == 1:
        return int(gaps.pop()), int(ticks[0])
    return None


def cron_plan(expr: str, text: str, generation: int) -> Plan:
    # croniter's L (last day) and N#k (k-th weekday): a Vixie cron (+ a day condition)
    extended = cron_extensions.read(expr)
    try:
        parsed = vixie.parse(extended.plain if extended else expr)
    except vixie.ScheduleError as exc:
        return Plan("manual", text, notes=[("PGD314", f"schedule {text!r}: {exc.reason}")])
    if not isinstance(parsed, vixie.CronSchedule):
        return Plan("manual", text, notes=[("PGD314", f"schedule {text!r} is not a cron")])
    crons = vixie.to_dsl(parsed, both_days=bool(extended and extended.both_days))
    plan = Plan("cron", text, crons=crons)
    if extended is not None:
        _extended(plan, extended, text)
    fixed = _period(expr)
    interval = generation < 3
    if fixed:
        period, anchor = fixed
        tick = f"to_timestamp({anchor} + floor((extract(epoch FROM now()) - {anchor}) / {period}) * {period})"
        plan.dates_sql = run_dates(tick, f"interval '{period} seconds'", interval, "scheduled")
    else:
        gaps = _min_gap(expr)
        tick = "date_trunc('minute', now())"
        plan.dates_sql = run_dates(tick, f"interval '{gaps} seconds'", interval, "scheduled")
        if interval:
            plan.notes.append(
                (
                    "PGD231",
                    f"{text!r} fires at irregular intervals: the run's interval start "
                    f"(ds) is computed as the tick minus {gaps} s, the shortest interval, "
                    "so it is wrong after a longer gap",
                )
            )
    plan.rule = _rule_text(generation, interval)
    return plan


def _extended(plan: Plan, extended: cron_extensions.Extended, text: str) -> None:
    """``plan`` made to run only on the days ``L``/``#`` select (in UTC)."""
    if extended.condition is None:  # N#k: weekday N on days 7k-6..7k, both must match
        return
    guard = cron_extensions.condition_sql(extended.condition)
    waits = [m.WaitForSchedule(c) for c in plan.crons]

    def build(run: m.Node) -> m.Node:
        wait = waits[0] if len(waits) == 1 else m.Race(waits[0], waits[1])
        return m.Loop(m.Seq((wait, m.If(m.Sql(guard), run, m.Sleep(0)))))

    plan.kind, plan.build = "timetable", build
    plan.summary = " | ".join(f"df.wait_for_schedule('{c}')" for c in plan.crons) + (
        f" + {extended.what}"
    )
    plan.notes.append(
        (
            "PGD211",
            f"{text!r} runs on {extended.what}: the workflow wakes on days 28-31 and runs "
            "only when the next day is the 1st (a SQL check in UTC)",
        )
    )


def _min_gap(expr: str) -> int:
    it = croniter(expr, datetime(2024, 1, 1, tzinfo=UTC))
    ticks = [it.get_next(float) for _ in range(200)]
    return int(min(b - a for a, b in zip(ticks, ticks[1:], strict=False)))


def _rule_text(generation: int, interval: bool) -> str:
    if interval:
        return (
            f"Airflow {generation}.x interval timetable: a run's logical date (ds) is the "
            "START of the interval that just ended; the run starts at its end"
        )
    return f"Airflow {generation}.x trigger timetable: a run's logical date is its trigger time"


def _timedelta_cron(seconds: float, start: Timestamp | None) -> str | None:
    minute, hour = 0, 0
    if start is not None and not start.iso.startswith("days_ago"):
        stamp = datetime.fromisoformat(start.iso)
        if start.timezone and not is_utc(start.timezone) and zone(start.timezone):
            # a timedelta adds absolute time to the aware start: anchor on its UTC instant
            stamp = stamp.replace(tzinfo=zone(start.timezone)).astimezone(UTC)
        minute, hour = stamp.minute, stamp.hour
        if stamp.second:
            return None
    s = int(seconds)
    if s != seconds or s <= 0 or s % 60:
        return None
    minutes = s // 60
    if minutes < 60 and 60 % minutes == 0:
        return (
            f"{minute % minutes}-59/{minutes} * * * *"
            if minute % minutes
            else f"*/{minutes} * * * *"
        )
    if minutes % 60 == 0 and minutes < 1440 and 1440 % minutes == 0:
        hours = minutes // 60
        first = hour % hours
        return f"{minute} {first}-23/{hours} * * *" if first else f"{minute} */{hours} * * *"
    if minutes == 1440:
        return f"{minute} {hour} * * *"
    return None


def _zoned(p: Plan, expr: str, timezone: str | None, generation: int) -> Plan:
    """A cron plan evaluated in the DAG's zone (translators/airflow/dag_zone.py)."""
    if timezone is None or p.kind == "manual":
        return p
    from pgdurable.translators.airflow import dag_zone  # it builds on this module

    return dag_zone.plan(p, expr, timezone, generation)


def _asset_text(schedule: object) -> str:
    parts = schedule if isinstance(schedule, list) else [schedule]
    return ", ".join(getattr(p, "text", str(p)) for p in parts)


def plan(
    schedule: object,
    *,
    present: bool,
    generation: int,
    start_date: object,
    timezone: str | None = None,
) -> Plan:
    """How a DAG with this ``schedule`` runs. ``present`` is False when the DAG
    names no schedule (daily in 1.x/2.x, on demand in 3.x). ``timezone``: the
    DAG's zone (from start_date, ``dag_zone.of``), None for UTC."""
    if not present:
        if generation < 3:
            p = cron_plan("0 0 * * *", "(absent: @daily in Airflow 1.x/2.x)", generation)
            return _zoned(p, "0 0 * * *", timezone, generation)
        schedule = None
    if schedule is None:
        p = Plan("on_demand", "None (on demand)")
        p.dates_sql = run_dates("now()", None, False, "manual")
        p.rule = "on demand: a run's logical date is the time it was triggered"
        return p
    if isinstance(schedule, str):
        text = schedule
        if text == "@once":
            stamp = start_date if isinstance(start_date, Timestamp) else None
            p = Plan("once", "@once")
            if stamp and not stamp.iso.startswith("days_ago"):
                p.dates_sql = run_dates(
                    f"timestamptz '{stamp.iso}+00:00'", None, False, "scheduled"
                )
                p.rule = "@once: the logical date is start_date"
            else:
                p.dates_sql = run_dates("now()", None, False, "scheduled")
                p.rule = "@once: the logical date is the time the workflow is applied"
            return p
        if text == "@continuous":
            p = Plan("continuous", text)
            p.dates_sql = run_dates("now()", None, False, "scheduled")
            p.rule = "@continuous: a run's logical date is its start time"
            return p
        expr = PRESETS.get(text, text)
        return _zoned(cron_plan(expr, text, generation), expr, timezone, generation)
    if isinstance(schedule, Duration):
        text = f"timedelta(seconds={schedule.seconds:g})"
        cron = _timedelta_cron(
            schedule.seconds, start_date if isinstance(start_date, Timestamp) else None
        )
        if cron is not None:
            p = cron_plan(cron, text, generation)
            p.text = f"{text} (= cron '{cron}' from start_date)"
            return p
        seconds = max(1, math.ceil(schedule.seconds))
        p = Plan("sleep", text, sleep_seconds=seconds)
        period = f"interval '{seconds} seconds'"
        p.dates_sql = run_dates("date_trunc('second', now())", period, generation < 3, "scheduled")
        p.rule = _rule_text(generation, generation < 3)
        p.notes.append(
            (
                "PGD232",
                f"{text} does not divide an hour or a day from start_date: the workflow "
                f"sleeps {seconds} s after each run ends, so runs drift by the run time",
            )
        )
        return p
    if isinstance(schedule, OrTime):
        from pgdurable.translators.airflow import or_time  # it builds on this module

        return or_time.plan(schedule, generation, start_date)
    if isinstance(schedule, Asset) or (isinstance(schedule, list) and schedule):
        from pgdurable.translators.airflow import assets  # it builds on this module

        wired = assets.plan(schedule)
        if wired is not None:
            return wired
        return Plan(
            "manual",
            f"assets {schedule}",
            notes=[
                (
                    "PGD314",
                    f"the Dataset/Asset schedule {_asset_text(schedule)} cannot be read without "
                    "running the file (a name bound elsewhere, an alias); start the DAG with "
                    "its trigger function where the producer finishes",
                )
            ],
        )
    what = schedule.text if isinstance(schedule, Unknown) else repr(schedule)
    from pgdurable.translators.airflow import timetables  # it builds on this module

    found = timetables.plan(str(what), generation, start_date)
    if found is not None:
        return found
    from pgdurable.translators.airflow import partitions  # it builds on this module

    found = partitions.plan(str(what), generation, start_date)
    if found is not None:
        return found
    return Plan(
        "manual",
        str(what),
        notes=[
            ("PGD314", f"the schedule `{what}` (a timetable or a computed value) is not translated")
        ],
    )
