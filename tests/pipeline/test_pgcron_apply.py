"""Generated files against a real database: apply, idempotent re-apply, a
changed schedule replacing the running instance, inactive jobs, --sql, the
dry-run diff (on disk and against the registry) and --from-db on pg_cron."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgdurable import apply as applying
from pgdurable import pipeline
from pgdurable.cli import cli
from pgdurable.diagnostics import SourceRef
from pgdurable.translators import pg_cron
from pgdurable.translators.base import TranslateContext

ROLE = "pgcron_app"


def job(name: str, schedule: str, command: str = "SELECT 1", **kw) -> pg_cron.CronJob:
    fields = {"jobid": 1, "username": ROLE, "active": True, **kw}
    return pg_cron.CronJob(schedule, command, SourceRef("test", 1), jobname=name, **fields)


def generate(out: Path, jobs, database_name: str) -> pipeline.ImportReport:
    ctx = TranslateContext(portable=True, default_database=database_name, timezone="GMT")
    return pipeline.run_import("pg_cron", pg_cron.translate(jobs, ctx), out)


@pytest.fixture
def app_role(database):
    database.create_role(ROLE)
    database.execute(f"SELECT df.grant_usage('{ROLE}')")
    return ROLE


def apply(database, out: Path) -> dict[str, str]:
    with database.connect(autocommit=True) as conn:
        outcomes = applying.apply_directory(out, applying.DatabaseSink(conn))
    return {p.stem: o for p, o in outcomes}


def registry(database, name: str):
    return database.execute(
        "SELECT instance_id, started, definition_hash FROM pgdurable.workflows"
        " WHERE source = 'pg_cron' AND name = %s",
        [name],
    )[0]


def test_apply_starts_one_instance_as_the_job_role_in_its_database(database, app_role, tmp_path):
    generate(tmp_path, [job("nightly", "0 3 * * *")], database.name)
    outcome = apply(database, tmp_path)["nightly"]
    assert outcome.startswith("created ")
    instance_id, started, _ = registry(database, "nightly")
    assert started and outcome == f"created {instance_id}"
    row = database.execute(
        "SELECT submitted_by::text, database, label, status FROM df.instances WHERE id = %s",
        [instance_id],
    )[0]
    assert row == (ROLE, database.name, "pg_cron/nightly", "pending")
    # the role switch ended with the deploy: the session is back to the administrator
    assert database.value("SELECT current_user") == "postgres"


def test_reapplying_an_unchanged_file_does_nothing(database, app_role, tmp_path):
    generate(tmp_path, [job("nightly", "0 3 * * *")], database.name)
    apply(database, tmp_path)
    first = registry(database, "nightly")
    # a new import writes the same bytes, and applying them again changes nothing
    assert generate(tmp_path, [job("nightly", "0 3 * * *")], database.name).written == []
    assert apply(database, tmp_path) == {"nightly": "unchanged"}
    assert registry(database, "nightly") == first
    assert database.value("SELECT count(*) FROM df.instances") == 1


def test_a_changed_schedule_replaces_the_running_instance(database, app_role, tmp_path):
    generate(tmp_path, [job("nightly", "0 3 * * *")], database.name)
    apply(database, tmp_path)
    old_id, _, old_hash = registry(database, "nightly")
    generate(tmp_path, [job("nightly", "0 4 * * *")], database.name)
    outcome = apply(database, tmp_path)["nightly"]
    new_id, started, new_hash = registry(database, "nightly")
    assert outcome == f"replaced {new_id}" and new_id != old_id and new_hash != old_hash
    assert database.value("SELECT df.status(%s)", [old_id]) == "cancelled"
    assert database.value("SELECT df.status(%s)", [new_id]) == "pending"
    graph = database.value("SELECT definition FROM pgdurable.workflows WHERE name = 'nightly'")
    assert '\\"cron_expr\\":\\"0 4 * * *\\"' in graph


def test_inactive_jobs_are_registered_but_not_started(database, app_role, tmp_path):
    generate(tmp_path, [job("paused", "0 3 * * *", active=False)], database.name)
    assert apply(database, tmp_path) == {"paused": "created"}
    assert registry(database, "paused")[:2] == (None, False)
    assert database.value("SELECT count(*) FROM df.instances") == 0


def test_a_failing_file_is_rolled_back_with_a_clear_error(database, tmp_path):
    # the role exists nowhere: nothing may be registered
    generate(tmp_path, [job("orphan", "0 3 * * *", username="no_such_role")], database.name)
    with pytest.raises(applying.ApplyFailed, match=r'orphan\.sql failed.*role "no_such_role"'):
        apply(database, tmp_path)
    assert database.value("SELECT count(*) FROM pgdurable.workflows") == 0


def test_apply_sql_prints_exactly_the_files_in_transactions(database, tmp_path):
    generate(tmp_path, [job("a", "0 3 * * *"), job("b", "@hourly")], database.name)
    result = CliRunner().invoke(cli, ["apply", str(tmp_path), "--sql"])
    assert result.exit_code == 0, result.output
    expected = "".join(
        f"-- {p}\nBEGIN;\n{p.read_text().rstrip()}\nCOMMIT;\n\n"
        for p in sorted(tmp_path.glob("[ab].sql"))
    )
    assert result.output == expected
    assert "cron.unschedule" not in result.output  # cutover.sql is never applied
    assert "cron.schedule_in_database" not in result.output  # nor rollback.sql
    assert database.value("SELECT count(*) FROM pgdurable.workflows") == 0


def test_dry_run_diffs_against_disk_and_gates_ci(tmp_path, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    out = tmp_path / "out"
    args = ["import-pgcron", "--from-file", "fixtures/pg_cron/cron_job_v1_0.tsv", "--out", str(out)]
    # unnamed jobs: named from their schedule and command (same name from every source)
    jobs = pg_cron.read_file(Path("fixtures/pg_cron/cron_job_v1_0.tsv"))
    first, second, third = [f"{pg_cron.unnamed_name(j)}.sql" for j in jobs[:3]]
    dry = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert dry.exit_code == 1 and "+++ " + str(out / first) in dry.output
    assert not out.exists()  # a dry run writes nothing
    real = CliRunner().invoke(cli, [*args, "--report", str(tmp_path / "r.json")])
    assert real.exit_code == 1  # job 4 has an invalid schedule: the batch still wrote the rest
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["cutover.sql", "rollback.sql", first, second, third]
    )
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"] == {"exact": 3, "approximate": 0, "manual": 0, "failed": 1}
    assert report["items"][3]["diagnostics"][0]["code"] == "PGD101"
    again = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert again.output.startswith("no difference") and again.exit_code == 1  # failed item
    (out / second).write_text("edited\n")
    changed = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert "-edited" in changed.output


def test_dry_run_against_the_registry(database, app_role, tmp_path):
    generate(tmp_path, [job("a", "0 3 * * *"), job("gone", "0 5 * * *")], database.name)
    apply(database, tmp_path)
    results = pg_cron.translate(
        [job("a", "0 4 * * *"), job("new", "0 6 * * *")],
        TranslateContext(portable=True, default_database=database.name, timezone="GMT"),
    )
    report = pipeline.run_import(
        "pg_cron", results, tmp_path, dry_run=True, registry_connection=lambda: database.connect()
    )
    assert report.registry_changes == [
        "changed  pg_cron/a",
        "new      pg_cron/new",
        "removed  pg_cron/gone",
    ]


def test_from_db_reads_jobs_scheduled_with_pg_cron(pg_cron_cluster, database):
    """pg_cron lives in the cluster's `pgdurable` database (cron.database_name)."""
    from pgdurable import db

    conninfo = pg_cron_cluster.conninfo("pgdurable")
    database.create_role("cron_owner")
    with db.connection(conninfo, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        ids = [
            conn.execute("SELECT cron.schedule('live-nightly', '0 3 1 1 *', 'VACUUM')").fetchone()[
                0
            ],
            conn.execute("SELECT cron.schedule('0 4 1 1 *', 'SELECT 1; SELECT 2')").fetchone()[0],
            conn.execute(
                "SELECT cron.schedule_in_database('live-elsewhere', '0 5 1 1 Mon', 'SELECT 3', "
                "%s, 'cron_owner', false)",
                [database.name],
            ).fetchone()[0],
        ]
        try:
            jobs, ctx = pg_cron.read_database(conninfo)
        finally:
            for jobid in ids:
                conn.execute("SELECT cron.unschedule(%s)", [jobid])
    assert ctx.source_version == "1.4-1" and ctx.timezone == "GMT"
    mine = {j.jobid: j for j in jobs if j.jobid in ids}
    results = {r.name: r for r in pg_cron.translate(list(mine.values()), ctx)}
    nightly = results["live-nightly"].workflow
    assert nightly.database == "pgdurable" and nightly.run_as == "postgres"
    # postgres is a superuser: registered, not started, until it runs as another role
    assert not nightly.start
    assert "PGD331" in [d.code for d in results["live-nightly"].diagnostics]
    assert nightly.cutover.startswith(f"SELECT cron.unschedule({ids[0]});")
    unnamed = results[pg_cron.unnamed_name(mine[ids[1]])]
    assert unnamed.workflow.profile == "pgdurable"  # one atomic multi-statement step
    elsewhere = results["live-elsewhere"]
    assert elsewhere.workflow.database == database.name
    assert elsewhere.workflow.run_as == "cron_owner" and not elsewhere.workflow.start
    assert [d.code for d in elsewhere.diagnostics] == ["PGD210", "PGD205", "PGD208"]
    # pg_cron 1.4 evaluates in GMT: no timezone note for a live source
    assert all(d.code != "PGD206" for r in results.values() for d in r.diagnostics)
