"""The DSL, catalog and monitoring layers used together, as a user would."""

from __future__ import annotations

import json

import psycopg
import pytest


def test_readme_example_starts_a_named_two_step_workflow(database, alice):
    instance_id = database.value(
        "SELECT df.start('SELECT count(*) FROM orders' |=> 'n' ~> "
        "'INSERT INTO audit VALUES ($n)', 'nightly')",
        user=alice,
    )
    rows = database.execute(
        "SELECT node_type, query, result_name FROM df.nodes WHERE instance_id = %s "
        "ORDER BY node_type, query",
        [instance_id],
    )
    assert rows == [
        ("SQL", "INSERT INTO audit VALUES ($n)", None),
        ("SQL", "SELECT count(*) FROM orders", "n"),
        ("THEN", None, None),
    ]


def test_graph_built_by_operators_persists_what_the_json_says(database, alice):
    fut = database.value(
        "SELECT ('SELECT 1' & 'SELECT 2' & 'SELECT 3') |=> 'fan' ~> df.wait_for_signal('go', 60)"
    )
    instance_id = database.value("SELECT df.start(%s)", [fut], user=alice)
    types = database.execute(
        "SELECT node_type, count(*) FROM df.nodes WHERE instance_id = %s GROUP BY 1 ORDER BY 1",
        [instance_id],
    )
    assert types == [("JOIN", 2), ("SIGNAL", 1), ("SQL", 3), ("THEN", 1)]
    signal = database.value(
        "SELECT query FROM df.nodes WHERE instance_id = %s AND node_type = 'SIGNAL'", [instance_id]
    )
    assert json.loads(signal) == {"signal_name": "go", "timeout_seconds": 60}


@pytest.mark.parametrize(
    ("helper", "name"),
    [
        ("df.setvar('region', 'eu')", "df.setvar"),
        ("df.unsetvar('region')", "df.unsetvar"),
        ("df.clearvars()", "df.clearvars"),
    ],
)
def test_variable_helpers_cannot_be_workflow_steps(database, alice, helper, name):
    with pytest.raises(
        psycopg.errors.RaiseException,
        match=f"{name} cannot be used as a workflow step. Call {name} before df.start",
    ):
        database.value(f"SELECT df.seq({helper}, 'SELECT 1')", user=alice)
    # Called in its own statement first, the helper is fine.
    with database.connect(alice) as conn:
        conn.execute(f"SELECT {helper}")
        assert conn.execute("SELECT df.start(df.seq('SELECT 1', 'SELECT 2'))").fetchone()[0]


def test_explain_of_an_operator_expression(database, alice):
    text = database.value(
        "SELECT df.explain($$'SELECT 1' |=> 'a' ~> 'SELECT 2' ~> "
        "('SELECT x' ?> 'SELECT t' !> 'SELECT e')$$)",
        user=alice,
    )
    lines = text.split("\n")
    assert [line.rstrip() for line in lines] == [
        "SQL: SELECT 1 |=> 'a'",
        "→ SQL: SELECT 2",
        "→ IF",
        "    ? condition:",
        "      └─SQL: SELECT x",
        "    ✓ then:",
        "      └─SQL: SELECT t",
        "    ✗ else:",
        "      └─SQL: SELECT e",
    ]
    # Every line is padded to the longest line plus four spaces.
    longest = max(len(line.rstrip()) for line in lines)
    assert {len(line) for line in lines} == {longest + 4}
