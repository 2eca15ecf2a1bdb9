"""pg_cron (Vixie) schedules converted to the DSL's cron rules fire at exactly
the same minutes: checked against croniter (Vixie semantics, day-of-month OR
day-of-week) with the df schema's own pgdurable.cron_next."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from croniter import croniter

from pgdurable import model as m
from pgdurable.render import render
from pgdurable.translators import pg_cron, vixie
from pgdurable.translators.base import TranslateContext

SCHEDULES = [
    "0 3 * * *",
    "*/5 * * * *",
    "30 9 * * 1-5",
    "0 12 1,15 * 5",
    "0 8 * jan-mar Mon",
    "0 22 * * 0",
    "0 22 * * 7",
    "0 9-17/2 * * MON-FRI",
    "0 0 */2 * *",
    "15 14 1 * *",
    "0 0 1-7 * sun",
    "5 4 * * sat,sun",
    "0 */3 1-10 2,4 tue-thu",
    "10-50/20 6 13 * 5",
    "@weekly",
    "@monthly",
    "@yearly",
    "@hourly",
    "0 0 * * 1-7/2",
]


def ticks_vixie(schedule: str, start: datetime, n: int) -> list[datetime]:
    it = croniter(schedule, start)
    return [it.get_next(datetime) for _ in range(n)]


def ticks_dsl(conn, expressions: list[str], start: datetime, n: int) -> list[datetime]:
    out, t = [], start
    for _ in range(n):
        t = min(
            conn.execute("SELECT pgdurable.cron_next(%s, %s)", [e, t]).fetchone()[0]
            for e in expressions
        )
        out.append(t)
    return out


def test_converted_schedules_fire_at_the_same_minutes(database):
    start = datetime(2025, 1, 30, 22, 17, tzinfo=UTC)
    with database.connect() as conn:
        for text in SCHEDULES:
            parsed = vixie.parse(text)
            assert isinstance(parsed, vixie.CronSchedule)
            expressions = vixie.to_dsl(parsed)
            want = ticks_vixie(
                text if not text.startswith("@") else vixie.MACROS[text[1:]], start, 12
            )
            assert ticks_dsl(conn, expressions, start, 12) == want, (text, expressions)


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("1/5 * * * *", "a step needs a range"),
        ("* * * *", "4 fields"),
        ("61 * * * *", "61 is out of range"),
        ("0 0 * * 8", "8 is out of range"),
        ("@every 5m", "unknown macro"),
        ("0 0 * * monday", "'monday' is not a dow name"),
        ("0 0 * jan-foo *", "'foo' is not a month name"),
        ("*/0 * * * *", "the step must be a positive number"),
        ("60 seconds", "outside 1-59"),
        ("0 seconds", "outside 1-59"),
        ("0 0 $foo * *", "'$foo' is not a valid dom item"),
        ("@Daily", "unknown macro"),
    ],
)
def test_what_pg_cron_rejects_is_rejected_with_the_reason(schedule, reason):
    with pytest.raises(vixie.ScheduleError, match="invalid schedule") as info:
        vixie.parse(schedule)
    assert reason in info.value.reason
    assert "[1-59] seconds" in str(info.value)


def test_a_star_step_counts_as_unrestricted_so_both_day_fields_must_match():
    # Vixie sets DOM_STAR from the leading '*' (SOURCES 1.2); croniter does not,
    # so this case is checked here rather than against croniter.
    parsed = vixie.parse("0 0 */2 * 1")
    assert not parsed.day_or and vixie.to_dsl(parsed) == ["0 0 */2 * MON"]


def test_accepted_special_forms():
    assert vixie.parse(" 30 sEcOnDs ") == vixie.Seconds(30)
    assert vixie.parse("1 second") == vixie.Seconds(1)
    assert vixie.parse("@reboot") == vixie.Reboot() == vixie.parse("@restart")
    six = vixie.parse("*/30 * * * * *")
    assert isinstance(six, vixie.CronSchedule) and six.ignored == "*"
    assert vixie.to_dsl(six) == ["*/30 * * * *"]
    last = vixie.parse("0 23 $ * *")
    assert last.last_day and vixie.to_dsl(last, dom=frozenset(range(28, 32))) == ["0 23 28-31 * *"]


def test_portable_translations_of_the_golden_jobs_build_in_postgresql(database, repo_root):
    """Every cron expression and every graph of the golden export is valid DSL."""
    items = pg_cron.read_file(repo_root / "fixtures/pg_cron/cron_job_export.csv")
    results = pg_cron.translate(items, TranslateContext(portable=True))
    workflows = [r.workflow for r in results if r.workflow]
    assert len(workflows) > 30
    with database.connect() as conn:
        for w in workflows:
            text = render(w.body)
            got = conn.execute(("SELECT pgdurable.dsl_node(\n" + text + "\n)").encode()).fetchone()[
                0
            ]
            assert got == m.encode(w.body), w.name


def test_a_random_batch_never_raises():
    rng = random.Random(7)
    alphabet = "0123456789*/-,$@ abcdefjmnorstuwy"
    jobs = [
        pg_cron.CronJob(
            "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20))),
            "SELECT 1",
            pg_cron.SourceRef("fuzz", i),
            jobid=i,
            username="u",
        )
        for i in range(500)
    ]
    results = pg_cron.translate(jobs, TranslateContext())
    assert len(results) == 500
    assert all(not d.message.startswith("internal error") for r in results for d in r.diagnostics)
