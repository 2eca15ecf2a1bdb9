"""df monitoring functions (SPEC B §3 "Monitoring", §7 "Inference") against a
real database. Instances are written straight into the catalog with the
stamps a worker would leave, so every inference case is set up exactly."""

from __future__ import annotations

import pytest

from pgdurable import db

FN = "pg_durable::orchestration::execute-function-graph"
ROWS_1 = {"rows": [{"x": 1}], "row_count": 1}


def inferred(database, instance_id):
    """node id -> (stored status, inferred status, ancestor id)."""
    rows = database.execute(
        "SELECT node_id, status, inferred_status, inferred_status_from_ancestor_id"
        " FROM df.instance_nodes(%s)",
        [instance_id],
    )
    return {r[0]: r[1:] for r in rows}


# ---------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------


def test_untaken_if_arm_is_skipped(database, catalog):
    N = catalog.Node
    iid = catalog.add(
        catalog.Instance(
            "a1000000",
            status="completed",
            nodes=[
                N(
                    "a1000001",
                    "IF",
                    '{"condition_node":"a1000002"}',
                    "a1000003",
                    "a1000004",
                    "completed",
                    ROWS_1,
                    "a1000000::1",
                ),
                N(
                    "a1000002",
                    "SQL",
                    "SELECT true",
                    status="completed",
                    result={"rows": [{"bool": True}], "row_count": 1},
                    stamp="a1000000::1",
                ),
                N(
                    "a1000003",
                    "SQL",
                    "SELECT 1",
                    status="completed",
                    result=ROWS_1,
                    stamp="a1000000::1",
                ),
                N("a1000004", "SQL", "SELECT 2"),
            ],
        )
    )
    assert inferred(database, iid) == {
        "a1000001": ("completed", "completed", None),
        "a1000002": ("completed", "completed", None),
        "a1000003": ("completed", "completed", None),
        "a1000004": ("pending", "skipped", "a1000001"),
    }


def test_node_after_failed_then_is_skipped(database, catalog):
    N = catalog.Node
    error = "SQL execution failed: division by zero"
    iid = catalog.add(
        catalog.Instance(
            "b1000000",
            status="failed",
            nodes=[
                N(
                    "b1000001",
                    "THEN",
                    left="b1000002",
                    right="b1000003",
                    status="failed",
                    result=error,
                    stamp="b1000000::1",
                ),
                N(
                    "b1000002",
                    "SQL",
                    "SELECT 1/0",
                    status="failed",
                    result=error,
                    stamp="b1000000::1",
                ),
                N("b1000003", "SQL", "SELECT 2"),
            ],
        )
    )
    assert inferred(database, iid) == {
        "b1000001": ("failed", "failed", None),
        "b1000002": ("failed", "failed", None),
        "b1000003": ("pending", "skipped", "b1000001"),
    }
    info = database.execute("SELECT status, output FROM df.instance_info(%s)", [iid])
    assert info == [("failed", error)]


def test_race_loser_still_running_reads_skipped(database, catalog):
    N = catalog.Node
    iid = catalog.add(
        catalog.Instance(
            "c1000000",
            status="completed",
            nodes=[
                N(
                    "c1000001",
                    "RACE",
                    left="c1000002",
                    right="c1000003",
                    status="completed",
                    result=ROWS_1,
                    stamp="c1000000::1",
                ),
                N(
                    "c1000002",
                    "SQL",
                    "SELECT 1",
                    status="completed",
                    result=ROWS_1,
                    stamp="c1000000::1::c1000002::1",
                ),
                N("c1000003", "SLEEP", "10", status="running", stamp="c1000000::1::c1000003::1"),
            ],
        )
    )
    assert inferred(database, iid)["c1000003"] == ("running", "skipped", "c1000001")


