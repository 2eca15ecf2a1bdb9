"""End-to-end runs of simple workflows: SQL results, THEN, stamps, failures."""

from __future__ import annotations

import json


def test_single_sql_step_completes_with_its_rows(wf):
    instance = wf.start(wf.sql("SELECT 1 AS a, 'x'::text AS b"))
    wf.run()
    assert wf.status(instance) == "completed"
    assert wf.result(instance) == {"rows": [{"a": 1, "b": "x"}], "row_count": 1}
    ((_, status, _, details),) = wf.nodes(instance)
    assert status == "completed" and details == {"execution_id": f"{instance}::1"}


def test_then_runs_in_order_and_returns_the_right_result(wf, database):
    database.execute("CREATE TABLE log (n int)")
    database.execute("GRANT ALL ON log TO alice")
    instance = wf.start(
        wf.then(
            wf.sql("INSERT INTO log VALUES (1)"),
            wf.sql("INSERT INTO log SELECT max(n) + 1 FROM log"),
            wf.sql("SELECT array_agg(n ORDER BY n)::text AS ns FROM log"),
        )
    )
    wf.run()
    assert wf.result(instance) == {"rows": [{"ns": "{1,2}"}], "row_count": 1}
    assert {row[1] for row in wf.nodes(instance)} == {"completed"}


def test_a_failing_step_fails_the_run_and_skips_the_rest(wf, database):
    instance = wf.start(wf.then(wf.sql("SELECT * FROM missing_table"), wf.sql("SELECT 2")))
    wf.run()
    assert wf.status(instance) == "failed"
    error = 'SQL execution failed: error returned from database: relation "missing_table" does not exist'
    assert wf.output(instance) == error
    statuses = sorted((t, s) for t, s, _, _ in wf.nodes(instance))
    assert statuses == [("SQL", "failed"), ("SQL", "pending"), ("THEN", "failed")]
    assert database.value("SELECT completed_at FROM df.instances WHERE id = %s", [instance]) is None


def test_multi_statement_text_is_one_atomic_transaction(wf, database):
    database.execute("CREATE TABLE t (n int PRIMARY KEY)")
    database.execute("GRANT ALL ON t TO alice")
    database.execute("INSERT INTO t VALUES (1)")
    ok = wf.start(
        wf.sql("INSERT INTO t VALUES (2); INSERT INTO t VALUES (4); SELECT count(*) AS c FROM t")
    )
    bad = wf.start(wf.sql("INSERT INTO t VALUES (3); INSERT INTO t VALUES (1)"))
    wf.run()
    assert wf.result(ok) == {"rows": [{"c": 3}], "row_count": 1}  # the last statement's rows
    assert wf.status(bad) == "failed"
    assert database.value("SELECT array_agg(n ORDER BY n) FROM t") == [1, 2, 4]  # 3 rolled back


def test_non_transactional_statement_runs_at_least_once(wf, database):
    database.execute("CREATE TABLE v (n int)")
    database.execute("ALTER TABLE v OWNER TO alice")
    instance = wf.start(wf.sql("VACUUM v"))
    wf.run()
    assert wf.status(instance) == "completed"
    ((_, _, _, details),) = wf.nodes(instance)
    assert details == {"execution_id": f"{instance}::1", "delivery": "at_least_once"}


def test_type_mapping(wf):
    query = (
        "SELECT true AS b, 2::int2 AS s, 3::int8 AS l, 0.1::float4 AS f4, 'NaN'::float8 AS nan,"
        " 1.50::numeric AS n, 'ab'::char(3) AS c, '00000000-0000-0000-0000-000000000001'::uuid AS u,"
        " '2024-01-02 03:04:05.5+02'::timestamptz AS tz, '2024-01-02 03:04:05'::timestamp AS ts,"
        " '2024-01-02'::date AS d, '{\"k\":[1]}'::jsonb AS j, NULL::int AS z, pg_sleep(0) AS v"
    )
    instance = wf.start(wf.sql(query))
    wf.run()
    (row,) = wf.result(instance)["rows"]
    assert row == {
        "b": True,
        "s": 2,
        "l": 3,
        "f4": 0.10000000149011612,
        "nan": None,
        "n": "1.50",
        "c": "ab ",
        "u": "00000000-0000-0000-0000-000000000001",
        "tz": "2024-01-02T01:04:05.500+00:00",
        "ts": "2024-01-02T03:04:05",
        "d": "2024-01-02",
        "j": {"k": [1]},
        "z": None,
        "v": None,
    }
    raw = wf.database.value(
        "SELECT result::text FROM pgdurable.journal WHERE instance_id = %s", [instance]
    )
    # The journal keeps column order (df.nodes.result is jsonb, which does not).
    assert list(json.loads(raw)["rows"][0]) == [
        "b",
        "s",
        "l",
        "f4",
        "nan",
        "n",
        "c",
        "u",
        "tz",
        "ts",
        "d",
        "j",
        "z",
        "v",
    ]


def test_unsupported_type_fails(wf):
    instance = wf.start(wf.sql("SELECT '1 day'::interval AS i"))
    wf.run()
    assert wf.status(instance) == "failed"
    assert wf.output(instance).startswith("Unsupported column type 'INTERVAL' for column 'i'.")


def test_more_instances_than_slots_all_complete(wf):
    # With every slot busy the worker asks when to look again while runnable
    # runs wait ('-infinity' wake time): that must not break the loop.
    ids = [wf.start(wf.sql("SELECT pg_sleep(0.05)")) for _ in range(6)]
    wf.run(concurrency=2)
    assert [wf.status(i) for i in ids] == ["completed"] * 6
