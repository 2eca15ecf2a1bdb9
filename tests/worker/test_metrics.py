"""Prometheus metrics, scraped over HTTP from a real ``pgdurable worker`` process."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from pgdurable.testing import spawn_worker, stop_process, wait_for


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        assert answer.status == 200
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _scrape_when_up(port: int):
    def attempt():
        try:
            return _scrape(port)
        except OSError:
            return None

    return wait_for(attempt, timeout=30, what="the metrics endpoint")


def test_a_worker_serves_run_step_and_backlog_metrics(database, wf, tmp_path):
    database.execute(
        "SELECT pgdurable.deploy_workflow(source => 'celery', workflow_name => 'report',"
        " definition => 'SELECT 1', schedule => NULL, profile => 'portable',"
        " fidelity => 'exact', run_as => 'alice', target_database => NULL, start => false)"
    )
    label = "celery/report#run"
    for graph in (wf.sql("SELECT pg_sleep(3)"), wf.sql("SELECT pg_sleep(3)"), wf.sql("SELECT 1/0")):
        wf.start(graph, label)
    port = _free_port()
    worker = spawn_worker(
        database.conninfo(),
        "--concurrency",
        "1",
        "--metrics-address",
        f"127.0.0.1:{port}",
        log=tmp_path / "worker.log",
    )
    try:
        # While one run sleeps, the others wait: one instance claimed, some runnable.
        busy = wait_for(
            lambda: (
                (m := _scrape_when_up(port)).get(("pgdurable_runnable_backlog", ()), 0) >= 1
                # sampled with the backlog: a claimed run (the first sample may
                # come before the first claim)
                and m.get(("pgdurable_leased_instances", ()), 0) >= 1
                and m.get(("pgdurable_claimed_instances", ())) == 1
                and m
            ),
            timeout=30,
            what="a runnable backlog while a run is claimed",
        )
        assert busy[("pgdurable_leases_lost_total", ())] == 0
        run = (("kind", "run"), ("workflow", "celery/report"))
        done = wait_for(
            lambda: (
                (m := _scrape(port)).get(("pgdurable_runs_completed_total", run)) == 2
                and m.get(("pgdurable_runs_failed_total", run)) == 1
                and m
            ),
            timeout=60,
            what="three runs ended",
        )
        assert done[("pgdurable_runs_started_total", run)] == 3
        assert done[("pgdurable_step_duration_seconds_count", (("type", "SQL"),))] == 3
        # two steps slept 3 s each
        assert done[("pgdurable_step_duration_seconds_sum", (("type", "SQL"),))] >= 6
        wf_label = (("workflow", "celery/report"),)
        assert done[("pgdurable_schedule_delay_seconds_count", wf_label)] == 3
        assert done[("pgdurable_start_to_first_step_seconds_count", wf_label)] == 3
        # the third run was started before the worker ran and waited for two 3 s runs
        assert done[("pgdurable_start_to_first_step_seconds_sum", wf_label)] >= 6
        assert done[("pgdurable_leases_lost_total", ())] == 0
    finally:
        stop_process(worker)
    log = (tmp_path / "worker.log").read_text()
    assert f"metrics_serving address=127.0.0.1:{port}" in log
    assert "WARNING run_failed workflow=celery/report run=3" in log


def test_a_non_loopback_metrics_address_is_refused_before_connecting():
    for address, needs in (
        ("0.0.0.0:9464", "--metrics-allow-remote"),
        ("192.0.2.1:9464", "--metrics-allow-remote"),
        ("localhost", "HOST:PORT"),
        ("127.0.0.1:99999", "HOST:PORT"),
    ):
        shown = subprocess.run(
            [
                sys.executable,
                "-m",
                "pgdurable",
                "worker",
                "--dsn",
                "host=/nonexistent dbname=x",
                "--metrics-address",
                address,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 2, (address, shown.stderr)
        assert needs in shown.stderr, shown.stderr
