"""df.explain (SPEC B §7) against a real database. Expected pictures are
written by hand from the reference's layout rules: labels, '→ ' for later
steps of a THEN chain, child label lines indented 4, subtrees 2 deeper with
'└─'/'├─', every line padded to the longest line plus 4."""

from __future__ import annotations

import json

VALID_TYPES = (
    "SQL, THEN, IF, JOIN, LOOP, BREAK, RACE, SLEEP, WAIT_SCHEDULE, HTTP, HTTP_MULTIPART, SIGNAL"
)
CANNOT = (
    "Cannot explain input: not a valid Durofut JSON, instance ID, SQL statement, or DSL"
    " expression.\nHint: DSL expressions use df.*() functions and operators like ~>, |=>, &, |."
)


def explain(database, text):
    return database.value("SELECT df.explain(%s)", [text])


# Durofut builders in the reference's JSON shape (SPEC B §1.1), so the pictures
# do not depend on the DSL constructors; a few tests go through them as well.
def sql(query):
    return {"node_type": "SQL", "query": query}


def then(*steps):
    """Left-nested like a chain of ~>: ((a ~> b) ~> c)."""
    node = steps[0]
    for step in steps[1:]:
        node = {"node_type": "THEN", "left_node": node, "right_node": step}
    return node


def if_(cond, then_branch, else_branch):
    return {
        "node_type": "IF",
        "left_node": then_branch,
        "right_node": else_branch,
        "condition_node": cond,
    }


def join(first, second, *extra):
    node = {"node_type": "JOIN", "left_node": first, "right_node": second}
    if extra:
        node["extra_nodes"] = list(extra)
    return node


def race(first, second):
    return {"node_type": "RACE", "left_node": first, "right_node": second}


def loop(body, cond=None):
    node = {"node_type": "LOOP", "left_node": body}
    if cond is not None:
        node["condition_node"] = cond
    return node


def named(node, name):
    return {**node, "result_name": name}


def sleep(seconds):
    return {"node_type": "SLEEP", "query": str(seconds)}


def signal(name, timeout=None):
    return {
        "node_type": "SIGNAL",
        "query": json.dumps({"signal_name": name, "timeout_seconds": timeout}),
    }


def brk(value=None):
    return {"node_type": "BREAK", "query": json.dumps({"break_value": value})}


def picture(database, graph):
    return explain(database, json.dumps(graph))


def test_plain_sql_is_one_node_padded_by_four(database):
    assert explain(database, "SELECT 1") == "SQL: SELECT 1    "
    assert explain(database, "  select now()\n") == "SQL: select now()    "


def test_seq_chain_is_flattened_with_arrows(database, catalog):
    expected = catalog.pad("SQL: SELECT 1", "→ SLEEP 5s", "→ SQL: SELECT 2")
    assert expected == "SQL: SELECT 1      \n→ SLEEP 5s         \n→ SQL: SELECT 2    "
    assert picture(database, then(sql("SELECT 1"), sleep(5), sql("SELECT 2"))) == expected
    # Right-nested chains flatten the same way.
    assert picture(database, then(sql("SELECT 1"), then(sleep(5), sql("SELECT 2")))) == expected


def test_dsl_expression_is_evaluated_then_drawn(database, catalog):
    text = "df.seq(df.sql('SELECT 1'), 'SELECT 2')"
    assert explain(database, text) == catalog.pad("SQL: SELECT 1", "→ SQL: SELECT 2")


def test_if(database, catalog):
    graph = if_(sql("SELECT true"), sql("SELECT 1"), sql("SELECT 2"))
    assert picture(database, graph) == catalog.pad(
        "IF",
        "    ? condition:",
        "      └─SQL: SELECT true",
        "    ✓ then:",
        "      └─SQL: SELECT 1",
        "    ✗ else:",
        "      └─SQL: SELECT 2",
    )


def test_if_inside_a_chain(database, catalog):
    graph = then(
        sql("SELECT 1"), if_(sql("SELECT true"), sql("SELECT 2"), sql("SELECT 3")), sql("SELECT 4")
    )
    assert picture(database, graph) == catalog.pad(
        "SQL: SELECT 1",
        "→ IF",
        "    ? condition:",
        "      └─SQL: SELECT true",
        "    ✓ then:",
        "      └─SQL: SELECT 2",
        "    ✗ else:",
        "      └─SQL: SELECT 3",
        "→ SQL: SELECT 4",
    )


