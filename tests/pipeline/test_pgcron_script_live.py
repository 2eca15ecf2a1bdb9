"""The script replay against the real pg_cron (audit F1, M1): a script that edits
cron.job directly, alters a job through a jobid subquery and schedules inside DO
blocks, switches roles and rolls a transaction back is run by pg_cron, and the jobs the reader replays are the rows pg_cron
has afterwards (jobids aside: a script's are those of a fresh install)."""

from __future__ import annotations

from pgdurable import db
from pgdurable.diagnostics import Fidelity
from pgdurable.sqltext import split_statements
from pgdurable.translators import pg_cron
from pgdurable.translators.base import TranslateContext

# Our own script, in the shapes the audit found (pre-1.4 retargeting by UPDATE,
# idempotent DO blocks), with hostile names.
SCRIPT = """\
SELECT cron.schedule('rollup', '0 * * * *', 'CALL rollup()');
SELECT cron.schedule('0 1 * * *', 'REFRESH MATERIALIZED VIEW CONCURRENTLY daily_a');
SELECT cron.schedule('0 2 * * *', 'REFRESH MATERIALIZED VIEW CONCURRENTLY daily_b');
SELECT cron.schedule(E'it''s\\nnightly', '0 3 * * *', $$SELECT 'it''s'$$);
SELECT cron.schedule('doomed', '0 4 * * *', 'SELECT 4');
SELECT cron.schedule('n', '0 5 * * *', 'SELECT 5');
UPDATE cron.job SET database = 'warehouse', username = 'etl_script' WHERE jobname = 'rollup';
UPDATE cron.job SET database='warehouse', username='mv_owner', nodename=''
 WHERE command LIKE 'REFRESH MATERIALIZED VIEW%';
UPDATE cron.job SET active = false, schedule = '30 3 * * *' WHERE jobname = E'it''s\\nnightly';
DELETE FROM cron.job WHERE jobname = 'doomed';
SELECT cron.alter_job((SELECT jobid FROM cron.job WHERE jobname = 'n'), schedule => '0 6 * * *');
DO $do$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM cron.job WHERE jobname = 'purge') THEN
    PERFORM cron.schedule('purge', '15 3 * * *', 'SELECT 15');
  END IF;
  IF NOT EXISTS (SELECT 1 FROM cron.job WHERE jobname = 'n') THEN
    PERFORM cron.schedule('n', '0 9 * * *', 'SELECT 9');
  END IF;
  IF EXISTS (SELECT 1 FROM cron.job WHERE jobname = 'rollup') THEN
    PERFORM cron.alter_job((SELECT jobid FROM cron.job WHERE jobname = 'rollup'),
                           command => 'CALL rollup(true)');
  END IF;
END
$do$;
SELECT cron.schedule('keeps-db', '0 7 * * *', 'SELECT 7');
UPDATE cron.job SET database = 'warehouse' WHERE jobname = 'keeps-db';
SELECT cron.schedule('keeps-db', '0 8 * * *', 'SELECT 8');
SET ROLE cron_script_role;
SELECT cron.schedule('by-role', '0 9 * * *', 'SELECT 9');
RESET ROLE;
BEGIN;
SELECT cron.schedule('undone', '0 10 * * *', 'SELECT 10');
ROLLBACK;
"""

FIELDS = ("jobname", "schedule", "command", "database", "username", "active", "nodename")


def test_the_replay_matches_what_pg_cron_did(pg_cron_cluster):
    conninfo = pg_cron_cluster.conninfo("pgdurable")
    with db.connection(conninfo, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'cron_script_role'").fetchone():
            conn.execute("CREATE ROLE cron_script_role")
        conn.execute("GRANT USAGE ON SCHEMA cron TO cron_script_role")
        before = [r[0] for r in conn.execute("SELECT jobid FROM cron.job").fetchall()]
        for statement in split_statements(SCRIPT):  # one at a time, as psql sends them
            conn.execute(statement.text)
        try:
            role, database, host = conn.execute(
                "SELECT current_user, current_database(), current_setting('cron.host')"
            ).fetchone()
            live = conn.execute(
                f"SELECT {', '.join(FIELDS)} FROM cron.job WHERE NOT jobid = ANY(%s)"
                " ORDER BY jobid",
                [before],
            ).fetchall()
        finally:
            conn.execute("DELETE FROM cron.job WHERE NOT jobid = ANY(%s)", [before])
    jobs = [j for j in pg_cron.read_script(SCRIPT, "live.sql") if isinstance(j, pg_cron.CronJob)]
    assert len(jobs) == len(live) == 8
    # what the script leaves unsaid is the session's: its role, database and cron.host
    replayed = [
        (
            j.jobname,
            j.schedule,
            j.command,
            j.database or database,
            j.username or role,
            j.active,
            host if j.nodename is None else j.nodename,
        )
        for j in jobs
    ]

    def key(row):
        return tuple(str(v) for v in row)

    assert sorted(replayed, key=key) == sorted(live, key=key)
    # and the labels: the retargeted jobs are exact with pg_cron's role and database
    ctx = TranslateContext(default_username="app", default_database=database)
    results = {r.name: r for r in pg_cron.translate(jobs, ctx)}
    rollup = results["rollup"]
    assert rollup.fidelity == Fidelity.EXACT
    assert (rollup.workflow.run_as, rollup.workflow.database) == ("etl_script", "warehouse")
    assert results["purge"].fidelity == Fidelity.APPROXIMATE  # the IF NOT EXISTS guard
    assert results["n"].workflow.schedule == "0 6 * * *"
    assert "doomed" not in results
    # pg_cron 1.4 kept the database of a job re-scheduled by name (1.6.3+ would not)
    assert results["keeps-db"].workflow.database == "warehouse"
    assert results["keeps-db"].fidelity == Fidelity.MANUAL
    assert results["by-role"].workflow.run_as == "cron_script_role"
    nightly = results["it's\nnightly"]
    assert not nightly.workflow.start and nightly.workflow.schedule == "30 3 * * *"
