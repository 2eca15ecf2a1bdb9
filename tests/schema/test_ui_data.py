"""The dashboard's data layer (pgdurable.ui.data) on a real database, with
instances run by a real worker: what each role sees, the runs grid, the
instance view, the reports and the actions' errors."""

from __future__ import annotations

import asyncio
import json

import pytest

from pgdurable import db
from pgdurable.testing import wait_for
from pgdurable.ui import data
from pgdurable.worker import Worker, WorkerOptions, run_worker


def _role(database, name: str) -> str:
    database.create_role(name)
    database.execute("SELECT df.grant_usage(%s)", [name])
    return name


def _start(database, user: str, graph: dict, label: str) -> str:
    return database.value("SELECT df.start(%s, %s)", [json.dumps(graph), label], user=user)


def _run_until_idle(database) -> None:
    asyncio.run(run_worker(database.conninfo(), until_idle=True, poll_interval=0.1))


def _run_until(database, done, timeout: float = 30) -> None:
    """A worker that runs until ``done()`` (a schedule's timer never lets it idle)."""

    async def main():
        worker = Worker(database.conninfo(), WorkerOptions(poll_interval=0.1))
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.to_thread(wait_for, done, timeout=timeout, what="the worker")
        finally:
            worker.stop()
            await task

    asyncio.run(main())


def _sql(query: str) -> dict:
    return {"node_type": "SQL", "query": query}


def _then(a: dict, b: dict) -> dict:
    return {"node_type": "THEN", "left_node": a, "right_node": b}


@pytest.fixture
def runs(database):
    """alice: two runs of demo/nightly (one fails in its second step) and one of
    another workflow; bob: one run of bobs/secret."""
    alice, bob = _role(database, "alice"), _role(database, "bob")
    ok = _start(database, alice, _then(_sql("SELECT 1 AS a"), _sql("SELECT 2")), "demo/nightly")
    bad = _start(
        database, alice, _then(_sql("SELECT 1 AS a"), _sql("SELECT 1/0")), "quickstart:demo/nightly"
    )
    other = _start(database, alice, _sql("SELECT 3"), "demo/other#run")
    secret = _start(database, bob, _sql("SELECT 4"), "bobs/secret")
    _run_until_idle(database)
    return {"ok": ok, "bad": bad, "other": other, "secret": secret}


def test_labels_name_workflows():
    assert data.workflow_of_label("pg_cron/daily-revenue") == "pg_cron/daily-revenue"
    assert data.workflow_of_label("quickstart:airflow/events_daily") == "airflow/events_daily"
    assert data.workflow_of_label("k8s/nightly-report#run") == "k8s/nightly-report"
    assert data.workflow_of_label("no workflow here") is None
    assert data.workflow_of_label(None) is None


def test_each_role_sees_its_own_workflows(database, runs):
    with database.connect("alice") as conn:
        listing = data.workflows(conn)
        assert not listing.registry_readable
        assert [r.workflow for r in listing.rows] == ["demo/nightly", "demo/other"]
        nightly = listing.rows[0]
        # the instance labelled exactly "demo/nightly" is the workflow's own one
        assert nightly.instance_id == runs["ok"] and nightly.instance_status == "completed"
        latest = database.value(
            "SELECT status FROM df.instances WHERE id = ANY(%s)"
            " ORDER BY coalesce(completed_at, updated_at) DESC LIMIT 1",
            [[runs["ok"], runs["bad"]]],
        )
        assert nightly.last_outcome == latest
        assert [r.workflow for r in data.workflows(conn, query="OTHER").rows] == ["demo/other"]
    with database.connect("bob") as conn:
        assert [r.workflow for r in data.workflows(conn).rows] == ["bobs/secret"]


def test_a_loops_finished_iterations_are_its_runs(database):
    alice = _role(database, "alice")
    database.execute("CREATE TABLE ticks (at timestamptz DEFAULT now())")
    database.execute("GRANT ALL ON ticks TO alice")
    # iteration 1 records a tick; iteration 2 waits for a signal that never comes
    body = {
        "node_type": "IF",
        "condition_node": _sql("SELECT count(*) > 0 FROM ticks"),
        "left_node": {"node_type": "SIGNAL", "query": json.dumps({"signal_name": "never"})},
        "right_node": _sql("INSERT INTO ticks DEFAULT VALUES"),
    }
    looping = _start(database, alice, {"node_type": "LOOP", "left_node": body}, "demo/looped")
    waiting = "SELECT 'never' = ANY(waiting_signals) FROM pgdurable.runs WHERE instance_id = %s"
    _run_until(database, lambda: database.value(waiting, [looping]))
    with database.connect(alice) as conn:
        (row,) = data.workflows(conn).rows
    assert row.instance_id == looping and row.instance_status == "running"
    assert row.last_outcome == "completed"
    assert row.last_run_at > database.value("SELECT max(at) FROM ticks")


