"""df.start: validation, persistence, identity, vars snapshot, transaction modes."""

from __future__ import annotations

import json
import re
import threading

import psycopg
import pytest


def sql_node(query: str) -> str:
    return json.dumps({"node_type": "SQL", "query": query})


def graph(node_type: str, **fields: str) -> str:
    """Node JSON text whose fields are given as JSON text (children may be malformed on purpose)."""
    parts = [f'"node_type":"{node_type}"'] + [f'"{k}":{v}' for k, v in fields.items()]
    return "{" + ",".join(parts) + "}"


def then(left: str, right: str) -> str:
    return graph("THEN", left_node=left, right_node=right)


def start(database, fut: str, *args, user: str = "alice") -> str:
    params = ", ".join(["%s"] * (1 + len(args)))
    return database.value(f"SELECT df.start({params})", [fut, *args], user=user)


def nodes(database, instance_id: str) -> dict[str, dict]:
    rows = database.execute(
        "SELECT id, node_type, query, result_name, left_node, right_node, status, submitted_by::text,"
        " result, status_details FROM df.nodes WHERE instance_id = %s",
        [instance_id],
    )
    keys = (
        "id",
        "node_type",
        "query",
        "result_name",
        "left_node",
        "right_node",
        "status",
        "submitted_by",
        "result",
        "status_details",
    )
    return {row[0]: dict(zip(keys, row, strict=True)) for row in rows}


def test_start_persists_a_pending_instance_and_its_nodes(database, alice):
    instance_id = start(database, then(sql_node("SELECT 1"), sql_node("SELECT 2")), "nightly")
    assert re.fullmatch(r"[0-9a-f]{8}", instance_id)
    label, root, status, submitted_by, completed = database.execute(
        "SELECT label, root_node, status, submitted_by::text, completed_at FROM df.instances WHERE id = %s",
        [instance_id],
    )[0]
    assert (label, status, submitted_by, completed) == ("nightly", "pending", "alice", None)
    stored = nodes(database, instance_id)
    assert len(stored) == 3
    root_node = stored[root]
    assert root_node["node_type"] == "THEN" and root_node["query"] is None
    assert stored[root_node["left_node"]]["query"] == "SELECT 1"
    assert stored[root_node["right_node"]]["query"] == "SELECT 2"
    for node in stored.values():
        assert re.fullmatch(r"[0-9a-f]{8}", node["id"])
        assert node["status"] == "pending" and node["result"] is None
        assert node["submitted_by"] == "alice"


def test_plain_sql_text_is_wrapped(database, alice):
    instance_id = start(database, "SELECT now()")
    (node,) = nodes(database, instance_id).values()
    assert (node["node_type"], node["query"]) == ("SQL", "SELECT now()")


def test_if_loop_and_join_keep_extra_links_in_query(database, alice):
    graph = {
        "node_type": "IF",
        "condition_node": {"node_type": "SQL", "query": "SELECT true"},
        "left_node": {
            "node_type": "LOOP",
            "left_node": {"node_type": "SQL", "query": "SELECT 1"},
            "condition_node": {"node_type": "SQL", "query": "SELECT false"},
        },
        "right_node": {
            "node_type": "JOIN",
            "left_node": {"node_type": "SQL", "query": "a"},
            "right_node": {"node_type": "SQL", "query": "b"},
            "extra_nodes": [{"node_type": "SQL", "query": "c"}, {"node_type": "SQL", "query": "d"}],
            "result_name": "joined",
        },
    }
    instance_id = start(database, json.dumps(graph))
    stored = nodes(database, instance_id)
    assert len(stored) == 10
    root = stored[database.value("SELECT root_node FROM df.instances WHERE id = %s", [instance_id])]
    condition = json.loads(root["query"])["condition_node"]
    assert stored[condition]["query"] == "SELECT true"
    loop = stored[root["left_node"]]
    assert loop["node_type"] == "LOOP" and loop["right_node"] is None
    assert stored[json.loads(loop["query"])["condition_node"]]["query"] == "SELECT false"
    join = stored[root["right_node"]]
    assert join["result_name"] == "joined"
    extras = json.loads(join["query"])["extra_nodes"]
    assert [stored[e]["query"] for e in extras] == ["c", "d"]


