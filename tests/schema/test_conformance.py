"""df.* behaviour matched to pg_durable 0.2.6 (issue 17), without a worker: who can
enable superuser instances, IF/LOOP/JOIN config rules in df.start, parameter
names and STRICT, and the bound on signals nothing consumes."""

from __future__ import annotations

import json

import psycopg
import pytest

from pgdurable.testing import wait_for

SETTING = "pg_durable.enable_superuser_instances"
REFUSED = '"postgres" is a superuser and pg_durable.enable_superuser_instances is off'


# -- 1. enable_superuser_instances: server level only -------------------------------


def test_alter_role_or_database_set_cannot_enable_superuser_instances(database):
    # Scoped to this test's database, so dropped with it.
    database.execute(f"ALTER DATABASE {database.name} SET {SETTING} = on")
    database.execute(f"ALTER ROLE postgres IN DATABASE {database.name} SET {SETTING} = on")
    with database.connect() as conn:  # a new session gets both settings
        assert conn.execute(f"SHOW {SETTING}").fetchone()[0] == "on"
        with pytest.raises(psycopg.errors.RaiseException, match=REFUSED):
            conn.execute("SELECT df.start('SELECT 1')")


def test_alter_system_enables_superuser_instances_after_a_reload(database):
    """The README's recipe, from a session that never saw the name before. PostgreSQL
    17+ accepts an unknown custom name in ALTER SYSTEM; 14-16 only in a session that
    knows it, hence the SET first (MIGRATING.md)."""
    version = database.value("SELECT current_setting('server_version_num')::int")
    try:
        with database.connect() as conn:
            if version < 170000:
                with pytest.raises(psycopg.errors.UndefinedObject):
                    conn.execute(f"ALTER SYSTEM SET {SETTING} = on")
                conn.execute(f"SET {SETTING} = on")
            conn.execute(f"ALTER SYSTEM SET {SETTING} = on")
        # Written, not yet loaded: a new session does not count it.
        assert database.value("SELECT pgdurable.superuser_instances_enabled()") is False
        database.execute("SELECT pg_reload_conf()")
        wait_for(
            lambda: database.value("SELECT pgdurable.superuser_instances_enabled()"),
            what="the reloaded setting",
        )
        instance = database.value("SELECT df.start('SELECT 1')")
        assert (
            database.value("SELECT submitted_by::text FROM df.instances WHERE id = %s", [instance])
            == "postgres"
        )
        # An ordinary role sees the answer too (the worker may not be a superuser).
        database.create_role("setting_reader")
        database.execute("SELECT df.grant_usage('setting_reader')")
        assert (
            database.value("SELECT pgdurable.superuser_instances_enabled()", user="setting_reader")
            is True
        )
    finally:
        with database.connect() as conn:
            conn.execute(f"SET {SETTING} = off")
            conn.execute(f"ALTER SYSTEM RESET {SETTING}")
            conn.execute("SELECT pg_reload_conf()")
        wait_for(
            lambda: not database.value("SELECT pgdurable.superuser_instances_enabled()"),
            what="the setting to be off again",
        )
    with pytest.raises(psycopg.errors.RaiseException, match=REFUSED):
        database.execute("SELECT df.start('SELECT 1')")


# -- 6. config rules of IF, LOOP and JOIN ----------------------------------------------


def node(node_type: str, **fields) -> dict:
    return {"node_type": node_type, **fields}


SQL = node("SQL", query="SELECT 1")


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        (
            node("IF", left_node=SQL, right_node=SQL, condition_node=SQL, query="not json"),
            "root: query in IF must be valid JSON config: ",
        ),
        (
            node("IF", left_node=SQL, right_node=SQL, condition_node=SQL, query="[1]"),
            "root: query in IF must be a JSON config object",
        ),
        (
            node(
                "THEN",
                left_node=SQL,
                right_node=node("LOOP", left_node=SQL, condition_node=SQL, query="{x"),
            ),
            "root.right_node: query in LOOP must be valid JSON config: ",
        ),
        (
            node("JOIN", left_node=SQL, right_node=SQL, extra_nodes=[SQL], query="7"),
            "root: query in JOIN must be a JSON config object",
        ),
        (
            node("THEN", left_node=SQL, right_node=SQL, condition_node=SQL),
            "root: condition_node is not valid for THEN nodes",
        ),
        (
            node("RACE", left_node=SQL, right_node=SQL, extra_nodes=[SQL]),
            "root: extra_nodes is not valid for RACE nodes",
        ),
    ],
)
def test_start_rejects_what_the_reference_rejects(database, alice, graph, message):
    with pytest.raises(psycopg.errors.RaiseException) as raised:
        database.execute("SELECT df.start(%s)", [json.dumps(graph)], user=alice)
    assert str(raised.value).startswith("Invalid durable function graph: " + message)
    assert database.value("SELECT count(*) FROM df.instances") == 0


def test_if_with_a_condition_node_and_a_json_config_still_starts(database, alice):
    graph = node("IF", left_node=SQL, right_node=SQL, condition_node=SQL, query='{"note": 1}')
    instance = database.value("SELECT df.start(%s)", [json.dumps(graph)], user=alice)
    query = database.value(
        "SELECT query::jsonb FROM df.nodes WHERE instance_id = %s AND node_type = 'IF'", [instance]
    )
    assert query["note"] == 1 and len(query["condition_node"]) == 8