def test_next_due_without_access_to_the_timers(database):
    alice = _role(database, "alice")
    wait = {"node_type": "WAIT_SCHEDULE", "query": json.dumps({"cron_expr": "*/5 * * * *"})}
    graph = {
        "node_type": "LOOP",
        "left_node": {"node_type": "THEN", "left_node": wait, "right_node": _sql("SELECT 1")},
    }
    cron = _start(database, alice, graph, "demo/cron")
    timer = "SELECT due_at FROM pgdurable.timers WHERE instance_id = %s"
    _run_until(database, lambda: database.value(timer, [cron]))
    with database.connect(alice) as conn:
        listing = data.workflows(conn)
    assert not listing.timers_readable
    (row,) = listing.rows
    assert row.next_due == database.value(timer, [cron]) and not row.overdue


def test_the_registry_with_fidelity_counts_and_next_due(database):
    role = _role(database, "alice")
    for name, fidelity in (("a", "exact"), ("b", "exact"), ("c", "manual")):
        database.execute(
            "SELECT pgdurable.deploy_workflow('demo', %s,"
            " @> (df.wait_for_schedule('*/5 * * * *') ~> 'SELECT 1'),"
            " '*/5 * * * *', 'portable', %s, %s, NULL, true)",
            [name, fidelity, role],
        )
    # each instance now waits for its schedule
    _run_until(
        database,
        lambda: database.value("SELECT count(*) FROM pgdurable.runs WHERE wake_at > now()") == 3,
    )
    with database.connect() as conn:
        listing = data.workflows(conn)
        assert listing.registry_readable and listing.timers_readable
        assert listing.counts == {"exact": 2, "approximate": 0, "manual": 1, "failed": 0}
        assert [r.workflow for r in data.workflows(conn, fidelity="manual").rows] == ["demo/c"]
        row = listing.rows[0]
        assert row.registered and row.run_as == role and row.instance_status == "running"
        now = conn.execute("SELECT now()").fetchone()[0]
        assert row.next_due is not None and now < row.next_due and not row.overdue
        database.execute("UPDATE pgdurable.runs SET wake_at = now() - interval '1 hour'")
        assert all(r.overdue for r in data.workflows(conn).rows)
        assert data.retire(conn, "demo/a")["registered"] is True
        assert [r.workflow for r in data.workflows(conn).rows] == ["demo/b", "demo/c"]


def test_the_runs_grid_lines_steps_up_and_shows_the_error(database, runs):
    with database.connect("alice") as conn:
        grid = data.run_grid(conn, "demo/nightly")
    assert [r.instance_id for r in grid.runs] == [runs["bad"], runs["ok"]]
    assert [grid.column_labels[c] for c in grid.columns] == [
        "SQL: SELECT 1 AS a",
        "SQL: SELECT 1/0",  # the newest run's steps first
        "SQL: SELECT 2",
    ]
    bad, ok = grid.runs
    assert bad.status == "failed" and ok.status == "completed"
    failing = bad.steps[grid.columns[1]]
    assert failing.status == "failed" and "division by zero" in failing.error
    assert ok.steps[grid.columns[0]].status == "completed" and grid.columns[1] not in ok.steps
    assert ok.duration is not None and bad.duration is not None  # a failed run ended too


def test_the_instance_view_links_boxes_to_nodes(database, runs):
    with database.connect("alice") as conn:
        view = data.instance(conn, runs["bad"])
        assert data.instance(conn, runs["secret"]) is None  # bob's: row-level security
        assert data.instance(conn, "not-an-id") is None
    assert view.status == "failed" and not view.running and view.workflow == "demo/nightly"
    by_id = {n.node_id: n for n in view.nodes}
    assert set(view.graph.node_ids.values()) <= set(by_id)
    (failed,) = [n for n in view.nodes if n.status == "failed" and n.node_type == "SQL"]
    assert "division by zero" in failed.error
    assert [n.result for n in view.nodes if n.label == "SQL: SELECT 1 AS a"] == [
        {"rows": [{"a": 1}], "row_count": 1}
    ]


