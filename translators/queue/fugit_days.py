"""fugit's day forms that Vixie cron lacks: ``L`` (last day of the month) and
``D#N`` (the N-th weekday D of the month), as Sidekiq (sidekiq-cron,
sidekiq-scheduler: both parse cron with fugit) accepts them.

* ``L`` in the day-of-month field, any weekday: the workflow wakes on days
  28-31 and a SQL condition runs the job only when the next day (in the
  schedule's zone) is the 1st, the same treatment as pg_cron's ``$``.
* ``D#N`` (N 1-5) alone in the day-of-week field, any day of the month: the
  N-th D falls on days 7N-6..7N, and the DSL's cron requires BOTH day fields
  to match, so ``8-14 * 2`` is exactly "the second Tuesday": no condition.

Other combinations (``L`` with a weekday, ``#-1``, ``5L``, lists) are
reported as manual (PGD365), naming the construct; never as a schedule the
source rejects, since fugit accepts them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pgdurable.sqltext import literal

_WEEKDAY = r"(?:[0-7]|sun|mon|tue|wed|thu|fri|sat)"
_NTH = re.compile(rf"^(?P<day>{_WEEKDAY})#(?P<n>[1-5])$", re.IGNORECASE)


@dataclass(frozen=True)
class Rewritten:
    text: str  # five Vixie fields
    both_days: bool  # the day fields must both match (the DSL's rule)
    condition: str | None  # SQL (one boolean) the run also needs, or None
    note: str  # what was done, for PGD267


def special(text: str) -> bool:
    """True when the fields use fugit's ``L`` or ``#`` day forms."""
    fields = text.split()
    return len(fields) == 5 and (
        "L" in fields[2].upper() or re.search(r"[#Ll]", fields[4]) is not None
    )


def rewrite(text: str, timezone: str | None) -> Rewritten | str:
    """The Vixie form of an ``L`` / ``#`` schedule, or why it is not translated."""
    minute, hour, dom, month, dow = text.split()
    if dom.upper() == "L" and dow == "*":
        zone = timezone or "UTC"
        local = f"now() AT TIME ZONE {literal(zone)}"
        condition = f"extract(day FROM ({local}) + interval '1 day') = 1"
        return Rewritten(
            f"{minute} {hour} 28-31 {month} *",
            False,
            condition,
            "'L' (the last day of the month): the workflow wakes on days 28-31 and a SQL "
            f"condition runs the job only when tomorrow ({zone}) is the 1st",
        )
    nth = _NTH.match(dow)
    if nth and dom == "*":
        n = int(nth.group("n"))
        first, last = 7 * n - 6, min(7 * n, 31)
        return Rewritten(
            f"{minute} {hour} {first}-{last} {month} {nth.group('day')}",
            True,
            None,
            f"'{dow}' (weekday {nth.group('day')}, number {n} of the month) is that weekday "
            f"on days {first}-{last}; the DSL's cron requires both day fields to match, so "
            f"'{first}-{last} * {nth.group('day')}' fires on exactly those days",
        )
    return (
        f"the day fields '{dom}' / '{dow}' use fugit's L / # forms in a combination the "
        "translator does not carry (only 'L' alone in the day of month, or one 'D#N' alone "
        "in the day of week, N 1-5)"
    )
