"""`pgdurable.dsl.parse` reads generated DSL text offline: for every generated file
of the goldens and examples it builds exactly the graph PostgreSQL builds from the
same text, and it reads back what the renderer writes."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from pgdurable import model as m
from pgdurable.diagnostics import SourceRef
from pgdurable.dsl import DslError, parse
from pgdurable.render import render

REPO = Path(__file__).resolve().parents[2]
DEFINITION = re.compile(r"^\s*definition =>\n(.*?)\n\);\n", re.S | re.M)


def _generated() -> list[Path]:
    files = sorted((REPO / "fixtures" / "expected").rglob("*.sql"))
    files += sorted((REPO / "fixtures" / "examples").glob("*/expected/*.sql"))
    return [f for f in files if DEFINITION.search(f.read_text(encoding="utf-8"))]


def test_every_generated_file_parses_to_the_graph_postgresql_builds(database):
    files = _generated()
    assert len(files) > 50
    with database.connect() as conn:
        conn.execute("SET pg_durable.http_policy = 'allow-all'")
        for path in files:
            text = DEFINITION.search(path.read_text(encoding="utf-8")).group(1)
            expected = conn.execute(
                ("SELECT pgdurable.dsl_node(\n" + text + "\n)").encode()
            ).fetchone()[0]
            assert m.encode(parse(text)) == expected, path


def _random(rng: random.Random, depth: int) -> m.Node:
    texts = ["SELECT 1", "it's", "{looks like json", "a\nb", "tab\there", "é ✓"]
    name = rng.choice([None, None, "r", "st_x"])
    if depth == 0 or rng.random() < 0.3:
        return rng.choice(
            [
                lambda: m.Sql(rng.choice(texts), name=name),
                lambda: m.Sleep(rng.choice([0, 5]), name=name),
                lambda: m.WaitForSchedule("0 3 * * *", name=name),
                lambda: m.WaitForSignal("go", rng.choice([None, 9]), name=name),
                lambda: m.Break(rng.choice([None, "done"]), name=name),
                lambda: m.Http("https://x.test/a", "GET", None, (("A", "it's"),), 5, name=name),
            ]
        )()
    sub = lambda: _random(rng, depth - 1)  # noqa: E731
    node = rng.choice(
        [
            lambda: m.Seq(tuple(sub() for _ in range(rng.randint(2, 4))), name=name),
            lambda: m.Join(tuple(sub() for _ in range(rng.randint(2, 5))), name=name),
            lambda: m.Race(sub(), sub(), name=name),
            lambda: m.If(sub(), sub(), sub(), name=name),
            lambda: m.IfRows("r", sub(), sub(), name=name),
            lambda: m.Loop(sub(), rng.choice([None, sub()]), name=name),
            lambda: m.Retry(sub(), 3, 10, rng.choice([1.0, 2.0]), rng.choice([None, 60])),
            lambda: m.Timeout(sub(), 30, name=name),
            lambda: m.Try(sub(), m.Sleep(0), name=name),
        ]
    )()
    if rng.random() < 0.3 and not isinstance(node, m.Seq):  # translators mark steps
        ref = SourceRef("dags/etl.py", rng.randint(1, 99), 4, what=rng.choice([None, "task t"]))
        node = type(node)(**{**node.__dict__, "source": ref})
    return node


def test_random_models_read_back():
    for seed in range(300):
        model = _random(random.Random(seed), depth=4)
        text = render(model)
        back = parse(text)
        assert m.encode(back) == m.encode(model), f"seed {seed}:\n{text}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("df.sleep(-1)", "line 1: Sleep duration must be non-negative"),
        ("'a' ~>", "line 1: expected more, found the end"),
        ("public.evil('x')", "public.evil() is not a workflow constructor"),
        ("'a' 'b'", "unexpected \"'b'\" after the expression"),
    ],
)
def test_text_outside_the_language_is_an_error_with_its_line(text, message):
    with pytest.raises(DslError, match=re.escape(message)):
        parse(text)
