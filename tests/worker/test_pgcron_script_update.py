"""A job a script retargets with ``UPDATE cron.job`` (audit F1) runs, on the worker,
as the role and in the database the UPDATE gave it, not the script's defaults."""

from __future__ import annotations

from pathlib import Path

from pgdurable import apply as applying
from pgdurable import pipeline
from pgdurable.testing import wait_for
from pgdurable.translators import pg_cron
from pgdurable.translators.base import TranslateContext

ROLE = "pgcron_retarget"


def test_a_job_retargeted_by_update_runs_as_its_new_role(
    database, background_worker, tmp_path: Path
):
    database.create_role(ROLE)
    database.execute(f"SELECT df.grant_usage('{ROLE}')")
    database.execute("CREATE TABLE public.ticks (by_role name, db name)")
    database.execute(f"GRANT INSERT, SELECT ON public.ticks TO {ROLE}")
    # the defaults name a database and role that would fail: only the replayed UPDATE
    # makes this job runnable. A seconds schedule fires without waiting for a minute.
    script = (
        "SELECT cron.schedule('tick', '1 seconds',\n"
        "  'INSERT INTO public.ticks VALUES (current_user, current_database())');\n"
        f"UPDATE cron.job SET username = '{ROLE}', database = '{database.name}'\n"
        " WHERE jobname = 'tick';\n"
    )
    ctx = TranslateContext(
        portable=True,
        default_username="no_such_role",
        default_database="no_such_db",
        timezone="GMT",
    )
    results = pg_cron.translate(pg_cron.read_script(script, "retarget.sql"), ctx)
    report = pipeline.run_import("pg_cron", results, tmp_path)
    assert [(r.name, str(r.fidelity)) for r in report.results] == [("tick", "approximate")]
    assert {d.code for d in report.results[0].diagnostics} >= {"PGD258", "PGD202"}

    with database.connect() as conn:
        outcomes = applying.apply_directory(tmp_path, applying.DatabaseSink(conn))
    assert [o for _, o in outcomes][0].startswith("created ")
    instance_id = database.value(
        "SELECT instance_id FROM pgdurable.workflows WHERE source = 'pg_cron' AND name = 'tick'"
    )
    background_worker()
    wait_for(
        lambda: database.value("SELECT count(*) FROM public.ticks") >= 2,
        timeout=30,
        what="two runs of the retargeted job",
    )
    rows = database.execute("SELECT DISTINCT by_role::text, db::text FROM public.ticks")
    assert rows == [(ROLE, database.name)]
    database.execute("SELECT df.cancel(%s)", [instance_id])