def test_actions_use_the_roles_privileges(database, runs):
    alice = _role(database, "alice")
    waiting = _start(
        database,
        alice,
        {
            "node_type": "SIGNAL",
            "query": json.dumps({"signal_name": "go", "timeout_seconds": None}),
        },
        "demo/waiter",
    )
    with database.connect("bob") as conn:
        with pytest.raises(data.ActionError, match="not found|denied"):
            data.cancel(conn, waiting)
        with pytest.raises(data.ActionError, match="permission denied"):
            data.retire(conn, "demo/nightly")
    with database.connect(alice) as conn:
        data.signal(conn, waiting, "go", '{"n": 1}')
        assert (
            conn.execute(
                "SELECT count(*) FROM pgdurable.signals WHERE instance_id = %s", [waiting]
            ).fetchone()[0]
            == 1
        )
        data.cancel(conn, waiting)
    assert database.value("SELECT status FROM df.instances WHERE id = %s", [waiting]) == "cancelled"


def test_reports_with_verify_results(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "job.sql").write_text("SELECT 1;\n")
    report = {
        "source": "pg_cron",
        "items": [
            {
                "name": "job",
                "source_ref": "jobs.sql:3",
                "fidelity": "approximate",
                "profile": "portable",
                "output": str(out / "job.sql"),
                "diagnostics": [
                    {"code": "PGD101", "severity": "warning", "message": "m", "line": 3}
                ],
            },
            {
                "name": "broken",
                "source_ref": "jobs.sql:9",
                "fidelity": "failed",
                "profile": None,
                "output": None,
                "diagnostics": [],
            },
        ],
        "summary": {"exact": 0, "approximate": 1, "manual": 0, "failed": 1},
    }
    (tmp_path / "report.json").write_text(json.dumps(report))
    verify = {"items": [{"file": str(out / "job.sql"), "outcome": "equal", "error": None}]}
    (tmp_path / "verify.json").write_text(json.dumps(verify))
    (read,) = data.read_reports([tmp_path])
    assert read.source == "pg_cron" and read.summary["failed"] == 1
    job, broken = read.items
    assert job.output == out / "job.sql" and job.verify["outcome"] == "equal"
    assert job.diagnostics[0]["code"] == "PGD101"
    assert broken.output is None and broken.verify is None
    (tmp_path / "junk.json").write_text("[1, 2]")
    with pytest.raises(data.PgDurableError, match="junk.json: neither an import report"):
        data.read_reports([tmp_path])


def test_database_errors_of_a_page_are_not_swallowed(database):
    # A role without df usage: the data layer raises the database's own error
    # (the app turns it into a message on the page).
    database.create_role("nobody")
    with database.connect("nobody") as conn:
        with pytest.raises(db.DatabaseError, match="permission denied"):
            data.workflows(conn)


TICKER = "ui_ticker"


def _tick_job(database, tmp_path) -> str:
    """A real pg_cron translation applied with ``pgdurable apply``: every second,
    pgdurable.try(SELECT public.tick()), which fails while public.control.fail."""
    from pgdurable import apply as applying
    from pgdurable import pipeline
    from pgdurable.diagnostics import SourceRef
    from pgdurable.translators import pg_cron
    from pgdurable.translators.base import TranslateContext

    _role(database, TICKER)
    database.execute(
        "CREATE TABLE public.control (fail boolean NOT NULL); INSERT INTO public.control"
        " VALUES (false); CREATE TABLE public.ticks (n serial PRIMARY KEY);"
        " CREATE FUNCTION public.tick() RETURNS void LANGUAGE plpgsql AS $$"
        " BEGIN INSERT INTO public.ticks DEFAULT VALUES; IF (SELECT fail FROM public.control)"
        " THEN RAISE EXCEPTION 'tick failed on purpose'; END IF; END $$;"
        f" GRANT SELECT ON public.control TO {TICKER}; GRANT INSERT ON public.ticks TO {TICKER};"
        f" GRANT USAGE ON SEQUENCE public.ticks_n_seq TO {TICKER}"
    )
    job = pg_cron.CronJob(
        "1 seconds", "SELECT public.tick()", SourceRef("cron.job", 1), jobid=3,
        jobname="tick", username=TICKER, active=True,
    )  # fmt: skip
    ctx = TranslateContext(portable=False, default_database=database.name, timezone="GMT")
    pipeline.run_import("pg_cron", pg_cron.translate([job], ctx), tmp_path)
    with database.connect() as conn:
        applying.apply_directory(tmp_path, applying.DatabaseSink(conn))
    return database.value("SELECT instance_id FROM pgdurable.workflows WHERE name = 'tick'")


