"""pg_cron scripts that do more than call cron.schedule (audit F1, M1, U1, U6).

A script may edit cron.job directly, schedule inside a DO block, or connect
elsewhere with psql's \\c. Each is replayed when it can be read exactly; every
job something unreadable might touch is manual, never a false ``exact``.
The scripts are our own, written in the shapes such scripts have.
"""

from __future__ import annotations

from pgdurable import pipeline
from pgdurable.diagnostics import Fidelity
from pgdurable.sqltext import tokenize
from pgdurable.translators import pg_cron
from pgdurable.translators.base import TranslateContext

CTX = TranslateContext(default_username="app", default_database="appdb")


def results(script: str) -> dict:
    items = pg_cron.read_script(script, "jobs.sql")
    return {r.name: r for r in pg_cron.translate(items, CTX)}


def codes(result) -> list[str]:
    return [d.code for d in result.diagnostics if d.code not in ("PGD205", "PGD206")]


def message(result, code: str) -> str:
    return next(d.message for d in result.diagnostics if d.code == code)


# -- F1: UPDATE / DELETE on cron.job --------------------------------------------------


def test_update_by_jobname_retargets_role_and_database():
    got = results(
        "SELECT cron.schedule('rollup', '0 * * * *', 'CALL rollup()');\n"
        "UPDATE cron.job SET database = 'dwh', username = 'loader' WHERE jobname = 'rollup';\n"
    )
    r = got["rollup"]
    assert r.fidelity == Fidelity.EXACT and codes(r) == ["PGD258"]
    assert (r.workflow.run_as, r.workflow.database, r.workflow.start) == ("loader", "dwh", True)
    assert "line 2" in message(r, "PGD258")
    assert "schedule_in_database('rollup'" in r.workflow.rollback
    assert "'dwh', 'loader'" in r.workflow.rollback


def test_update_by_command_like_touches_only_the_matching_jobs():
    got = results(
        "SELECT cron.schedule('0 1 * * *', 'REFRESH MATERIALIZED VIEW daily_a');\n"
        "SELECT cron.schedule('0 2 * * *', 'REFRESH MATERIALIZED VIEW daily_b');\n"
        "SELECT cron.schedule('keep', '0 3 * * *', 'SELECT 3');\n"
        "UPDATE cron.job SET database='dwh', username='loader', nodename=''\n"
        "  WHERE command LIKE 'REFRESH%' AND active;\n"
    )
    refreshed = [r for n, r in got.items() if n.startswith("pgcron_job_")]
    assert len(refreshed) == 2
    for r in refreshed:
        assert r.fidelity == Fidelity.EXACT and r.workflow.run_as == "loader"
        assert r.workflow.database == "dwh"
    assert got["keep"].workflow.run_as == "app" and codes(got["keep"]) == []


def test_update_by_fresh_jobid_schedule_command_and_active():
    got = results(
        "SELECT cron.schedule('a', '0 1 * * *', 'SELECT 1');\n"
        "SELECT cron.schedule('b', '0 2 * * *', 'SELECT 2');\n"
        "UPDATE cron.job SET schedule = '*/5 * * * *', command = 'SELECT 22', active = false\n"
        " WHERE jobid = 2;\n"
    )
    b = got["b"].workflow
    assert (b.schedule, b.start) == ("*/5 * * * *", False)
    assert "SELECT 22" in str(b.body)
    assert got["a"].workflow.schedule == "0 1 * * *" and got["a"].workflow.start


def test_delete_removes_the_job_and_no_workflow_is_started():
    got = results(
        "SELECT cron.schedule('a', '0 5 * * *', 'SELECT 1');\n"
        "SELECT cron.schedule('b', '0 6 * * *', 'SELECT 2');\n"
        "DELETE FROM cron.job WHERE jobname = 'b';\n"
    )
    assert sorted(got) == ["a"]
    assert results("SELECT cron.schedule('a', '0 5 * * *', 'SELECT 1');\nTRUNCATE cron.job;") == {}
    assert (
        results("SELECT cron.schedule('a', '0 5 * * *', 'SELECT 1');\nDELETE FROM cron.job;") == {}
    )


