"""A translated pg_cron job, applied and run by the worker, does what the job did."""

from __future__ import annotations

from pathlib import Path

from pgdurable import apply as applying
from pgdurable import pipeline
from pgdurable.diagnostics import SourceRef
from pgdurable.testing import wait_for
from pgdurable.translators import pg_cron
from pgdurable.translators.base import TranslateContext

ROLE = "pgcron_e2e"


def test_translated_job_runs_on_the_worker(database, background_worker, tmp_path: Path):
    database.create_role(ROLE)
    database.execute(f"SELECT df.grant_usage('{ROLE}')")
    database.execute(
        "CREATE TABLE public.ticks (n serial PRIMARY KEY, by_role name, at timestamptz)"
    )
    database.execute(f"GRANT INSERT, SELECT ON public.ticks TO {ROLE}")
    database.execute(f"GRANT USAGE ON SEQUENCE public.ticks_n_seq TO {ROLE}")
    # A seconds schedule (pg_cron 1.5+) fires quickly, so the test need not wait for a
    # minute boundary; the command is what pg_cron would have sent.
    job = pg_cron.CronJob(
        "1 seconds",
        "INSERT INTO public.ticks (by_role, at) VALUES (current_user, now())",
        SourceRef("e2e", 1),
        jobid=7,
        jobname="tick",
        username=ROLE,
        active=True,
    )
    ctx = TranslateContext(portable=True, default_database=database.name, timezone="GMT")
    report = pipeline.run_import("pg_cron", pg_cron.translate([job], ctx), tmp_path)
    assert [(r.name, str(r.fidelity)) for r in report.results] == [("tick", "approximate")]

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
        what="two runs of the translated job",
    )
    # Each run is the job's command, executed as the job's role, once per tick.
    assert database.value("SELECT count(DISTINCT by_role) FROM public.ticks") == 1
    assert database.value("SELECT min(by_role) FROM public.ticks") == ROLE
    assert database.value("SELECT df.status(%s)", [instance_id]) == "running"
    database.execute("SELECT df.cancel(%s)", [instance_id])
