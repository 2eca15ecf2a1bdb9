"""The verify command line: --all over a migration folder, bad input, cleanup."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pgdurable import pipeline
from pgdurable.cli import cli

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
