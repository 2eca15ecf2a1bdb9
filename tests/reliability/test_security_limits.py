"""Issue 16, the limits a role granted df.grant_usage cannot get around.

- Fair shares: one role's long steps cannot take every slot of a worker;
  another role's instance still runs.
- The step time limit (``pgdurable.step_timeout``, administrator-only)
  cancels a statement that runs too long, ends a session that ignores the
  cancel, and fails the node.
- ``df.cancel`` of an instance whose step is running ends its run: it is
  never claimed again, and other instances keep their leases.
- Text with top-level transaction control is never claimed exactly-once.
- A frozen worker's open step transaction is ended by the server.
- Pooled sessions of a dropped role are not handed to a new role of that name.
- Limits read by the runtime come from the administrator's configuration,
  never from a session's settings.
"""

from __future__ import annotations

import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from pgdurable.testing import spawn_worker, stop_process, wait_for
from pgdurable.worker.step_text import transaction_control

STEP_BACKENDS = (
    "SELECT pid, state FROM pg_stat_activity"
    " WHERE application_name = 'pg_durable:worker:workflow-sql' AND query LIKE %s"
)


def sql(query: str) -> str:
    return json.dumps({"node_type": "SQL", "query": query})


def status(database, instance: str) -> str:
    return database.value("SELECT status FROM df.instances WHERE id = %s", [instance])


def output(database, instance: str):
    return database.value(
        "SELECT n.result #>> '{}' FROM df.instances i JOIN df.nodes n"
        " ON n.id = i.root_node AND n.instance_id = i.id WHERE i.id = %s",
        [instance],
    )


def wait_terminal(database, instance: str, timeout: float = 30) -> str:
    wait_for(
        lambda: status(database, instance) in ("completed", "failed", "cancelled"),
        timeout=timeout,
        what=f"{instance} to finish",
    )
    return status(database, instance)


def end_backends(database, pattern: str) -> None:
    """Steps a test left running on the server (the worker was killed)."""
    database.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE query LIKE %s AND pid <> pg_backend_pid()",
        [pattern],
    )


def users(database, *names: str) -> None:
    for name in names:
        database.create_role(name)
        database.execute(f"SELECT df.grant_usage('{name}')")


@pytest.fixture
def step_timeout(database):
    """Sets pgdurable.step_timeout the administrator's way (ALTER SYSTEM) and
    removes it afterwards: the cluster is shared by the session's tests."""

    def configure(value: str | None) -> None:
        with database.connect() as conn:
            # ALTER SYSTEM knows a custom setting once the session has it.
            conn.execute("SELECT set_config('pgdurable.step_timeout', '', false)")
            if value is None:
                conn.execute("ALTER SYSTEM RESET pgdurable.step_timeout")
            else:
                conn.execute(f"ALTER SYSTEM SET pgdurable.step_timeout = '{value}'")
            conn.execute("SELECT pg_reload_conf()")

    yield configure
    configure(None)


class _Hanging(BaseHTTPRequestHandler):
    """Answers nothing until the test ends; tells the test it was reached."""

    reached = threading.Event()
    release = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).reached.set()
        type(self).release.wait(60)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hanging_url():
    _Hanging.reached.clear()
    _Hanging.release.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Hanging)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hang"
    _Hanging.release.set()
    httpd.shutdown()
    httpd.server_close()


# -- 4. fair shares and the step time limit ----------------------------------------


def test_one_role_cannot_take_every_slot(database, tmp_path):
    users(database, "hog", "bystander")
    hogs = [
        database.value("SELECT df.start(%s)", [sql("SELECT pg_sleep(100000)")], user="hog")
        for _ in range(5)
    ]
    worker = spawn_worker(database.conninfo(), "--concurrency", "5", log=tmp_path / "w.log")
    try:
        wait_for(
            lambda: len(database.execute(STEP_BACKENDS, ["%pg_sleep(100000)%"])) == 5,
            what="five hog steps running",
        )
        honest = database.value("SELECT df.start(%s)", [sql("SELECT 42 AS n")], user="bystander")
        assert wait_terminal(database, honest) == "completed"
        assert json.loads(output(database, honest))["rows"] == [{"n": 42}]
        # The hog's steps were not touched to make room.
        assert len(database.execute(STEP_BACKENDS, ["%pg_sleep(100000)%"])) == 5
        assert all(status(database, hog) == "running" for hog in hogs)
        # A second instance of the bystander also runs; the hog gets no sixth slot.
        more_hog = database.value("SELECT df.start(%s)", [sql("SELECT 1")], user="hog")
        second = database.value("SELECT df.start(%s)", [sql("SELECT 2")], user="bystander")
        assert wait_terminal(database, second) == "completed"
        assert status(database, more_hog) == "pending"
    finally:
        stop_process(worker)
        end_backends(database, "%pg_sleep(100000)%")