def test_writes_the_reader_cannot_replay_make_the_jobs_manual():
    for statement in [
        "UPDATE cron.job SET database = 'dwh' WHERE jobid IN (SELECT jobid FROM cron.job);",
        "UPDATE cron.job SET database = lower('DWH') WHERE jobname = 'a';",
        "UPDATE cron.job j SET database = d.name FROM dbs d WHERE j.jobname = d.job;",
        "DELETE FROM cron.job WHERE jobid > 1;",
        "WITH x AS (UPDATE cron.job SET active = false RETURNING 1) SELECT 1;",
        "SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'a%';",
        "SELECT cron.alter_job(current_setting('app.job')::bigint, schedule => '0 4 * * *');",
    ]:
        got = results(
            "SELECT cron.schedule('a', '0 5 * * *', 'SELECT 1');\n"
            f"{statement}\n"
            "SELECT cron.schedule('later', '0 6 * * *', 'SELECT 2');\n"
        )
        a = got["a"]
        assert a.fidelity == Fidelity.MANUAL and "PGD360" in codes(a), statement
        assert not a.workflow.start and "(line 2)" in message(a, "PGD360"), statement
        assert got["later"].fidelity == Fidelity.EXACT, statement  # scheduled after it


def test_a_condition_on_the_unknown_role_is_manual_not_guessed():
    got = results(
        "SELECT cron.schedule('a', '0 5 * * *', 'SELECT 1');\n"
        "SELECT cron.schedule_in_database('b', '0 6 * * *', 'SELECT 2', 'appdb', 'loader');\n"
        "UPDATE cron.job SET active = false WHERE username = 'loader';\n"
    )
    assert got["a"].fidelity == Fidelity.MANUAL and "PGD360" in codes(got["a"])
    assert got["b"].fidelity == Fidelity.EXACT and not got["b"].workflow.start


def test_insert_into_cron_job_is_reported_as_an_item():
    got = results("INSERT INTO cron.job (schedule, command) VALUES ('0 1 * * *', 'SELECT 1');\n")
    (item,) = got.values()
    assert [d.code for d in item.diagnostics] == ["PGD360"] and item.workflow is None
    assert item.source_ref.line == 1


def test_alter_job_with_a_jobid_subquery_is_replayed():
    got = results(
        "SELECT cron.schedule('n', '0 1 * * *', 'SELECT 1');\n"
        "SELECT cron.schedule('n', '0 2 * * *', 'SELECT 2');\n"
        "SELECT cron.alter_job((SELECT jobid FROM cron.job WHERE jobname = 'n'),\n"
        "                      schedule => '0 3 * * *');\n"
    )
    assert list(got) == ["n"]
    assert got["n"].workflow.schedule == "0 3 * * *" and got["n"].fidelity == Fidelity.EXACT


def test_nodeport_and_nodename_are_reported():
    got = results(
        "SELECT cron.schedule('a', '0 1 * * *', 'SELECT 1');\n"
        "SELECT cron.schedule('b', '0 2 * * *', 'SELECT 2');\n"
        "UPDATE cron.job SET nodeport = 5433 WHERE jobname = 'a';\n"
        "UPDATE cron.job SET nodename = 'replica.internal' WHERE jobname = 'b';\n"
    )
    assert got["a"].fidelity == Fidelity.APPROXIMATE and "PGD262" in codes(got["a"])
    assert "5433" in message(got["a"], "PGD262")
    assert "PGD212" in codes(got["b"]) and "replica.internal" in message(got["b"], "PGD212")


def test_hostile_job_names_are_matched_and_written_safely(tmp_path):
    got = results(
        "SELECT cron.schedule(E'it''s\\nnightly */', '0 1 * * *', $$SELECT 'x'$$);\n"
        "UPDATE cron.job SET username = 'loader' WHERE jobname = E'it''s\\nnightly */';\n"
        "SELECT cron.schedule(E'gone\\r\\n$$', '0 2 * * *', 'SELECT 2');\n"
        "DELETE FROM cron.job WHERE jobname LIKE 'gone%';\n"
    )
    (r,) = got.values()
    assert r.name == "it's\nnightly */" and r.workflow.run_as == "loader"
    report = pipeline.run_import("pg_cron", list(got.values()), tmp_path)
    assert [str(x.fidelity) for x in report.results] == ["exact"]
    for path in tmp_path.glob("*.sql"):
        # the name reaches the files only inside literals and escaped comments
        outside = [
            t.text for t in tokenize(path.read_text()) if t.kind not in ("string", "comment")
        ]
        assert not [t for t in outside if "nightly" in t], path.name
        assert all("\n" not in t.text for t in tokenize(path.read_text()) if t.kind == "comment")


# -- M1: DO blocks and function bodies ----------------------------------------------


def test_a_guarded_perform_in_a_do_block_is_read_and_the_guard_stated():
    got = results(
        "DO $do$\nBEGIN\n"
        "  IF NOT EXISTS (SELECT 1 FROM cron.job WHERE jobname = 'purge') THEN\n"
        "    PERFORM cron.schedule('purge', '15 3 * * *', 'SELECT purge(30)');\n"
        "  END IF;\n"
        "  PERFORM cron.schedule('stats', '0 4 * * *', 'ANALYZE');\n"
        "END\n$do$;\n"
    )
    purge = got["purge"]
    assert purge.fidelity == Fidelity.APPROXIMATE and codes(purge) == ["PGD259"]
    assert "--from-db" in message(purge, "PGD259") and "line 3" in message(purge, "PGD259")
    assert purge.source_ref.line == 4
    assert got["stats"].fidelity == Fidelity.EXACT


