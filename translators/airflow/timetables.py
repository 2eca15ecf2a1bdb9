"""Airflow timetables (``schedule=SomeTimetable(...)``) -> how the workflow waits.

The DAG file is read, never run, so a timetable arrives as its source text
(``CronTriggerTimetable("0 6 * * 1-5", timezone="Europe/Berlin")``); this
module reads the call's literal arguments with libcst:

* ``CronTriggerTimetable`` / ``MultipleCronTriggerTimetable``: a trigger
  timetable (the logical date is the trigger time), one cron or several
  raced; ``CronDataIntervalTimetable``: an interval timetable (``ds`` is the
  start of the interval that just ended), as 2.x cron strings are;
* ``DeltaDataIntervalTimetable`` / ``DeltaTriggerTimetable``: a ``timedelta``
  schedule with the interval or trigger rule;
* ``EventsTimetable``: one run at each listed instant still ahead;
* a time zone other than UTC: the workflow wakes at every UTC minute that
  can be a matching local time and a SQL condition on the local time in that
  zone decides (the queue translator's rule, DST included).

Anything not literal (a name bound elsewhere, a custom timetable class)
yields None and the caller keeps PGD314 with the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import libcst as cst

from pgdurable import model as m
from pgdurable.sqltext import literal
from pgdurable.translators import vixie
from pgdurable.translators.airflow import schedule as base
from pgdurable.translators.airflow.dagfile import Duration
from pgdurable.translators.queue.schedules import is_utc, local_time_check, zone

CRON_TRIGGER = "CronTriggerTimetable"
MULTIPLE_CRON = "MultipleCronTriggerTimetable"
CRON_INTERVAL = "CronDataIntervalTimetable"
DELTA_INTERVAL = "DeltaDataIntervalTimetable"
DELTA_TRIGGER = "DeltaTriggerTimetable"
EVENTS = "EventsTimetable"
CLASSES = {CRON_TRIGGER, MULTIPLE_CRON, CRON_INTERVAL, DELTA_INTERVAL, DELTA_TRIGGER, EVENTS}
MINUTE_TICK = "date_trunc('minute', now())"


class NotLiteral(Exception):
    """An argument the translator cannot know without running the file."""


@dataclass(frozen=True)
class Call:
    name: str
    args: list[Any]
    kwargs: dict[str, Any]


def _name(func: cst.BaseExpression) -> str:
    if isinstance(func, cst.Attribute):
        return func.attr.value
    if isinstance(func, cst.Name):
        return func.value
    raise NotLiteral


def _number(node: cst.BaseExpression) -> float:
    value = _value(node)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise NotLiteral
    return value


def _value(node: cst.BaseExpression) -> Any:
    """A literal, a time zone name, a duration in seconds (Duration) or an aware datetime."""
    match node:
        case cst.SimpleString() | cst.ConcatenatedString():
            return node.evaluated_value
        case cst.Integer() | cst.Float():
            return node.evaluated_value
        case cst.UnaryOperation(operator=cst.Minus(), expression=inner):
            return -_number(inner)
        case cst.List(elements=els) | cst.Tuple(elements=els):
            return [_value(e.value) for e in els]
        case cst.Name(value="None"):
            return None
        case cst.Name(value="True" | "False"):
            return node.value == "True"
        case cst.Name(value="UTC") | cst.Attribute(attr=cst.Name(value="UTC" | "utc")):
            return "UTC"
        case cst.Call(func=func, args=arguments):
            name = _name(func)
            args = [_value(a.value) for a in arguments if a.keyword is None]
            kwargs = {a.keyword.value: _value(a.value) for a in arguments if a.keyword}
            if name in ("timezone", "Timezone", "ZoneInfo", "gettz") and args:
                return str(args[0])
            if name in ("timedelta", "duration"):
                try:
                    return Duration(timedelta(*args, **kwargs).total_seconds())
                except (TypeError, OverflowError) as exc:  # beyond ±999999999 days
                    raise NotLiteral from exc
            if name == "datetime":
                return _instant(args, kwargs)
            return Call(name, args, kwargs)
    raise NotLiteral


def _instant(args: list[Any], kwargs: dict[str, Any]) -> datetime:
    """``datetime(...)``/``pendulum.datetime(...)``: naive means UTC (Airflow's default)."""
    tz = kwargs.pop("tz", None) or kwargs.pop("tzinfo", None) or "UTC"
    if not isinstance(tz, str) or (not is_utc(tz) and zone(tz) is None):
        raise NotLiteral
    try:
        local = datetime(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise NotLiteral from exc
    return local.replace(tzinfo=UTC if is_utc(tz) else zone(tz)).astimezone(UTC)


def read(text: str) -> Call | None:
    """The timetable call in ``text``, or None when it is not one of ours."""
    try:
        found = _value(cst.parse_expression(text))
    except (cst.ParserSyntaxError, NotLiteral, ValueError):
        return None
    return found if isinstance(found, Call) and found.name in CLASSES else None


def _manual(text: str, why: str) -> base.Plan:
    return base.Plan("manual", text, notes=[("PGD314", f"the timetable `{text}`: {why}")])


def _zone_of(call: Call) -> str | None:
    tz = call.kwargs.get("timezone", "UTC")
    return tz if isinstance(tz, str) else None


def _guarded(crons: list[str], tz: str) -> tuple[list[str], str] | str:
    """(UTC wake-up crons, SQL condition on the local time), or why it cannot be."""
    wakes: list[str] = []
    conditions: list[str] = []
    for expr in crons:
        try:
            parsed = vixie.parse(base.PRESETS.get(expr, expr))
        except vixie.ScheduleError as exc:
            return f"{expr!r}: {exc.reason}"
        if not isinstance(parsed, vixie.CronSchedule):
            return f"{expr!r} is not a cron"
        check = local_time_check(parsed, tz, both_days=False)
        if check is None:  # the zone changes nothing (minutes only, whole-hour offsets)
            wakes += vixie.to_dsl(parsed)
            conditions.append("true")
            continue
        wake, sql = check
        wakes.append(wake)
        conditions.append(f"coalesce(({sql}), false)")
    unique = list(dict.fromkeys(wakes))
    return unique, "SELECT " + " OR ".join(conditions)


def _race(crons: list[str]) -> m.Node:
    waits: list[m.Node] = [m.WaitForSchedule(c) for c in crons]
    node = waits[-1]
    for wait in reversed(waits[:-1]):
        node = m.Race(wait, node)
    return node


def _timed_plan(text: str, crons: list[str], tz: str, interval: bool, generation: int) -> base.Plan:
    """Several crons (raced), in a zone: a loop that wakes in UTC and checks the local time."""
    found = _guarded(crons, tz) if not is_utc(tz) else None
    if isinstance(found, str):
        return _manual(text, found)
    if found is None:
        dsl: list[str] = []
        for expr in crons:
            try:
                parsed = vixie.parse(base.PRESETS.get(expr, expr))
            except vixie.ScheduleError as exc:
                return _manual(text, f"{expr!r}: {exc.reason}")
            if not isinstance(parsed, vixie.CronSchedule):
                return _manual(text, f"{expr!r} is not a cron")
            dsl += vixie.to_dsl(parsed)
        wakes, guard = list(dict.fromkeys(dsl)), None
    else:
        wakes, guard = found
    wait = _race(wakes)

    def build(run: m.Node) -> m.Node:
        body = run if guard is None else m.If(m.Sql(guard), run, m.Sleep(0))
        return m.Loop(m.Seq((wait, body)))

    plan = base.Plan("timetable", text, build=build)
    plan.summary = " | ".join(f"df.wait_for_schedule('{w}')" for w in wakes) + (
        f" + local time in {tz}" if guard else ""
    )
    plan.dates_sql = base.run_dates(MINUTE_TICK, None, False, "scheduled")
    plan.rule = f"{text}: a run's logical date is its trigger time (the minute it fires)"
    if guard is not None:
        plan.notes.append(
            (
                "PGD214",
                f"the timetable evaluates its cron in {tz}; the DSL evaluates cron in UTC, so "
                "the workflow wakes at every UTC minute that can match and a SQL condition on "
                f"the local time in {tz} runs the DAG only when it matches (daylight saving "
                "included: a skipped local time does not run, a repeated one runs twice)",
            )
        )
    if interval:
        plan.notes.append(
            (
                "PGD231",
                f"{text} is an interval timetable in {tz}: the run's ds is taken as its "
                "trigger minute, not the start of the interval that just ended",
            )
        )
    return plan


def _events(text: str, call: Call) -> base.Plan:
    dates = call.kwargs.get("event_dates", call.args[0] if call.args else None)
    if not isinstance(dates, list) or not all(isinstance(d, datetime) for d in dates):
        return _manual(text, "event_dates is not a list of literal datetimes")
    if not dates:
        return _manual(text, "event_dates is empty: the DAG never runs")
    instants = sorted(set(dates))

    def build(run: m.Node) -> m.Node:
        steps: list[m.Node] = []
        for when in instants:
            at = f"timestamptz {literal(when.isoformat())}"
            cron = f"{when.minute} {when.hour} {when.day} {when.month} *"
            # The cron ticks yearly at that minute: wait until the tick that is the instant.
            not_yet = m.Sql(f"SELECT now() < {at}")
            wait = m.Loop(m.WaitForSchedule(cron), not_yet)
            then = m.Seq((wait, m.Sleep(when.second), run)) if when.second else m.Seq((wait, run))
            steps.append(m.If(m.Sql(f"SELECT now() < {at}"), then, m.Sleep(0)))
        return m.Seq(tuple(steps)) if len(steps) > 1 else steps[0]

    plan = base.Plan("timetable", text, build=build)
    plan.summary = f"one run at each of {len(instants)} instants still ahead (UTC): " + ", ".join(
        d.strftime("%Y-%m-%d %H:%M:%S") for d in instants
    )
    plan.dates_sql = base.run_dates(MINUTE_TICK, None, False, "scheduled")
    plan.rule = "EventsTimetable: a run's logical date is its event time"
    plan.notes.append(
        (
            "PGD238",
            "EventsTimetable: instants already past when the workflow starts are not run",
        )
    )
    return plan


def plan(text: str, generation: int, start_date: object) -> base.Plan | None:
    """The plan of a timetable, or None when ``text`` is not a timetable this reads."""
    call = read(text)
    if call is None:
        return None
    tz = _zone_of(call)
    if tz is None or (not is_utc(tz) and zone(tz) is None):
        return _manual(text, f"the time zone {call.kwargs.get('timezone')!r} is not a known name")
    if call.name in (DELTA_INTERVAL, DELTA_TRIGGER):
        delta = call.kwargs.get("delta", call.args[0] if call.args else None)
        if not isinstance(delta, Duration):
            return _manual(text, "its delta is not a literal timedelta")
        found = base.plan(
            delta,
            present=True,
            generation=2 if call.name == DELTA_INTERVAL else 3,
            start_date=start_date,
        )
        found.text = text + found.text.removeprefix(f"timedelta(seconds={delta.seconds:g})")
        return found
    if call.name == EVENTS:
        return _events(text, call)
    if call.name == MULTIPLE_CRON:
        crons = call.args
    else:
        crons = [call.kwargs.get("cron", call.args[0] if call.args else None)]
    if not crons or not all(isinstance(c, str) for c in crons):
        return _manual(text, "its cron is not a literal string")
    interval = call.name == CRON_INTERVAL
    extra = call.kwargs.get("interval")
    if is_utc(tz) and len(crons) == 1:
        found = base.cron_plan(base.PRESETS.get(crons[0], crons[0]), text, 2 if interval else 3)
    else:
        found = _timed_plan(text, crons, tz, interval, generation)
    if isinstance(extra, Duration) and extra.seconds:
        found.notes.append(
            (
                "PGD231",
                f"interval={extra.seconds:g} s: Airflow's data interval starts that long before "
                "the trigger; the run's data_interval_start is its trigger time here",
            )
        )
    return found
