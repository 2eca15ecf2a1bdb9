"""Queue schedules to the scheduler part of a workflow.

Every periodic entry becomes a workflow that only decides WHEN a run starts;
each tick calls the job's enqueue function (``fire``), which starts the run
as its own instance, the way beat/cron/the CronJob controller hands a run to
a worker. Conversions (diagnostic codes in MIGRATING.md):

* cron text of any grammar is first normalised to the five Vixie fields and
  parsed by ``vixie`` (pg_cron's grammar: the one parser for every source),
  then converted with ``vixie.to_dsl`` (Sunday = 1, both day fields must
  match; Vixie's either-day rule becomes a race of two waits). Robfig
  (Kubernetes) and fugit (Sidekiq) also allow ``?`` and ``N/step``; fugit
  has an optional leading seconds field and a trailing time-zone name;
* a time zone other than UTC (the DSL evaluates cron in UTC) keeps exact
  local-time semantics: the workflow wakes at every UTC time that can be a
  matching local time and a SQL condition checks the local fields;
* fixed intervals (Celery seconds/``timedelta``, Sidekiq ``every``,
  ``@every``) become a sleep loop; Sidekiq ``in`` a single delayed run;
  forms with no equivalent (Celery ``solar``, Sidekiq ``at``) are manual.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pgdurable import model as m
from pgdurable.diagnostics import Collector
from pgdurable.translators import vixie
from pgdurable.translators.queue import fugit_days
from pgdurable.translators.queue.jobs import Cron, Every, Once, Schedule, Unschedulable

UTC_NAMES = {"utc", "etc/utc", "gmt", "etc/gmt", "uct", "zulu", "universal", "z", "etc/zulu"}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(y|M|w|d|h|m|s)")
_UNIT_SECONDS = {"y": 365 * 86400, "M": 30 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600}
_UNIT_SECONDS.update({"m": 60, "s": 1})
_FIELD_MAX = [59, 23, 31, 12, 7]


def duration_seconds(text: str) -> float | None:
    """A rufus/fugit/Go duration (``90``, ``30s``, ``1h30m``, ``2d``) in seconds, or None."""
    text = str(text).strip()
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        return float(text)
    compact = text.replace(" ", "")
    if not compact or _DURATION.sub("", compact):
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(compact))


def is_utc(tz: str | None) -> bool:
    return tz is None or tz.strip().lower() in UTC_NAMES


def zone(tz: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _normalise_field(text: str, index: int) -> str:
    """Robfig/fugit field syntax that Vixie lacks: ``?`` is ``*``; ``N/s`` is ``N-max/s``."""
    items = []
    for item in text.split(","):
        if item == "?":
            item = "*"
        step = re.fullmatch(r"(\d+|[A-Za-z]{3})/(\d+)", item)
        if step:
            item = f"{step.group(1)}-{_FIELD_MAX[index]}/{step.group(2)}"
        items.append(item)
    return ",".join(items)


def split_fugit(text: str) -> tuple[str, str | None, str | None]:
    """Sidekiq's cron string as (five fields, seconds field, time zone)."""
    tokens = text.split()
    tz = None
    if len(tokens) in (6, 7) and (
        "/" in tokens[-1] or tokens[-1].lower() in UTC_NAMES or re.search(r"[a-z]{3,}", tokens[-1])
    ):
        if zone(tokens[-1]) is not None or tokens[-1].lower() in UTC_NAMES:
            tz = tokens.pop()
    seconds = tokens.pop(0) if len(tokens) == 6 else None
    return " ".join(tokens), seconds, tz


def parse_cron(spec: Cron) -> vixie.CronSchedule | vixie.Reboot:
    """The schedule under Vixie's parser; raises vixie.ScheduleError."""
    text = spec.text.strip()
    if text.startswith("@"):
        if spec.grammar != "vixie" and text.split()[0] in ("@reboot", "@restart"):
            raise vixie.ScheduleError(text, "@reboot is a crontab-only macro")
        parsed = vixie.parse(text)
    else:
        fields = text.split()
        if len(fields) != 5:
            raise vixie.ScheduleError(text, f"{len(fields)} fields; expected exactly 5")
        if spec.grammar in ("robfig", "fugit", "celery"):
            fields = [_normalise_field(f, i) for i, f in enumerate(fields)]
        parsed = vixie.parse(" ".join(fields))
    if isinstance(parsed, vixie.Seconds):  # pg_cron's 'N seconds' is not cron anywhere else
        raise vixie.ScheduleError(text, "'N seconds' is pg_cron syntax")
    return parsed