# -- 7. parameter names and STRICT -----------------------------------------------------


STRICT_IN_REFERENCE = [
    "df.await_instance(text, integer)",
    "df.cancel(text, text)",
    "df.clearvars()",
    "df.explain(text)",
    "df.getvar(text)",
    "df.instance_executions(text, integer)",
    "df.instance_info(text)",
    "df.instance_nodes(text)",
    "df.instance_nodes(text, integer)",
    "df.metrics()",
    "df.result(text)",
    "df.setvar(text, text)",
    "df.signal(text, text, text)",
    "df.status(text)",
    "df.target_database()",
    "df.unsetvar(text)",
    "df.version()",
    "df.wait_for_completion(text, integer)",
]


def test_functions_the_reference_declares_strict_are_strict(database):
    strict = database.execute(
        "SELECT f, p.proisstrict FROM unnest(%s::text[]) f"
        " JOIN pg_proc p ON p.oid = f::regprocedure",
        [STRICT_IN_REFERENCE],
    )
    assert dict(strict) == dict.fromkeys(STRICT_IN_REFERENCE, True)


def test_null_arguments_give_null_instead_of_errors(database, alice):
    instance = database.value("SELECT df.start('SELECT 1')", user=alice)
    calls = [
        "df.await_instance(NULL)",
        "df.await_instance(%(i)s, NULL)",
        "df.cancel(NULL)",
        "df.cancel(%(i)s, NULL)",
        "df.signal(%(i)s, 'go', NULL)",
        "df.signal(NULL, 'go')",
        "df.setvar('v', NULL)",
        "df.getvar(NULL)",
        "df.unsetvar(NULL)",
        "df.explain(NULL)",
        "df.status(NULL)",
        "df.result(NULL)",
        "df.wait_for_completion(NULL)",
    ]
    for call in calls:
        assert database.value(f"SELECT {call}", {"i": instance}, user=alice) is None, call
    for call in (
        "df.instance_info(NULL)",
        "df.instance_nodes(NULL)",
        "df.instance_nodes(NULL, 1)",
        "df.instance_executions(NULL)",
        "df.instance_executions(%(i)s, NULL)",
    ):
        assert database.execute(f"SELECT * FROM {call}", {"i": instance}, user=alice) == [], call
    # Nothing was written by the NULL calls.
    assert database.value("SELECT df.status(%s)", [instance], user=alice) == "pending"
    assert database.value("SELECT count(*) FROM df.vars") == 0
    assert database.value("SELECT count(*) FROM pgdurable.signals") == 0


def test_named_arguments_use_the_references_names(database, alice):
    instance = database.value("SELECT df.start(df.wait_for_signal('go'))", user=alice)
    assert (
        database.value(
            "SELECT df.signal(instance_id => %s, signal_name => 'go', signal_data => '{\"k\":2}')",
            [instance],
            user=alice,
        )
        == "OK"
    )
    assert database.value(
        "SELECT data FROM pgdurable.signals WHERE instance_id = %s", [instance]
    ) == {"k": 2}
    rows = database.execute(
        "SELECT execution_id, node_type FROM"
        " df.instance_nodes(instance_id_param => %s, _last_n_executions => 3)",
        [instance],
        user=alice,
    )
    assert rows == [(1, "SIGNAL")]


# -- 2. signals: bounded, and refused as the reference refuses ----------------------------


def test_signals_nothing_consumes_are_bounded_per_instance(database, alice):
    instance = database.value("SELECT df.start(df.wait_for_signal('go'))", user=alice)
    limit = database.value("SELECT pgdurable.max_pending_signals()")
    database.execute(
        "INSERT INTO pgdurable.signals (instance_id, name, data, sent_by)"
        " SELECT %s, 'other', '{}', 'alice' FROM generate_series(1, %s)",
        [instance, limit],
    )
    with pytest.raises(psycopg.errors.RaiseException, match=f"already has {limit} signals"):
        database.execute("SELECT df.signal(%s, 'go')", [instance], user=alice)
    assert database.value("SELECT count(*) FROM pgdurable.signals") == limit


def test_empty_instance_id_or_signal_name_is_refused(database, alice):
    instance = database.value("SELECT df.start(df.wait_for_signal('go'))", user=alice)
    with pytest.raises(psycopg.errors.RaiseException, match="Instance ID cannot be empty"):
        database.execute("SELECT df.signal('', 'go')", user=alice)
    with pytest.raises(psycopg.errors.RaiseException, match="Signal name cannot be empty"):
        database.execute("SELECT df.signal(%s, '')", [instance], user=alice)


def test_start_takes_the_current_database_by_name(database):
    """current_database() is a `name`, of collation "C": the graph walk must not
    mix it into the collation of its id columns."""
    database.create_role("dbname_caller")
    database.execute("SELECT df.grant_usage('dbname_caller')")
    instance = database.value(
        "SELECT df.start('SELECT 1', 'x', current_database())", user="dbname_caller"
    )
    assert database.value("SELECT database FROM df.instances WHERE id = %s", [instance]) == (
        database.name
    )
