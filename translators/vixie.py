"""Vixie-cron schedules (as pg_cron reads them) and their conversion to the
DSL's cron rules.

pg_cron's parser (``src/entry.c``, from Vixie cron) is followed here as a set
of facts (SOURCES Part 1 §1.2), and every schedule it rejects raises
``ScheduleError`` with the reason:

* five blank-separated fields ``minute hour day-of-month month day-of-week``
  (0-59, 0-23, 1-31, 1-12, 0-7 with 0 and 7 both Sunday); anything after the
  fifth field is ignored (reported by the caller);
* each field is a comma list of ``*``, ``N``, ``N-M``, with ``/step`` allowed
  after ``*`` or a range but not after a single number (``1/5`` is rejected);
  three-letter month and weekday names, case-insensitive, in those fields only;
* macros ``@yearly @annually @monthly @weekly @daily @midnight @hourly`` and
  ``@reboot``/``@restart``, lower case only; ``N seconds`` (1-59, pg_cron
  1.5+); ``$`` alone as the day of month (last day, pg_cron 1.6+);
* a day field counts as unrestricted ("star") when its text starts with
  ``*``; when both day fields are restricted a day matches if EITHER does.

The DSL (SPEC A.2.5, B §4.2) numbers weekdays 1-7 with Sunday = 1 and
requires BOTH day fields to match, so ``to_dsl`` returns one expression for
the usual case and two (to be raced) when Vixie's OR applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
DSL_WEEKDAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]  # DSL 1..7

HINT = "Use cron format (e.g. 5 4 * * *), or interval format '[1-59] seconds'"

MACROS = {
    "yearly": "0 0 1 1 *",
    "annually": "0 0 1 1 *",
    "monthly": "0 0 1 * *",
    "weekly": "0 0 * * 0",
    "daily": "0 0 * * *",
    "midnight": "0 0 * * *",
    "hourly": "0 * * * *",
}

_SECONDS = re.compile(r"^\s*(\d+)\s*seconds?\s*$", re.IGNORECASE)


class ScheduleError(ValueError):
    """pg_cron rejects the schedule; ``reason`` says which part and why."""

    def __init__(self, schedule: str, reason: str) -> None:
        super().__init__(f"invalid schedule '{schedule}': {reason}. {HINT}")
        self.reason = reason


@dataclass(frozen=True)
class Field:
    values: frozenset[int]
    star: bool  # the text starts with '*' (Vixie's DOM_STAR / DOW_STAR)


@dataclass(frozen=True)
class CronSchedule:
    minute: Field
    hour: Field
    dom: Field
    month: Field
    dow: Field  # Vixie numbering, 0 = Sunday (7 folded onto 0)
    last_day: bool = False  # '$' in the day-of-month field
    ignored: str = ""  # text after the fifth field, which pg_cron ignores
    macro: str | None = None

    @property
    def day_or(self) -> bool:
        """Vixie's rule: both day fields restricted means either may match."""
        return not self.dom.star and not self.dow.star


@dataclass(frozen=True)
class Seconds:
    seconds: int


@dataclass(frozen=True)
class Reboot:
    pass


Schedule = CronSchedule | Seconds | Reboot

_BOUNDS = {"minute": (0, 59), "hour": (0, 23), "dom": (1, 31), "month": (1, 12), "dow": (0, 7)}


def _number(text: str, unit: str, schedule: str) -> int:
    names = MONTHS if unit == "month" else WEEKDAYS if unit == "dow" else None
    low = _BOUNDS[unit][0]
    if names and text.lower() in names:
        return names.index(text.lower()) + low
    if text.isdigit():
        return int(text)
    if re.fullmatch(r"[A-Za-z0-9]+", text) and names:
        raise ScheduleError(schedule, f"'{text}' is not a {unit} name ({', '.join(names)})")
    raise ScheduleError(schedule, f"'{text}' is not a number in the {unit} field")


def _field(text: str, unit: str, schedule: str) -> Field:
    low, high = _BOUNDS[unit]
    values: set[int] = set()
    for item in text.split(","):
        m = re.fullmatch(r"(\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/([A-Za-z0-9]+))?", item)
        if not m:
            raise ScheduleError(schedule, f"'{item}' is not a valid {unit} item")
        span, step_text = m.group(1), m.group(2)
        if span == "*":
            first, last = low, high
        elif "-" in span:
            a, b = span.split("-")
            first, last = _number(a, unit, schedule), _number(b, unit, schedule)
        else:
            if step_text is not None:
                raise ScheduleError(
                    schedule,
                    f"'{item}': a step needs a range or '*' (write '{span}-{high}/{step_text}')",
                )
            first = last = _number(span, unit, schedule)
        step = 1
        if step_text is not None:
            if not step_text.isdigit() or int(step_text) <= 0:
                raise ScheduleError(schedule, f"'{item}': the step must be a positive number")
            step = int(step_text)
        for v in (first, last):
            if not low <= v <= high:
                raise ScheduleError(
                    schedule, f"{v} is out of range for the {unit} field ({low}-{high})"
                )
        # A reversed range selects nothing (pg_cron accepts it; the job never runs).
        values.update(range(first, last + 1, step))
    if unit == "dow" and 7 in values:
        values = (values - {7}) | {0}
    return Field(frozenset(values), text.startswith("*"))