def test_clean_run_shows_stored_statuses(database, catalog):
    N = catalog.Node
    iid = catalog.add(
        catalog.Instance(
            "d1000000",
            status="completed",
            nodes=[
                N(
                    "d1000001",
                    "JOIN",
                    '{"extra_nodes":["d1000004"]}',
                    "d1000002",
                    "d1000003",
                    "completed",
                    [ROWS_1, ROWS_1, ROWS_1],
                    "d1000000::1",
                ),
                N(
                    "d1000002",
                    "SQL",
                    "SELECT 1",
                    status="completed",
                    result=ROWS_1,
                    stamp="d1000000::1::d1000002::1",
                ),
                N(
                    "d1000003",
                    "SQL",
                    "SELECT 1",
                    status="completed",
                    result=ROWS_1,
                    stamp="d1000000::1::d1000003::1",
                ),
                N(
                    "d1000004",
                    "SQL",
                    "SELECT 1",
                    status="completed",
                    result=ROWS_1,
                    stamp="d1000000::1::d1000004::1",
                ),
            ],
        )
    )
    assert {v for v in inferred(database, iid).values()} == {("completed", "completed", None)}


def test_root_loop_superseded_generation_reads_pending(database, catalog):
    # Iteration 3 of a root loop is running: its first step is done, the
    # second still shows iteration 2's result, so it will run again.
    N = catalog.Node
    iid = catalog.add(
        catalog.Instance(
            "e1000000",
            status="running",
            nodes=[
                N("e1000001", "LOOP", None, "e1000002", status="running", stamp="e1000000::3"),
                N(
                    "e1000002",
                    "THEN",
                    left="e1000003",
                    right="e1000004",
                    status="running",
                    stamp="e1000000::3",
                ),
                N(
                    "e1000003",
                    "SQL",
                    "SELECT 1",
                    status="completed",
                    result=ROWS_1,
                    stamp="e1000000::3",
                ),
                N(
                    "e1000004",
                    "SQL",
                    "SELECT 2",
                    status="completed",
                    result=ROWS_1,
                    stamp="e1000000::2",
                ),
            ],
        )
    )
    assert inferred(database, iid) == {
        "e1000001": ("running", "running", None),
        "e1000002": ("running", "running", None),
        "e1000003": ("completed", "completed", None),
        "e1000004": ("completed", "pending", "e1000002"),
    }
    # 1 + two root-loop iterations, from the stamps (no history rows yet).
    assert database.value("SELECT current_execution_id FROM df.instance_info(%s)", [iid]) == 3


def test_nested_loop_and_branch_of_an_older_generation(database, catalog):
    # Root THEN(x, LOOP(body)); the non-root loop runs as child scope
    # e::1::<loop>, now at its generation 2. Its body step from generation 1
    # is superseded; a node of a JOIN branch spawned by the child's
    # generation 1 is superseded through its parent scope.
    N = catalog.Node
    root = "f1000000"
    child = f"{root}::1::f1000003"
    iid = catalog.add(
        catalog.Instance(
            root,
            status="running",
            nodes=[
                N(
                    "f1000001",
                    "THEN",
                    left="f1000002",
                    right="f1000003",
                    status="running",
                    stamp=f"{root}::1",
                ),
                N(
                    "f1000002",
                    "SQL",
                    "SELECT 0",
                    status="completed",
                    result=ROWS_1,
                    stamp=f"{root}::1",
                ),
                N("f1000003", "LOOP", None, "f1000004", status="running", stamp=f"{child}::2"),
                N(
                    "f1000004",
                    "JOIN",
                    None,
                    "f1000005",
                    "f1000006",
                    status="running",
                    stamp=f"{child}::2",
                ),
                N(
                    "f1000005",
                    "SQL",
                    "SELECT 1",
                    status="completed",
                    result=ROWS_1,
                    stamp=f"{child}::1::f1000005::1",
                ),
                N(
                    "f1000006",
                    "SQL",
                    "SELECT 2",
                    status="completed",
                    result=ROWS_1,
                    stamp=f"{child}::2::f1000006::1",
                ),
            ],
        )
    )
    result = inferred(database, iid)
    assert result["f1000005"] == ("completed", "pending", "f1000004")
    assert result["f1000006"] == ("completed", "completed", None)
    assert result["f1000003"] == ("running", "running", None)


