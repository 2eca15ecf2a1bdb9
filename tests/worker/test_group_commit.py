"""Group commit of SQL steps (worker/step_group.py, migration 0018).

Ready steps of one role and database share a transaction, each in its own
savepoint: a failing step fails alone, the others commit with their
completions; what cannot be committed as a group is run again step by step.
The worker runs in this process with one lane, so steps claimed together
queue behind the first one and form groups; a spy on the group's completion
tells which groups formed (PostgreSQL itself is real).
"""

from __future__ import annotations

from collections import Counter

import pytest

from pgdurable import db
from pgdurable.testing import wait_for
from pgdurable.worker import step_group
from pgdurable.worker.step_group import groupable


@pytest.fixture(autouse=True)
def enabled(monkeypatch):
    """Group commit is opt-in (PGDURABLE_GROUP_COMMIT=on); these tests turn it on."""
    monkeypatch.setattr(step_group, "ENABLED", True)


@pytest.fixture
def groups(monkeypatch):
    """One lane per pool (steps queue as soon as one runs); the size of each
    group that reached its completion."""
    sizes: list[int] = []
    complete = step_group._Lane._complete

    async def spy(self, conn, ran):
        sizes.append(len(ran))
        await complete(self, conn, ran)

    monkeypatch.setattr(step_group, "LANES", 1)
    monkeypatch.setattr(step_group._Lane, "_complete", spy)
    return sizes


@pytest.fixture
def effects(database, alice):
    database.execute("CREATE TABLE effects (k int NOT NULL)")
    database.execute("GRANT ALL ON effects TO alice")


def counts(database) -> Counter:
    return Counter(k for (k,) in database.execute("SELECT k FROM effects"))


@pytest.mark.parametrize(
    "text",
    [
        "UPDATE t SET n = n + 1 WHERE k = 1",
        "INSERT INTO t VALUES (1); SELECT 'now()', 'SET LOCAL x = 1' -- SET LOCAL a = 1",
        "WITH x AS (DELETE FROM t RETURNING *) SELECT count(*) FROM x",
        "select pg_advisory_lock(1)",
    ],
)
def test_plain_queries_and_dml_may_share_a_transaction(text):
    assert groupable(text)


@pytest.mark.parametrize(
    "text",
    [
        "SET LOCAL work_mem = '1MB'; UPDATE t SET n = 1",
        "UPDATE t SET n = 1; SET statement_timeout = 10",
        "SELECT set_config('work_mem', '1MB', true)",
        "SELECT pg_advisory_xact_lock(1)",
        "SELECT pg_try_advisory_xact_lock(1)",
        "INSERT INTO t VALUES (now())",
        "INSERT INTO t SELECT current_timestamp",
        "SELECT pg_current_xact_id()",
        "SELECT txid_current()",
        "SELECT xmin FROM t",
        "SELECT * INTO TEMP x FROM t",
        "LOCK t; UPDATE t SET n = 1",
        "DO $$ BEGIN PERFORM set_config('a.b', 'c', true); END $$",
        "SELECT f($x$ body $x$)",
        "SAVEPOINT a; UPDATE t SET n = 1; RELEASE a",
        "VACUUM t",
        "CALL p()",
        "(SELECT 1)",
        "-- only a comment",
        "SELECT 'unterminated",
    ],
)
def test_transaction_level_state_keeps_a_step_on_its_own(text):
    assert not groupable(text)


def test_steps_claimed_together_commit_in_groups_each_exactly_once(wf, database, effects, groups):
    instances = [wf.start(wf.sql(f"INSERT INTO effects VALUES ({k})")) for k in range(30)]
    wf.run(concurrency=10)
    assert [wf.status(i) for i in instances] == ["completed"] * 30
    assert counts(database) == Counter(range(30))
    assert max(groups) >= 2, groups
    # Each grouped instance is finished by its completion, like a lone last step.
    assert database.value("SELECT count(*) FROM pgdurable.runs") == 0
    assert (
        database.value("SELECT count(*) FROM pgdurable.journal WHERE outcome = 'completed'") == 30
    )


def test_a_failing_step_rolls_back_only_its_savepoint(wf, database, effects, groups):
    """A runtime error and a statement the server refuses to parse (a simple
    query is parsed whole before any of it runs) each fail their own step;
    the steps grouped with them, before and after, commit."""
    texts = {}
    for k in range(24):
        if k % 8 == 3:
            texts[k] = f"INSERT INTO effects VALUES ({k}); SELECT 1 / 0"
        elif k % 8 == 6:
            texts[k] = f"INSERT INTO effects VALUES ({k}); SELECT FROM WHERE"
        else:
            texts[k] = f"INSERT INTO effects VALUES ({k})"
    instances = {
        k: wf.start(wf.then(wf.sql(text), wf.sql("SELECT 1 AS after"))) for k, text in texts.items()
    }
    wf.run(concurrency=12)
    failing = {k for k in texts if k % 8 in (3, 6)}
    for k, instance in instances.items():
        if k in failing:
            assert wf.status(instance) == "failed"
            expected = "division by zero" if k % 8 == 3 else "syntax error"
            assert expected in wf.output(instance)
        else:
            assert wf.status(instance) == "completed", wf.output(instance)
    assert counts(database) == Counter(k for k in texts if k not in failing)
    assert max(groups) >= 2, groups


