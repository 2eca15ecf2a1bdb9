"""The extension nodes' SQL side (SPEC A.4, migration 0007): constructors,
their composition with df.*, df.start's validation and flattening, the
df.nodes constraints and df.explain's labels. Execution is tested in
tests/worker/test_extension_nodes.py."""

from __future__ import annotations

import json

import psycopg
import pytest

from pgdurable import model as m
from pgdurable.render import render

REFERENCE_TYPES = (
    "SQL, THEN, IF, JOIN, LOOP, BREAK, RACE, SLEEP, WAIT_SCHEDULE, HTTP, HTTP_MULTIPART, SIGNAL"
)
SQL1 = '{"node_type":"SQL","query":"SELECT 1"}'


def value(database, expr: str, user: str = "postgres"):
    return database.value(f"SELECT {expr}", user=user)


@pytest.fixture
def erin(database) -> str:
    """An ordinary role: superusers may not start instances (SPEC B §1.4)."""
    database.create_role("erin")
    database.execute("SELECT df.grant_usage('erin')")
    return "erin"


def raises(database, expr: str, message: str) -> None:
    with pytest.raises(psycopg.Error) as caught:
        value(database, expr)
    assert message in str(caught.value), str(caught.value)


# -- constructors -------------------------------------------------------------


def test_constructors_build_the_model_encoding(database):
    assert value(database, "pgdurable.retry('SELECT 1', 3, 10)") == (
        '{"node_type":"RETRY","left_node":' + SQL1 + ',"query":"{\\"max_attempts\\":3,'
        '\\"delay_seconds\\":10,\\"backoff\\":1.0,\\"max_delay_seconds\\":null}"}'
    )
    assert value(database, "pgdurable.timeout('SELECT 1', 30)") == (
        '{"node_type":"TIMEOUT","left_node":' + SQL1 + ',"query":"{\\"timeout_seconds\\":30}"}'
    )
    assert value(database, "pgdurable.try('SELECT 1', df.sleep(0))") == (
        '{"node_type":"TRY","left_node":' + SQL1 + ',"right_node":'
        '{"node_type":"SLEEP","query":"0"}}'
    )
    for backoff, text in [("2", "2.0"), ("1.5", "1.5"), ("1.1", "1.1"), ("1000", "1000.0")]:
        model = m.Retry(m.Sql("SELECT 1"), 2, 1, backoff=float(text), max_delay_seconds=60)
        got = value(database, f"pgdurable.retry('SELECT 1', 2, 1, {backoff}, 60)")
        assert got == m.encode(model)


def test_models_refuse_what_the_constructors_refuse():
    with pytest.raises(ValueError, match="max_attempts must be at least 1"):
        m.Retry(m.Sql("x"), 0, 1)
    with pytest.raises(ValueError, match="backoff must be between"):
        m.Retry(m.Sql("x"), 2, 1, backoff=0.5)
    with pytest.raises(ValueError, match="seconds must be positive"):
        m.Timeout(m.Sql("x"), 0)


def test_constructors_compose_with_df_and_each_other(database):
    model = m.Seq(
        (
            m.Try(
                m.Retry(m.Timeout(m.Join((m.Sql("SELECT 1"), m.Sleep(1))), 5), 3, 1, 2.0, 10),
                m.Sql("SELECT $error", name="handled"),
            ),
            m.Loop(m.Retry(m.Sql("SELECT 2"), 2, 0), name="l"),
        ),
        name="all",
    )
    got = database.value("SELECT pgdurable.dsl_node(" + render(model) + ")")
    assert got == m.encode(model)
    # named with |=> and used inside df.* composers: the nodes survive auto-wrap
    named = value(database, "pgdurable.timeout('SELECT 1', 2) |=> 't'")
    assert json.loads(named)["node_type"] == "TIMEOUT" and json.loads(named)["result_name"] == "t"
    seq = json.loads(value(database, "pgdurable.try('SELECT 1', 'SELECT 2') ~> 'SELECT 3'"))
    assert seq["left_node"]["node_type"] == "TRY"