def test_the_guard_sees_jobs_the_script_scheduled_before():
    got = results(
        "SELECT cron.schedule('purge', '0 1 * * *', 'SELECT 1');\n"
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM cron.job WHERE jobname = 'purge') THEN\n"
        "  PERFORM cron.schedule('purge', '0 9 * * *', 'SELECT 9'); END IF; END $$;\n"
        "DO $$ BEGIN IF EXISTS (SELECT FROM cron.job WHERE jobname = 'old') THEN\n"
        "  PERFORM cron.unschedule('old'); END IF; END $$;\n"
        "SELECT cron.schedule('x', '0 2 * * *', 'SELECT 2')\n"
        "  WHERE NOT EXISTS (SELECT 1 FROM cron.job WHERE jobname = 'x');\n"
    )
    assert got["purge"].workflow.schedule == "0 1 * * *"  # the IF found it: not rescheduled
    assert got["purge"].fidelity == Fidelity.EXACT
    assert got["x"].fidelity == Fidelity.APPROXIMATE and "PGD259" in codes(got["x"])


def test_a_do_block_the_reader_cannot_follow_is_an_item_naming_the_line():
    got = results(
        "SELECT cron.schedule('a', '0 1 * * *', 'SELECT 1');\n"
        "DO $$\nDECLARE v text;\nBEGIN\n"
        "  FOR v IN SELECT name FROM views LOOP\n"
        "    PERFORM cron.schedule('refresh-' || v, '0 * * * *', 'REFRESH MATERIALIZED VIEW ' || v);\n"
        "  END LOOP;\nEND $$;\n"
    )
    item = got["line_2"]
    assert item.workflow is None and [d.code for d in item.diagnostics] == ["PGD361"]
    assert "line 2" in item.diagnostics[0].message
    assert got["a"].fidelity == Fidelity.EXACT  # the block schedules, it alters nothing


def test_a_schedule_inside_a_function_body_is_reported():
    got = results(
        "CREATE OR REPLACE FUNCTION setup_jobs() RETURNS void LANGUAGE plpgsql AS $fn$\n"
        "BEGIN PERFORM cron.schedule('n', '0 1 * * *', 'SELECT 1'); END $fn$;\n"
    )
    (item,) = got.values()
    assert [d.code for d in item.diagnostics] == ["PGD361"]
    assert "function body" in item.diagnostics[0].message


def test_a_do_block_that_alters_unreadably_makes_the_jobs_manual():
    got = results(
        "SELECT cron.schedule('a', '0 1 * * *', 'SELECT 1');\n"
        "DO $$ BEGIN EXECUTE 'UPDATE cron.job SET active = false'; END $$;\n"
    )
    assert got["a"].fidelity == Fidelity.MANUAL and "PGD360" in codes(got["a"])
    assert "line_2" in got


# -- U6: psql meta-commands ---------------------------------------------------------


def test_backslash_c_sets_the_database_and_role_pg_cron_records():
    got = results(
        "\\c metrics\n"
        "SELECT cron.schedule('roll', '0 * * * *', 'CALL roll()');\n"
        "\\connect 'cron db' loader\n"
        "SELECT cron.schedule('other', '0 1 * * *', 'SELECT 1');\n"
        "SELECT cron.schedule_in_database('kept', '0 2 * * *', 'SELECT 2', 'appdb');\n"
    )
    roll = got["roll"]
    assert roll.fidelity == Fidelity.EXACT and roll.workflow.database == "metrics"
    assert "PGD260" in codes(roll) and "line 1" in message(roll, "PGD260")
    other = got["other"].workflow
    assert (other.database, other.run_as) == ("cron db", "loader")
    assert got["kept"].workflow.database == "appdb" and "PGD260" not in codes(got["kept"])
    trailing = results("\\c postgres;\nSELECT cron.schedule('p', '0 1 * * *', 'SELECT 1');")
    assert trailing["p"].workflow.database == "postgres"


def test_an_unknown_connect_target_and_includes_are_manual():
    got = results(
        "\\c :target\nSELECT cron.schedule('a', '0 1 * * *', 'SELECT 1');\n\\i more_jobs.sql\n"
    )
    assert got["a"].fidelity == Fidelity.MANUAL and "PGD362" in codes(got["a"])
    include = got["line_3"]
    assert include.workflow is None and [d.code for d in include.diagnostics] == ["PGD362"]


