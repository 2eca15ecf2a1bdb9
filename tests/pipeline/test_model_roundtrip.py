"""The renderer round-trips: evaluating ``render(model)`` with df.* in
PostgreSQL gives byte-identical JSON to ``model.encode(model)``.

Models come from a seeded random generator rather than hypothesis: the suite
needs no extra dependency, every run checks the same few hundred graphs, and a
failure names the seed and the model to reproduce it.
"""

from __future__ import annotations

import random

from pgdurable import model as m
from pgdurable.diagnostics import SourceRef
from pgdurable.render import literal, render

TEXTS = [
    "SELECT 1",
    "SELECT 'it''s'",
    "SELECT $$dollar$$",
    "SELECT $sql$x$sql$",
    "line one\nline two",
    "tab\there",
    "back\\slash",
    'a "quoted" word',
    "unicode é ✓ 雪",
    "{not json",
    '{"node_type":"SQL","query":"looks like a node"}',
    "ends with $sql",
    "VACUUM ANALYZE public.t; SELECT 2",
    "",
]
NAMES = [None, None, None, "r", "result_1", "_x"]


def leaf(rng: random.Random) -> m.Node:
    kind = rng.randrange(6)
    name = rng.choice(NAMES)
    if kind == 0:
        return m.Sql(rng.choice(TEXTS), name=name)
    if kind == 1:
        return m.Sleep(rng.choice([0, 1, 60, 86400]), name=name)
    if kind == 2:
        return m.WaitForSchedule(
            rng.choice(["0 3 * * *", "*/5 * * * *", "0 0 1 1 * 2030", "0 9 * * 2-6"]), name=name
        )
    if kind == 3:
        return m.WaitForSignal(rng.choice(["go", "it's"]), rng.choice([None, 5]), name=name)
    if kind == 4:
        return m.Break(rng.choice([None, "done", '{"a":1}', "it's"]), name=name)
    headers = rng.choice([None, (("X-Long-Header", "v"), ("A", "it's")), (("b", "1"), ("b", "2"))])
    return m.Http(
        "https://example.blob.core.windows.net/x",
        rng.choice(["get", "POST"]),
        rng.choice([None, "body 'q'"]),
        headers,
        rng.choice([30, 5]),
        name=name,
    )


def tree(rng: random.Random, depth: int) -> m.Node:
    if depth == 0 or rng.random() < 0.25:
        node = leaf(rng)
    else:
        kind = rng.randrange(7)
        sub = lambda: tree(rng, depth - 1)  # noqa: E731
        name = rng.choice(NAMES)
        if kind == 0:
            node = m.Seq(tuple(sub() for _ in range(rng.randint(2, 4))), name=name)
        elif kind == 1:
            node = m.Join(tuple(sub() for _ in range(rng.randint(2, 5))), name=name)
        elif kind == 2:
            node = m.Race(sub(), sub(), name=name)
        elif kind == 3:
            node = m.If(sub(), sub(), sub(), name=name)
        elif kind == 4:
            node = m.IfRows("r", sub(), sub(), name=name)
        else:
            node = m.Loop(sub(), rng.choice([None, sub()]), name=name)
    if rng.random() < 0.3:
        node = type(node)(**{**node.__dict__, "source": SourceRef("jobs.sql", rng.randint(1, 99))})
    return node


def evaluate(conn, text: str) -> str:
    # dsl_node applies the auto-wrap df.start applies to its root, so a lone
    # string literal becomes a SQL node, as it does in a workflow.
    return conn.execute(("SELECT pgdurable.dsl_node(\n" + text + "\n)").encode()).fetchone()[0]


def test_many_random_models_round_trip(database):
    with database.connect() as conn:
        conn.execute("SET pg_durable.http_policy = 'allow-all'")
        for seed in range(250):
            model = tree(random.Random(seed), depth=4)
            text = render(model)
            got = evaluate(conn, text)
            assert got == m.encode(model), f"seed {seed}:\n{text}"


def test_literals_read_back_unchanged(database):
    with database.connect() as conn:
        for text in TEXTS:
            assert conn.execute(("SELECT " + literal(text)).encode()).fetchone()[0] == text


def test_rendering_is_one_step_per_line_with_sources():
    model = m.Loop(
        m.Seq((m.WaitForSchedule("0 3 * * *"), m.Sql("VACUUM", source=SourceRef("jobs.sql", 4))))
    )
    assert render(model) == (
        "@> (\n    df.wait_for_schedule('0 3 * * *')\n    -- source: jobs.sql:4\n    ~> 'VACUUM'\n)"
    )


def test_extension_nodes_set_the_profile_and_render_as_calls():
    body = m.Sql("SELECT 1")
    model = m.Try(m.Retry(m.Timeout(body, 30), 3, 10), m.Sql("SELECT 2"))
    assert m.uses_extensions(model) and not m.uses_extensions(body)
    assert m.encode(model) == (
        '{"node_type":"TRY","left_node":{"node_type":"RETRY","left_node":{"node_type":"TIMEOUT",'
        '"left_node":{"node_type":"SQL","query":"SELECT 1"},"query":"{\\"timeout_seconds\\":30}"},'
        '"query":"{\\"max_attempts\\":3,\\"delay_seconds\\":10,\\"backoff\\":1.0,'
        '\\"max_delay_seconds\\":null}"},"right_node":{"node_type":"SQL","query":"SELECT 2"}}'
    )
    assert render(model).startswith(
        "pgdurable.try(\n    pgdurable.retry(\n        pgdurable.timeout("
    )