def test_constructor_arguments_are_validated(database):
    raises(
        database, "pgdurable.retry('x', 0, 1)", "pgdurable.retry: max_attempts must be at least 1"
    )
    raises(
        database,
        "pgdurable.retry('x', 2, -1)",
        "pgdurable.retry: delay_seconds must be non-negative",
    )
    raises(
        database,
        "pgdurable.retry('x', 2, 1, backoff => 0.5)",
        "pgdurable.retry: backoff must be between 1.0 and 1000.0",
    )
    raises(
        database,
        "pgdurable.retry('x', 2, 1, backoff => 'NaN')",
        "pgdurable.retry: backoff must be between 1.0 and 1000.0",
    )
    raises(
        database,
        "pgdurable.retry('x', 2, 1, max_delay_seconds => -5)",
        "pgdurable.retry: max_delay_seconds must be non-negative",
    )
    raises(database, "pgdurable.timeout('x', 0)", "pgdurable.timeout: seconds must be positive")
    raises(
        database,
        'pgdurable.try(\'{"node_type":"SQL","query":5}\', \'x\')',
        "Invalid Durofut JSON: failed to deserialize workflow step",
    )
    assert value(database, "pgdurable.retry(NULL, 2, 1)") is None
    assert value(database, "pgdurable.timeout('x', NULL)") is None
    assert value(database, "pgdurable.try('x', NULL)") is None


def test_helper_results_are_refused_like_in_df_composers(database):
    raises(
        database,
        "pgdurable.try(df.setvar('a', '1'), 'SELECT 1')",
        "df.setvar cannot be used as a workflow step",
    )


def test_an_ordinary_role_can_build_and_start_them(database, erin):
    instance = database.value(
        "SELECT df.start(pgdurable.retry(pgdurable.timeout('SELECT 1', 5), 2, 1))", user="erin"
    )
    assert database.value("SELECT df.status(%s)", [instance], user="erin") == "pending"


# -- df.start -------------------------------------------------------------------


def flattened(database, instance: str) -> dict[str, tuple]:
    rows = database.execute(
        "SELECT node_type, query, left_node IS NOT NULL, right_node IS NOT NULL FROM df.nodes"
        " WHERE instance_id = %s",
        [instance],
    )
    return {row[0]: row[1:] for row in rows}


def test_df_start_stores_them_with_their_children(database, erin):
    instance = database.value(
        "SELECT df.start(pgdurable.try(pgdurable.retry(pgdurable.timeout('SELECT 1', 5), 3, 1),"
        " 'SELECT 2'))",
        user=erin,
    )
    nodes = flattened(database, instance)
    assert nodes["TRY"] == (None, True, True)
    assert nodes["RETRY"] == (
        '{"max_attempts":3,"delay_seconds":1,"backoff":1.0,"max_delay_seconds":null}',
        True,
        False,
    )
    assert nodes["TIMEOUT"] == ('{"timeout_seconds":5}', True, False)


def start_error(database, graph: dict) -> str:
    with pytest.raises(psycopg.Error) as caught:
        database.value("SELECT df.start(%s)", [json.dumps(graph)], user="erin")
    return caught.value.diag.message_primary


