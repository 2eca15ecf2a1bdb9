"""Privileges hold (SPEC A.2.3, B §2 grants and RLS, B §6; issue 11 §4).

- A role without usage can neither start, see, signal nor cancel anything.
- Row-level security separates roles: bob cannot see, cancel, signal,
  update or forge alice's instances, nor read or change her variables.
- A step has exactly its submitter's privileges: no forbidden table, no way
  up through RESET ROLE / SET ROLE / SET SESSION AUTHORIZATION, and no write
  to pgdurable's bookkeeping except through the lease-checked functions.
- Superuser instances are refused unless the administrator enabled them,
  both at df.start and, for a forged row, by the worker.
HTTP steps and private addresses: ``test_http_addresses.py``.
"""

from __future__ import annotations

import json

import psycopg
import pytest

from pgdurable.testing import spawn_worker, stop_process


@pytest.fixture
def roles(database):
    for name in ("alice", "bob"):
        database.create_role(name)
        database.execute(f"SELECT df.grant_usage('{name}')")
    database.create_role("nobody")
    return database


def sql(query: str) -> str:
    return json.dumps({"node_type": "SQL", "query": query})


def run_worker(database, tmp_path) -> None:
    worker = spawn_worker(database.conninfo(), "--until-idle", log=tmp_path / "worker.log")
    try:
        worker.wait(60)
    finally:
        stop_process(worker)


def test_a_role_without_usage_can_do_nothing(roles):
    database = roles
    instance = database.value("SELECT df.start(%s)", [sql("SELECT 1")], user="alice")
    for statement, params in [
        ("SELECT df.start(%s)", [sql("SELECT 1")]),
        ("SELECT df.status(%s)", [instance]),
        ("SELECT df.signal(%s, 'go')", [instance]),
        ("SELECT df.cancel(%s)", [instance]),
        ("SELECT count(*) FROM df.instances", None),
        ("SELECT df.setvar('k', 'v')", None),
        ("SELECT * FROM pgdurable.signals", None),
        ("SELECT * FROM pgdurable.journal", None),
    ]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            database.execute(statement, params, user="nobody")
    assert database.value("SELECT status FROM df.instances WHERE id = %s", [instance]) == "pending"


def test_roles_cannot_see_or_touch_each_others_instances_and_variables(roles):
    database = roles
    instance = database.value("SELECT df.start(%s)", [sql("SELECT 1")], user="alice")
    database.execute("SELECT df.setvar('secret', 'alice-only')", user="alice")
    assert database.value("SELECT df.status(%s)", [instance], user="bob") is None
    assert database.value("SELECT count(*) FROM df.instances", user="bob") == 0
    assert database.value("SELECT count(*) FROM df.nodes", user="bob") == 0
    for statement in ("SELECT df.cancel(%s)", "SELECT df.signal(%s, 'go')"):
        with pytest.raises(psycopg.Error, match="not found or access denied"):
            database.execute(statement, [instance], user="bob")
    database.execute(
        "UPDATE df.instances SET status = 'cancelled' WHERE id = %s", [instance], user="bob"
    )
    # Forging a row that claims to be alice's is refused by the WITH CHECK policy.
    with pytest.raises(psycopg.Error):
        database.execute(
            "INSERT INTO df.instances (id, root_node, submitted_by)"
            " VALUES ('0000beef', '0000beef', 'alice')",
            user="bob",
        )
    assert database.value("SELECT df.getvar('secret')", user="bob") is None
    database.execute("SELECT df.setvar('secret', 'bob')", user="bob")  # bob's own variable
    database.execute("DELETE FROM df.vars WHERE owner = 'alice'::regrole", user="bob")
    database.execute("SELECT df.clearvars()", user="bob")
    assert database.value("SELECT df.getvar('secret')", user="alice") == "alice-only"
    assert database.value("SELECT status FROM df.instances WHERE id = %s", [instance]) == "pending"
    assert database.value("SELECT count(*) FROM pgdurable.signals") == 0


