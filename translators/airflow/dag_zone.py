"""The DAG's time zone, taken from ``start_date``, applied to a cron schedule.

Airflow (1.10: ``DAG.__init__``; 2.x ``models/dag.py``; 3.x alike) sets
``dag.timezone`` from the tzinfo of ``start_date`` (else of
``default_args['start_date']``, else ``default_timezone``, UTC here) and its
cron timetables evaluate the cron in that zone: ``start_date=pendulum.datetime(
2024, 1, 1, tz="Asia/Seoul")`` with ``"0 1 * * *"`` runs at 01:00 KST (16:00 UTC).
The DSL evaluates cron in UTC, so a cron in another zone gets the PGD214 rule
the timetables already use (``timetables._guarded``): wake at every UTC minute
that can match, run only when a SQL condition on the local time matches.

The data interval (1.x/2.x) follows Airflow's ``_get_prev``: for a cron that
does not fire every hour the previous fire time is computed on the local wall
clock (a daily cron's interval is 23 or 25 hours on a DST day); for one that
fires every hour it is the absolute period. ``ds`` stays the UTC date of the
logical date, as Airflow renders it.

Daylight saving: Airflow runs a fire time that falls in a skipped local hour
once, an hour later, and a repeated one once (pendulum's ``fold=1``); the
local-time check skips the first and runs the second twice. When the cron can
fire inside such a window of the zone, the plan is approximate (PGD246).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from croniter import croniter

from pgdurable.translators import cron_extensions, vixie
from pgdurable.translators.airflow import schedule as base
from pgdurable.translators.airflow.dagfile import Timestamp, Unknown
from pgdurable.translators.queue.schedules import is_utc, local_time_check, zone

MINUTE_TICK = "date_trunc('minute', now())"


def of(start_date: object, default_start: object) -> str | None:
    """The zone name of the DAG (None: UTC); ``"?"`` when start_date's zone cannot be read."""
    for stamp in (start_date, default_start):
        if isinstance(stamp, Timestamp) and stamp.zone_unknown:
            return "?"
        if isinstance(stamp, Timestamp) and stamp.timezone:
            if is_utc(stamp.timezone):
                return None
            return stamp.timezone if zone(stamp.timezone) is not None else "?"
        if isinstance(stamp, Unknown):
            named = set(_ZONE_NAMED.findall(stamp.text))
            if (
                len(named) == 1
            ):  # pendulum.today("Asia/Seoul").add(days=-1): date unknown, zone known
                (name,) = named
                if is_utc(name):
                    return None
                return name if zone(name) is not None else "?"
            if _names_a_zone(stamp.text):
                return "?"
        if isinstance(stamp, Timestamp | Unknown):
            return None  # naive (Airflow: default_timezone) or days_ago (UTC)
    return None


# a zone spelled as a literal inside a date that is not one: tz="X", today("X"), timezone("X")
_ZONE_NAMED = re.compile(
    r"""(?:\btz(?:info)?\s*=\s*|\b(?:today|now|yesterday|tomorrow|timezone|ZoneInfo)\(\s*)"""
    r"""["']([^"']+)["']"""
)


def _names_a_zone(text: str) -> bool:
    """Whether a date that cannot be read may carry a zone other than UTC (a naive
    ``datetime.now()`` is UTC to Airflow; ``pendulum.now()`` is the host's zone)."""
    lowered = text.replace(" ", "").lower()
    if re.search(r"\butc\b", lowered):
        return False  # timezone.utc, pendulum.UTC
    if any(word in lowered for word in ("tz=", "tzinfo", "timezone", "zoneinfo")):
        return True
    return "pendulum." in lowered and any(
        word in lowered for word in ("now(", "today(", "yesterday(", "tomorrow(")
    )


def _covers_every_hour(expr: str) -> bool:
    """Airflow's rule (timetables/_cron.py): the DST workaround applies when the hour field is every hour."""
    return expr.split()[1] == "*"


def _dst_windows(tz: str) -> list[tuple[datetime, datetime, str]]:
    """(local start, local end, "skipped"|"repeated") of the zone's clock changes over two years."""
    info = zone(tz)
    assert info is not None
    windows = []
    at = datetime(2025, 1, 1, tzinfo=UTC)
    before = at.astimezone(info).utcoffset()
    for _ in range(2 * 366 * 24):
        at += timedelta(hours=1)
        after = at.astimezone(info).utcoffset()
        if after != before and before is not None and after is not None:
            # find the change to the minute within the last hour
            change = at - timedelta(hours=1)
            while change.astimezone(info).utcoffset() == before:
                change += timedelta(minutes=1)
            low, high = sorted((before, after))
            start = (change + low).replace(tzinfo=None)
            windows.append(
                (start, start + (high - low), "skipped" if after > before else "repeated")
            )
        before = after
    return windows