def test_join_of_three_named(database, catalog):
    graph = named(join(sql("SELECT 1"), sql("SELECT 2"), sql("SELECT 3")), "j")
    assert picture(database, graph) == catalog.pad(
        "JOIN (3) |=> 'j'",
        "    ║ branch 1:",
        "      ├─SQL: SELECT 1",
        "    ║ branch 2:",
        "      ├─SQL: SELECT 2",
        "    ║ branch 3:",
        "      └─SQL: SELECT 3",
    )


def test_branch_that_is_not_last_draws_a_rail(database, catalog):
    graph = join(if_(sql("SELECT c"), sql("SELECT t"), sql("SELECT e")), sql("SELECT x"))
    assert picture(database, graph) == catalog.pad(
        "JOIN (2)",
        "    ║ branch 1:",
        "      ├─IF",
        "      │   ? condition:",
        "      │     └─SQL: SELECT c",
        "      │   ✓ then:",
        "      │     └─SQL: SELECT t",
        "      │   ✗ else:",
        "      │     └─SQL: SELECT e",
        "    ║ branch 2:",
        "      └─SQL: SELECT x",
    )


def test_loop_with_condition_and_infinite_loop_with_break(database, catalog):
    graph = loop(then(sql("SELECT 1"), sleep(1)), sql("SELECT false"))
    assert picture(database, graph) == catalog.pad(
        "LOOP (while)",
        "    ↻ body:",
        "      └─SQL: SELECT 1",
        "      → SLEEP 1s",
        "    ? while:",
        "      └─SQL: SELECT false",
    )
    graph = loop(then(sql("SELECT 1"), brk("done")))
    assert picture(database, graph) == catalog.pad(
        "LOOP (infinite)",
        "    ↻ body:",
        "      └─SQL: SELECT 1",
        "      → BREAK 'done'",
    )


def test_race_has_no_name_suffix(database, catalog):
    graph = named(race(named(sql("SELECT 1"), "a"), signal("go", 30)), "r")
    assert picture(database, graph) == catalog.pad(
        "RACE",
        "    ║ branch 1:",
        "      ├─SQL: SELECT 1 |=> 'a'",
        "    ║ branch 2:",
        "      └─SIGNAL 'go' (30s)",
    )


def test_leaf_labels_and_truncation(database):
    long_sql = "SELECT " + "x" * 60
    assert explain(database, long_sql) == "SQL: " + long_sql[:47] + "...    "
    fifty = "SELECT " + "y" * 43
    assert explain(database, fifty) == "SQL: " + fifty + "    "
    http = {
        "node_type": "HTTP",
        "query": json.dumps({"url": "https://example.com/" + "p" * 40, "method": "GET"}),
        "result_name": "resp",
    }
    graph = then(
        {"node_type": "WAIT_SCHEDULE", "query": '{"cron_expr":"0 3 * * *"}'},
        http,
        signal("go"),
        brk("a" * 25),
        brk(),
    )
    lines = [
        "WAIT '0 3 * * *'",
        "→ HTTP GET https://example.com/ppppppppppppppppp... |=> 'resp'",
        "→ SIGNAL 'go'",
        "→ BREAK 'aaaaaaaaaaaaaaaaa...'",
        "→ BREAK",
    ]
    width = max(len(line) for line in lines) + 4
    assert explain(database, json.dumps(graph)) == "\n".join(x.ljust(width) for x in lines)


def test_errors_are_returned_as_text(database):
    assert explain(database, '{"node_type":"NOT_A_NODE"}') == (
        "Invalid durable function graph: root: Unknown node_type 'NOT_A_NODE'. Valid types: "
        + VALID_TYPES
    )
    nested = {
        "node_type": "THEN",
        "left_node": {"node_type": "SQL", "query": "SELECT 1"},
        "right_node": {"node_type": "NOPE"},
    }
    assert explain(database, json.dumps(nested)) == (
        "Invalid durable function graph: root.right: Unknown node_type 'NOPE'. Valid types: "
        + VALID_TYPES
    )
    assert explain(database, "hello world") == CANNOT
    assert explain(database, "'SELECT 1' & 'SELECT 2'") == CANNOT  # & and | are no markers
    assert explain(database, "deadbeef") == "Instance 'deadbeef' not found"
    failed = explain(database, "df.no_such_function('x')")
    assert failed.startswith("Failed to evaluate expression: ")
    assert "does not exist" in failed
    assert explain(database, "(SELECT 'df.' WHERE false)") == "Expression returned NULL"
    assert explain(database, "'df.' || 'not json'").startswith("Failed to parse Durofut JSON: ")


