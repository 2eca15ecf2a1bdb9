"""The test harness itself: isolated databases, roles, waiting, pg_cron, and which
PostgreSQL server a run uses."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pgdurable.binaries import find_server_binaries
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


def test_pg_cron_extension_is_available(pg_cron_cluster):
    """CI installs postgresql-15-cron; the cluster preloads it for the pg_cron translator."""
    from pgdurable import db

    with db.connection(pg_cron_cluster.conninfo("pgdurable"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        jobid = conn.execute(
            "SELECT cron.schedule('harness-check', '0 3 * * *', 'SELECT 1')"
        ).fetchone()[0]
        row = conn.execute(
            "SELECT schedule, command FROM cron.job WHERE jobid = %s", [jobid]
        ).fetchone()
        conn.execute("SELECT cron.unschedule(%s)", [jobid])
    assert row == ("0 3 * * *", "SELECT 1")


def test_the_session_server_is_the_one_the_run_asked_for(database):
    """CI points PGDURABLE_PG_BINDIR at each major version in turn: the session cluster must
    be that server (with its own libraries and share folder), not another one installed."""
    expected = find_server_binaries()
    explicit = os.environ.get("PGDURABLE_PG_BINDIR")
    if explicit:
        assert expected.bindir == Path(explicit)
    version_num = int(database.value("SHOW server_version_num"))
    assert version_num // 10000 == expected.major
    assert database.value("SHOW server_version").startswith(expected.version)
    # The schema's needs from the server's own contrib and share folders.
    extensions = {
        name for (name,) in database.execute("SELECT extname FROM pg_catalog.pg_extension")
    }
    assert {"plpgsql", "dblink"} <= extensions
    # The stemmer is a library of lib/postgresql, its stop words a file of share/tsearch_data.
    assert database.value("SELECT to_tsvector('english', 'the running')::text") == "'run':2"


def test_pg_cron_tests_carry_the_marker_that_deselects_them(repo_root):
    """A run on a server without pg_cron deselects pg_cron tests by name, never skips them."""

    def collected(*args: str) -> set[str]:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--collect-only",
                "-q",
                "-p",
                "no:cacheprovider",
                *args,
                "tests/integration/test_harness.py",
                "tests/pipeline/test_pgcron_apply.py",
            ],
            cwd=repo_root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return {line for line in result.stdout.splitlines() if "::" in line}

    everything = collected()
    without_cron = collected("-m", "not pg_cron")
    needs_cron = {
        "tests/integration/test_harness.py::test_pg_cron_extension_is_available",
        "tests/pipeline/test_pgcron_apply.py::test_from_db_reads_jobs_scheduled_with_pg_cron",
    }
    assert everything - without_cron == needs_cron
    assert "tests/integration/test_harness.py::test_each_test_gets_its_own_database" in without_cron