def test_completed_nested_loops_leave_nothing_pending_or_running(database, catalog):
    N = catalog.Node
    root = "f2000000"
    child = f"{root}::2::f2000002"
    iid = catalog.add(
        catalog.Instance(
            root,
            status="completed",
            nodes=[
                N(
                    "f2000001",
                    "LOOP",
                    '{"condition_node":"f2000004"}',
                    "f2000002",
                    status="completed",
                    result=ROWS_1,
                    stamp=f"{root}::2",
                ),
                N(
                    "f2000002",
                    "LOOP",
                    None,
                    "f2000003",
                    status="completed",
                    result="done",
                    stamp=f"{child}::3",
                ),
                N(
                    "f2000003",
                    "BREAK",
                    '{"break_value":"done"}',
                    status="completed",
                    result="done",
                    stamp=f"{child}::3",
                ),
                N(
                    "f2000004",
                    "SQL",
                    "SELECT false",
                    status="completed",
                    result=ROWS_1,
                    stamp=f"{root}::2",
                ),
            ],
        )
    )
    statuses = {v[1] for v in inferred(database, iid).values()}
    assert statuses == {"completed"}


def test_unreachable_nodes_keep_their_stored_status(database, catalog):
    N = catalog.Node
    iid = catalog.add(
        catalog.Instance(
            "a2000000",
            status="failed",
            nodes=[
                N(
                    "a2000001",
                    "SQL",
                    "SELECT 1/0",
                    status="failed",
                    result="boom",
                    stamp="a2000000::1",
                ),
                N("a2000002", "SQL", "SELECT 2", status="running", stamp="a2000000::1"),
                N(
                    "a2000003",
                    "SQL",
                    "SELECT 3",
                    status="completed",
                    result=ROWS_1,
                    stamp="a2000000::0",
                ),
            ],
        )
    )
    result = inferred(database, iid)
    assert result["a2000002"] == ("running", "running", None)
    assert result["a2000003"] == ("completed", "completed", None)


def test_instance_nodes_columns_and_legacy_form(database, catalog):
    N = catalog.Node
    iid = catalog.add(
        catalog.Instance(
            "a3000000",
            status="completed",
            nodes=[
                N(
                    "a3000001",
                    "SQL",
                    "SELECT 1",
                    status="completed",
                    result=ROWS_1,
                    stamp="a3000000::1",
                    name="one",
                ),
            ],
        )
    )
    row = database.execute(
        "SELECT node_id, node_type, query, result_name, left_node, right_node, status, result,"
        " status_details, inferred_status, inferred_status_from_ancestor_id,"
        " updated_at IS NOT NULL FROM df.instance_nodes(%s)",
        [iid],
    )
    assert row == [
        (
            "a3000001",
            "SQL",
            "SELECT 1",
            "one",
            None,
            None,
            "completed",
            '{"rows": [{"x": 1}], "row_count": 1}',
            '{"execution_id": "a3000000::1"}',
            "completed",
            None,
            True,
        )
    ]
    legacy = database.execute(
        "SELECT execution_id, node_id, status, result FROM df.instance_nodes(%s, 5)", [iid]
    )
    assert legacy == [(1, "a3000001", "completed", '{"rows": [{"x": 1}], "row_count": 1}')]


# ---------------------------------------------------------------------------
# list_instances, instance_info, instance_executions, metrics
# ---------------------------------------------------------------------------


def simple(
    catalog,
    iid,
    *,
    status="completed",
    label=None,
    created_at=None,
    result=ROWS_1,
    owner="postgres",
):
    N = catalog.Node
    node_id = iid[:7] + "1"
    terminal = status in ("completed", "failed")
    return catalog.add(
        catalog.Instance(
            iid,
            status=status,
            label=label,
            owner=owner,
            created_at=created_at,
            completed_at=created_at if status == "completed" else None,
            nodes=[
                N(
                    node_id,
                    "SQL",
                    "SELECT 1",
                    status=status if status in ("completed", "failed", "running") else "pending",
                    result=result if terminal else None,
                    stamp=f"{iid}::1" if status != "pending" else None,
                ),
            ],
        )
    )