def test_loop_without_condition_and_plain_join_store_no_query(database, alice):
    graph = {
        "node_type": "LOOP",
        "left_node": {
            "node_type": "JOIN",
            "left_node": {"node_type": "SQL", "query": "a"},
            "right_node": {"node_type": "SQL", "query": "b"},
        },
    }
    stored = nodes(database, start(database, json.dumps(graph)))
    assert {n["node_type"]: n["query"] for n in stored.values() if n["node_type"] != "SQL"} == {
        "LOOP": None,
        "JOIN": None,
    }


def test_if_rows_config_stays_in_query(database, alice):
    config = json.dumps({"condition_type": "result_has_rows", "result_name": "r"})
    graph = {
        "node_type": "IF",
        "query": config,
        "left_node": {"node_type": "SQL", "query": "t"},
        "right_node": {"node_type": "SQL", "query": "e"},
    }
    stored = nodes(database, start(database, json.dumps(graph)))
    (if_node,) = [n for n in stored.values() if n["node_type"] == "IF"]
    assert json.loads(if_node["query"]) == json.loads(config)


def nested_then(depth: int) -> str:
    """A left-deep THEN chain whose deepest node sits at nesting depth ``depth``."""
    text = sql_node("SELECT 0")
    for level in range(depth - 1):
        text = then(text, sql_node(f"SELECT {level}"))
    return text


@pytest.mark.parametrize(
    ("fut", "message"),
    [
        (
            '{"node_type":"NOPE"}',
            "Invalid durable function: Unknown node_type 'NOPE'. Valid types: SQL, THEN, IF, JOIN, LOOP, "
            "BREAK, RACE, SLEEP, WAIT_SCHEDULE, HTTP, HTTP_MULTIPART, SIGNAL",
        ),
        (
            then('"x"', sql_node("s")),
            "Malformed Durofut JSON with node_type 'THEN': Durofut children must be JSON objects",
        ),
        (
            graph(
                "IF", condition_node='"SELECT 1"', left_node=sql_node("t"), right_node=sql_node("e")
            ),
            "Malformed Durofut JSON with node_type 'IF': condition_node must be a Durofut JSON object",
        ),
        (
            graph("JOIN", left_node=sql_node("a"), right_node=sql_node("b"), extra_nodes="[5]"),
            "Malformed Durofut JSON with node_type 'JOIN': extra_nodes entries must be Durofut JSON objects",
        ),
        (
            then('{"node_type":"BAD"}', sql_node("s")),
            "Invalid durable function graph: root.left_node: Unknown node_type 'BAD'.",
        ),
        (
            graph(
                "JOIN",
                left_node=sql_node("a"),
                right_node=sql_node("b"),
                extra_nodes='[{"node_type":"X"}]',
            ),
            "Invalid durable function graph: root.extra_nodes[0]: Unknown node_type 'X'.",
        ),
        (
            graph(
                "IF",
                query=json.dumps('{"condition_node":"x"}'),
                left_node=sql_node("t"),
                right_node=sql_node("e"),
            ),
            "Invalid durable function graph: root: condition_node in IF must be a first-class Durofut "
            "field, not embedded in query",
        ),
        (
            graph("IF", query='"nope"', left_node=sql_node("t"), right_node=sql_node("e")),
            "Invalid durable function graph: root: query in IF must be valid JSON config: ",
        ),
        (
            '{"node_type":"SQL","query":"x","result_name":"1bad"}',
            "Invalid durable function graph: root: '1bad' is not a valid identifier",
        ),
        (
            graph("THEN", left_node=sql_node("a")),
            "Invalid durable function graph: root: THEN node requires both left_node and right_node",
        ),
        (nested_then(257), "maximum nesting depth of 256"),
    ],
)
def test_invalid_graphs_raise_the_reference_errors(database, alice, fut, message):
    with pytest.raises(psycopg.errors.RaiseException) as caught:
        start(database, fut)
    assert message in str(caught.value)
    assert str(caught.value).startswith("Invalid durable function")
    assert database.value("SELECT count(*) FROM df.instances") == 0


def test_depth_256_is_accepted(database, alice):
    instance_id = start(database, nested_then(256))
    assert len(nodes(database, instance_id)) == 2 * 256 - 1