def test_one_role_alone_uses_every_slot(database, tmp_path):
    users(database, "alone")
    for _ in range(4):
        database.value("SELECT df.start(%s)", [sql("SELECT pg_sleep(100000)")], user="alone")
    worker = spawn_worker(database.conninfo(), "--concurrency", "4", log=tmp_path / "w.log")
    try:
        wait_for(
            lambda: len(database.execute(STEP_BACKENDS, ["%pg_sleep(100000)%"])) == 4,
            what="four steps of one role running at once",
        )
    finally:
        stop_process(worker)
        end_backends(database, "%pg_sleep(100000)%")


def test_a_step_longer_than_the_time_limit_is_cancelled_and_fails(
    database, tmp_path, step_timeout, hanging_url
):
    users(database, "slow")
    database.execute("SELECT df.grant_usage('slow', true)")
    database.execute(f"ALTER DATABASE {database.name} SET pg_durable.http_policy = 'allow-all'")
    step_timeout("2s")
    # A role's value is not the administrator's; a database's may not lift it.
    database.execute("ALTER ROLE slow SET pgdurable.step_timeout = '0'")
    database.execute(f"ALTER DATABASE {database.name} SET pgdurable.step_timeout = '0'")
    sleeper = database.value("SELECT df.start(%s)", [sql("SELECT pg_sleep(100000)")], user="slow")
    stubborn = database.value(  # catches the cancel and sleeps on: its session is ended
        "SELECT df.start(%s)",
        [
            sql(
                "DO $$ BEGIN LOOP BEGIN PERFORM pg_sleep(100000);"
                " EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$"
            )
        ],
        user="slow",
    )
    quick = database.value("SELECT df.start(%s)", [sql("SELECT pg_sleep(0.5)")], user="slow")
    config = {"url": hanging_url, "method": "GET", "timeout_seconds": 100000}
    http = database.value(
        "SELECT df.start(%s)",
        [json.dumps({"node_type": "HTTP", "query": json.dumps(config)})],
        user="slow",
    )
    worker = spawn_worker(database.conninfo(), "--until-idle", log=tmp_path / "w.log")
    try:
        worker.wait(90)
    finally:
        stop_process(worker)
        end_backends(database, "%pg_sleep(100000)%")
    for instance in (sleeper, stubborn):
        assert status(database, instance) == "failed"
        assert "pgdurable.step_timeout (2 s)" in output(database, instance)
    assert status(database, quick) == "completed"
    assert status(database, http) == "failed"
    assert "pgdurable.step_timeout (2 s)" in output(database, http)
    assert not database.execute(STEP_BACKENDS, ["%pg_sleep(100000)%"])


def test_a_database_may_lower_the_step_time_limit(database, tmp_path):
    users(database, "slow")
    database.execute(f"ALTER DATABASE {database.name} SET pgdurable.step_timeout = '1s'")
    sleeper = database.value("SELECT df.start(%s)", [sql("SELECT pg_sleep(100000)")], user="slow")
    worker = spawn_worker(database.conninfo(), "--until-idle", log=tmp_path / "w.log")
    try:
        worker.wait(60)
    finally:
        stop_process(worker)
        end_backends(database, "%pg_sleep(100000)%")
    assert status(database, sleeper) == "failed"
    assert "pgdurable.step_timeout (1 s)" in output(database, sleeper)


# -- 6. a cancelled run is never claimed again -------------------------------------


