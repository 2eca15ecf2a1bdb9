"""verify --airflow with the builtin reference executor, and a wrong translation caught."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgdurable.cli import cli
from pgdurable.errors import VerificationError
from pgdurable.verify import Options, subjects, verify

DAGS = Path(__file__).resolve().parents[2] / "fixtures" / "verify" / "dags"
SEED = Path(__file__).resolve().parents[2] / "fixtures" / "seed"


AIRFLOW_SEED = SEED / "airflow_exec.sql"


@pytest.mark.parametrize(
    ("dag", "failed_tasks"),
    [
        ("v01_linear", []),
        ("v02_branch_sql", []),
        ("v03_trigger_rules", ["bad"]),
        ("v04_check_fail", ["check"]),  # count(*) = 0 is falsy: the check fails
        ("v05_short_circuit", []),
        ("v06_retry_checks", ["flaky", "threshold"]),
    ],
)
def test_translated_dags_match_the_reference(admin, dag, failed_tasks):
    result = verify("airflow", str(DAGS / f"{dag}.py"), Options(AIRFLOW_SEED), admin)
    assert result.equal, result.text()
    states = result.reference_states[0]
    assert sorted(t for t, s in states.items() if s == "failed") == failed_tasks


def test_reference_states_of_branches_and_trigger_rules(admin):
    branch = verify("airflow", str(DAGS / "v02_branch_sql.py"), Options(AIRFLOW_SEED), admin)
    assert branch.reference_states[0] == {
        "after_no": "skipped",
        "branch": "success",
        "join": "success",
        "no": "skipped",
        "report": "success",
        "yes": "success",
    }
    rules = verify("airflow", str(DAGS / "v03_trigger_rules.py"), Options(AIRFLOW_SEED), admin)
    assert rules.reference_states[0] == {
        "alert": "success",
        "all_bad": "skipped",
        "any_ok": "success",
        "bad": "failed",
        "cleanup": "success",
        "good": "success",
        "no_skip": "success",
        "strict": "upstream_failed",
    }


def test_an_edited_generated_step_is_caught_with_the_differing_rows(admin, tmp_path: Path):
    subject = subjects.load("airflow", str(DAGS / "v02_branch_sql.py"))
    edited = tmp_path / "v02_branch_sql.sql"
    text = subject.generated_text.replace("VALUES ('yes')", "VALUES ('yes!')")
    assert text != subject.generated_text
    edited.write_text(text)
    runner = CliRunner()
    outcome = runner.invoke(
        cli,
        [
            "verify",
            "--airflow",
            str(DAGS / "v02_branch_sql.py"),
            "--fixture",
            str(AIRFLOW_SEED),
            "--workflow",
            str(edited),
            "--dsn",
            admin,
        ],
    )
    assert outcome.exit_code == 1, outcome.output
    assert "DIFFERENT" in outcome.stdout
    assert "table public.log: DIFFERENT (old 2 rows, new 2 rows)" in outcome.stdout
    assert "only in old (1):\n      (v='yes')" in outcome.stdout
    assert "only in new (1):\n      (v='yes!')" in outcome.stdout


def test_json_report_for_ci(admin):
    outcome = CliRunner().invoke(
        cli,
        [
            "verify",
            "--airflow",
            f"{DAGS / 'v04_check_fail.py'}:v04_check_fail",
            "--fixture",
            str(AIRFLOW_SEED),
            "--compare",
            "log",
            "--dsn",
            admin,
            "--json",
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    import json

    data = json.loads(outcome.stdout)
    assert data["equal"] is True
    assert [t["table"] for t in data["tables"]] == ["public.log"]
    assert data["reference_states"][0]["load"] == "upstream_failed"


def test_a_failure_inside_the_schedule_reaches_the_new_sides_outcome(admin):
    # a scheduled DAG's run sits in the keep-alive pgdurable.try; its failure must still
    # count (issue 18, item 5), and database= (in default_args) is the target database
    dag = DAGS / "v08_nightly_fail.py"
    subject = subjects.load("airflow", str(dag), run_as="etl")
    assert "target_database => 'warehouse'" in subject.generated_text
    options = Options(AIRFLOW_SEED, run_as="etl", logical_date=datetime(2024, 1, 2, tzinfo=UTC))
    result = verify("airflow", str(dag), options, admin)
    assert result.verdict == "BOTH FAILED", result.text()
    assert result.old_outcomes[0].failed and result.new_outcomes[0].failed
    missing = 'relation "daily_summary" does not exist'
    assert any("task summarize" in e and missing in e for e in result.old_outcomes[0].errors)
    assert any(missing in e for e in result.new_outcomes[0].errors)
    log = next(t for t in result.tables if t.table == "public.log")
    assert log.equal and log.old_rows == 1  # stage ran in the clone on both sides
    accepted = verify(
        "airflow", str(dag), Options(**{**options.__dict__, "accept_failures": True}), admin
    )
    assert accepted.equal, accepted.text()


def test_tasks_of_two_databases_are_refused(admin, tmp_path: Path):
    dag = tmp_path / "two_dbs.py"
    dag.write_text(
        (DAGS / "v08_nightly_fail.py")
        .read_text()
        .replace('task_id="summarize",', 'task_id="summarize", database="reporting",')
    )
    with pytest.raises(VerificationError, match="run in different databases"):
        verify("airflow", str(dag), Options(AIRFLOW_SEED, run_as="etl"), admin)
