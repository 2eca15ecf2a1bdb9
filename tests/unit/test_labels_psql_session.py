"""Labels of psql jobs whose session state or shell changes what runs (audit F3-F5).

One psql session split into steps carries its settings (PGD264, exact),
reports what it cannot carry (PGD263 approximate, SET ROLE PGD363 manual);
libpq's environment (PGOPTIONS, PGTZ ...) is set per step or reported
(PGD265); a crontab line the shell expands is not exact SQL. The runs that
prove the carried settings work are in tests/worker/test_psql_session_runs.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pgdurable import model as m
from pgdurable.diagnostics import Collector, Fidelity, SourceRef
from pgdurable.translators import queue, session
from pgdurable.translators.base import TranslateContext

CTX = TranslateContext(default_username="app")


def _translate(tmp_path: Path, name: str, text: str, files: dict[str, str] | None = None):
    for other, body in (files or {}).items():
        (tmp_path / other).write_text(body)
    path = tmp_path / name
    path.write_text(text)
    batch = queue.read_batch([path])
    return [r for items in batch.items.values() for r in queue.translate(items, CTX)]


def _codes(result) -> set[str]:
    return {d.code for d in result.diagnostics}


def _queries(result) -> list[str]:
    # The run lives in the enqueue function (setup SQL), as node JSON.
    text = "\n".join(result.workflow.setup_sql) if result.workflow else ""
    return [text.replace('\\"', '"')]


def _carry(*queries: str, portable: bool = False, base=None):
    diag = Collector(SourceRef("x"))
    node = m.Seq(tuple(m.Sql(q) for q in queries)) if len(queries) > 1 else m.Sql(queries[0])
    carried, _ = session.carry(node, diag, "psql", portable=portable, base=base)
    steps = [n.query for n in m.walk(carried) if isinstance(n, m.Sql)]
    return steps, {d.code for d in diag.items}, diag.items


def test_set_is_carried_as_set_local_into_later_steps_only():
    steps, codes, _ = _carry("SET search_path TO reporting, public", "SELECT f()", "SELECT g()")
    assert steps[0] == "SET search_path TO reporting, public"
    assert steps[1] == "SET LOCAL search_path TO reporting, public;\nSELECT f()"
    assert steps[2].startswith("SET LOCAL search_path")
    assert codes == {"PGD264"}


def test_hostile_values_are_kept_verbatim_inside_their_own_quotes():
    value = "SET application_name = 'a''b\n*/ $$ c'"
    steps, codes, _ = _carry(value, "SELECT 1")
    assert steps[1] == "SET LOCAL application_name = 'a''b\n*/ $$ c';\nSELECT 1"
    steps, _, _ = _carry("SELECT set_config('x.y', 'it''s\n$$', false)", "SELECT 1")
    assert steps[1].startswith("SELECT set_config('x.y', $")  # literal(): dollar-quoted
    assert "it's\n$$" in steps[1]


@pytest.mark.parametrize(
    ("first", "later"),
    [
        ("SET TIME ZONE 'Asia/Tokyo'", "SET LOCAL TIME ZONE 'Asia/Tokyo'"),
        ("SET SESSION statement_timeout = '5s'", "SET LOCAL statement_timeout = '5s'"),
        ("SET SCHEMA 'reporting'", "SET LOCAL SCHEMA 'reporting'"),
        ("set my.flag to on", "SET LOCAL my.flag to on"),
    ],
)
def test_set_spellings(first, later):
    steps, _, _ = _carry(first, "SELECT 1")
    assert steps[1] == f"{later};\nSELECT 1"


def test_reset_set_local_and_set_default_end_the_carry():
    steps, _, _ = _carry("SET search_path TO a", "RESET search_path", "SELECT 1")
    assert steps[2] == "SELECT 1"
    steps, _, _ = _carry("SET LOCAL search_path TO a", "SELECT 1")
    assert steps[1] == "SELECT 1"
    steps, _, _ = _carry("SET search_path TO a", "SET search_path TO DEFAULT", "SELECT 1")
    assert steps[2] == "SELECT 1"
    steps, _, _ = _carry("SET a.b TO 1", "RESET ALL", "SELECT 1")
    assert steps[2] == "SELECT 1"


def test_reset_goes_back_to_the_connection_setting():
    base = {"search_path": session.local_setting("search_path", "archive")}
    steps, _, _ = _carry("SET search_path TO a", "RESET search_path", "SELECT 1", base=base)
    assert steps[2] == "SELECT set_config('search_path', 'archive', true);\nSELECT 1"


@pytest.mark.parametrize(
    ("first", "code"),
    [
        ("SET ROLE admin", "PGD363"),
        ("SET SESSION AUTHORIZATION admin", "PGD363"),
        ("CREATE TEMP TABLE t AS SELECT 1", "PGD263"),
        ("PREPARE p AS SELECT 1", "PGD263"),
        ("SELECT set_config('search_path', current_user, false)", "PGD263"),
        ("SET NAMES 'LATIN1'", "PGD263"),
    ],
)
def test_state_that_cannot_be_carried_is_reported(first, code):
    _, codes, _ = _carry(first, "SELECT f()")
    assert code in codes
    # The same statement as the last one changes nothing that runs after it.
    _, codes, _ = _carry("SELECT f()", first)
    assert not codes & {"PGD263", "PGD363"}


def test_vacuum_after_a_set_and_portable_are_approximate():
    _, codes, items = _carry("SET maintenance_work_mem = '1GB'", "VACUUM orders")
    assert "PGD263" in codes and "VACUUM orders" in items[0].message
    steps, codes, _ = _carry("SET search_path TO a", "SELECT f()", portable=True)
    assert steps[1] == "SELECT f()" and "PGD263" in codes


def test_crontab_labels(tmp_path):
    results = _translate(
        tmp_path,
        "crontab",
        "0 1 * * * psql -U app -c 'SET search_path TO reporting' -c 'SELECT refresh_all()'\n"
        "0 2 * * * psql -U app -c 'SET ROLE owner' -c 'SELECT refresh_all()'\n"
        "0 3 * * * PGCLIENTENCODING=LATIN1 psql -U app -c 'SELECT refresh_all()'\n"
        "0 4 * * * PGOPTIONS='-c search_path=archive --statement-timeout=5s' PGTZ=UTC"
        " psql -U app -c 'SELECT refresh_all()'\n"
        "0 5 * * * PGOPTIONS='-X' psql -U app -c 'SELECT 1'\n",
    )
    labels = [r.fidelity for r in results]
    assert labels == [
        Fidelity.EXACT,
        Fidelity.MANUAL,
        Fidelity.APPROXIMATE,
        Fidelity.EXACT,
        Fidelity.APPROXIMATE,
    ]
    assert "PGD363" in _codes(results[1]) and "PGD265" in _codes(results[2])
    (text,) = _queries(results[3])
    assert "set_config('statement_timeout', '5s', true)" in text
    assert "set_config('TimeZone', 'UTC', true)" in text


def test_script_role_switch_and_set_via_variables(tmp_path):
    results = _translate(
        tmp_path,
        "crontab",
        "PGOPTIONS=-c lock_timeout=1s\n0 1 * * * psql -U app -v ON_ERROR_STOP=1 -f job.sql\n",
        {"job.sql": "SET search_path TO reporting;\nSELECT refresh_all();\n"},
    )
    assert results[0].fidelity is Fidelity.EXACT, results[0].diagnostics
    (text,) = _queries(results[0])
    assert "SET LOCAL search_path TO reporting" in text and "lock_timeout" in text


@pytest.mark.parametrize(
    "line",
    [
        """psql -U app -c "DELETE FROM logs WHERE day < '$(date -d yesterday +\\%F)'\"""",
        """psql -U app -c "SELECT purge('$HOME')\"""",
        """psql -U app -c "SELECT purge('${RETENTION}')\"""",
        """psql -U app -c "SELECT `cat /etc/hostname`\"""",
        """psql -U app -c "DO $$ BEGIN PERFORM 1; END $$\"""",
    ],
)
def test_shell_expansion_is_a_command_step_not_exact_sql(tmp_path, line):
    (result,) = _translate(tmp_path, "crontab", f"0 5 * * * {line}\n")
    assert result.fidelity is not Fidelity.EXACT
    assert "PGD270" in _codes(result), result.diagnostics


