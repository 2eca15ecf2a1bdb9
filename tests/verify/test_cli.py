"""The verify command line: --all over a migration folder, bad input, cleanup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgdurable import pipeline
from pgdurable.cli import cli
from pgdurable.errors import VerificationError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def run(*args: str):
    return CliRunner().invoke(cli, ["verify", *args])


def test_all_verifies_every_generated_file_with_a_summary(admin, tmp_path: Path):
    out = tmp_path / "pg_cron"
    pipeline.import_pgcron(
        from_db=None,
        from_file=FIXTURES / "verify" / "pg_cron" / "jobs.sql",
        out_dir=out,
        default_username="cron_owner",
    )
    # one generated step edited by hand: the batch reports it, the others pass
    edited = out / "rollup.sql"
    edited.write_text(edited.read_text().replace("id <= 2", "id <= 3"))
    outcome = run(
        "--all", str(out), "--fixture", str(FIXTURES / "seed" / "pgcron.sql"), "--dsn", admin
    )
    assert outcome.exit_code == 1, outcome.output
    assert "3/3 rollup.sql" in outcome.stderr and "[####" in outcome.stderr
    lines = outcome.stdout.splitlines()
    # the two jobs that fail on purpose fail on both sides: not equal, with their errors
    assert any("all-or-nothing.sql" in line and " both failed " in line for line in lines)
    assert any("run 1 old error: ERROR:  division by zero" in line for line in lines)
    assert any("rollup.sql" in line and " different " in line for line in lines)
    assert lines[-1] == "0 equal, 1 different, 2 both failed, 0 failed"
    # jobs that fail on purpose: accepted, they are equal; the edited one stays different
    accepted = run(
        "--all",
        str(out),
        "--fixture",
        str(FIXTURES / "seed" / "pgcron.sql"),
        "--accept-failures",
        "--dsn",
        admin,
        "--json",
    )
    assert accepted.exit_code == 1, accepted.output
    items = {Path(i["file"]).name: i for i in json.loads(accepted.stdout)["items"]}
    assert items["all-or-nothing.sql"]["outcome"] == "equal"
    runs = items["all-or-nothing.sql"]["verification"]["runs"]
    assert runs[0]["outcome"] == "both failed"
    assert runs[0]["new"]["errors"] == [
        "SQL step: SQL execution failed: error returned from database: division by zero"
    ]
    assert items["rollup.sql"]["outcome"] == "different"


def test_a_fixture_error_names_file_and_line_and_leaves_nothing(admin, tmp_path: Path):
    broken = tmp_path / "broken.sql"
    broken.write_text("CREATE TABLE ok (x int);\nCREATE TABLE bad (x nosuchtype);\n")
    outcome = run(
        "--pgcron",
        f"{FIXTURES / 'verify' / 'pg_cron' / 'jobs.sql'}:rollup",
        "--fixture",
        str(broken),
        "--dsn",
        admin,
    )
    assert outcome.exit_code == 1
    assert f'fixture {broken}:2: type "nosuchtype" does not exist' in outcome.stderr
    assert outcome.stdout == ""


def test_usage_errors(admin):
    assert run("--fixture", "x.sql").exit_code == 2
    missing = run("--airflow", "nowhere.py", "--fixture", "x.sql", "--dsn", admin)
    assert missing.exit_code == 1 and "DAG file nowhere.py does not exist" in missing.stderr
    job = run(
        "--pgcron",
        f"{FIXTURES / 'verify' / 'pg_cron' / 'jobs.sql'}:nope",
        "--fixture",
        "seed/pgcron.sql",
        "--dsn",
        admin,
    )
    assert job.exit_code == 1 and "has no job 'nope'; it has: rollup" in job.stderr


def test_all_on_a_folder_imported_from_the_live_database(admin, pg_cluster, tmp_path: Path):
    # MIGRATING step 2 makes the folder with import-pgcron --from-db; each header's source
    # is cron.job#N, read back from the database (issue 18, item 4)
    from pgdurable import db
    from pgdurable.verify import Options, subjects, verify_all

    cron = pg_cluster.conninfo("pgdurable")  # cron.database_name of the test cluster
    with db.connection(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'cron_owner'").fetchone():
            conn.execute("CREATE ROLE cron_owner LOGIN")
    with db.connection(cron, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        ids = [
            conn.execute(
                "SELECT cron.schedule_in_database(%s, '*/5 * * * *', %s, 'pgdurable', "
                "'cron_owner')",
                [name, command],
            ).fetchone()[0]
            for name, command in (
                ("live-rollup", "INSERT INTO rollups (n) SELECT count(*) FROM events"),
                ("live-trim", "DELETE FROM events WHERE id > 4"),
            )
        ]
        try:
            out = tmp_path / "pg_cron"
            pipeline.import_pgcron(from_db=cron, from_file=None, out_dir=out)
            mine = sorted(p for p in out.glob("live-*.sql"))
            assert [p.name for p in mine] == ["live-rollup.sql", "live-trim.sql"]
            assert f"cron.job#{ids[0]}" in mine[0].read_text()
            for path in list(out.glob("*.sql")):
                if path not in mine and path.name != "cutover.sql":
                    path.unlink()  # jobs other tests left in this cluster's cron.job
            options = Options(FIXTURES / "seed" / "pgcron.sql")
            items = verify_all(out, options, admin)  # cron.job found through the server
            assert [(i.outcome, i.error) for i in items] == [("equal", None)] * 2
            explicit = verify_all(out, Options(options.fixture, from_db=cron), admin)
            assert [i.outcome for i in explicit] == ["equal", "equal"]
            with pytest.raises(VerificationError, match="pass --from-db DSN"):
                subjects.load("pgcron", f"cron.job#{ids[0]}:live-rollup")
        finally:
            for jobid in ids:
                conn.execute("SELECT cron.unschedule(%s)", [jobid])
