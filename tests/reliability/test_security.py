"""Issue 16: what a role granted df.grant_usage must not be able to do, each
attack run as that role against a real worker process.

- ``'new'``-mode starts cannot be steered: the loopback target is the
  administrator's (postgresql.conf / ALTER SYSTEM), never a session's or a
  role's, identity keywords are refused and the login is always the caller;
  a step cannot turn the "inside a workflow" guard off.
- An error the server reported for a step fails the node (only a broken
  connection is retried); a database that cannot be connected to fails the
  instance once a claim's connection attempts are spent.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from pgdurable import db
from pgdurable.testing import spawn_worker, stop_process, wait_for

ATTACK = "INSERT INTO loot SELECT current_user, s FROM victim_secret"


def sql(query: str) -> str:
    return json.dumps({"node_type": "SQL", "query": query})


def run_worker(conninfo: str, tmp_path, *extra: str) -> None:
    worker = spawn_worker(conninfo, "--until-idle", *extra, log=tmp_path / "worker.log")
    try:
        worker.wait(90)
    finally:
        stop_process(worker)


def root_output(database, instance: str):
    return database.value(
        "SELECT n.result #>> '{}' FROM df.instances i JOIN df.nodes n"
        " ON n.id = i.root_node AND n.instance_id = i.id WHERE i.id = %s",
        [instance],
    )


def _victim_and_intruder(database) -> None:
    """``victim`` owns a secret; ``intruder`` has df usage and may write loot."""
    for role in ("victim", "intruder"):
        database.create_role(role)
    database.execute("SELECT df.grant_usage('intruder')")
    database.execute(
        "CREATE TABLE victim_secret (s text); INSERT INTO victim_secret VALUES ('s3cr3t');"
        " ALTER TABLE victim_secret OWNER TO victim;"
        " CREATE TABLE loot (who text, s text); GRANT INSERT, SELECT ON loot TO PUBLIC"
    )


# -- 1. 'new' mode and the workflow guard --------------------------------------


def test_a_session_or_role_setting_cannot_steer_the_loopback_start(database, tmp_path):
    _victim_and_intruder(database)
    host, port = database.value(
        "SELECT split_part(current_setting('unix_socket_directories'), ',', 1)"
        " || ' ' || current_setting('port')"
    ).split()
    steer = f"host={host} port={port} user=victim"
    started = []
    with database.connect("intruder") as conn:
        conn.execute("SELECT set_config('pgdurable.loopback_conninfo', %s, false)", [steer])
        started.append(conn.execute("SELECT df.start(%s, 'x', NULL, 'new')", [ATTACK]).fetchone())
    # Set at login (PGOPTIONS) is no better than a SET.
    options = "-c pgdurable.loopback_conninfo=" + steer.replace(" ", "\\ ")
    conninfo = db.conninfo_with(database.conninfo("intruder"), options=options)
    with db.connect(conninfo, autocommit=True) as conn:
        assert conn.execute("SHOW pgdurable.loopback_conninfo").fetchone()[0] == steer
        started.append(conn.execute("SELECT df.start(%s, 'y', NULL, 'new')", [ATTACK]).fetchone())
    owners = database.execute("SELECT submitted_by::text FROM df.instances")
    assert owners == [("intruder",), ("intruder",)]
    run_worker(database.conninfo(), tmp_path)
    assert database.execute("SELECT * FROM loot") == []
    for (instance,) in started:
        assert database.value("SELECT status FROM df.instances WHERE id = %s", [instance]) == (
            "failed"
        )
        assert "permission denied for table victim_secret" in root_output(database, instance)


def test_the_loopback_target_is_read_from_the_server_configuration(crashable_cluster):
    cluster = crashable_cluster
    for role in ("victim", "intruder"):
        cluster.execute(f"CREATE ROLE {role} LOGIN")
    cluster.execute("SELECT df.grant_usage('intruder')")
    host, port = cluster.value(
        "SELECT split_part(current_setting('unix_socket_directories'), ',', 1)"
        " || ' ' || current_setting('port')"
    ).split()

    def configure(value: str) -> None:
        with cluster.connect() as conn:
            conn.execute("SELECT set_config('pgdurable.loopback_conninfo', '', false)")
            conn.execute(f"ALTER SYSTEM SET pgdurable.loopback_conninfo = '{value}'")
            conn.execute("SELECT pg_reload_conf()")

    def start_new() -> str:
        return cluster.value("SELECT df.start('SELECT 1', NULL, NULL, 'new')", user="intruder")

    for keyword, refused in [
        ("user", "user=victim"),
        ("dbname", "dbname=postgres"),
        ("service", "service=x"),
        ("options", "options='-c x=y'"),
    ]:
        configure(f"host={host} port={port} {refused}".replace("'", "''"))
        with pytest.raises(psycopg.Error, match=f'may not set "{keyword}"'):
            start_new()
    configure(f"host=''{host}'' port={port} connect_timeout=5")
    instance = start_new()
    assert cluster.value(
        "SELECT submitted_by::text FROM df.instances WHERE id = %s", [instance]
    ) == ("intruder")


def test_a_step_cannot_turn_the_workflow_guard_off(database, tmp_path):
    database.create_role("intruder")
    database.execute("SELECT df.grant_usage('intruder')")
    attempts = {
        "setvar": "SET df.in_workflow = 'false'; SELECT df.setvar('x', 'y')",
        "reset": "RESET df.in_workflow; SELECT df.clearvars()",
        "new_start": "SET df.in_workflow = 'false'; SELECT df.start('SELECT 1', NULL, NULL, 'new')",
        "direct": "SET df.in_workflow = 'false';"
        " SELECT pgdurable.start_in_new_transaction('SELECT 1', NULL, NULL, 'intruder')",
    }
    ids = {
        name: database.value("SELECT df.start(%s, %s)", [sql(text), name], user="intruder")
        for name, text in attempts.items()
    }
    run_worker(database.conninfo(), tmp_path)
    for name, instance in ids.items():
        assert database.value("SELECT status FROM df.instances WHERE id = %s", [instance]) == (
            "failed"
        ), name
        assert "cannot be called inside a workflow" in root_output(database, instance), name
    assert database.value("SELECT count(*) FROM df.vars") == 0
    assert database.value("SELECT count(*) FROM df.instances") == len(attempts)


# -- 5. server-reported errors fail the node; a bad database fails the instance -


def test_errors_the_server_reports_fail_the_node_instead_of_retrying(database, tmp_path):
    database.create_role("intruder")
    database.execute("SELECT df.grant_usage('intruder')")
    database.execute("CREATE TABLE held (v int); GRANT ALL ON held TO intruder")
    steps = {
        "08006": "DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '08006'; END $$",
        "55000": "PREPARE TRANSACTION 'p1'",
        "54000": "SELECT repeat('x', 600000000) || repeat('x', 600000000)",
        "55P03": "SET lock_timeout = 50; LOCK TABLE held IN ACCESS EXCLUSIVE MODE",
    }
    ids = {
        name: database.value("SELECT df.start(%s, %s)", [sql(text), name], user="intruder")
        for name, text in steps.items()
    }
    unconnectable = database.value(
        "SELECT df.start(%s, 'nodb', %s)", [sql("SELECT 1"), database.name], user="intruder"
    )
    with database.connect() as holder:
        holder.execute("BEGIN; LOCK TABLE held IN ACCESS SHARE MODE")
        database.execute(  # the instance's database disappears after df.start
            "UPDATE df.instances SET database = 'no_such_database' WHERE id = %s", [unconnectable]
        )
        run_worker(database.conninfo(), tmp_path)
        holder.execute("ROLLBACK")
    for name, instance in ids.items():
        assert database.value("SELECT status FROM df.instances WHERE id = %s", [instance]) == (
            "failed"
        ), name
        assert "SQL execution failed" in root_output(database, instance), name
    assert database.value("SELECT status FROM df.instances WHERE id = %s", [unconnectable]) == (
        "failed"
    )
    assert 'database "no_such_database" does not exist' in root_output(database, unconnectable)


# -- 3. graphs written around df.start ------------------------------------------


def test_a_forged_graph_fails_alone_and_other_instances_run(database, tmp_path):
    database.create_role("intruder")
    database.create_role("bystander")
    for role in ("intruder", "bystander"):
        database.execute(f"SELECT df.grant_usage('{role}')")
    honest = database.value("SELECT df.start(%s)", [sql("SELECT 42 AS n")], user="bystander")
    foreign = database.value(
        "SELECT root_node FROM df.instances WHERE id = %s", [honest], user="bystander"
    )
    forged = {  # instance id -> its rows (id, type, query, left, right)
        "0000aaa1": [("0000aaa1", "THEN", None, "0000aaa1", "0000aaa1")],  # its own children
        "0000aaa2": [  # a JOIN whose extra branch is another role's node
            ("0000aaa2", "JOIN", json.dumps({"extra_nodes": [foreign]}), "0000bbb1", "0000bbb2"),
            ("0000bbb1", "SQL", "SELECT 1", None, None),
            ("0000bbb2", "SQL", "SELECT 2", None, None),
        ],
        "0000aaa3": [  # two parents share one child
            ("0000aaa3", "THEN", None, "0000ccc1", "0000ccc2"),
            ("0000ccc1", "THEN", None, "0000ccc3", "0000ccc3"),
            ("0000ccc2", "SQL", "SELECT 2", None, None),
            ("0000ccc3", "SQL", "SELECT 3", None, None),
        ],
        "0000aaa4": [("0000aaa4", "JOIN", '{"extra_nodes": "0000aaa4"}', "0000ddd1", "0000ddd1")],
    }
    forged["0000aaa4"].append(("0000ddd1", "SQL", "SELECT 1", None, None))
    with database.connect("intruder", autocommit=False) as conn:
        for instance, rows in forged.items():
            conn.execute(
                "INSERT INTO df.instances (id, root_node, submitted_by) VALUES (%s, %s, 'intruder')",
                [instance, instance],
            )
            for node, kind, query, left, right in rows:
                conn.execute(
                    "INSERT INTO df.nodes (id, instance_id, node_type, query, left_node,"
                    " right_node, submitted_by) VALUES (%s, %s, %s, %s, %s, %s, 'intruder')",
                    [node, instance, kind, query, left, right],
                )
        conn.commit()
    run_worker(database.conninfo(), tmp_path)
    for instance in forged:
        assert database.value("SELECT status FROM df.instances WHERE id = %s", [instance]) == (
            "failed"
        ), instance
        assert root_output(database, instance).startswith("invalid graph: "), instance
    assert database.value("SELECT status FROM df.instances WHERE id = %s", [honest]) == "completed"


# -- 7. the completion call is the worker's alone --------------------------------


def test_the_completion_ignores_the_steps_search_path_and_logs_no_token(database, tmp_path):
    database.create_role("intruder")
    database.execute("SELECT df.grant_usage('intruder')")
    database.execute("CREATE SCHEMA evil AUTHORIZATION intruder")
    shadow = database.value(
        "SELECT df.start(%s)",
        [
            sql(
                "CREATE DOMAIN evil.json AS text; CREATE DOMAIN evil.jsonb AS text;"
                " SET search_path = evil, pg_catalog; SELECT 1 AS n"
            )
        ],
        user="intruder",
    )
    leak = database.value(
        "SELECT df.start(%s)",
        [sql("SET lock_timeout = 1; SET log_parameter_max_length_on_error = -1; SELECT 2 AS n")],
        user="intruder",
    )
    log = database.cluster.log_file
    with database.connect() as holder:
        # Hold the step's node row, so its completion waits (and, with the
        # step's lock_timeout, would fail and log its parameters).
        holder.execute("BEGIN")
        holder.execute("SELECT 1 FROM df.nodes WHERE instance_id = %s FOR UPDATE", [leak])
        worker = spawn_worker(database.conninfo(), "--until-idle", log=tmp_path / "worker.log")
        try:
            wait_for(
                lambda: (
                    database.value(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND application_name = 'pg_durable:worker:workflow-sql'"
                    )
                    or database.value("SELECT status FROM df.nodes WHERE instance_id = %s", [leak])
                    == "failed"
                ),
                timeout=30,
                what="the completion to wait for the row",
            )
            holder.execute("ROLLBACK")
            worker.wait(60)
        finally:
            stop_process(worker)
    for instance in (shadow, leak):
        assert database.value("SELECT status FROM df.instances WHERE id = %s", [instance]) == (
            "completed"
        ), root_output(database, instance)
    assert f"$1 = '{leak}'" not in log.read_text(errors="replace")


# -- 6. HTTP bodies are bounded ---------------------------------------------------


class _BigBody(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        chunk = b"x" * 65536
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(chunk) * 320))  # 20 MiB
        self.end_headers()
        try:
            for _ in range(320):
                self.wfile.write(chunk)
        except OSError:
            pass  # the worker hung up once it had read enough

    def log_message(self, *args) -> None:
        pass


def test_a_large_http_body_fails_the_node(database, tmp_path):
    database.create_role("intruder")
    database.execute("SELECT df.grant_usage('intruder', true)")
    database.execute(f"ALTER DATABASE {database.name} SET pg_durable.http_policy = 'allow-all'")
    database.execute(
        f"ALTER DATABASE {database.name} SET pgdurable.http_max_response_bytes = '1000000'"
    )
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _BigBody)
    serving = threading.Thread(target=httpd.serve_forever, daemon=True)
    serving.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/big"
        node = {"node_type": "HTTP", "query": json.dumps({"url": url, "method": "GET"})}
        instance = database.value("SELECT df.start(%s)", [json.dumps(node)], user="intruder")
        run_worker(database.conninfo(), tmp_path)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert database.value("SELECT status FROM df.instances WHERE id = %s", [instance]) == "failed"
    assert "response body larger than 1000000 bytes" in root_output(database, instance)