def _history(database, where: str) -> list[dict]:
    return database.value(
        "SELECT coalesce(json_agg(h ORDER BY h.runid), '[]') FROM pgdurable.run_history h"
        f" WHERE workflow = 'pg_cron/tick' AND {where}"
    )


def test_runs_come_from_the_run_history_and_a_failed_tick_runs_again(database, tmp_path):
    loop = _tick_job(database, tmp_path)
    _run_until(database, lambda: len(_history(database, "outcome = 'succeeded'")) >= 2)
    database.execute("UPDATE public.control SET fail = true")
    _run_until(database, lambda: _history(database, "outcome = 'failed'"))
    with database.connect(TICKER) as conn:
        (row,) = data.workflows(conn).rows
        assert (row.state, row.last_outcome) == ("failing", "failed")
        assert row.last_error.endswith("tick failed on purpose")
    database.execute("UPDATE public.control SET fail = false")
    failed = _history(database, "outcome = 'failed'")[0]
    _run_until(
        database, lambda: _history(database, f"outcome = 'succeeded' AND runid > {failed['runid']}")
    )

    with database.connect(TICKER) as conn:
        grid = data.run_grid(conn, "pg_cron/tick")
        assert data.workflows(conn).rows[0].state != "failing"  # it succeeds again
        with pytest.raises(data.ActionError, match="permission denied"):
            data.rerun(conn, failed["runid"])  # the registry is the administrators'
    ticks = [r for r in grid.runs if r.kind == "tick"]
    assert len(ticks) >= 4 and {r.instance_id for r in ticks} == {loop}
    assert all(r.execution.startswith(f"{loop}::") and r.runid for r in ticks)
    (bad,) = [r for r in ticks if r.runid == failed["runid"]]
    assert bad.status == "failed" and bad.error.endswith("tick failed on purpose")
    # task ids as labels: the step is the job's, not its SQL
    assert "job tick" in [grid.column_labels[c] for c in grid.columns]
    command = next(c for c in grid.columns if grid.column_labels[c] == "job tick")
    newest, older = ticks[0], ticks[-1]
    # the newest tick's step has its status, an older one's is no longer known
    assert newest.steps[command].status in ("completed", "running", "pending")
    assert older.steps[command].status == data.UNKNOWN and older.unknown_steps

    with database.connect() as conn:  # an administrator re-runs it, as the job's role
        started = data.rerun(conn, failed["runid"])
    _run_until(
        database, lambda: _history(database, f"instance_id = '{started}' AND outcome = 'succeeded'")
    )
    (again,) = _history(database, f"instance_id = '{started}'")
    assert again["kind"] == "run" and again["username"] == TICKER
    assert database.value("SELECT label FROM df.instances WHERE id = %s", [started]) == (
        "pg_cron/tick#run"
    )
    with database.connect(TICKER) as conn:
        grid = data.run_grid(conn, "pg_cron/tick")
        view = data.instance(conn, started)
    assert grid.runs[0].instance_id == started and grid.runs[0].status == "completed"
    assert "job tick" in [n.label for n in view.nodes]
    with database.connect() as conn:  # a re-run (no enqueue function) runs the body again
        once_more = data.rerun(conn, again["runid"])
    assert database.value("SELECT label FROM df.instances WHERE id = %s", [once_more]) == (
        "pg_cron/tick#run"
    )


def test_retire_drops_the_generated_functions(database):
    database.execute(
        "CREATE SCHEMA IF NOT EXISTS pgdurable_jobs;"
        " CREATE FUNCTION pgdurable_jobs.enqueue_x(args jsonb DEFAULT '{}') RETURNS text"
        " LANGUAGE sql AS $$ SELECT 'x' $$;"
        " COMMENT ON FUNCTION pgdurable_jobs.enqueue_x(jsonb) IS 'demo/x#run';"
        " SELECT pgdurable.deploy_workflow('demo', 'x', 'SELECT 1', NULL, 'portable',"
        " 'exact', NULL, NULL, false)"
    )
    with database.connect() as conn:
        answer = data.retire(conn, "demo/x")
    assert answer["registered"] and answer["dropped"] == ["pgdurable_jobs.enqueue_x(jsonb)"]
    assert database.value("SELECT to_regproc('pgdurable_jobs.enqueue_x')") is None
