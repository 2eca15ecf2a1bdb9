"""Every node type end to end, through the DSL as users write it."""

from __future__ import annotations

import json


def start(database, expr: str, label: str | None = None) -> str:
    return database.value(f"SELECT df.start({expr}, %s)", [label], user="alice")


def test_if_takes_the_branch_its_condition_selects(wf, database):
    yes = start(database, "df.if('SELECT 1 > 0', 'SELECT ''yes'' AS r', 'SELECT ''no'' AS r')")
    no = start(database, "df.if('SELECT ''f''::text', 'SELECT ''yes'' AS r', 'SELECT ''no'' AS r')")
    empty = start(database, "df.if('SELECT 1 WHERE false', 'SELECT 1 AS r', 'SELECT 2 AS r')")
    wf.run()
    assert wf.result(yes)["rows"] == [{"r": "yes"}]
    assert wf.result(no)["rows"] == [{"r": "no"}]
    assert wf.result(empty)["rows"] == [{"r": 2}]
    statuses = sorted(row[1] for row in wf.nodes(yes))
    assert statuses == ["completed", "completed", "completed", "pending"]  # untaken arm


def test_if_rows_checks_a_named_result(wf, database):
    instance = start(
        database,
        "(('SELECT 1 AS x WHERE false' |=> 'r') ~> df.if_rows('r', 'SELECT ''some'' AS a', 'SELECT ''none'' AS a'))",
    )
    missing = start(database, "df.if_rows('nope', 'SELECT 1', 'SELECT 2')")
    wf.run()
    assert wf.result(instance)["rows"] == [{"a": "none"}]
    assert wf.output(missing) == "df.if_rows: result 'nope' not found"


def test_join_of_three_branches_runs_them_concurrently_and_merges_names(wf, database):
    # Each branch waits for the others to have started: only concurrent branches finish.
    database.execute("CREATE TABLE arrivals (b int)")
    database.execute("GRANT ALL ON arrivals TO alice")
    branch = (
        "INSERT INTO arrivals VALUES ({n}); "
        "DO $$ BEGIN WHILE (SELECT count(*) FROM arrivals) < 3 LOOP PERFORM pg_sleep(0.01); "
        "END LOOP; END $$; SELECT {n} AS b"
    )
    # Inserts are visible to the others only once committed: branch text commits nothing
    # until the end, so use separate autocommitted marks through dblink-free means: a
    # sequence increments outside transactions.
    database.execute("CREATE SEQUENCE seen")
    database.execute("GRANT ALL ON SEQUENCE seen TO alice")
    branch = (
        "SELECT nextval('seen'); DO $$ BEGIN WHILE (SELECT last_value FROM seen) < 3 LOOP "
        "PERFORM pg_sleep(0.01); END LOOP; END $$; SELECT {n} AS b"
    )
    graph = wf.join(
        wf.sql(branch.format(n=1), name="one"),
        wf.sql(branch.format(n=2), name="two"),
        wf.sql(branch.format(n=3), name="three"),
    )
    instance = wf.start(wf.then(graph, wf.sql("SELECT $one + $two + $three AS total")))
    wf.run()
    assert wf.result(instance)["rows"] == [{"total": 6}]
    join_result = database.value(
        "SELECT result FROM df.nodes WHERE instance_id = %s AND node_type = 'JOIN'", [instance]
    )
    assert [r["rows"][0]["b"] for r in join_result] == [1, 2, 3]


def test_join_reports_the_first_failed_branch(wf):
    instance = wf.start(wf.join(wf.sql("SELECT 1"), wf.sql("SELECT 1/0")))
    wf.run()
    assert wf.output(instance) == (
        "JOIN branch 2 failed: SQL execution failed: error returned from database: division by zero"
    )


def test_race_sleep_against_signal_is_won_by_the_signal(wf, database, background_worker):
    instance = start(database, "df.race(df.sleep(30), df.wait_for_signal('go'))")
    background_worker()
    wf_status = lambda: wf.status(instance)  # noqa: E731
    from pgdurable.testing import wait_for

    wait_for(
        lambda: (
            database.value(
                "SELECT waiting_signals FROM pgdurable.runs WHERE instance_id = %s", [instance]
            )
            == ["go"]
        ),
        what="the race to wait",
    )
    database.execute("SELECT df.signal(%s, 'go', '{\"k\":1}')", [instance], user="alice")
    wf.wait_status(instance)
    assert wf_status() == "completed"
    assert wf.result(instance) == {"signal_name": "go", "timed_out": False, "data": {"k": 1}}


def test_race_of_two_sql_branches_keeps_one_winner(wf, database):
    instance = start(database, "('SELECT pg_sleep(0.5), 1 AS slow' | 'SELECT 2 AS fast')")
    wf.run()
    assert wf.result(instance)["rows"] == [{"fast": 2}]