def parse(schedule: str) -> Schedule:
    """Parse a pg_cron schedule; raises ScheduleError for what pg_cron rejects."""
    m = _SECONDS.match(schedule)
    if m:
        seconds = int(m.group(1))
        if not 1 <= seconds <= 59:
            raise ScheduleError(schedule, f"{seconds} seconds is outside 1-59")
        return Seconds(seconds)
    text = schedule.strip(" \t\n")
    if text.startswith("@"):
        word = re.split(r"[ \t\n]", text[1:], maxsplit=1)[0]
        if word in ("reboot", "restart"):
            return Reboot()
        if word in MACROS:
            parsed = parse(MACROS[word])
            assert isinstance(parsed, CronSchedule)
            return CronSchedule(
                parsed.minute, parsed.hour, parsed.dom, parsed.month, parsed.dow, macro=word
            )
        raise ScheduleError(schedule, f"unknown macro '@{word}'")
    fields = re.split(r"[ \t\n]+", text)
    if len(fields) < 5:
        raise ScheduleError(schedule, f"{len(fields)} fields; pg_cron needs 5")
    minute = _field(fields[0], "minute", schedule)
    hour = _field(fields[1], "hour", schedule)
    last_day = fields[2] == "$"
    dom = Field(frozenset(), False) if last_day else _field(fields[2], "dom", schedule)
    month = _field(fields[3], "month", schedule)
    dow = _field(fields[4], "dow", schedule)
    ignored = re.split(r"[ \t\n]+", text, maxsplit=5)[5] if len(fields) > 5 else ""
    return CronSchedule(minute, hour, dom, month, dow, last_day, ignored)


# -- conversion to the DSL's rules -----------------------------------------------


def _runs(values: list[int], show) -> str:
    parts, i = [], 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{show(values[i])}-{show(values[j])}")
        else:
            parts.extend(show(v) for v in values[i : j + 1])
        i = j + 1
    return ",".join(parts)


def dsl_field(values: frozenset[int], low: int, high: int, show=str) -> str:
    """A DSL field for a set of values: ``*``, ``*/n``, ``a-b/n`` or a list of runs."""
    vals = sorted(values)
    if vals == list(range(low, high + 1)):
        return "*"
    if len(vals) >= 2:
        step = vals[1] - vals[0]
        if step > 1 and vals == list(range(vals[0], vals[-1] + 1, step)):
            if vals[0] == low and vals[-1] + step > high:
                return f"*/{step}"
            if len(vals) >= 3:
                return f"{show(vals[0])}-{show(vals[-1])}/{step}"
    return _runs(vals, show)


def _dsl_dow(values: frozenset[int]) -> str:
    # Vixie 0 (Sunday)..6 -> DSL 1..7; names read the same in both systems.
    return dsl_field(frozenset(v + 1 for v in values), 1, 7, lambda d: DSL_WEEKDAYS[d - 1])


ALL_DAYS = frozenset(range(1, 32))
ALL_WEEKDAYS = frozenset(range(0, 7))


def to_dsl(
    s: CronSchedule, *, dom: frozenset[int] | None = None, both_days: bool = False
) -> list[str]:
    """DSL cron expressions whose union of ticks equals the schedule's (one
    expression, or two to race when Vixie's day-of-month OR day-of-week
    applies). ``dom`` overrides the day-of-month set (used for ``$``);
    ``both_days`` is for sources whose day fields must BOTH match (Celery's
    ``crontab``), which is already the DSL's rule."""
    days = s.dom.values if dom is None else dom
    head = f"{dsl_field(s.minute.values, 0, 59)} {dsl_field(s.hour.values, 0, 23)}"
    month = dsl_field(s.month.values, 1, 12)
    if s.day_or and not both_days:
        return [
            f"{head} {dsl_field(days, 1, 31)} {month} *",
            f"{head} * {month} {_dsl_dow(s.dow.values)}",
        ]
    return [f"{head} {dsl_field(days, 1, 31)} {month} {_dsl_dow(s.dow.values)}"]


def never_fires(s: CronSchedule) -> bool:
    """True when a field selects nothing (a reversed range such as 5-1)."""
    fields = [s.minute, s.hour, s.month, s.dow]
    if not s.last_day:
        fields.append(s.dom)
    return any(not f.values for f in fields)