def test_more_than_10000_nodes_is_refused_and_10000_accepted(database, alice):
    def join_of(count: int) -> str:
        extras = ",".join(sql_node(f"SELECT {i}") for i in range(count - 3))
        return graph(
            "JOIN", left_node=sql_node("a"), right_node=sql_node("b"), extra_nodes=f"[{extras}]"
        )

    with pytest.raises(psycopg.errors.RaiseException, match="more than the maximum of 10000 nodes"):
        start(database, join_of(10001))
    instance_id = start(database, join_of(10000))
    assert (
        database.value("SELECT count(*) FROM df.nodes WHERE instance_id = %s", [instance_id])
        == 10000
    )


def test_unknown_database_and_mode_are_refused(database, alice):
    with pytest.raises(psycopg.errors.RaiseException, match='database "nowhere" does not exist'):
        start(database, "SELECT 1", None, "nowhere")
    with pytest.raises(psycopg.errors.RaiseException, match='invalid transaction_mode "later"'):
        start(database, "SELECT 1", None, None, "later")
    named = start(database, "SELECT 1", None, database.name)
    assert (
        database.value("SELECT database FROM df.instances WHERE id = %s", [named]) == database.name
    )


def test_role_without_login_is_refused(database, alice):
    database.create_role("service_group", login=False)
    database.execute("GRANT service_group TO alice")
    database.execute("SELECT df.grant_usage('service_group')")
    with database.connect("alice") as conn:
        conn.execute("SET ROLE service_group")
        with pytest.raises(
            psycopg.errors.RaiseException,
            match='current_user "service_group" does not have LOGIN privilege',
        ):
            conn.execute("SELECT df.start('SELECT 1')")


def test_superuser_is_refused_even_after_set_in_session(database):
    with database.connect() as conn:
        conn.execute("SET pg_durable.enable_superuser_instances = on")
        with pytest.raises(
            psycopg.errors.RaiseException,
            match='"postgres" is a superuser and pg_durable.enable_superuser_instances is off',
        ):
            conn.execute("SELECT df.start('SELECT 1')")


def test_identity_is_current_user_after_set_role(database, alice):
    database.create_role("reporting")
    database.execute("SELECT df.grant_usage('reporting')")
    database.execute("GRANT reporting TO alice")
    with database.connect("alice") as conn:
        conn.execute("SET ROLE reporting")
        instance_id = conn.execute("SELECT df.start('SELECT 1')").fetchone()[0]
    assert (
        database.value("SELECT submitted_by::text FROM df.instances WHERE id = %s", [instance_id])
        == "reporting"
    )


def test_vars_are_snapshotted_at_start(database, alice):
    database.execute("SELECT df.setvar('region', 'eu'), df.setvar('limit', '10')", user=alice)
    instance_id = start(database, "SELECT 1")
    database.execute("SELECT df.setvar('region', 'us')", user=alice)
    assert database.value(
        "SELECT vars FROM pgdurable.instance_vars WHERE instance_id = %s", [instance_id]
    ) == {"region": "eu", "limit": "10"}


def test_caller_mode_rolls_back_with_the_caller(database, alice):
    with database.connect("alice", autocommit=False) as conn:
        instance_id = conn.execute("SELECT df.start('SELECT 1')").fetchone()[0]
        conn.rollback()
    assert database.value("SELECT count(*) FROM df.instances WHERE id = %s", [instance_id]) == 0
    assert database.value("SELECT count(*) FROM df.nodes") == 0


def test_new_mode_survives_the_callers_rollback(database, alice):
    with database.connect("alice", autocommit=False) as conn:
        instance_id = conn.execute(
            "SELECT df.start('SELECT 1', 'detached', NULL, 'new')"
        ).fetchone()[0]
        conn.rollback()
    row = database.execute(
        "SELECT label, status, submitted_by::text FROM df.instances WHERE id = %s", [instance_id]
    )
    assert row == [("detached", "pending", "alice")]


def test_new_mode_reports_graph_errors_like_caller_mode(database, alice):
    with pytest.raises(psycopg.errors.RaiseException, match="Unknown node_type 'NOPE'"):
        start(database, '{"node_type":"NOPE"}', None, None, "new")