def test_a_group_that_cannot_commit_runs_its_steps_again_alone(wf, database, effects, groups):
    """A deferred constraint fails at COMMIT, which no savepoint can catch: the
    group rolls back whole and each step runs on its own, so only the
    offending step fails and every other step's effect is there once."""
    database.execute("CREATE TABLE parents (k int PRIMARY KEY)")
    database.execute(
        "CREATE TABLE children (k int REFERENCES parents DEFERRABLE INITIALLY DEFERRED)"
    )
    database.execute("INSERT INTO parents SELECT generate_series(0, 19)")
    database.execute("GRANT ALL ON parents, children TO alice")
    instances = {
        k: wf.start(
            wf.sql(
                f"INSERT INTO effects VALUES ({k}); INSERT INTO children VALUES ({k if k != 7 else 99})"
            )
        )
        for k in range(20)
    }
    wf.run(concurrency=10)
    for k, instance in instances.items():
        assert wf.status(instance) == ("failed" if k == 7 else "completed"), wf.output(instance)
    assert "foreign key" in wf.output(instances[7])
    assert counts(database) == Counter(k for k in range(20) if k != 7)


def test_the_group_completion_writes_nothing_when_a_lease_is_lost(wf, database, alice):
    """complete_steps_v1 is all or nothing: one element whose lease this token
    does not hold (here a wrong epoch) raises PD001 and writes nothing for the
    others, whose statements would otherwise commit without that one's
    completion. Any role may call it; the token is the guard."""
    first = wf.start(wf.sql("SELECT 1"))
    second = wf.start(wf.sql("SELECT 2"))
    token = b"t" * 32
    database.execute(
        "UPDATE pgdurable.runs SET epoch = 5, token_hash = sha256(%s),"
        " lease_expires_at = clock_timestamp() + interval '1 minute'",
        [token],
    )
    steps = [
        {
            "instance": first,
            "epoch": 5,
            "scope": first,
            "gen": 1,
            "node": "n",
            "result": "1",
            "stamps": [],
            "finish": None,
        },
        {
            "instance": second,
            "epoch": 4,
            "scope": second,
            "gen": 1,
            "node": "n",
            "result": "2",
            "stamps": [],
            "finish": None,
        },
    ]
    import json

    with pytest.raises(db.DatabaseError) as raised:
        database.execute(
            "SELECT * FROM pgdurable.complete_steps_v1(%s, %s::jsonb)",
            [token, json.dumps(steps)],
            user=alice,
        )
    assert db.sqlstate(raised.value) == "PD001"
    assert second in db.error_text(raised.value)
    assert database.value("SELECT count(*) FROM pgdurable.journal") == 0
    steps[1]["epoch"] = 5
    rows = database.execute(
        "SELECT k, status FROM pgdurable.complete_steps_v1(%s, %s::jsonb)",
        [token, json.dumps(steps)],
        user=alice,
    )
    assert rows == [(1, "pending"), (2, "pending")]
    assert database.value("SELECT count(*) FROM pgdurable.journal") == 2


def test_a_lone_ready_step_takes_the_single_path(wf, database, effects, monkeypatch):
    """An idle worker's step is not held back for a group."""
    grouped: list[int] = []
    monkeypatch.setattr(step_group._Lane, "_group", lambda self, batch: grouped.append(1))
    instance = wf.start(wf.sql("INSERT INTO effects VALUES (1)"))
    wf.run(concurrency=10)
    assert wf.status(instance) == "completed"
    assert grouped == []


def test_steps_waiting_behind_a_slow_one_leave_its_group(
    wf, database, effects, groups, background_worker
):
    """Grouped statements run one after another; a statement still running
    after SLOW_SECONDS gives the steps behind it back, so steps that block
    (here on a row the test holds) end up waiting side by side, as they
    would each on their own connection, and all commit once it is free."""
    database.execute("CREATE TABLE gate (n int)")
    database.execute("INSERT INTO gate VALUES (0)")
    database.execute("GRANT ALL ON gate TO alice")
    with database.connect(autocommit=False) as holder:
        holder.execute("SELECT * FROM gate FOR UPDATE")
        instances = [
            wf.start(wf.sql(f"INSERT INTO effects VALUES ({k}); UPDATE gate SET n = n + 1"))
            for k in range(6)
        ]
        background_worker(concurrency=6)
        wait_for(
            lambda: (
                database.value(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE gate%'"
                )
                == 6
            ),
            what="six steps waiting for the gate at once",
        )
        holder.commit()
    for instance in instances:
        wf.wait_status(instance)
    assert counts(database) == Counter(range(6))
    assert database.value("SELECT n FROM gate") == 6
