"""Control, variable and privilege functions of the df schema."""

from __future__ import annotations

import threading

import psycopg
import pytest

TERMINAL_UPDATE = "UPDATE df.instances SET status = %s WHERE id = %s"


def start(database, user: str = "alice", fut: str = "SELECT 1") -> str:
    return database.value("SELECT df.start(%s)", [fut], user=user)


def complete_root(database, instance_id: str, result: str) -> None:
    """Stamp the root node and the instance completed, as the worker does."""
    database.execute(
        "UPDATE df.nodes n SET status = 'completed', result = %s::jsonb FROM df.instances i "
        "WHERE i.id = %s AND n.instance_id = i.id AND n.id = i.root_node",
        [result, instance_id],
    )
    database.execute(TERMINAL_UPDATE, ["completed", instance_id])


def test_status_and_result(database, alice):
    instance_id = start(database)
    assert database.value("SELECT df.status(%s)", [instance_id], user=alice) == "pending"
    assert database.value("SELECT df.result(%s)", [instance_id], user=alice) is None
    assert database.value("SELECT df.status('ffffffff')", user=alice) is None
    complete_root(database, instance_id, '{"rows":[{"x":1}],"row_count":1}')
    assert database.value("SELECT df.status(%s)", [instance_id], user=alice) == "completed"
    assert database.value("SELECT df.result(%s)", [instance_id], user=alice) == (
        '{"rows": [{"x": 1}], "row_count": 1}'
    )


def test_result_of_a_failed_run_is_null(database, alice):
    instance_id = start(database)
    database.execute(
        "UPDATE df.nodes SET status = 'failed', result = '\"boom\"' WHERE instance_id = %s",
        [instance_id],
    )
    database.execute(TERMINAL_UPDATE, ["failed", instance_id])
    assert database.value("SELECT df.result(%s)", [instance_id], user=alice) is None


def test_cancel_reads_cancelled_at_once_and_never_overwrites_terminal(database, alice):
    running = start(database)
    message = database.value("SELECT df.cancel(%s, 'maintenance')", [running], user=alice)
    assert message == f"Instance {running} cancelled: maintenance"
    assert database.value("SELECT df.status(%s)", [running], user=alice) == "cancelled"
    assert database.value("SELECT df.cancel(%s)", [running], user=alice).endswith(
        "cancelled: Cancelled by user"
    )

    done = start(database)
    complete_root(database, done, '"ok"')
    database.value("SELECT df.cancel(%s)", [done], user=alice)
    assert database.value("SELECT df.status(%s)", [done], user=alice) == "completed"


def test_signals_are_buffered_in_order(database, alice):
    instance_id = start(database)
    for data in ['{"approved": true}', "not json", None]:
        args = [instance_id, "approval"] + ([data] if data is not None else [])
        placeholders = ", ".join(["%s"] * len(args))
        assert database.value(f"SELECT df.signal({placeholders})", args, user=alice) == "OK"
    rows = database.execute(
        "SELECT name, data, sent_by::text FROM pgdurable.signals WHERE instance_id = %s ORDER BY seq",
        [instance_id],
    )
    assert rows == [
        ("approval", {"approved": True}, "alice"),
        ("approval", "not json", "alice"),
        ("approval", {}, "alice"),
    ]


def test_other_roles_see_nothing_and_cannot_control(database, alice, bob):
    instance_id = start(database, user=alice)
    database.value("SELECT df.setvar('secret', 'alice-only')", user=alice)
    assert database.value("SELECT count(*) FROM df.instances", user=bob) == 0
    assert database.value("SELECT count(*) FROM df.nodes", user=bob) == 0
    assert database.value("SELECT count(*) FROM pgdurable.instance_vars", user=bob) == 0
    assert database.value("SELECT df.status(%s)", [instance_id], user=bob) is None
    assert database.value("SELECT df.getvar('secret')", user=bob) is None
    for call in ("df.cancel(%s)", "df.signal(%s, 'go')"):
        with pytest.raises(
            psycopg.errors.RaiseException,
            match=f"Instance not found or access denied: {instance_id}",
        ):
            database.value(f"SELECT {call}", [instance_id], user=bob)
    # Nor can bob write rows that claim alice's identity or touch her instance.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        database.execute(
            "INSERT INTO df.instances (id, root_node, submitted_by) VALUES ('abcdef01', 'abcdef02', 'alice')",
            user=bob,
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        database.execute(
            "INSERT INTO pgdurable.signals (instance_id, name) VALUES (%s, 'x')",
            [instance_id],
            user=bob,
        )
    assert database.value("SELECT df.status(%s)", [instance_id], user=alice) == "pending"


def test_await_instance(database, alice):
    instance_id = start(database)
    with pytest.raises(
        psycopg.errors.RaiseException, match=f"Timeout after 1s waiting for instance {instance_id}"
    ):
        database.value("SELECT df.await_instance(%s, 1)", [instance_id], user=alice)
    with pytest.raises(psycopg.errors.RaiseException, match="Timeout must be positive"):
        database.value("SELECT df.await_instance(%s, 0)", [instance_id], user=alice)
    with pytest.raises(psycopg.errors.RaiseException, match="Instance not found: ffffffff"):
        database.value("SELECT df.await_instance('ffffffff')", user=alice)

    outcome: list[str] = []
    waiter = threading.Thread(
        target=lambda: outcome.append(
            database.value("SELECT df.await_instance(%s, 20)", [instance_id], user=alice)
        )
    )
    waiter.start()
    database.execute(TERMINAL_UPDATE, ["failed", instance_id])
    waiter.join(timeout=30)
    assert outcome == ["failed"]


