"""Next tick of a ``df.wait_for_schedule`` cron expression (SPEC B §4.2, A.2.5).

The reference prefixes ``0 `` (seconds) to the 5-field text and evaluates it
with Quartz-style rules, in UTC:

- fields: minute hour day-of-month month day-of-week;
- day-of-week is 1–7 with Sunday = 1 (0 is invalid), names SUN–SAT allowed;
- day-of-month AND day-of-week must both match (not Vixie cron's OR);
- ``*``, ``?`` (any), lists ``a,b``, ranges ``a-b``, steps ``*/n`` and ``a/n``
  or ``a-b/n``, month names JAN–DEC.

The next tick is strictly after the given moment, with seconds = 0. This
module is pure (no clock, no database) so it is tested on its own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

MONTHS = {m: i for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)}
DAYS = {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split(), 1)}
# (low, high, names) per field, in text order.
FIELDS = [(0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, MONTHS), (1, 7, DAYS)]
SEARCH_YEARS = 5  # Feb 29 on a given weekday recurs within 28 years; 5 covers real schedules


class CronError(Exception):
    pass


def _value(text: str, low: int, high: int, names: dict[str, int], expr: str) -> int:
    key = text.upper()
    if key in names:
        return names[key]
    if not text.isdigit():
        raise CronError(f"Invalid cron expression '{expr}': bad value '{text}'")
    number = int(text)
    if not low <= number <= high:
        raise CronError(
            f"Invalid cron expression '{expr}': value {number} out of range {low}-{high}"
        )
    return number


def _field(text: str, low: int, high: int, names: dict[str, int], expr: str) -> set[int]:
    allowed: set[int] = set()
    for part in text.split(","):
        step = 1
        has_step = "/" in part
        if has_step:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"Invalid cron expression '{expr}': bad step '{step_text}'")
            step = int(step_text)
        if part in ("*", "?"):
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = (
                _value(first, low, high, names, expr),
                _value(last, low, high, names, expr),
            )
        else:
            start = _value(part, low, high, names, expr)
            end = high if has_step else start
        if start > end:
            raise CronError(f"Invalid cron expression '{expr}': range {start}-{end} is empty")
        allowed.update(range(start, end + 1, step))
    return allowed


def parse(expr: str) -> list[set[int]]:
    parts = expr.split()
    if len(parts) != 5:
        raise CronError(
            f"Invalid cron expression '{expr}': expected 5 fields "
            f"(minute hour day-of-month month day-of-week)"
        )
    return [_field(p, *spec, expr) for p, spec in zip(parts, FIELDS, strict=True)]


def next_tick(expr: str, after: datetime) -> datetime:
    """The first matching minute strictly after ``after`` (UTC, seconds = 0)."""
    minutes, hours, days, months, weekdays = parse(expr)
    moment = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    day = moment.replace(hour=0, minute=0)
    limit = day + timedelta(days=366 * SEARCH_YEARS)
    while day < limit:
        # isoweekday: Monday=1..Sunday=7 -> Quartz Sunday=1..Saturday=7
        quartz_weekday = day.isoweekday() % 7 + 1
        if day.month in months and day.day in days and quartz_weekday in weekdays:
            for hour in sorted(hours):
                for minute in sorted(minutes):
                    candidate = day.replace(hour=hour, minute=minute)
                    if candidate >= moment:
                        return candidate
        day += timedelta(days=1)
    raise CronError(f"No upcoming schedule found for '{expr}'")
