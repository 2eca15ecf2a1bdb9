"""Sidekiq's fugit day forms ``L`` and ``D#N`` (audit M6): labels, and the
translated schedule checked on the real database for every day of two years.

``L`` becomes a wake-up on days 28-31 plus the last-day condition, evaluated
here by PostgreSQL itself at 22:00 of each day (``now()`` replaced by that
time); ``D#N`` becomes days 7N-6..7N with the weekday, which the DSL's cron
matches only when both day fields match, checked against the calendar.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from pgdurable import model as m
from pgdurable.diagnostics import Fidelity
from pgdurable.translators import queue
from pgdurable.translators.base import TranslateContext
from pgdurable.translators.queue import fugit_days

CTX = TranslateContext(default_username="app")


def _results(tmp_path: Path, schedule: str):
    (tmp_path / "schedule.yml").write_text(
        f'job:\n  cron: "{schedule}"\n  class: "MonthEndJob"\n  retry: false\n'
    )
    batch = queue.read_batch([tmp_path / "schedule.yml"])
    items = [i for items in batch.items.values() for i in items]
    return queue.translate(items, CTX)  # the class stays unmapped: the schedule is tested


@pytest.mark.parametrize(
    ("schedule", "wake"),
    [
        ("0 22 L * *", "0 22 28-31 * *"),
        ("0 9 * * 2#2", "0 9 8-14 * TUE"),
        ("15 0 9 * * mon#1 Europe/Paris", None),
    ],
)
def test_l_and_nth_weekday_are_translated(tmp_path, schedule, wake):
    (result,) = _results(tmp_path, schedule)
    codes = {d.code for d in result.diagnostics}
    assert result.workflow is not None and "PGD104" not in codes, result.diagnostics
    assert "PGD267" in codes
    waits = [n.cron for n in m.walk(result.workflow.body) if isinstance(n, m.WaitForSchedule)]
    if wake:
        assert waits == [wake]


@pytest.mark.parametrize("schedule", ["0 22 L * 5", "0 9 * * 2#-1", "0 9 * * 5L"])
def test_other_combinations_are_manual_not_rejected(tmp_path, schedule):
    (result,) = _results(tmp_path, schedule)
    codes = {d.code for d in result.diagnostics}
    assert result.fidelity is Fidelity.MANUAL and "PGD365" in codes and "PGD104" not in codes


def test_last_day_condition_on_the_database(database):
    rewritten = fugit_days.rewrite("0 22 L * *", "Asia/Tokyo")
    assert not isinstance(rewritten, str) and rewritten.condition
    start = date(2027, 1, 1)
    days = [start + timedelta(days=k) for k in range(731)]  # 2028 is a leap year
    for day in days:
        if day.day < 28:
            continue  # the wake-up (days 28-31) never fires there
        # 22:00 in Tokyo is 13:00 UTC the same day.
        at = f"'{day.isoformat()} 13:00:00+00'::timestamptz"
        runs = database.value("SELECT " + rewritten.condition.replace("now()", at))
        assert runs == ((day + timedelta(days=1)).day == 1), day


def test_nth_weekday_days_match_the_calendar():
    for n in range(1, 6):
        rewritten = fugit_days.rewrite(f"0 9 * * 2#{n}", None)
        assert not isinstance(rewritten, str) and rewritten.both_days
        first, last = map(int, rewritten.text.split()[2].split("-"))
        start = date(2027, 1, 1)
        for k in range(731):
            day = start + timedelta(days=k)
            nth_tuesday = day.isoweekday() == 2 and (day.day - 1) // 7 + 1 == n
            assert nth_tuesday == (day.isoweekday() == 2 and first <= day.day <= last), day