def test_list_instances_basic_overload(database, catalog):
    simple(catalog, "10000000", created_at="2026-01-01T00:00:01Z", label="a")
    simple(catalog, "20000000", status="failed", result="boom", created_at="2026-01-01T00:00:02Z")
    simple(catalog, "30000000", status="pending", created_at="2026-01-01T00:00:03Z")
    assert database.execute("SELECT * FROM df.list_instances()") == [
        ("30000000", None, FN, "pending", 1, None),
        ("20000000", None, FN, "failed", 1, "boom"),
        ("10000000", "a", FN, "completed", 1, '{"rows": [{"x": 1}], "row_count": 1}'),
    ]
    assert database.execute("SELECT instance_id FROM df.list_instances('completed')") == [
        ("10000000",)
    ]
    assert database.execute("SELECT instance_id FROM df.list_instances(NULL, 1)") == [("30000000",)]
    assert database.execute(
        "SELECT instance_id FROM df.list_instances(status_filter => 'failed', limit_count => 5)"
    ) == [("20000000",)]


def test_list_instances_pages_with_a_keyset_cursor(database, catalog):
    # Seven instances; three share one created_at, two another (ties order by id).
    stamps = {
        "0000000a": "2026-01-01T00:00:05Z",
        "0000000b": "2026-01-01T00:00:04Z",
        "0000000c": "2026-01-01T00:00:04Z",
        "00000001": "2026-01-01T00:00:04Z",
        "0000000d": "2026-01-01T00:00:02Z",
        "00000002": "2026-01-01T00:00:02Z",
        "0000000e": "2026-01-01T00:00:01Z",
    }
    for iid, created in stamps.items():
        simple(catalog, iid, created_at=created, label="page")
    simple(catalog, "0000000f", created_at="2026-01-01T00:00:09Z", label="other")
    expected = ["0000000a", "00000001", "0000000b", "0000000c", "00000002", "0000000d", "0000000e"]

    seen, cursor, pages = [], None, 0
    while True:
        rows = database.execute(
            "SELECT instance_id, label, created_at IS NOT NULL, next_cursor"
            " FROM df.list_instances(NULL, 3, 'page', %s)",
            [cursor],
        )
        pages += 1
        assert {r[1] for r in rows} == {"page"}
        cursors = {r[3] for r in rows}
        assert len(cursors) == 1  # the same cursor on every row of a page
        seen += [r[0] for r in rows]
        cursor = cursors.pop()
        if cursor is None:
            break
        assert len(rows) == 3
    assert seen == expected
    assert pages == 3

    first = database.value("SELECT next_cursor FROM df.list_instances(NULL, 3, 'page') LIMIT 1")
    decoded = bytes.fromhex(first).decode()
    assert decoded.startswith("v1|2026-01-01T00:00:04.000000+00|")
    assert decoded.endswith("|0000000b")
    # A page holding everything has no next page.
    assert database.execute(
        "SELECT DISTINCT next_cursor FROM df.list_instances(NULL, 100, NULL)"
    ) == [(None,)]
    assert database.execute("SELECT count(*) FROM df.list_instances('completed', 100, 'page')") == [
        (7,)
    ]


@pytest.mark.parametrize(
    "cursor",
    [
        "zz",
        "abc",
        "",
        "76327c6e6f742d612d74696d657374616d707c616263",  # v1|not-a-timestamp|abc
        "76327c323032362d30312d30315430303a30303a30342e3030303030302b30307c61",  # v2|...
        "76317c323032362d31332d30315430303a30303a30342e3030303030302b30307c61",  # month 13
        "76317c323032362d30312d30315430303a30303a30342e3030303030302b30307c",  # no id
    ],
)
def test_invalid_cursor_is_an_error(database, cursor):
    with pytest.raises(db.DatabaseError, match="df.list_instances: invalid after_cursor"):
        database.execute("SELECT * FROM df.list_instances(NULL, 2, NULL, %s)", [cursor])


def test_limit_checks(database):
    for call in ("df.list_instances(NULL, 0)", "df.list_instances(NULL, 0, NULL)"):
        with pytest.raises(db.DatabaseError, match="limit_count must be at least 1"):
            database.execute(f"SELECT * FROM {call}")
    for call in ("df.list_instances(NULL, 1001)", "df.list_instances(NULL, 1001, NULL)"):
        with pytest.raises(
            db.DatabaseError, match=r"pg_durable\.list_instances_max_limit \(1000\)"
        ):
            database.execute(f"SELECT * FROM {call}")
    database.execute("SELECT * FROM df.list_instances(NULL, 1000)")
    database.execute("SELECT * FROM df.list_instances(NULL, 1000, NULL)")
    with database.connect() as conn:
        conn.execute("SET pg_durable.list_instances_max_limit = 3")
        conn.execute("SELECT * FROM df.list_instances(NULL, 3, NULL)")
        with pytest.raises(db.DatabaseError, match=r"list_instances_max_limit \(3\)"):
            conn.execute("SELECT * FROM df.list_instances(NULL, 4)")


