"""Retention of the run history (issue 20): bounded by age and by runs per
workflow, with per-database settings; pruned by pgdurable.prune_run_history_v1
(the worker calls it once a minute)."""

from __future__ import annotations

import pytest

from pgdurable import db


def _add_runs(database, workflow: str, count: int, *, ended: str = "now()", outcome="succeeded"):
    database.execute(
        "INSERT INTO pgdurable.workflow_runs (source, workflow, jobid, run_number, kind,"
        " instance_id, execution, iteration, due_at, started_at, ended_at, outcome,"
        " submitted_by)"
        " SELECT 'pg_cron', %s, 1, n, 'tick', 'aaaaaaaa', %s || n, n, now(), now(),"
        f" CASE WHEN %s = 'running' THEN NULL ELSE {ended} END, %s, 'postgres'"
        " FROM generate_series(1, %s) n",
        [workflow, f"{workflow}::", outcome, outcome, count],
    )


def _count(database, workflow: str) -> int:
    return database.value(
        "SELECT count(*) FROM pgdurable.workflow_runs WHERE workflow = %s", [workflow]
    )


def _prune(database) -> int:
    return database.value("SELECT pgdurable.prune_run_history_v1()")


def test_defaults_keep_the_newest_thousand_runs_per_workflow(database):
    _add_runs(database, "busy", 1005)
    _add_runs(database, "quiet", 3)
    assert _prune(database) == 5
    assert _count(database, "busy") == 1000
    assert _count(database, "quiet") == 3
    oldest_kept = database.value(
        "SELECT min(run_number) FROM pgdurable.workflow_runs WHERE workflow = 'busy'"
    )
    assert oldest_kept == 6  # the oldest five went


def test_ended_runs_older_than_the_age_go_and_open_runs_stay(database):
    _add_runs(database, "old", 4, ended="now() - interval '31 days'")
    _add_runs(database, "recent", 2, ended="now() - interval '29 days'")
    _add_runs(database, "open", 1, outcome="running")
    database.execute(
        "UPDATE pgdurable.workflow_runs SET started_at = now() - interval '90 days'"
        " WHERE workflow = 'open'"
    )
    assert _prune(database) == 4
    assert (_count(database, "old"), _count(database, "recent"), _count(database, "open")) == (
        0,
        2,
        1,
    )


def test_settings_per_database_apply_to_new_connections(database):
    database.execute(f'ALTER DATABASE "{database.name}" SET pgdurable.run_history_max_runs = 2')
    database.execute(
        f"ALTER DATABASE \"{database.name}\" SET pgdurable.run_history_max_age = '1 hour'"
    )
    _add_runs(database, "many", 5)
    _add_runs(database, "stale", 1, ended="now() - interval '2 hours'")
    assert _prune(database) == 4
    assert (_count(database, "many"), _count(database, "stale")) == (2, 0)


def test_an_invalid_setting_falls_back_to_its_default_with_a_warning(database):
    _add_runs(database, "w", 3)
    with database.connect() as conn:
        notices: list[str] = []
        conn.add_notice_handler(lambda notice: notices.append(notice.message_primary))
        conn.execute("SET pgdurable.run_history_max_runs = 'lots'")
        assert conn.execute("SELECT pgdurable.prune_run_history_v1()").fetchone()[0] == 0
    assert any("run_history_max_runs = lots is not a valid integer" in n for n in notices)
    assert _count(database, "w") == 3


def test_one_pruner_at_a_time(database):
    _add_runs(database, "w", 3)
    database.execute(f'ALTER DATABASE "{database.name}" SET pgdurable.run_history_max_runs = 1')
    with database.connect(autocommit=False) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(hashtext('pgdurable.workflow_runs'), 0)")
        assert _prune(database) == 0  # another worker is pruning: skip, do not wait
        holder.rollback()
    assert _prune(database) == 2


def test_errors_are_stored_bounded(database):
    assert database.value("SELECT octet_length(pgdurable.run_error(repeat('é', 3000)))") <= 2000
    assert database.value("SELECT pgdurable.run_error('short')") == "short"


def test_ordinary_roles_cannot_write_or_prune(database):
    database.create_role("history_reader")
    database.execute("SELECT df.grant_usage('history_reader')")
    for statement in (
        "SELECT pgdurable.prune_run_history_v1()",
        "DELETE FROM pgdurable.workflow_runs",
        "SELECT pgdurable.close_runs('aaaaaaaa', 'failed', 'x')",
    ):
        with pytest.raises(db.DatabaseError, match="permission denied"):
            database.execute(statement, user="history_reader")
