"""verify --pgcron: pg_cron's way of running a command against the translated workflow."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgdurable.verify import Options, verify

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SEED = Path(__file__).resolve().parents[2] / "fixtures" / "seed"


JOBS = FIXTURES / "verify" / "pg_cron" / "jobs.sql"


@pytest.mark.parametrize(
    ("job", "old_status", "audit_rows"),
    [
        ("rollup", "succeeded", 0),
        # a failing 2nd statement rolls back the 1st: pg_cron's implicit transaction
        ("all-or-nothing", "failed", 0),
        # an explicit COMMIT inside the command keeps what came before it
        ("commit-midway", "failed", 1),
    ],
)
def test_translated_jobs_leave_the_same_data(admin, job, old_status, audit_rows):
    # failing runs are accepted here: these jobs fail on purpose (test_outcomes.py
    # shows that without --accept-failures they are BOTH FAILED, not equal)
    options = Options(SEED / "pgcron.sql", accept_failures=True)
    result = verify("pgcron", f"{JOBS}:{job}", options, admin)
    assert result.equal, result.text()
    assert result.old_runs[0].startswith(old_status)
    assert result.new_outcomes[0].failed == (old_status == "failed")
    audit = next(t for t in result.tables if t.table == "public.audit")
    assert audit.old_rows == audit.new_rows == audit_rows


def test_two_runs_and_volatile_columns_are_ignored(admin):
    result = verify("pgcron", f"{JOBS}:rollup", Options(SEED / "pgcron.sql", runs=2), admin)
    assert result.equal, result.text()
    rollups = next(t for t in result.tables if t.table == "public.rollups")
    assert rollups.old_rows == 2 and rollups.columns == ["n"]
    assert rollups.ignored == ["at (default now())"]