def live_instance(catalog, *, status, label=None, executions=(), root_status=None, result=None):
    N = catalog.Node
    rows = {"rows": [{"x": 2}], "row_count": 1}
    stamp = "9a000000::1"
    done = "completed"
    return catalog.add(
        catalog.Instance(
            "9a000000",
            status=status,
            label=label,
            executions=list(executions),
            nodes=[
                N(
                    "9a000001",
                    "THEN",
                    left="9a000002",
                    right="9a000003",
                    status=root_status or done,
                    result=result or rows,
                    stamp=stamp,
                ),
                N("9a000002", "SQL", "SELECT 1", status=done, result=rows, stamp=stamp),
                N(
                    "9a000003",
                    "IF",
                    '{"condition_node":"9a000004"}',
                    "9a000005",
                    "9a000006",
                    status=done,
                    result=rows,
                    stamp=stamp,
                    name="pick",
                ),
                N("9a000004", "SQL", "SELECT true", status=done, result=rows, stamp=stamp),
                N("9a000005", "SQL", "SELECT 2", status=done, result=rows, stamp=stamp),
                N("9a000006", "SQL", "SELECT 3"),
            ],
        )
    )


TREE = (
    "SQL: SELECT 1 ✓",
    "→ IF |=> 'pick' ✓",
    "    ? condition:",
    "      └─SQL: SELECT true ✓",
    "    ✓ then:",
    "      └─SQL: SELECT 2 ✓",
    "    ✗ else:",
    "      └─SQL: SELECT 3 ⊘",
)


def test_live_instance_with_icons(database, catalog):
    iid = live_instance(catalog, status="completed", label="nightly")
    assert explain(database, iid) == (
        "Instance: 9a000000 (nightly)\n"
        "Status:   ✓ completed\n"
        'Output:   {"rows": [{"x": 2}], "row_count": 1}\n'
        "\n" + catalog.pad(*TREE)
    )


def test_live_instance_uses_the_engine_status_and_output(database, catalog):
    iid = live_instance(
        catalog,
        status="completed",
        executions=[{"execution_id": 1, "status": "Completed", "output": '{"rows":[{"x":2}]}'}],
    )
    assert explain(database, iid) == (
        'Instance: 9a000000\nStatus:   ✓ Completed\nOutput:   {"rows":[{"x":2}]}\n\n'
        + catalog.pad(*TREE)
    )


def test_live_failed_instance_truncates_long_output(database, catalog):
    error = "SQL execution failed: " + "e" * 80
    iid = live_instance(catalog, status="failed", root_status="failed", result=error)
    header = explain(database, iid).split("\n\n")[0]
    assert header == ("Instance: 9a000000\nStatus:   ✗ failed\nOutput:   " + error[:57] + "...")


def test_live_running_and_pending_headers(database, catalog):
    N = catalog.Node
    catalog.add(
        catalog.Instance(
            "9b000000",
            status="running",
            executions=[{"execution_id": 1, "status": "Running"}],
            nodes=[
                N(
                    "9b000001",
                    "THEN",
                    left="9b000002",
                    right="9b000003",
                    status="running",
                    stamp="9b000000::1",
                ),
                N("9b000002", "SQL", "SELECT 1", status="running", stamp="9b000000::1"),
                N("9b000003", "SLEEP", "60"),
            ],
        )
    )
    assert explain(database, "9b000000") == (
        "Instance: 9b000000\nStatus:   ⏳ Running\n\n"
        + catalog.pad("SQL: SELECT 1 ⏳", "→ SLEEP 60s ○")
    )
    catalog.add(catalog.Instance("9c000000", nodes=[N("9c000001", "SQL", "SELECT 1")]))
    assert explain(database, " 9c000000 ") == (
        "Instance: 9c000000\nStatus:   ○ pending\n\n" + catalog.pad("SQL: SELECT 1 ○")
    )


def test_live_cancelled_header(database, catalog):
    N = catalog.Node
    catalog.add(
        catalog.Instance("9d000000", status="cancelled", nodes=[N("9d000001", "SLEEP", "5")])
    )
    assert explain(database, "9d000000").startswith("Instance: 9d000000\nStatus:   ✗ cancelled\n\n")