def test_instance_info(database, catalog):
    simple(catalog, "40000000", label="lbl")
    assert database.execute("SELECT * FROM df.instance_info('40000000')") == [
        ("40000000", "lbl", FN, "1.0.0", 1, "completed", '{"rows": [{"x": 1}], "row_count": 1}')
    ]
    assert database.execute("SELECT * FROM df.instance_info('4fffffff')") == []


def test_cancelled_status_comes_from_the_catalog(database, catalog):
    simple(catalog, "41000000", status="running")
    database.execute("UPDATE df.instances SET status = 'cancelled' WHERE id = '41000000'")
    assert database.value("SELECT status FROM df.instance_info('41000000')") == "cancelled"
    assert database.value("SELECT status FROM df.list_instances()") == "cancelled"


def test_history_rows_drive_counts_and_output(database, catalog):
    N = catalog.Node
    catalog.add(
        catalog.Instance(
            "50000000",
            status="completed",
            nodes=[
                N(
                    "50000001",
                    "LOOP",
                    None,
                    "50000002",
                    status="completed",
                    result="done",
                    stamp="50000000::2",
                ),
                N(
                    "50000002",
                    "BREAK",
                    "{}",
                    status="completed",
                    result="done",
                    stamp="50000000::2",
                ),
            ],
            executions=[
                {
                    "execution_id": 1,
                    "status": "ContinuedAsNew",
                    "event_count": 7,
                    "started_at": "2026-01-01T00:00:00Z",
                    "completed_at": "2026-01-01T00:00:01.5Z",
                },
                {
                    "execution_id": 2,
                    "status": "Completed",
                    "event_count": 5,
                    "started_at": "2026-01-01T00:00:02Z",
                    "completed_at": "2026-01-01T00:00:02.25Z",
                    "output": '"done"',
                },
            ],
        )
    )
    assert database.execute("SELECT * FROM df.instance_executions('50000000')") == [
        (2, "Completed", 5, 250, '"done"'),
        (1, "ContinuedAsNew", 7, 1500, None),
    ]
    assert database.execute("SELECT execution_id FROM df.instance_executions('50000000', 1)") == [
        (2,)
    ]
    assert database.execute("SELECT execution_count, output FROM df.list_instances()") == [
        (2, '"done"')
    ]
    with pytest.raises(db.DatabaseError, match="limit_count must be at least 1"):
        database.execute("SELECT * FROM df.instance_executions('50000000', 0)")


def test_executions_without_history_rows_are_reconstructed(database, catalog):
    N = catalog.Node
    catalog.add(
        catalog.Instance(
            "51000000",
            status="failed",
            nodes=[
                N(
                    "51000001",
                    "LOOP",
                    None,
                    "51000002",
                    status="failed",
                    result="boom",
                    stamp="51000000::3",
                ),
                N(
                    "51000002",
                    "SQL",
                    "SELECT 1/0",
                    status="failed",
                    result="boom",
                    stamp="51000000::3",
                ),
            ],
        )
    )
    simple(catalog, "52000000", status="pending")
    assert database.execute("SELECT * FROM df.instance_executions('51000000')") == [
        (3, "Failed", 0, 0, "boom"),
        (2, "ContinuedAsNew", 0, 0, None),
        (1, "ContinuedAsNew", 0, 0, None),
    ]
    assert database.execute("SELECT * FROM df.instance_executions('52000000')") == []
    assert database.execute("SELECT * FROM df.instance_executions('5fffffff')") == []