@pytest.mark.parametrize("kind", ["sql", "http"])
def test_a_run_cancelled_during_its_step_is_not_claimed_again(
    database, tmp_path, hanging_url, kind
):
    users(database, "bystander")
    database.create_role("canceller")
    database.execute("SELECT df.grant_usage('canceller', true)")
    database.execute(f"ALTER DATABASE {database.name} SET pg_durable.http_policy = 'allow-all'")
    database.execute(
        "CREATE TABLE claims_seen (instance_id text, epoch bigint);"
        " CREATE FUNCTION note_claim() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " INSERT INTO public.claims_seen VALUES (NEW.instance_id, NEW.epoch); RETURN NULL; END $$;"
        " CREATE TRIGGER note_claim AFTER UPDATE OF epoch ON pgdurable.runs"
        " FOR EACH ROW EXECUTE FUNCTION note_claim()"
    )
    if kind == "sql":
        step = sql("SELECT pg_sleep(60) AS cancelled_step")
    else:
        config = {"url": hanging_url, "method": "GET", "timeout_seconds": 60}
        step = json.dumps({"node_type": "HTTP", "query": json.dumps(config)})
    victim = database.value("SELECT df.start(%s)", [step], user="canceller")
    others = [
        database.value("SELECT df.start(%s)", [sql("SELECT pg_sleep(4)")], user="bystander")
        for _ in range(2)
    ]
    worker = spawn_worker(database.conninfo(), "--lease-seconds", "2", log=tmp_path / "w.log")
    try:
        if kind == "sql":
            wait_for(
                lambda: database.execute(STEP_BACKENDS, ["%cancelled_step%"]),
                what="the step to run",
            )
        else:
            assert _Hanging.reached.wait(10), "the request never arrived"
        database.execute("SELECT df.cancel(%s)", [victim], user="canceller")
        wait_for(
            lambda: (
                not database.value(
                    "SELECT count(*) FROM pgdurable.runs WHERE instance_id = %s", [victim]
                )
            ),
            what="the cancelled run to end",
        )
        for other in others:
            assert wait_terminal(database, other) == "completed"
    finally:
        stop_process(worker)
        end_backends(database, "%cancelled_step%")
    assert status(database, victim) == "cancelled"
    seen = database.execute("SELECT instance_id, epoch FROM claims_seen ORDER BY 1, 2")
    assert [epoch for iid, epoch in seen if iid == victim] == [1]
    for other in others:  # claimed once, their leases kept through the cancel
        assert [epoch for iid, epoch in seen if iid == other] == [1]


# -- 7. the completion transaction is the worker's alone -----------------------------


TRANSACTION_CONTROL = {
    "commit_begin": "INSERT INTO ledger VALUES (1); COMMIT; BEGIN; INSERT INTO ledger VALUES (2)",
    "commit": "INSERT INTO ledger VALUES (1); COMMIT",
    "rollback": "INSERT INTO ledger VALUES (1);\nROLLBACK",
    "begin": "BEGIN; INSERT INTO ledger VALUES (1)",
    "start": "/* x */ START TRANSACTION; INSERT INTO ledger VALUES (1)",
    "end": "INSERT INTO ledger VALUES (1); end",
    "chain": "INSERT INTO ledger VALUES (1); COMMIT AND CHAIN; INSERT INTO ledger VALUES (2)",
}

NOT_TRANSACTION_CONTROL = {
    "comment": "INSERT INTO ledger VALUES (1) -- ; COMMIT; BEGIN\n",
    "block_comment": "INSERT INTO ledger VALUES (1) /* ; COMMIT; /* nested */ BEGIN; */",
    "string": "INSERT INTO ledger SELECT length('; COMMIT; BEGIN')",
    "dollar": "INSERT INTO ledger SELECT length($q$; COMMIT; BEGIN$q$)",
    "do_block": "DO $$ BEGIN INSERT INTO ledger VALUES (1); END $$",
    "savepoint": "SAVEPOINT s; INSERT INTO ledger VALUES (9); ROLLBACK TO SAVEPOINT s;"
    " RELEASE s; INSERT INTO ledger VALUES (1)",
    "atomic": "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;"
    " INSERT INTO ledger VALUES (1)",
    "quoted_identifier": 'INSERT INTO ledger SELECT 1 AS "; COMMIT"',
}


def test_top_level_transaction_control_is_refused_at_start(database):
    users(database, "writer")
    for name, text in TRANSACTION_CONTROL.items():
        with pytest.raises(psycopg.Error, match="transaction control") as raised:
            database.value("SELECT df.start(%s)", [sql(text)], user="writer")
        assert "~>" in str(raised.value), name  # the error says how to split the step
    assert database.value("SELECT count(*) FROM df.instances") == 0