def test_a_step_has_exactly_its_submitters_privileges(roles, tmp_path):
    database = roles
    database.execute("CREATE TABLE secret (v text); INSERT INTO secret VALUES ('s3cr3t')")
    database.execute("CREATE TABLE mine (v text); GRANT ALL ON mine TO alice")
    escapes = {
        "read": "SELECT v FROM secret",
        "reset_role": "RESET ROLE; SELECT v FROM secret",
        "set_role": "SET ROLE postgres; SELECT v FROM secret",
        "session_authorization": "SET SESSION AUTHORIZATION postgres; SELECT v FROM secret",
        "local_role": "SET LOCAL ROLE postgres; SELECT v FROM secret",
        "journal": "INSERT INTO pgdurable.journal (instance_id, scope, gen, node_id, outcome)"
        " VALUES ('{sys_instance_id}', 'x', 1, 'x', 'completed')",
        "runs": "UPDATE pgdurable.runs SET epoch = 0",
        # Signalling its own instance is df.signal's right; another role's is not.
        "signals": "INSERT INTO pgdurable.signals (instance_id, name) VALUES ('BOB', 'x')",
        "record": "SELECT pgdurable.record_v1('{sys_instance_id}', 1, 'x', 'x', 1, 'x',"
        " 'completed', '{}', NULL, NULL, NULL, true)",
        "finish": "SELECT pgdurable.finish_v1('{sys_instance_id}', 1, 'x', 'completed', '[]', NULL)",
        "forged_completion": "SELECT pgdurable.complete_step_v1('{sys_instance_id}', 1,"
        " sha256('guess'), '{sys_instance_id}', 1, 'deadbeef', '{}')",
        "other_instances": "UPDATE df.instances SET status = 'completed' WHERE submitted_by <> 'alice'::regrole"
        " RETURNING id",
        "guc": "SET df.in_workflow = 'false'; SELECT df.setvar('x', 'y')",
        "alter_role": "ALTER ROLE alice SUPERUSER",
    }
    bob = database.value("SELECT df.start(%s)", [sql("SELECT pg_sleep(0)")], user="bob")
    database.execute("UPDATE df.instances SET status = 'cancelled' WHERE id = %s", [bob])
    escapes["signals"] = escapes["signals"].replace("BOB", bob)
    ids = {
        name: database.value("SELECT df.start(%s, %s)", [sql(text), name], user="alice")
        for name, text in escapes.items()
    }
    run_worker(database, tmp_path)
    outcome = dict(
        database.execute("SELECT label, status FROM df.instances WHERE label IS NOT NULL")
    )
    succeeded = {name for name, status in outcome.items() if status != "failed"}
    # Turning df.in_workflow off does not turn the guard off: the worker
    # registered the step's session (issue 16).
    assert succeeded <= {"other_instances"}, {
        name: database.value(
            "SELECT n.result #>> '{}' FROM df.instances i JOIN df.nodes n"
            " ON n.id = i.root_node AND n.instance_id = i.id WHERE i.id = %s",
            [ids[name]],
        )
        for name in succeeded
    }
    # The UPDATE saw no row of another role.
    other = database.value(
        "SELECT n.result FROM df.nodes n JOIN df.instances i ON n.id = i.root_node"
        " AND n.instance_id = i.id WHERE i.label = 'other_instances'"
    )
    assert other is None or other["rows"] == []
    assert database.value("SELECT status FROM df.instances WHERE id = %s", [bob]) == "cancelled"
    assert database.value("SELECT rolsuper FROM pg_roles WHERE rolname = 'alice'") is False
    assert database.value("SELECT count(*) FROM pgdurable.signals") == 0
    assert database.value("SELECT count(*) FROM pgdurable.journal WHERE scope = 'x'") == 0


def test_superuser_instances_are_refused_unless_enabled(roles, tmp_path):
    database = roles
    with pytest.raises(psycopg.Error, match="enable_superuser_instances is off"):
        database.execute("SELECT df.start(%s)", [sql("SELECT 1")])
    # A row forged by an administrator (bypassing df.start) fails at run time.
    instance = database.value("SELECT df.start(%s)", [sql("SELECT 1")], user="alice")
    with database.connect() as conn:
        conn.execute("SET session_replication_role = replica")  # past the identity FKs
        conn.execute("UPDATE df.instances SET submitted_by = 'postgres' WHERE id = %s", [instance])
        conn.execute(
            "UPDATE df.nodes SET submitted_by = 'postgres' WHERE instance_id = %s", [instance]
        )
    run_worker(database, tmp_path)
    assert database.value("SELECT status FROM df.instances WHERE id = %s", [instance]) == "failed"
    error = database.value(
        "SELECT n.result #>> '{}' FROM df.nodes n JOIN df.instances i"
        " ON n.id = i.root_node AND n.instance_id = i.id WHERE i.id = %s",
        [instance],
    )
    assert "enable_superuser_instances is off" in error
