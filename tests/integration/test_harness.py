"""The test harness itself: isolated databases, roles, waiting, pg_cron."""

from __future__ import annotations

import threading

import pytest

from pgdurable.testing import wait_for


def test_each_test_gets_its_own_database(database, empty_database):
    assert database.name != empty_database.name
    database.execute("CREATE TABLE public.only_here (id int)")
    assert empty_database.value("SELECT to_regclass('public.only_here')") is None


def test_sql_runs_as_the_given_role(database):
    role = database.create_role("harness_alice")
    assert database.value("SELECT current_user", user=role) == "harness_alice"
    assert database.value("SELECT session_user", user=role) == "harness_alice"


def test_wait_for_returns_the_value_once_true():
    event = threading.Event()
    threading.Timer(0.05, event.set).start()
    assert wait_for(event.is_set, timeout=5, what="the event") is True


def test_wait_for_fails_with_a_clear_message():
    with pytest.raises(AssertionError, match="timed out after 0.05s waiting for never"):
        wait_for(lambda: False, timeout=0.05, what="never")


def test_pg_cron_extension_is_available(pg_cluster):
    """CI installs postgresql-15-cron; the cluster preloads it for the pg_cron translator."""
    from pgdurable import db

    with db.connection(pg_cluster.conninfo("pgdurable"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        jobid = conn.execute(
            "SELECT cron.schedule('harness-check', '0 3 * * *', 'SELECT 1')"
        ).fetchone()[0]
        row = conn.execute(
            "SELECT schedule, command FROM cron.job WHERE jobid = %s", [jobid]
        ).fetchone()
        conn.execute("SELECT cron.unschedule(%s)", [jobid])
    assert row == ("0 3 * * *", "SELECT 1")
