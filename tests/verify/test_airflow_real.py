"""--reference airflow: the DAGs run by a real Apache Airflow 3 (never skipped).

The Airflow virtualenv comes from .ci/airflow-venv.sh (``.ci/run`` calls it;
locally run it once). Each test verifies a DAG against a real ``airflow dags
test`` run, then replays the same DAG with the builtin reference and requires
the very same task states: a disagreement is a bug of the builtin reference.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pgdurable.errors import VerificationError
from pgdurable.verify import Options, airflow_real, subjects, verify
from pgdurable.verify.airflow_builtin import Reference
from pgdurable.verify.sandbox import Sandbox

DAGS = Path(__file__).resolve().parents[2] / "fixtures" / "verify" / "dags"
SEED = Path(__file__).resolve().parents[2] / "fixtures" / "seed" / "airflow_exec.sql"


DATE = datetime(2024, 1, 2, tzinfo=UTC)


def builtin_states(admin: str, dag_file: Path) -> dict[str, str]:
    """The builtin reference's task states for the same DAG, fixture and date."""
    subject = subjects.load("airflow", str(dag_file))
    with Sandbox(admin) as sandbox:
        sandbox.ensure_role("pgdurable_verify")
        clone = sandbox.clone(sandbox.build_template(SEED), "builtin")
        conninfo = sandbox.conninfo(clone, "pgdurable_verify")
        return Reference(subject.item, subject.source_file, lambda _: conninfo, DATE).run().states


@pytest.mark.parametrize(
    "dag",
    [
        "v02_branch_sql",
        "v03_trigger_rules",
        "v04_check_fail",
        "v05_short_circuit",
        "v06_retry_checks",
    ],
)
def test_translation_matches_a_real_airflow_run(admin, dag):
    options = Options(SEED, reference="airflow", logical_date=DATE)
    result = verify("airflow", str(DAGS / f"{dag}.py"), options, admin)
    assert result.equal, result.text()
    real = result.reference_states[0]
    assert real and all(state != "none" for state in real.values()), real
    assert builtin_states(admin, DAGS / f"{dag}.py") == real


@pytest.mark.parametrize("version", ["2", "3"])
def test_one_dag_against_airflow_2_and_3(admin, version):
    # most DAG files people migrate are written for Airflow 2 (issue 18, item 6); this one
    # imports in both, so both real references must agree with the translation
    dag = DAGS / "v09_both_generations.py"
    options = Options(SEED, reference="airflow", logical_date=DATE, airflow_version=version)
    result = verify("airflow", str(dag), options, admin)
    assert result.reference == f"airflow (Apache Airflow {airflow_real.VERSIONS[version]})"
    assert result.equal, result.text()
    real = result.reference_states[0]
    assert real == {"broken": "failed", "done": "success", "load": "success", "stamp": "success"}
    assert builtin_states(admin, dag) == real
    # the failed task's error text is in the report
    assert not result.old_outcomes[0].failed  # the all_done leaf decides the DAG run
    assert [e.split(":", 1)[0] for e in result.old_outcomes[0].errors] == ["task broken"]


def test_the_dag_imports_choose_the_airflow_version():
    assert (
        airflow_real.major_for(
            None,
            subjects.load("airflow", str(DAGS / "v09_both_generations.py")).extra["generation"],
        )
        == "2"
    )
    assert (
        airflow_real.major_for(
            None, subjects.load("airflow", str(DAGS / "v04_check_fail.py")).extra["generation"]
        )
        == "3"
    )
    assert airflow_real.major_for("3", 2) == "3" and airflow_real.major_for("2.10", 3) == "2"
    with pytest.raises(VerificationError, match="offers Apache Airflow"):
        airflow_real.major_for("1", None)


def test_bash_commands_run_as_command_steps_against_a_real_airflow(admin):
    """Code steps on the new side: verify's worker runs the BashOperator commands (their
    programs found on PATH, the replay role granted in the clone), as Airflow does."""
    dag = DAGS / "v10_bash_steps.py"
    options = Options(SEED, reference="airflow", logical_date=DATE, airflow_version="3")
    result = verify("airflow", str(dag), options, admin)
    assert result.equal, result.text()
    real = result.reference_states[0]
    assert real == {"stamp": "success", "nap": "success", "broken": "failed", "record": "success"}
    assert any("code steps ran on the verify worker" in note for note in result.notes)
    # the command's failure is the step's: its exit code is in the new side's errors
    errors = result.new_outcomes[0].errors
    assert errors and "exited with code 1" in errors[0], result.text()


def test_templates_rendered_at_run_time_match_a_real_airflow(admin, tmp_path):
    """The render steps run on verify's worker (the import's task module on its code
    path): each command tests its rendered text, so equal states mean equal renderings."""
    from pgdurable import pipeline

    dag = DAGS / "v11_runtime_templates.py"
    out = tmp_path / "out"
    pipeline.import_airflow(paths=[dag], out_dir=out, default_username="pgdurable_verify")
    assert (out / "airflow_tasks" / "v11_runtime_templates.py").is_file()
    options = Options(
        SEED, reference="airflow", logical_date=DATE, airflow_version="3", code_paths=[out]
    )
    result = verify("airflow", str(dag), options, admin)
    assert result.equal, result.text()
    real = result.reference_states[0]
    assert real == {
        "key": "success",
        "loop": "success",
        "day": "success",
        "wrong": "failed",
        "ok": "success",
        "after": "success",
    }
    assert "table public.log: equal (2 rows)" in result.text()
