"""pg_cron labels that used to claim more than the translation does (issue 18).

Each case is a job of fixtures/labels/pg_cron/, written the way such jobs are
written; a false ``exact`` is worse than ``manual``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pgdurable import model as m
from pgdurable.diagnostics import Fidelity
from pgdurable.translators import pg_cron
from pgdurable.translators.base import TranslateContext

FIXTURE = (
    Path(__file__).resolve().parents[2] / "fixtures" / "labels" / "pg_cron" / "maintenance.sql"
)


@pytest.fixture(scope="module")
def results():
    items = pg_cron.read_file(FIXTURE)
    ctx = TranslateContext(default_username="app_owner", default_database="app")
    return {r.name: r for r in pg_cron.translate(items, ctx)}


def _codes(result) -> list[str]:
    return [d.code for d in result.diagnostics if str(d.severity) != "info"]


def test_an_unquoted_do_block_is_manual_and_kept_as_written(results):
    r = results["rebuild-stats"]
    assert r.fidelity == Fidelity.MANUAL and _codes(r) == ["PGD303"]
    message = next(d.message for d in r.diagnostics if d.code == "PGD303")
    assert "line 1, column 1 of the command" in message and "DO $$ BEGIN" in message
    # not split at BEGIN/END (which lost "; END"): one step, the command as written
    steps = [n for n in m.walk(r.workflow.body) if isinstance(n, m.Sql)]
    assert [s.query for s in steps] == ["DO BEGIN PERFORM refresh_stats(1); END"]
    assert not r.workflow.start


@pytest.mark.parametrize("name", ["pgcron_job_2", "cleanup-logs-hourly"])
def test_jobs_that_maintain_pg_cron_are_flagged(results, name):
    r = results[name]
    assert r.fidelity == Fidelity.MANUAL and "PGD319" in _codes(r)
    message = next(d.message for d in r.diagnostics if d.code == "PGD319")
    assert "cron.job_run_details" in message and "pgdurable.run_history" in message


def test_brace_references_the_worker_rewrites_are_reported(results):
    beta = results["enable-beta"]
    assert beta.fidelity == Fidelity.APPROXIMATE and _codes(beta) == ["PGD240"]
    assert "{beta}" in beta.diagnostics[0].message
    audit = results["audit-mark"]
    assert audit.fidelity == Fidelity.MANUAL and _codes(audit) == ["PGD318"]


def test_an_ordinary_job_stays_exact(results):
    assert results["purge-sessions"].fidelity == Fidelity.EXACT


def test_comments_and_quoted_do_bodies_are_not_flagged():
    jobs = [
        pg_cron.CronJob("0 * * * *", cmd, pg_cron.SourceRef("x.sql", 1), jobname=f"j{i}")
        for i, cmd in enumerate(
            [
                "DO $$ BEGIN PERFORM f(1); END $$",
                "DO LANGUAGE plpgsql 'BEGIN PERFORM f(1); END'",
                "-- see cron.job_run_details for history\nSELECT 1",
                "SELECT '{1,2,3}'::int[]",
            ]
        )
    ]
    ctx = TranslateContext(default_username="app_owner")
    labels = [r.fidelity for r in pg_cron.translate(jobs, ctx)]
    assert labels == [Fidelity.EXACT] * 4
