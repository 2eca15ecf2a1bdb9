"""pg_cron labels that need the real pg_cron (issue 18): an unnamed job gets the same
file name from a script, a COPY export and the live cron.job; a job of the live
database's superuser is labelled by whether it can be deployed."""

from __future__ import annotations

from pathlib import Path

from pgdurable import db
from pgdurable.diagnostics import Fidelity
from pgdurable.translators import pg_cron
from pgdurable.translators.base import TranslateContext

SCRIPT = (
    Path(__file__).resolve().parents[2] / "fixtures" / "labels" / "pg_cron" / "superuser_jobs.sql"
)


def test_unnamed_jobs_get_one_name_from_script_export_and_database(pg_cron_cluster, tmp_path):
    conninfo = pg_cron_cluster.conninfo("pgdurable")
    with db.connection(conninfo, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        # other jobs came first: the live jobids are not those a script replay assigns
        earlier = conn.execute("SELECT cron.schedule('0 0 1 1 *', 'SELECT 0')").fetchone()[0]
        conn.execute("SELECT cron.unschedule(%s)", [earlier])
        before = {r[0] for r in conn.execute("SELECT jobid FROM cron.job").fetchall()}
        conn.execute(SCRIPT.read_text())
        ids = [
            r[0]
            for r in conn.execute("SELECT jobid FROM cron.job ORDER BY jobid").fetchall()
            if r[0] not in before
        ]
        try:
            live, _ = pg_cron.read_database(conninfo)
            export = tmp_path / "cron_job.csv"
            with conn.cursor() as cur:
                query = (
                    "COPY (SELECT * FROM cron.job WHERE jobid = ANY(%s) ORDER BY jobid) "
                    "TO STDOUT WITH (FORMAT csv, HEADER)"
                )
                with cur.copy(query.replace("%s", "'{" + ",".join(map(str, ids)) + "}'")) as copy:
                    export.write_bytes(b"".join(bytes(chunk) for chunk in copy))
        finally:
            for jobid in ids:
                conn.execute("SELECT cron.unschedule(%s)", [jobid])
    assert len(ids) == 4 and min(ids) > 1
    live = [j for j in live if j.jobid in ids]
    ctx = TranslateContext(default_username="postgres")
    names = {
        source: sorted(r.name for r in pg_cron.translate(items, ctx))
        for source, items in {
            "script": pg_cron.read_file(SCRIPT),
            "export": pg_cron.read_file(export),
            "live": live,
        }.items()
    }
    unnamed = [n for n in names["script"] if n.startswith("pgcron_job_")]
    assert len(unnamed) == 2
    assert names["script"] == names["export"] == names["live"]
    # the live database says who is a superuser: its jobs are not deployable as they are
    by_name = {r.name: r for r in pg_cron.translate(live, ctx)}
    purge = by_name["purge-sessions"]
    assert purge.workflow.run_as == "postgres" and purge.fidelity == Fidelity.MANUAL
    assert any(d.code == "PGD331" and "is a superuser" in d.message for d in purge.diagnostics)
    moved = pg_cron.translate(live, ctx, pg_cron.Roles(run_as="etl"))
    assert {r.workflow.run_as for r in moved} == {"etl"}
    assert all(r.fidelity == Fidelity.EXACT for r in moved)