def test_df_start_checks_their_shape_and_config(database, erin):
    sql = {"node_type": "SQL", "query": "SELECT 1"}
    retry_config = json.dumps({"max_attempts": 0, "delay_seconds": 1})
    assert start_error(
        database, {"node_type": "RETRY", "left_node": sql, "query": retry_config}
    ) == (
        "Invalid durable function graph: root: query in RETRY must be its JSON config:"
        " max_attempts must be an integer of at least 1"
    )
    assert start_error(
        database,
        {"node_type": "TIMEOUT", "left_node": sql, "query": '{"timeout_seconds":"5"}'},
    ) == (
        "Invalid durable function graph: root: query in TIMEOUT must be its JSON config:"
        " timeout_seconds must be a positive integer"
    )
    assert start_error(database, {"node_type": "TIMEOUT", "query": '{"timeout_seconds":5}'}) == (
        "Invalid durable function graph: root: TIMEOUT node requires a child step (left_node)"
    )
    assert start_error(
        database,
        {
            "node_type": "THEN",
            "left_node": sql,
            "right_node": {"node_type": "TRY", "left_node": sql},
        },
    ) == (
        "Invalid durable function graph: root.right_node: TRY node requires both left_node (the step)"
        " and right_node (run on failure)"
    )
    assert (
        start_error(
            database,
            {
                "node_type": "RETRY",
                "left_node": sql,
                "right_node": sql,
                "query": '{"max_attempts":2,"delay_seconds":1}',
            },
        )
        == "Invalid durable function graph: root: RETRY node must not have a right_node"
    )
    # A minimal hand-written config (defaults for backoff and the cap) is accepted.
    ok = {"node_type": "RETRY", "left_node": sql, "query": '{"max_attempts":2,"delay_seconds":0}'}
    assert database.value("SELECT df.start(%s)", [json.dumps(ok)], user=erin)


def test_unknown_types_keep_the_reference_message(database, erin):
    assert start_error(database, {"node_type": "RETRYY", "query": "x"}) == (
        f"Invalid durable function: Unknown node_type 'RETRYY'. Valid types: {REFERENCE_TYPES}"
    )
    nested = {
        "node_type": "TRY",
        "left_node": {"node_type": "NOPE"},
        "right_node": {"node_type": "SQL", "query": "x"},
    }
    assert start_error(database, nested) == (
        "Invalid durable function graph: root.left_node: Unknown node_type 'NOPE'."
        f" Valid types: {REFERENCE_TYPES}"
    )


def test_node_constraints_admit_the_shapes(database, erin):
    instance = database.value("SELECT df.start(pgdurable.retry('SELECT 1', 2, 1))", user=erin)
    with pytest.raises(psycopg.errors.CheckViolation, match="nodes_structure_chk"):
        database.execute(
            "UPDATE df.nodes SET right_node = left_node WHERE instance_id = %s"
            " AND node_type = 'RETRY'",
            [instance],
        )


def test_without_the_pgdurable_schema_the_constructors_fail_clearly(empty_database):
    with pytest.raises(psycopg.errors.InvalidSchemaName, match='schema "pgdurable" does not exist'):
        empty_database.value("SELECT pgdurable.retry('SELECT 1', 3, 10)")


# -- df.explain -----------------------------------------------------------------


def explain(database, text: str) -> list[str]:
    return [line.rstrip() for line in database.value("SELECT df.explain(%s)", [text]).split("\n")]


def test_explain_labels_and_children(database):
    picture = explain(
        database,
        "pgdurable.try(pgdurable.retry(pgdurable.timeout('SELECT 1', 30), 3, 10, 2.0, 60),"
        " 'SELECT $error' |=> 'h')",
    )
    assert picture == [
        "TRY",
        "    ✓ try:",
        "      └─RETRY (3 attempts, 10s, x2.0, max 60s)",
        "          ↻ attempt:",
        "            └─TIMEOUT 30s",
        "                ⏱ within:",
        "                  └─SQL: SELECT 1",
        "    ✗ on failure:",
        "      └─SQL: SELECT $error |=> 'h'",
    ]
    assert explain(database, "pgdurable.retry('SELECT 1', 2, 5)") == [
        "RETRY (2 attempts, 5s)",
        "    ↻ attempt:",
        "      └─SQL: SELECT 1",
    ]
    as_json = database.value("SELECT pgdurable.timeout('SELECT 1', 3)")
    assert explain(database, as_json)[0] == "TIMEOUT 3s"
