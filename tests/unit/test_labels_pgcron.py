"""pg_cron labels that used to claim more than the translation does (issue 18).

Each case is a job of fixtures/labels/pg_cron/, written the way such jobs are
written; a false ``exact`` is worse than ``manual``.
"""

from __future__ import annotations

import dataclasses
import json
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


@pytest.mark.parametrize("name", ["(the unnamed job)", "cleanup-logs-hourly"])
def test_jobs_that_maintain_pg_cron_are_flagged(results, name):
    unnamed = [n for n in results if n.startswith("pgcron_job_")]
    r = results[unnamed[0] if name.startswith("(") else name]
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


SUPERUSER_JOBS = FIXTURE.with_name("superuser_jobs.sql")


def _superuser_results(**roles):
    items = pg_cron.read_file(SUPERUSER_JOBS)
    ctx = TranslateContext(default_username="postgres", default_database="app")
    batch = pg_cron.translate(items, ctx, pg_cron.Roles(**roles))
    return {r.name: r for r in batch}


def test_jobs_of_the_superuser_are_labelled_not_deployable():
    results = _superuser_results()
    assert len(results) == 4
    for r in results.values():
        assert r.fidelity == Fidelity.MANUAL and "PGD331" in _codes(r), r.name
        assert not r.workflow.start and r.workflow.run_as == "postgres"
    message = next(d.message for d in results["purge-sessions"].diagnostics if d.code == "PGD331")
    assert "pg_durable.enable_superuser_instances" in message and "--role-map postgres=" in message


def test_role_map_moves_superuser_jobs_and_lists_the_privileges():
    results = _superuser_results(mapping=(("postgres", "etl"),))
    for r in results.values():
        assert r.workflow.run_as == "etl" and r.workflow.start, r.name
        assert r.fidelity == Fidelity.EXACT and "PGD331" not in _codes(r)
    needs = {
        name: next(d.message for d in r.diagnostics if d.code == "PGD257")
        for name, r in results.items()
    }
    assert "--role-map postgres=etl" in needs["purge-sessions"]
    assert "GRANT SELECT, DELETE ON public.sessions TO etl" in needs["purge-sessions"]
    rollup = needs["nightly-rollup"]
    assert "GRANT INSERT ON public.daily_orders TO etl" in rollup
    assert "GRANT SELECT ON public.orders TO etl" in rollup
    unnamed = {n: m for n, m in needs.items() if n.startswith("pgcron_job_")}
    assert any("etl must own public.events" in m for m in unnamed.values())
    assert any("EXECUTE ON ROUTINE public.expire_invites" in m for m in unnamed.values())
    header = results["purge-sessions"].workflow.description
    assert any("GRANT SELECT, DELETE ON public.sessions TO etl" in line for line in header)


def test_run_as_moves_only_superuser_jobs_and_role_map_wins():
    job = pg_cron.CronJob("0 1 * * *", "SELECT 1", pg_cron.SourceRef("x", 1), 1, "a", None, "app")
    boss = pg_cron.CronJob("0 1 * * *", "SELECT 2", pg_cron.SourceRef("x", 2), 2, "b", None, "dba")
    boss = dataclasses.replace(boss, superuser=True)  # as read from a live database
    ctx = TranslateContext()
    got = pg_cron.translate([job, boss], ctx, pg_cron.Roles(run_as="etl"))
    assert [r.workflow.run_as for r in got] == ["app", "etl"]
    got = pg_cron.translate([job, boss], ctx, pg_cron.Roles("etl", (("dba", "ops"),)))
    assert [r.workflow.run_as for r in got] == ["app", "ops"]


def test_unnamed_jobs_are_named_from_schedule_and_command_not_jobid():
    ref = pg_cron.SourceRef("x", 1)
    a = pg_cron.CronJob("0 3 * * *", "VACUUM", ref, jobid=1, jobid_known=False)
    same_elsewhere = pg_cron.CronJob("0 3 * * *", "VACUUM", ref, jobid=57)
    assert pg_cron._names([a]) == pg_cron._names([same_elsewhere])
    twins = pg_cron._names([a, same_elsewhere])
    assert twins[0] != twins[1] and twins[1] == twins[0] + "_2"


def test_import_pgcron_role_options(tmp_path):
    from click.testing import CliRunner

    from pgdurable.cli import cli

    args = ["import-pgcron", "--from-file", str(SUPERUSER_JOBS), "--default-username", "postgres"]
    bad = CliRunner().invoke(cli, [*args, "--out", str(tmp_path), "--role-map", "postgres"])
    assert bad.exit_code == 2 and "OLD=NEW" in bad.output
    kept = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "kept"), "--json"])
    assert kept.exit_code == 0, kept.output
    assert json.loads(kept.output)["summary"]["manual"] == 4
    moved = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "moved"), "--run-as", "etl"])
    assert moved.exit_code == 0, moved.output
    text = (tmp_path / "moved" / "purge-sessions.sql").read_text()
    assert "run_as => 'etl'" in text and "start => true" in text
    assert "-- moved:      runs as etl instead of postgres (--run-as etl)" in text
    assert "-- needs:      GRANT SELECT, DELETE ON public.sessions TO etl" in text
