"""Truncated pg_cron scripts (found by the hostile-source property test): a
call cut off before its closing parenthesis is reported, never executed or
crashed on, and the complete calls before it are still read."""

from __future__ import annotations

import pytest

from pgdurable.translators.pg_cron import CronJob, Unreadable, read_script

COMPLETE = "SELECT cron.schedule('nightly', '0 3 * * *', 'VACUUM');\n"


@pytest.mark.parametrize(
    "cut",
    [
        "SELECT cron.schedule(job_name =>",
        "SELECT cron.schedule('late', '* * * * *'",
        "SELECT cron.schedule('late', '* * * * *', 'SELECT 1',",
    ],
)
def test_a_call_cut_off_at_the_end_is_reported_not_read(cut):
    items = read_script(COMPLETE + cut, "jobs.sql")
    jobs = [item for item in items if isinstance(item, CronJob)]
    problems = [item for item in items if isinstance(item, Unreadable)]
    assert [job.jobname for job in jobs] == ["nightly"]
    assert len(problems) == 1
    assert problems[0].ref.file == "jobs.sql" and problems[0].ref.line == 2
    assert "never closed" in problems[0].message