def test_metrics(database, catalog):
    simple(catalog, "60000000")
    simple(catalog, "61000000", status="failed", result="boom")
    simple(catalog, "62000000", status="running")
    simple(catalog, "63000000", status="pending")
    catalog.add(
        catalog.Instance(
            "64000000",
            status="completed",
            nodes=[
                catalog.Node(
                    "64000001",
                    "SQL",
                    "SELECT 1",
                    status="completed",
                    result=ROWS_1,
                    stamp="64000000::1",
                )
            ],
            executions=[{"execution_id": 1, "status": "Completed", "event_count": 4}],
        )
    )
    database.execute("UPDATE df.instances SET status = 'cancelled' WHERE id = '62000000'")
    assert database.execute("SELECT * FROM df.metrics()") == [(5, 1, 2, 2, 5, 4)]


# ---------------------------------------------------------------------------
# Row-level security
# ---------------------------------------------------------------------------


def test_other_roles_instances_are_invisible(database, catalog, alice, bob):
    N = catalog.Node
    catalog.add(
        catalog.Instance(
            "70000000",
            owner=alice,
            status="completed",
            nodes=[
                N(
                    "70000001",
                    "SQL",
                    "SELECT 1",
                    status="completed",
                    result=ROWS_1,
                    stamp="70000000::1",
                )
            ],
            executions=[{"execution_id": 1, "status": "Completed", "event_count": 3}],
        )
    )
    simple(catalog, "71000000", owner=bob)

    def ids(user, sql):
        return [r[0] for r in database.execute(sql, user=user)]

    assert ids(alice, "SELECT instance_id FROM df.list_instances()") == ["70000000"]
    assert ids(bob, "SELECT instance_id FROM df.list_instances()") == ["71000000"]
    assert ids(bob, "SELECT instance_id FROM df.list_instances(NULL, 10, NULL)") == ["71000000"]
    assert ids(bob, "SELECT instance_id FROM df.instance_info('70000000')") == []
    assert ids(bob, "SELECT node_id FROM df.instance_nodes('70000000')") == []
    assert ids(bob, "SELECT node_id FROM df.instance_nodes('70000000', 1)") == []
    assert ids(bob, "SELECT execution_id FROM df.instance_executions('70000000')") == []
    assert ids(bob, "SELECT execution_id FROM pgdurable.executions") == []
    assert ids(alice, "SELECT execution_id FROM df.instance_executions('70000000')") == [1]
    assert database.value("SELECT df.explain('70000000')", user=bob) == (
        "Instance '70000000' not found"
    )
    with pytest.raises(db.DatabaseError, match="permission denied"):
        database.execute("SELECT * FROM df.metrics()", user=bob)


def test_instance_started_with_df_start(database, catalog, alice):
    iid = database.value("SELECT df.start(df.seq('SELECT 1', 'SELECT 2'), 'real')", user=alice)
    assert database.execute("SELECT * FROM df.list_instances()", user=alice) == [
        (iid, "real", FN, "pending", 1, None)
    ]
    nodes = database.execute(
        "SELECT node_type, status, inferred_status, inferred_status_from_ancestor_id"
        " FROM df.instance_nodes(%s) ORDER BY node_type",
        [iid],
        user=alice,
    )
    assert nodes == [
        ("SQL", "pending", "pending", None),
        ("SQL", "pending", "pending", None),
        ("THEN", "pending", "pending", None),
    ]
    assert database.value("SELECT df.explain(%s)", [iid], user=alice) == (
        f"Instance: {iid} (real)\nStatus:   ○ pending\n\n"
        + catalog.pad("SQL: SELECT 1 ○", "→ SQL: SELECT 2 ○")
    )
    assert database.execute("SELECT * FROM df.instance_executions(%s)", [iid], user=alice) == []


# ---------------------------------------------------------------------------
# Other
# ---------------------------------------------------------------------------


def test_other_functions(database):
    assert database.value("SELECT df.version()").startswith("0.2.6 (built ")
    assert database.value("SELECT df.version()").endswith("Z)")
    assert database.value("SELECT df.target_database()") == database.name
    assert database.value("SELECT df.duroxide_schema()") == "_duroxide"
    assert database.value("SELECT df.run()") == "Triggered run for all pending instances"
    assert database.value("SELECT df.run('abcd1234')") == "Triggered run for instance: abcd1234"