def test_other_meta_commands_are_a_note_and_a_backslash_in_a_string_is_sql():
    got = results(
        "\\set ON_ERROR_STOP on\n\\echo scheduling\n"
        "SELECT cron.schedule('a', '0 1 * * *', $$SELECT 'one\n\\echo not a command'$$);\n"
    )
    a = got["a"]
    assert a.fidelity == Fidelity.EXACT and codes(a) == ["PGD261"]
    assert "\\echo at line 2" in message(a, "PGD261")
    assert "\\echo not a command" in str(a.workflow.body)


# -- U1: nested $$ --------------------------------------------------------------------


def test_nested_dollar_quotes_point_at_the_inner_quote():
    script = (
        "DO $$\n"
        "BEGIN\n"
        "  IF NOT EXISTS (SELECT 1 FROM cron.job WHERE jobname = 'mv') THEN\n"
        "    PERFORM cron.schedule('mv', '0 * * * *', $$REFRESH MATERIALIZED VIEW mv$$);\n"
        "  END IF;\n"
        "END\n"
        "$$;\n"
    )
    (item,) = results(script).values()
    (d,) = item.diagnostics
    assert d.code == "PGD102" and "nested $$ inside a $$ body" in d.message
    assert (d.ref.line, d.ref.col) == (4, 46)
    assert "$q$" in d.message


# -- the role cron.schedule records ------------------------------------------------


def test_set_role_and_rolled_back_transactions_are_replayed():
    got = results(
        "SET ROLE loader;\n"
        "SELECT cron.schedule('as-loader', '0 1 * * *', 'SELECT 1');\n"
        "RESET ROLE;\n"
        "SELECT cron.schedule('as-script', '0 2 * * *', 'SELECT 2');\n"
        'BEGIN;\nSET LOCAL ROLE "Odd Role";\n'
        "SELECT cron.schedule('local', '0 3 * * *', 'SELECT 3');\nCOMMIT;\n"
        "BEGIN;\nSELECT cron.schedule('undone', '0 4 * * *', 'SELECT 4');\nROLLBACK;\n"
        "SET ROLE :owner;\n"
        "SELECT cron.schedule('unknown-owner', '0 5 * * *', 'SELECT 5');\n"
    )
    assert got["as-loader"].workflow.run_as == "loader"
    assert got["as-script"].workflow.run_as == "app"
    assert got["local"].workflow.run_as == "Odd Role"
    assert "undone" not in got
    unknown = got["unknown-owner"]
    assert unknown.fidelity == Fidelity.MANUAL and "PGD360" in codes(unknown)
    assert "line 12" in message(unknown, "PGD360")
    assert all(got[n].fidelity == Fidelity.EXACT for n in ("as-loader", "as-script", "local"))


def test_a_guard_on_another_column_marks_the_job_it_changed():
    got = results(
        "SELECT cron.schedule('n', '0 1 * * *', 'SELECT 1');\n"
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM cron.job WHERE command = 'SELECT 2') THEN\n"
        "  PERFORM cron.schedule('n', '0 2 * * *', 'SELECT 2'); END IF; END $$;\n"
    )
    n = got["n"]
    assert n.workflow.schedule == "0 2 * * *" and n.fidelity == Fidelity.APPROXIMATE
    assert "PGD259" in codes(n)


def test_a_schedule_with_a_computed_argument_taints_only_the_jobs_it_may_upsert():
    got = results(
        "SELECT cron.schedule('a', '0 1 * * *', 'SELECT 1');\n"
        "SELECT cron.schedule('b', '0 2 * * *', 'SELECT 2');\n"
        "SELECT cron.schedule('0 3 * * *', format('SELECT %s', 3));\n"
        "SELECT cron.schedule('a', '0 4 * * *', format('SELECT %s', 4));\n"
    )
    assert got["b"].fidelity == Fidelity.EXACT
    assert got["a"].fidelity == Fidelity.MANUAL and "(line 4)" in message(got["a"], "PGD360")
    assert {n for n, r in got.items() if r.workflow is None} == {"line_3", "line_4"}


def test_an_exception_handler_in_the_block_is_not_read_as_straight_code():
    got = results(
        "SELECT cron.schedule('a', '0 1 * * *', 'SELECT 1');\n"
        "DO $$ BEGIN PERFORM cron.schedule('b', '0 2 * * *', 'SELECT 2');\n"
        "EXCEPTION WHEN others THEN PERFORM cron.unschedule('a'); END $$;\n"
    )
    assert "b" not in got and got["line_2"].workflow is None
    assert [d.code for d in got["line_2"].diagnostics] == ["PGD361"]
    assert "EXCEPTION" in got["line_2"].diagnostics[0].message
    assert got["a"].fidelity == Fidelity.MANUAL  # the handler may unschedule it
