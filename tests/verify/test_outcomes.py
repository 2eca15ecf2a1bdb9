"""verify compares how each run ended, not only the rows (issue 18, items 1 and 2).

One side failed and the other not is DIFFERENT even when the data match; both sides
failed is BOTH FAILED (not equal) unless accepted; every error text is shown. Both
sides run as the identity of the import (the job's role, the file's run_as), or
--run-as for both.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pgdurable.verify import Options, subjects, verify

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
JOBS = FIXTURES / "verify" / "pg_cron" / "sessions.sql"
SEED = FIXTURES / "seed" / "sessions.sql"


def _edited(tmp_path: Path, job: str, edit) -> Path:
    """The generated file of ``job``, edited by hand the way a person would."""
    subject = subjects.load("pgcron", f"{JOBS}:{job}")
    path = tmp_path / subject.generated_path.name
    path.write_text(edit(subject.generated_text), encoding="utf-8")
    return path


def _run_as(role: str):
    return lambda text: re.sub(r"run_as => '[^']*'", f"run_as => '{role}'", text)


def test_old_failed_new_completed_is_different(admin, tmp_path):
    # the old job runs as reporting (permission denied); the edited file as app_rw
    workflow = _edited(tmp_path, "purge-sessions-reporting", _run_as("app_rw"))
    result = verify(
        "pgcron", f"{JOBS}:purge-sessions-reporting", Options(SEED, workflow=workflow), admin
    )
    assert result.verdict == "DIFFERENT" and not result.equal, result.text()
    assert result.roles == {"old": "reporting", "new": "app_rw"}
    data = result.as_dict()
    assert data["runs"][0]["outcome"] == "different"
    assert data["runs"][0]["old"]["failed"] and not data["runs"][0]["new"]["failed"]
    assert "permission denied for table sessions" in data["runs"][0]["old"]["errors"][0]
    assert "old error: ERROR:  permission denied for table sessions" in result.text()
    json.dumps(data)  # the --json output is serialisable


def test_old_completed_new_failed_is_different(admin, tmp_path):
    workflow = _edited(tmp_path, "purge-sessions", _run_as("reporting"))
    result = verify("pgcron", f"{JOBS}:purge-sessions", Options(SEED, workflow=workflow), admin)
    assert result.verdict == "DIFFERENT", result.text()
    new = result.new_outcomes[0]
    assert new.failed and "permission denied for table sessions" in new.errors[0]


def test_both_failed_is_not_equal_unless_accepted(admin):
    result = verify("pgcron", f"{JOBS}:purge-expired", Options(SEED), admin)
    # the data match (nothing deleted on either side), but nothing was verified
    assert all(t.equal for t in result.tables)
    assert result.verdict == "BOTH FAILED" and not result.equal, result.text()
    assert 'column "expired_at" does not exist' in result.old_outcomes[0].errors[0]
    assert 'column "expired_at" does not exist' in result.new_outcomes[0].errors[0]
    accepted = verify("pgcron", f"{JOBS}:purge-expired", Options(SEED, accept_failures=True), admin)
    assert accepted.verdict == "EQUAL" and accepted.equal, accepted.text()
    assert "accepted" in accepted.text()


def test_a_failure_swallowed_by_an_inner_try_still_counts(admin, tmp_path):
    # a person wrapped the step in its own pgdurable.try: the instance completes, the
    # step failed; pg_cron would record the run as failed
    def wrap(text: str) -> str:
        return text.replace(
            "'DELETE FROM sessions WHERE expired_at < now()'",
            "pgdurable.try('DELETE FROM sessions WHERE expired_at < now()', df.sleep(0))",
        )

    workflow = _edited(tmp_path, "purge-expired", wrap)
    code = re.sub(r"--[^\n]*", "", workflow.read_text())  # without the source comments
    assert "pgdurable.try(pgdurable.try(" in re.sub(r"\s", "", code)
    result = verify("pgcron", f"{JOBS}:purge-expired", Options(SEED, workflow=workflow), admin)
    assert result.new_outcomes[0].failed, result.text()
    assert result.verdict == "BOTH FAILED"


def test_same_role_as_the_import_and_run_as_overrides(admin):
    result = verify("pgcron", f"{JOBS}:purge-sessions", Options(SEED), admin)
    assert result.roles == {"old": "app_rw", "new": "app_rw"} and result.equal, result.text()
    sessions = next(t for t in result.tables if t.table == "public.sessions")
    assert sessions.old_rows == sessions.new_rows == 1
    overridden = verify(
        "pgcron", f"{JOBS}:purge-sessions", Options(SEED, run_as="reporting"), admin
    )
    assert overridden.roles == {"old": "reporting", "new": "reporting"}
    assert overridden.verdict == "BOTH FAILED", overridden.text()