def test_a_crontab_variable_inside_single_quotes_is_not_substituted_silently(tmp_path):
    (result,) = _translate(tmp_path, "crontab", "DAYS=7\n0 5 * * * psql -U app -c 'SELECT $DAYS'\n")
    assert result.fidelity is not Fidelity.EXACT and "PGD270" in _codes(result)


def test_crontab_variables_and_single_quotes_stay_exact(tmp_path):
    results = _translate(
        tmp_path,
        "crontab",
        "DAYS=7\n"
        """0 5 * * * psql -U app -c "DELETE FROM logs WHERE age < '$DAYS days'"\n"""
        "0 6 * * * psql -U app -c 'DO $$ BEGIN PERFORM 1; END $$'\n",
    )
    assert [r.fidelity for r in results] == [Fidelity.EXACT, Fidelity.EXACT]
    assert "'7 days'" in _queries(results[0])[0]


def test_kubernetes_env_pgoptions_and_shell_home(tmp_path):
    results = _translate(
        tmp_path,
        "cron.yaml",
        """apiVersion: batch/v1
kind: CronJob
metadata: {name: purge}
spec:
  schedule: "0 3 * * *"
  timeZone: UTC
  jobTemplate:
    spec:
      backoffLimit: 0
      template:
        spec:
          containers:
          - name: psql
            image: postgres:16
            env:
            - {name: PGUSER, value: app}
            - {name: PGOPTIONS, value: "-c search_path=archive"}
            - {name: KEEP, value: "30"}
            command: ["sh", "-c", "psql -c \\"SELECT purge($(KEEP), $KEEP)\\""]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: home}
spec:
  schedule: "0 4 * * *"
  timeZone: UTC
  jobTemplate:
    spec:
      backoffLimit: 0
      template:
        spec:
          containers:
          - name: psql
            image: postgres:16
            env:
            - {name: PGUSER, value: app}
            command: ["sh", "-c", "psql -c \\"SELECT purge('$HOME')\\""]
""",
    )
    purge, home = results
    assert purge.fidelity is Fidelity.EXACT, purge.diagnostics
    text = _queries(purge)[0]
    assert "SELECT purge(30, 30)" in text and "set_config('search_path', 'archive', true)" in text
    assert home.fidelity is not Fidelity.EXACT