EDGE_CASES = [
    "SELECT E'\\'; COMMIT; '",  # an escape string hides it
    "SELECT 'a\\'; COMMIT; SELECT 'b'",  # standard strings: a backslash is a character
    "SELECT $1; COMMIT",  # a parameter is no dollar quote
    "SELECT 1 AS a$b$; COMMIT",  # nor is a $ inside an identifier
    "SELECT $x$ ; COMMIT $x$",
    "SELECT 'unterminated; COMMIT",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1"
    " END; END; COMMIT",
    "SELECT 1; commit\n",
    "ROLLBACK TO s",
    "ROLLBACK PREPARED 'x'",
    "select 1 /* unterminated; COMMIT",
    "SELECT 'é'; COMMIT",
    "SELECT 2 --x\r; COMMIT; SELECT 1",  # a comment ends at a carriage return too
    "SELECT 2 --x\r\n; COMMIT",
]


def test_a_comment_ends_at_a_carriage_return_as_in_postgresql():
    # otherwise `--x<CR>; ROLLBACK; BEGIN` would end the step's transaction unseen
    assert transaction_control("SELECT 2 --x\r; ROLLBACK; BEGIN; SELECT 1") == "rollback"
    assert transaction_control("SELECT 2 --x; ROLLBACK") is None


def test_df_start_and_the_worker_read_transaction_control_alike(database):
    texts = [*TRANSACTION_CONTROL.values(), *NOT_TRANSACTION_CONTROL.values(), *EDGE_CASES]
    for text in texts:
        in_sql = database.value("SELECT pgdurable.transaction_control_in(%s)", [text])
        assert in_sql == transaction_control(text), text


def test_transaction_control_never_runs_as_an_exactly_once_step(database, tmp_path):
    """What df.start cannot see (a variable substituted raw, rows written
    around df.start) the worker refuses before running anything."""
    users(database, "writer")
    database.execute("CREATE TABLE ledger (v int); GRANT ALL ON ledger TO writer")
    with database.connect("writer") as conn:
        conn.execute("SELECT df.setvar('glue', 'COMMIT; BEGIN')")
        substituted = conn.execute(
            "SELECT df.start(%s)",
            [sql("INSERT INTO ledger VALUES (1); {glue}; INSERT INTO ledger VALUES (2)")],
        ).fetchone()[0]
    with database.connect("writer", autocommit=False) as conn:
        conn.execute(
            "INSERT INTO df.instances (id, root_node, submitted_by) VALUES"
            " ('0000fff1', '0000fff1', 'writer')"
        )
        conn.execute(
            "INSERT INTO df.nodes (id, instance_id, node_type, query, submitted_by) VALUES"
            " ('0000fff1', '0000fff1', 'SQL', %s, 'writer')",
            [TRANSACTION_CONTROL["commit_begin"]],
        )
        conn.commit()
    fine = {
        name: database.value("SELECT df.start(%s)", [sql(text)], user="writer")
        for name, text in NOT_TRANSACTION_CONTROL.items()
    }
    worker = spawn_worker(database.conninfo(), "--until-idle", log=tmp_path / "w.log")
    try:
        worker.wait(90)
    finally:
        stop_process(worker)
    for instance in (substituted, "0000fff1"):
        assert status(database, instance) == "failed", output(database, instance)
        assert "transaction control" in output(database, instance)
    for name, instance in fine.items():
        assert status(database, instance) == "completed", (name, output(database, instance))
    assert database.value("SELECT count(*) FROM ledger") == len(fine)


def test_a_frozen_workers_open_step_does_not_block_the_next_owner(database, tmp_path):
    users(database, "alice")
    database.execute(
        "CREATE TABLE counter (id int PRIMARY KEY, n int); INSERT INTO counter VALUES (1, 0);"
        " GRANT ALL ON counter TO alice"
    )
    instance = database.value(
        "SELECT df.start(%s)",
        [sql("UPDATE counter SET n = n + 1 WHERE id = 1; SELECT pg_sleep(1.5)")],
        user="alice",
    )
    options = ("--lease-seconds", "2", "--concurrency", "1")
    first = spawn_worker(database.conninfo(), *options, log=tmp_path / "a.log")
    second = None
    try:
        running = wait_for(
            lambda: database.execute(STEP_BACKENDS, ["%pg_sleep(1.5)%"]),
            what="the first worker's step",
        )
        first.send_signal(signal.SIGSTOP)
        frozen = running[0][0]
        wait_for(
            lambda: (
                database.value("SELECT state FROM pg_stat_activity WHERE pid = %s", [frozen])
                == "idle in transaction"
            ),
            what="the frozen step's transaction",
        )
        second = spawn_worker(database.conninfo(), *options, log=tmp_path / "b.log")
        # The frozen session holds the row lock until the server ends it.
        assert wait_terminal(database, instance, timeout=30) == "completed"
        assert database.value("SELECT n FROM counter WHERE id = 1") == 1
        assert not database.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [frozen])
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGCONT)
        stop_process(first)
        if second is not None:
            stop_process(second)


