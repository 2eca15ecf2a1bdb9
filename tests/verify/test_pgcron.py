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
    result = verify("pgcron", f"{JOBS}:{job}", Options(SEED / "pgcron.sql"), admin)
    assert result.equal, result.text()
    assert result.old_runs[0].startswith(old_status)
    audit = next(t for t in result.tables if t.table == "public.audit")
    assert audit.old_rows == audit.new_rows == audit_rows


def test_two_runs_and_volatile_columns_are_ignored(admin):
    result = verify("pgcron", f"{JOBS}:rollup", Options(SEED / "pgcron.sql", runs=2), admin)
    assert result.equal, result.text()
    rollups = next(t for t in result.tables if t.table == "public.rollups")
    assert rollups.old_rows == 2 and rollups.columns == ["n"]
    assert rollups.ignored == ["at (default now())"]