def test_percent_shell_if_names_and_root_hint(tmp_path):
    """U2, U4: the % explanation, a name from the program, the root-role hint."""
    cron = tmp_path / "cron.d" / "maint"
    cron.parent.mkdir()
    cron.write_text(
        "0 1 * * * root psql -c \"DELETE FROM t WHERE name LIKE 'tmp%'\"\n"
        "0 2 * * * root if [ -x /usr/sbin/pg_tidy ]; then /usr/sbin/pg_tidy -q; fi\n"
        '0 4 * * * root psql -d app -c "SELECT 1"\n'
    )
    batch = queue.read_batch([cron], crontab_kind="system")
    percent, tidy, select = batch.items["crontab"]
    assert any(n.code == "PGD308" and "write \\%" in n.message for n in percent.notes)
    assert tidy.name == "pg-tidy"
    assert not any("-U ROLE" in n.message for n in tidy.notes)  # no psql: no role hint
    assert any(n.code == "PGD242" and "-U ROLE" in n.message for n in select.notes)


def test_folder_mode_names_a_skipped_possible_crontab(tmp_path):
    """U5: a cron.d-style file in a folder is skipped, but said to look like a crontab."""
    (tmp_path / "pg.cron.d").write_text("0 3 * * * postgres vacuumdb -a -q\n")
    (tmp_path / "notes.txt").write_text("hello\n")
    batch = queue.read_batch([tmp_path])
    reasons = {f.path.name: f.reason for f in batch.files}
    assert reasons["pg.cron.d"].startswith("possible crontab")
    assert reasons["notes.txt"].startswith("not a queue configuration")


def test_wrapped_steps_are_not_rewritten_but_reported():
    diag = Collector(SourceRef("x"))
    node = m.Seq((m.Sql("SET search_path TO a"), m.Timeout(m.Sql("SELECT f()"), 5)))
    carried, prefixed = session.carry(node, diag, "psql", portable=False)
    assert carried == node and not prefixed
    assert [d.code for d in diag.items] == ["PGD263"]


def test_airflow_bash_psql_env_pgoptions_is_carried(tmp_path):
    from pgdurable.translators import airflow

    dag = tmp_path / "env_dag.py"
    dag.write_text(
        "from datetime import datetime\n"
        "from airflow import DAG\n"
        "from airflow.operators.bash import BashOperator\n"
        'with DAG(dag_id="envd", schedule=None, start_date=datetime(2024, 1, 1)) as dag:\n'
        '    BashOperator(task_id="t", bash_command="psql -c \'SELECT refresh_all()\'",\n'
        '                 env={"PGOPTIONS": "-c search_path=reporting", "PGPORT": "5433"})\n'
    )
    (result,) = airflow.translate(airflow.read_paths([dag]), TranslateContext()).results
    assert result.fidelity is Fidelity.APPROXIMATE  # PGPORT: PGD265
    codes = {d.code for d in result.diagnostics}
    assert {"PGD264", "PGD265"} <= codes
    queries = [n.query for n in m.walk(result.workflow.body) if isinstance(n, m.Sql)]
    assert any(q.startswith("SELECT set_config('search_path', 'reporting', true)") for q in queries)