def dst_clash(expr: str, tz: str) -> str | None:
    """How the cron meets the zone's clock changes, or None when it never fires in one."""
    found = set()
    for start, end, kind in _dst_windows(tz):
        minute = start
        while minute < end:
            if croniter.match(expr, minute):
                found.add(kind)
                break
            minute += timedelta(minutes=1)
    if not found:
        return None
    return " and ".join(sorted(found))


def plan(found: base.Plan, expr: str, tz: str, generation: int) -> base.Plan:
    """``found`` (the plan of cron ``expr`` in UTC) re-evaluated in ``tz``."""
    from pgdurable.translators.airflow import timetables  # it builds on schedule too

    if tz == "?":
        found.notes.append(
            (
                "PGD247",
                "start_date carries a time zone that cannot be read without running the file; "
                "Airflow evaluates the schedule in that zone, the workflow in UTC",
            )
        )
        return found
    extended = cron_extensions.read(expr)
    parsed = vixie.parse(extended.plain if extended else expr)  # read by cron_plan already
    assert isinstance(parsed, vixie.CronSchedule)
    both = bool(extended and extended.both_days)
    check = local_time_check(parsed, tz, both_days=both)
    day = extended.condition if extended else None
    if check is None and day is None:  # minutes only, whole-hour offsets: same instants
        found.text += f" (in {tz}, the zone of start_date: same instants as UTC)"
        return found
    if check is None:
        wakes = vixie.to_dsl(parsed, both_days=both)
        local = "true"
    else:
        wakes, local = [check[0]], f"coalesce(({check[1]}), false)"
    if day is not None:  # L: the last day of the month in the zone
        local += f" AND coalesce(({cron_extensions.condition_sql(day, tz)}), false)"
    guard = f"SELECT {local}"
    wait = timetables._race(wakes)

    def build(run):
        from pgdurable import model as m

        return m.Loop(m.Seq((wait, m.If(m.Sql(guard), run, m.Sleep(0)))))

    zoned = base.Plan("timetable", f"{found.text} in {tz} (the zone of start_date)", build=build)
    zoned.summary = " | ".join(f"df.wait_for_schedule('{w}')" for w in wakes) + (
        f" + local time in {tz}"
    )
    zoned.rule = found.rule
    # PGD231 is re-judged below, in the zone; PGD211 (L) is checked in the zone now
    zoned.notes = [n for n in found.notes if n[0] not in ("PGD231", "PGD211")]
    interval = generation < 3
    fixed = base._period(expr)  # the wall-clock period (UTC has no DST)
    if interval and fixed:
        if _covers_every_hour(expr):
            start = f"{MINUTE_TICK} - interval '{fixed[0]} seconds'"
        else:  # the previous fire on the local wall clock
            start = (
                f"(({MINUTE_TICK}) AT TIME ZONE '{tz}' - interval '{fixed[0]} seconds') "
                f"AT TIME ZONE '{tz}'"
            )
        zoned.dates_sql = base.run_dates(MINUTE_TICK, "x", True, "scheduled", interval_start=start)
    else:
        zoned.dates_sql = base.run_dates(MINUTE_TICK, None, False, "scheduled")
        if interval:
            zoned.rule = (
                f"Airflow {generation}.x interval timetable, irregular in {tz}: a run's "
                "logical date (ds) is taken as its trigger minute here (PGD231)"
            )
            zoned.notes.append(
                (
                    "PGD231",
                    f"{expr!r} in {tz} fires at irregular intervals: the run's ds is taken "
                    "as its trigger minute, not the start of the interval that just ended",
                )
            )
    zoned.notes.append(
        (
            "PGD214",
            f"Airflow evaluates the cron in {tz}, the time zone of start_date; the DSL "
            "evaluates cron in UTC, so the workflow wakes at every UTC minute that can match "
            f"and a SQL condition on the local time in {tz} runs the DAG only when it matches",
        )
    )
    clash = dst_clash(expr, tz)
    if clash:
        zoned.notes.append(
            (
                "PGD246",
                f"{expr!r} can fire in a {clash} local hour of {tz} (daylight saving): Airflow "
                "runs a skipped local time once, an hour later, and a repeated one once; the "
                "workflow does not run a skipped one and runs a repeated one twice",
            )
        )
    return zoned
