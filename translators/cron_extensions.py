"""Cron day extensions of croniter (Airflow) and fugit (sidekiq-cron) -> a
Vixie cron plus, when needed, a SQL condition on the day.

* ``L`` alone as the day of month (last day of the month): the cron wakes on
  days 28-31 and a condition keeps the day whose next day is the 1st (as
  pg_cron's ``$``, PGD211);
* ``N#k`` alone as the day of week (the k-th weekday N of the month, k 1-5):
  the weekday on days 7k-6..7k, which the DSL's rule (both day fields must
  match) already expresses exactly, so no condition is needed.

Only these unambiguous spellings are read (with the other day field ``*``:
croniter ORs restricted day fields); anything else stays the caller's error.
``condition`` is a SQL boolean over ``t``, the local wall-clock time, so a
caller evaluating the cron in a time zone can reuse it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NTH = re.compile(r"^([0-7]|sun|mon|tue|wed|thu|fri|sat)#([1-5])$", re.IGNORECASE)
_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
LAST_DAY = "extract(day FROM t + interval '1 day') = 1"


@dataclass(frozen=True)
class Extended:
    plain: str  # the Vixie cron that wakes on every candidate day
    condition: str | None  # SQL boolean over t (local time), None: the cron is exact
    what: str  # for messages: "the last day of the month", "the 2nd Saturday"
    both_days: bool = False  # both day fields must match (the DSL's rule), not Vixie's OR


def read(expr: str) -> Extended | None:
    """The expression with ``L``/``#`` rewritten, or None when it has neither
    (or a spelling not read here: the caller's parser then reports it)."""
    fields = expr.split()
    if len(fields) != 5:
        return None
    minute, hour, dom, month, dow = fields
    if dom.upper() == "L" and dow == "*":
        return Extended(f"{minute} {hour} 28-31 {month} *", LAST_DAY, "the last day of the month")
    found = _NTH.match(dow)
    if found and dom == "*":
        day = found.group(1).lower()
        weekday = int(day) % 7 if day.isdigit() else _NAMES.index(day)
        k = int(found.group(2))
        days = f"{7 * k - 6}-{min(7 * k, 31)}"
        ordinal = {1: "1st", 2: "2nd", 3: "3rd"}.get(k, f"{k}th")
        return Extended(
            f"{minute} {hour} {days} {month} {weekday}",
            None,
            f"the {ordinal} {_NAMES[weekday].capitalize()} of the month",
            both_days=True,
        )
    return None


def condition_sql(condition: str, tz: str = "UTC") -> str:
    """``condition`` as a query on the current time in ``tz`` (a literal zone name)."""
    zone = tz.replace("'", "''")
    return f"SELECT {condition} FROM (SELECT now() AT TIME ZONE '{zone}' AS t) AS local_time"