def _wait(expressions: list[str], diag: Collector) -> m.Node:
    waits = [m.WaitForSchedule(e) for e in expressions]
    if len(waits) == 2:
        diag.add(
            "PGD210",
            "both day fields are restricted, so the source runs on days that match "
            f"EITHER; the DSL needs both to match, so the workflow races '{expressions[0]}' "
            f"against '{expressions[1]}' and runs at the earlier",
        )
        return m.Race(waits[0], waits[1])
    return waits[0]


def _offsets(tz: ZoneInfo) -> set[int]:
    """The zone's UTC offsets in minutes over a whole year (DST included)."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    found = set()
    for day in range(0, 366, 7):
        offset = (start + timedelta(days=day)).astimezone(tz).utcoffset()
        found.add(int(offset.total_seconds() // 60) if offset else 0)
    return found


def _in_list(expression: str, values: frozenset[int]) -> str:
    return f"extract({expression} FROM t)::int IN ({', '.join(str(v) for v in sorted(values))})"


def local_time_check(
    s: vixie.CronSchedule, tz: str, both_days: bool
) -> tuple[str, str | None] | None:
    """(UTC wake-up cron, SQL condition on local time), or None when the zone
    changes nothing (only the minute field is restricted, on whole-hour offsets)."""
    offsets = _offsets(zone(tz))  # type: ignore[arg-type]
    whole_hours = all(o % 60 == 0 for o in offsets)
    conditions = []
    if whole_hours:
        minutes = s.minute.values
    else:
        minutes = frozenset((v - o) % 60 for v in s.minute.values for o in offsets)
        conditions.append(_in_list("minute", s.minute.values))
    if s.hour.values != frozenset(range(24)):
        conditions.append(_in_list("hour", s.hour.values))
    if s.month.values != frozenset(range(1, 13)):
        conditions.append(_in_list("month", s.month.values))
    dom = None if s.dom.star and s.dom.values == vixie.ALL_DAYS else _in_list("day", s.dom.values)
    dow = (
        None if s.dow.star and s.dow.values == vixie.ALL_WEEKDAYS else _in_list("dow", s.dow.values)
    )
    if s.day_or and not both_days and dom and dow:
        conditions.append(f"({dom} OR {dow})")
    else:
        conditions += [c for c in (dom, dow) if c]
    wake = f"{vixie.dsl_field(minutes, 0, 59)} * * * *"
    if not conditions:
        return None
    where = " AND ".join(conditions)
    sql = f"SELECT {where} FROM (SELECT now() AT TIME ZONE '{tz}' AS t) AS local_time"
    return wake, sql


def _seconds_field(text: str) -> frozenset[int]:
    parsed = vixie.parse(f"{_normalise_field(text, 0)} * * * *")
    assert isinstance(parsed, vixie.CronSchedule)
    return parsed.minute.values


def _cron(spec: Cron, fire: m.Node, diag: Collector) -> tuple[m.Node, str] | None:
    condition, force_both = None, False
    if spec.grammar == "fugit" and fugit_days.special(spec.text):
        rewritten = fugit_days.rewrite(spec.text, spec.timezone)
        if isinstance(rewritten, str):
            diag.add(
                "PGD365",
                f"'{spec.original or spec.text}': {rewritten}. The file registers the run "
                "without starting it: write the schedule as plain cron fields (or call the "
                "enqueue function from your own trigger)",
            )
            return fire, "none"
        diag.add("PGD267", rewritten.note)
        condition = rewritten.condition
        force_both = rewritten.both_days
        spec = replace(spec, text=rewritten.text)
    if condition is not None:
        fire = m.If(m.Sql(f"SELECT {condition}"), fire, m.Sleep(0))
    try:
        parsed = parse_cron(spec)
        seconds = _seconds_field(spec.seconds) if spec.seconds is not None else frozenset({0})
    except vixie.ScheduleError as exc:
        diag.add("PGD104", f"{exc.reason} in '{spec.original or spec.text}'; fix the schedule")
        return None
    if isinstance(parsed, vixie.Reboot):
        diag.add(
            "PGD301",
            "@reboot runs once each time cron starts; a workflow has no 'server started' "
            "trigger. The file registers the run without starting it: call the enqueue "
            "function from your start-up tooling, or drop the entry",
        )
        return fire, "none"
    if vixie.never_fires(parsed):
        diag.add(
            "PGD305",
            f"'{spec.original or spec.text}' has a reversed range, so it never fires; "
            "the file registers the run without starting it",
        )
        return fire, "none"
    if not is_utc(spec.timezone) and zone(spec.timezone or "") is None:
        diag.add(
            "PGD104",
            f"unknown time zone '{spec.timezone}'; use an IANA name such as Europe/Berlin",
        )
        return None
    both_days = spec.grammar == "celery" or force_both
    run: m.Node = fire
    if not is_utc(spec.timezone):
        check = local_time_check(parsed, spec.timezone or "", both_days)
        if check is None:
            wait = _wait(vixie.to_dsl(parsed, both_days=both_days), diag)
            dsl = " | ".join(vixie.to_dsl(parsed, both_days=both_days))
        else:
            wake, sql = check
            diag.add(
                "PGD214",
                f"the source evaluates the schedule in {spec.timezone}; the DSL evaluates "
                f"cron in UTC, so the workflow wakes at '{wake}' (UTC) and a SQL condition "
                f"runs the job only when the local time in {spec.timezone} matches (daylight "
                "saving included: a skipped local time does not run, a repeated one runs twice)",
            )
            wait = m.WaitForSchedule(wake)
            run = m.If(m.Sql(sql), fire, m.Sleep(0))
            dsl = f"{wake} + local-time check"
    else:
        expressions = vixie.to_dsl(parsed, both_days=both_days)
        wait = _wait(expressions, diag)
        dsl = " | ".join(expressions)
    if seconds != frozenset({0}):
        values = sorted(seconds)
        if len(values) == 1:
            diag.add(
                "PGD218",
                f"the seconds field '{spec.seconds}': the workflow sleeps {values[0]} s after "
                "each minute tick",
            )
            run = m.Seq((m.Sleep(values[0]), run))
            dsl += f" + {values[0]} s"
        else:
            diag.add(
                "PGD219",
                f"the seconds field '{spec.seconds}' fires {len(values)} times a minute; "
                "the DSL's cron has minute resolution, so the workflow runs once per "
                f"matching minute, at second {values[0]}. For sub-minute intervals use "
                "'every' instead",
            )
            if values[0]:
                run = m.Seq((m.Sleep(values[0]), run))
    return m.Loop(m.Seq((wait, run))), dsl


def scheduler(schedule: Schedule, fire: m.Node, diag: Collector) -> tuple[m.Node, str] | None:
    """(workflow body, DSL schedule summary), or None when the schedule is unusable.
    ``fire`` starts one run; it is the whole body when nothing repeats."""
    match schedule:
        case Cron():
            return _cron(schedule, fire, diag)
        case Every(seconds=n, first_in=first):
            diag.add(
                "PGD215",
                f"'{schedule.text}' (every {n} s) becomes a loop that sleeps {n} s between "
                "starts; each start takes a step, so the period drifts by a few milliseconds "
                "per run",
            )
            if first is None:
                return m.Loop(m.Seq((m.Sleep(n), fire))), f"every {n} s"
            loop = m.Loop(m.Seq((fire, m.Sleep(n))))
            return m.Seq((m.Sleep(first), loop)), f"after {first} s, then every {n} s"
        case Once(delay=d):
            diag.add(
                "PGD215",
                f"'{schedule.text}' runs once, {d} s after the workflow is applied (the "
                "source counted from when its scheduler started)",
            )
            return m.Seq((m.Sleep(d), fire)), f"once, after {d} s"
        case Unschedulable(text=text, reason=reason):
            diag.add(
                "PGD309",
                f"'{text}': {reason}. The file registers the run without a schedule and "
                "without starting it; call the enqueue function from your own trigger",
            )
            return fire, "none"
    raise TypeError(schedule)