def test_a_recreated_role_gets_fresh_sessions(database, tmp_path):
    users(database, "tenant")
    database.execute("CREATE TABLE visits (who text)")
    database.execute("GRANT ALL ON visits TO tenant")
    step = sql("INSERT INTO visits SELECT current_user RETURNING who")
    worker = spawn_worker(database.conninfo(), log=tmp_path / "w.log")
    try:
        before = database.value("SELECT df.start(%s)", [step], user="tenant")
        assert wait_terminal(database, before) == "completed"
        database.execute(
            "SELECT df.revoke_usage('tenant'); REVOKE ALL ON visits FROM tenant;"
            " DROP OWNED BY tenant; DROP ROLE tenant"
        )
        users(database, "tenant")
        database.execute("GRANT ALL ON visits TO tenant")
        after = database.value("SELECT df.start(%s)", [step], user="tenant")
        assert wait_terminal(database, after) == "completed", output(database, after)
    finally:
        stop_process(worker)
    assert database.execute("SELECT who FROM visits") == [("tenant",), ("tenant",)]


# -- limits are the administrator's ---------------------------------------------------


def test_a_session_cannot_change_the_limits_the_runtime_enforces(database):
    users(database, "intruder")
    for _ in range(3):
        database.value("SELECT df.start('SELECT 1')", user="intruder")
    with database.connect("intruder") as conn:
        # The list cap: a session raising it is ignored.
        conn.execute("SET pg_durable.list_instances_max_limit = '100000'")
        with pytest.raises(psycopg.Error, match=r"list_instances_max_limit \(1000\)"):
            conn.execute("SELECT * FROM df.list_instances(NULL, 5000)")
        # The 'new'-mode admission: a session's value is ignored too (0 slots
        # would refuse every start; the administrator's default is 2).
        conn.execute("SET pg_durable.max_new_transaction_starts = '0'")
        conn.execute("SET pg_durable.new_transaction_start_timeout = '1'")
        started = conn.execute("SELECT df.start('SELECT 1', NULL, NULL, 'new')").fetchone()[0]
        assert started
        # The administrator-only reader itself is out of reach.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT pgdurable.admin_setting('pgdurable.step_timeout', '0')")


def test_a_usage_role_writes_df_only_where_pg_durable_lets_it(database):
    """SPEC B §2 grants: INSERT of the listed columns and UPDATE(status,
    updated_at) on df.instances, INSERT on df.nodes; nothing on the runtime's
    own tables."""
    users(database, "intruder")
    allowed = {
        ("df.instances", "INSERT"): {"id", "label", "root_node", "submitted_by", "database"},
        ("df.instances", "UPDATE"): {"status", "updated_at"},
        ("df.nodes", "INSERT"): set(
            "id instance_id node_type query result_name left_node right_node"
            " submitted_by database".split()
        ),
        ("df.nodes", "UPDATE"): set(),
    }
    for (table, privilege), columns in allowed.items():
        held = {
            row[0]
            for row in database.execute(
                "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = %s::regclass"
                " AND a.attnum > 0 AND NOT a.attisdropped"
                " AND has_column_privilege('intruder', a.attrelid, a.attnum, %s)",
                [table, privilege],
            )
        }
        assert held == columns, (table, privilege)
    writable = database.execute(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'pgdurable' AND c.relkind IN ('r', 'p')"
        " AND (has_table_privilege('intruder', c.oid, 'UPDATE')"
        "      OR has_table_privilege('intruder', c.oid, 'DELETE')"
        "      OR has_table_privilege('intruder', c.oid, 'TRUNCATE'))"
    )
    assert writable == []