def test_sleep_is_a_durable_timer(wf, database):
    instance = start(database, "(df.sleep(1) ~> 'SELECT 1 AS done')")
    outcomes = wf.run()
    assert wf.status(instance) == "completed"
    assert outcomes.get("suspended", 0) >= 1  # it waited as a row, not a coroutine
    sleep = database.value(
        "SELECT result FROM df.nodes WHERE instance_id = %s AND node_type = 'SLEEP'", [instance]
    )
    assert sleep == {"slept": True, "seconds": 1}


def test_signal_sent_before_the_wait_is_kept_fifo(wf, database):
    instance = start(
        database,
        "(df.wait_for_signal('s') |=> 'a' ~> df.wait_for_signal('s') |=> 'b' ~> 'SELECT $a.data AS a, $b.data AS b')",
    )
    database.execute("SELECT df.signal(%s, 's', '1')", [instance], user="alice")
    database.execute("SELECT df.signal(%s, 's', 'two')", [instance], user="alice")
    wf.run()
    assert wf.result(instance)["rows"] == [{"a": 1, "b": "two"}]


def test_signal_timeout_gives_timed_out_result(wf, database):
    instance = start(database, "df.wait_for_signal('never', 1)")
    wf.run()
    assert wf.result(instance) == {"signal_name": "never", "timed_out": True, "data": None}


def test_root_loop_counts_generations_and_resets_names(wf, database):
    database.execute("CREATE TABLE c (n int)")
    database.execute("INSERT INTO c VALUES (0)")
    database.execute("GRANT ALL ON c TO alice")
    instance = start(
        database,
        "df.loop('UPDATE c SET n = n + 1 RETURNING n' |=> 'x', 'SELECT $x < 2')",
    )
    wf.run()
    assert wf.status(instance) == "completed"
    assert database.value("SELECT n FROM c") == 2
    assert wf.result(instance)["rows"] == [{"n": 2}]
    executions = database.execute(
        "SELECT execution_id, status FROM pgdurable.executions WHERE instance_id = %s ORDER BY 1",
        [instance],
    )
    assert executions == [(1, "ContinuedAsNew"), (2, "Completed")]
    loop_details = database.value(
        "SELECT status_details FROM df.nodes WHERE instance_id = %s AND node_type = 'LOOP'",
        [instance],
    )
    assert loop_details == {"execution_id": f"{instance}::2"}


def test_nested_loop_with_break_from_a_join_branch(wf, database):
    database.execute("CREATE TABLE c (n int)")
    database.execute("INSERT INTO c VALUES (0)")
    database.execute("GRANT ALL ON c TO alice")
    instance = start(
        database,
        "('SELECT 10 AS base' |=> 'base' ~> @> ('UPDATE c SET n = n + 1 RETURNING n' |=> 'k'"
        " ~> ('SELECT 1' & df.if('SELECT $k >= 2', df.break('done'), 'SELECT 0')))"
        " |=> 'loop' ~> 'SELECT $base AS base, $loop AS loop_value')",
    )
    wf.run()
    assert wf.status(instance) == "completed", wf.output(instance)
    assert database.value("SELECT n FROM c") == 2
    assert wf.result(instance)["rows"] == [{"base": 10, "loop_value": '"done"'}]


def test_break_outside_a_loop_fails(wf, database):
    instance = start(database, "df.break('x')")
    wf.run()
    assert wf.output(instance) == (
        "df.break() was called outside of a loop. df.break() may only be used inside df.loop()."
    )


def test_wait_for_schedule_fires_at_the_next_minute(wf, database):
    instance = start(database, "(df.wait_for_schedule('* * * * *') ~> 'SELECT now() AS at')")
    wf.run()
    at = wf.result(instance)["rows"][0]["at"]
    assert at[17:19] in ("00", "01")  # within a second of the minute boundary
    assert database.value(
        "SELECT result FROM df.nodes WHERE instance_id = %s AND node_type = 'WAIT_SCHEDULE'",
        [instance],
    ) == {"scheduled": True}


def test_cancel_stops_a_waiting_instance(wf, database):
    instance = start(database, "(df.wait_for_signal('never') ~> 'SELECT 1')")
    wf.run()
    database.execute("SELECT df.cancel(%s)", [instance], user="alice")
    database.execute("SELECT df.signal(%s, 'never')", [instance], user="alice")
    wf.run()
    assert wf.status(instance) == "cancelled"
    assert json.dumps(wf.nodes(instance)).count("completed") == 0
    # The cancel made the run claimable (a finished instance stores no signal);
    # the worker only removed it.
    assert database.value("SELECT count(*) FROM pgdurable.runs") == 0