def _admission_settings(database, value: dict[str, str] | None) -> None:
    """The administrator's way (ALTER SYSTEM): the only one the admission reads."""
    names = ("pg_durable.max_new_transaction_starts", "pg_durable.new_transaction_start_timeout")
    with database.connect() as conn:
        for name in names:
            # ALTER SYSTEM knows a custom setting once the session has it.
            conn.execute("SELECT set_config(%s, '', false)", [name])
            if value is None:
                conn.execute(f"ALTER SYSTEM RESET {name}")
            else:
                conn.execute(f"ALTER SYSTEM SET {name} = '{value[name]}'")
        conn.execute("SELECT pg_reload_conf()")


def test_new_mode_admission_limit(database, alice):
    # A database's value is not the administrator's: it is ignored.
    database.execute(
        f"ALTER DATABASE {database.name} SET pg_durable.max_new_transaction_starts = 0"
    )
    _admission_settings(
        database,
        {
            "pg_durable.max_new_transaction_starts": "1",
            "pg_durable.new_transaction_start_timeout": "1",
        },
    )
    try:
        with database.connect() as holder:
            # Occupy the only launch slot the way a concurrent 'new' start would.
            holder.execute("SELECT pg_advisory_lock(1346847814, 0)")
            with pytest.raises(psycopg.errors.RaiseException) as caught:
                start(database, "SELECT 1", None, None, "new")
            holder.execute("SELECT pg_advisory_unlock(1346847814, 0)")
    finally:
        _admission_settings(database, None)
    assert (
        "launch limit reached (max_new_transaction_starts=1). Timed out after 1s waiting for a "
        "launch slot"
    ) in str(caught.value)
    assert re.fullmatch(r"[0-9a-f]{8}", start(database, "SELECT 1", None, None, "new"))


def test_new_mode_cannot_impersonate_other_roles(database, alice, bob):
    with pytest.raises(
        psycopg.errors.RaiseException, match='permission denied to start a workflow as role "bob"'
    ):
        database.value(
            "SELECT pgdurable.start_in_new_transaction('SELECT 1', NULL, NULL, 'bob')", user=alice
        )


def test_guards_inside_a_workflow(database, alice):
    with database.connect("alice") as conn:
        conn.execute("SET df.in_workflow = 'true'")
        for statement, message in [
            (
                "SELECT df.start('SELECT 1', NULL, NULL, 'new')",
                "cannot be called inside a workflow",
            ),
            ("SELECT df.setvar('a', 'b')", r"df.setvar\(\) cannot be called inside a workflow - "),
            ("SELECT df.unsetvar('a')", r"df.unsetvar\(\) cannot be called inside a workflow - "),
            ("SELECT df.clearvars()", r"df.clearvars\(\) cannot be called inside a workflow - "),
            (
                "SELECT df.await_instance('00000000')",
                r"df.await_instance\(\) cannot be called inside",
            ),
        ]:
            with pytest.raises(psycopg.errors.RaiseException, match=message):
                conn.execute(statement)
        # A plain start inside a step is allowed: it creates an independent instance.
        assert conn.execute("SELECT df.start('SELECT 1')").fetchone()[0]


def test_start_wakes_listeners_only_when_committed(database, alice):
    with database.connect() as listener:
        listener.execute("LISTEN pgdurable_wake")
        with database.connect("alice", autocommit=False) as conn:
            rolled_back = conn.execute("SELECT df.start('SELECT 1')").fetchone()[0]
            conn.rollback()
            committed = conn.execute("SELECT df.start('SELECT 2')").fetchone()[0]
            conn.commit()
        first = next(listener.notifies(timeout=10))
    assert first.payload == f"start:{committed}"
    assert rolled_back != committed


def test_concurrent_starts_get_distinct_ids(database, alice):
    ids: list[str] = []
    lock = threading.Lock()

    def burst() -> None:
        with database.connect("alice") as conn:
            for _ in range(50):
                value = conn.execute("SELECT df.start('SELECT 1')").fetchone()[0]
                with lock:
                    ids.append(value)

    threads = [threading.Thread(target=burst) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(ids) == len(set(ids)) == 200


def test_malformed_grandchildren_are_reported_with_their_path(database, alice):
    deep = then(then(sql_node("a"), '"not a node"'), sql_node("b"))
    with pytest.raises(
        psycopg.errors.RaiseException, match="right_node must be a Durofut JSON object"
    ):
        start(database, deep)