def test_wait_for_completion_is_a_warning_alias(database, alice):
    instance_id = start(database)
    database.execute(TERMINAL_UPDATE, ["completed", instance_id])
    warnings: list[str] = []
    with database.connect(alice) as conn:
        conn.add_notice_handler(lambda d: warnings.append(d.message_primary))
        assert conn.execute("SELECT df.wait_for_completion(%s)", [instance_id]).fetchone() == (
            "completed",
        )
    assert any("deprecated" in w for w in warnings)


def test_variables(database, alice, bob):
    assert database.value("SELECT df.setvar('env', 'prod')", user=alice) == "OK"
    assert database.value("SELECT df.setvar('env', 'staging')", user=alice) == "OK"
    database.value("SELECT df.setvar('env', 'bob-env')", user=bob)
    assert database.value("SELECT df.getvar('env')", user=alice) == "staging"
    assert database.value("SELECT df.getvar('env')", user=bob) == "bob-env"
    assert database.value("SELECT df.unsetvar('env')", user=alice) == "OK"
    assert database.value("SELECT df.getvar('env')", user=alice) is None
    database.value("SELECT df.setvar('a', '1'), df.setvar('b', '2')", user=alice)
    assert database.value("SELECT df.clearvars()", user=alice) == "OK"
    assert database.value("SELECT count(*) FROM df.vars", user=alice) == 0
    assert database.value("SELECT df.getvar('env')", user=bob) == "bob-env"


def test_public_has_no_access(database):
    database.create_role("stranger")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        database.value("SELECT df.status('00000000')", user="stranger")


def _privileges(database, role: str) -> dict[str, bool]:
    checks = {
        "usage df": f"has_schema_privilege('{role}', 'df', 'USAGE')",
        "usage pgdurable": f"has_schema_privilege('{role}', 'pgdurable', 'USAGE')",
        "select instances": f"has_table_privilege('{role}', 'df.instances', 'SELECT')",
        "update instances.status": f"has_column_privilege('{role}', 'df.instances', 'status', 'UPDATE')",
        "update instances.label": f"has_column_privilege('{role}', 'df.instances', 'label', 'UPDATE')",
        "insert instances.id": f"has_column_privilege('{role}', 'df.instances', 'id', 'INSERT')",
        "insert instances.status": f"has_column_privilege('{role}', 'df.instances', 'status', 'INSERT')",
        "insert nodes.query": f"has_column_privilege('{role}', 'df.nodes', 'query', 'INSERT')",
        "insert nodes.result": f"has_column_privilege('{role}', 'df.nodes', 'result', 'INSERT')",
        "delete vars": f"has_table_privilege('{role}', 'df.vars', 'DELETE')",
        "http": f"has_function_privilege('{role}', 'df.http(text, text, text, jsonb, integer)', 'EXECUTE')",
        "http_multipart": f"has_function_privilege('{role}', "
        "'df.http_multipart(text, text, jsonb, jsonb, integer)', 'EXECUTE')",
        "grant_usage": f"has_function_privilege('{role}', 'df.grant_usage(text, boolean, boolean)', 'EXECUTE')",
        "grant option": f"has_table_privilege('{role}', 'df.instances', 'SELECT WITH GRANT OPTION')",
    }
    row = database.execute("SELECT " + ", ".join(checks.values()))[0]
    return dict(zip(checks, row, strict=True))


def test_grant_usage_grants_exactly_the_reference_set(database):
    database.create_role("carol")
    notices: list[str] = []
    with database.connect() as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute("SELECT df.grant_usage('carol')")
    assert notices == ['pg_durable: granted df usage privileges to "carol"']
    assert _privileges(database, "carol") == {
        "usage df": True,
        "usage pgdurable": True,
        "select instances": True,
        "update instances.status": True,
        "update instances.label": False,
        "insert instances.id": True,
        "insert instances.status": False,
        "insert nodes.query": True,
        "insert nodes.result": False,
        "delete vars": True,
        "http": False,
        "http_multipart": False,
        "grant_usage": False,
        "grant option": False,
    }


def test_grant_usage_with_http_and_grant_option_then_revoke(database):
    database.create_role("admin_dan")
    database.execute("SELECT df.grant_usage('admin_dan', include_http => true, with_grant => true)")
    granted = _privileges(database, "admin_dan")
    assert granted["http"] and granted["http_multipart"] and granted["grant_usage"]
    assert granted["grant option"] and not granted["update instances.label"]

    # A delegated admin can pass usage on without being a superuser.
    database.create_role("erin")
    database.execute("SELECT df.grant_usage('erin')", user="admin_dan")
    assert _privileges(database, "erin")["select instances"]

    notices: list[str] = []
    with database.connect() as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute("SELECT df.revoke_usage('admin_dan')")
    assert notices == [
        'pg_durable: revoked df usage privileges granted by "postgres" from "admin_dan"'
    ]
    assert not any(_privileges(database, "admin_dan").values())
    # CASCADE removed what the delegated admin had passed on.
    assert not _privileges(database, "erin")["select instances"]


def test_grant_usage_is_not_callable_by_public(database):
    database.create_role("mallory")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        database.execute("SELECT df.grant_usage('mallory')", user="mallory")


def test_result_belongs_to_the_instance_asked_for(database, alice):
    pending, done = start(database), start(database)
    complete_root(database, done, '"done"')
    assert database.value("SELECT df.result(%s)", [pending], user=alice) is None
    assert database.value("SELECT df.result(%s)", [done], user=alice) == '"done"'
