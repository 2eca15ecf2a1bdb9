"""Bad input to the DSL and to substitution gets a clear error and changes
nothing (issue 11 §3), property-tested with hypothesis.

- DSL construction: random node JSON (valid and invalid types, wrong field
  types, random nesting), random arguments to the constructors (odd
  identifiers, quotes, unicode), huge and deep graphs. ``df.start`` either
  returns an id or raises an ordinary error (never an internal one or a
  lost connection) with the same message every time, and a refused start
  writes no row anywhere.
- Substitution: any template text either substitutes or raises
  ``SubstitutionError``; a value substituted into SQL comes back unchanged
  when the statement runs, whatever quotes, dollars or backslashes it holds,
  so a result or a signal payload can never inject SQL.
"""

from __future__ import annotations

import json

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgdurable.testing import spawn_worker, stop_process
from pgdurable.worker.substitution import SubstitutionError, substitute

NODE_TYPES = ["SQL", "THEN", "IF", "JOIN", "LOOP", "BREAK", "RACE", "SLEEP", "WAIT_SCHEDULE",
              "SIGNAL", "HTTP", "RETRY", "TIMEOUT", "TRY", "NOPE", "", "sql"]  # fmt: skip
ODD_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40
) | st.sampled_from(["'", "''", "$$", "$1", "\\", '"', "{", "}", "{x}", "$x", "--", ";", "ä", "🙂"])
COUNTS = "SELECT (SELECT count(*) FROM df.instances) + (SELECT count(*) FROM df.nodes)" \
    " + (SELECT count(*) FROM pgdurable.runs)"  # fmt: skip
SETTINGS = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def nodes() -> st.SearchStrategy:
    leaf_value = st.one_of(
        st.none(), st.booleans(), st.integers(-5, 5), ODD_TEXT, st.just([]), st.just({})
    )

    def extend(children):
        return st.fixed_dictionaries(
            {"node_type": st.sampled_from(NODE_TYPES)},
            optional={
                "left_node": children,
                "right_node": children,
                "condition_node": children,
                "extra_nodes": st.lists(children, max_size=2),
                "query": ODD_TEXT | st.just('{"break_value":null}'),
                "result_name": ODD_TEXT,
            },
        )

    return st.recursive(leaf_value, extend, max_leaves=12)


def attempt(conn, query: str, params) -> tuple[str, str]:
    """('ok', value) or ('error', sqlstate + message) for one statement."""
    try:
        with conn.transaction():
            return "ok", str(conn.execute(query, params).fetchone()[0])
    except psycopg.errors.ProgramLimitExceeded as exc:
        return "error", f"54xxx {exc.diag.message_primary}"
    except psycopg.DatabaseError as exc:
        state = exc.sqlstate or ""
        assert not state.startswith(("XX", "08", "57")), f"internal error {state}: {exc}"
        return "error", f"{state} {exc.diag.message_primary}"


@pytest.fixture
def alice(database):
    database.create_role("alice")
    database.execute("SELECT df.grant_usage('alice')")
    return "alice"


def test_random_graphs_start_or_fail_cleanly_and_write_nothing(database, alice, long_run):
    tried = {"ok": 0, "error": 0}
    with database.connect("alice") as conn:

        @settings(SETTINGS, max_examples=1500 if long_run else 150)
        @given(graph=nodes())
        def property_(graph) -> None:
            text = json.dumps(graph)
            before = database.value(COUNTS)
            outcome, detail = attempt(conn, "SELECT df.start(%s)", [text])
            tried[outcome] += 1
            if outcome == "error":
                assert database.value(COUNTS) == before, "a refused start wrote rows"
                # The same input gets the same diagnostic (ids never appear in it).
                assert attempt(conn, "SELECT df.start(%s)", [text]) == (outcome, detail)
                assert "PL/pgSQL" not in detail and detail.strip()

        property_()
    print(f"df.start: {tried['ok']} random graphs started, {tried['error']} refused")


CONSTRUCTORS = [
    ("df.as(df.sql('SELECT 1'), %s)", 1),
    ("df.sql(%s)", 1),
    ("df.seq(%s, %s)", 2),
    ("df.join(%s, %s)", 2),
    ("df.race(%s, %s)", 2),
    ("df.if(%s, %s, %s)", 3),
    ("df.loop(%s)", 1),
    ("df.break(%s)", 1),
    ("df.wait_for_signal(%s)", 1),
    ("df.wait_for_schedule(%s)", 1),
    ("df.if_rows(%s, 'SELECT 1', 'SELECT 2')", 1),
    ("df.setvar(%s, %s)", 2),
    ("df.getvar(%s)", 1),
    ("df.explain(%s)", 1),
    ("pgdurable.retry(%s, 2, 1)", 1),
    ("pgdurable.try(%s, %s)", 2),
]


def test_constructors_accept_or_refuse_odd_text_deterministically(database, alice, long_run):
    tried = 0
    with database.connect("alice") as conn:

        @settings(SETTINGS, max_examples=1200 if long_run else 150)
        @given(
            constructor=st.sampled_from(CONSTRUCTORS),
            texts=st.lists(ODD_TEXT | nodes().map(json.dumps), min_size=3, max_size=3),
        )
        def property_(constructor, texts) -> None:
            nonlocal tried
            template, arity = constructor
            params = texts[:arity]
            first = attempt(conn, f"SELECT {template}", params)
            assert attempt(conn, f"SELECT {template}", params) == first
            if first[0] == "ok" and template.startswith("df.as("):
                # An accepted name is always a valid identifier (SPEC B §1.1).
                assert params[0] and (params[0][0].isalpha() or params[0][0] == "_")
            tried += 1

        property_()
    print(f"constructors: {tried} calls with odd arguments")


def test_huge_and_deep_graphs_hit_the_limits_cleanly(database, alice):
    def chain(depth: int) -> dict:
        """A LOOP chain whose SQL leaf sits at nesting depth ``depth + 1``."""
        graph: dict = {"node_type": "SQL", "query": "SELECT 1"}
        for _ in range(depth):
            graph = {"node_type": "LOOP", "left_node": graph}
        return graph

    with database.connect("alice") as conn:
        deep = attempt(conn, "SELECT df.start(%s)", [json.dumps(chain(255))])
        assert deep[0] == "ok", deep
        deeper = attempt(conn, "SELECT df.start(%s)", [json.dumps(chain(256))])
        assert deeper[0] == "error" and "maximum nesting depth of 256" in deeper[1]
        # Far deeper than any limit: refused with a message, the server stays up.
        leaf = '{"node_type": "SQL", "query": "SELECT 1"}'
        text = '{"node_type": "LOOP", "left_node": ' * 20000 + leaf + "}" * 20000
        abyss = attempt(conn, "SELECT df.start(%s)", [text])
        assert abyss[0] == "error"
        wide = {"node_type": "JOIN", "left_node": {"node_type": "SQL", "query": "SELECT 0"},
                "right_node": {"node_type": "SQL", "query": "SELECT 0"},
                "extra_nodes": [{"node_type": "SQL", "query": f"SELECT {i}"}
                                for i in range(10_000)]}  # fmt: skip
        before = database.value(COUNTS)
        too_many = attempt(conn, "SELECT df.start(%s)", [json.dumps(wide)])
        assert too_many[0] == "error" and "10000" in too_many[1].replace(" ", "")
        assert database.value(COUNTS) == before
        wide["extra_nodes"] = wide["extra_nodes"][:9_996]  # 1 + 2 + 9 996 + ... = 9 999
        assert attempt(conn, "SELECT df.start(%s)", [json.dumps(wide)])[0] == "ok"


# -- substitution -----------------------------------------------------------------

NAMES = st.sampled_from(["r", "res", "r2", "doc", "x_1"])
TEMPLATE = st.lists(
    st.sampled_from(["$", "{", "}", "$r", "$res", "$r.v", "$r.*", "$r?", "$doc.x?", "{v}",
                     "{sys_label}", "{sys_instance_id}", "'", "$$", ".", "?", "*", " ", "a", "1"])
    | ODD_TEXT,
    max_size=12,
).map("".join)  # fmt: skip
RESULT = st.one_of(
    st.builds(
        lambda rows: json.dumps({"rows": rows, "row_count": len(rows)}),
        st.lists(st.fixed_dictionaries({"v": ODD_TEXT | st.integers() | st.none()}), max_size=2),
    ),
    st.builds(json.dumps, st.dictionaries(ODD_TEXT, ODD_TEXT, max_size=2)),
    ODD_TEXT,
)


@settings(SETTINGS, max_examples=400)
@given(
    template=TEMPLATE,
    results=st.dictionaries(NAMES, RESULT, max_size=3),
    variables=st.dictionaries(st.sampled_from(["v", "w"]), ODD_TEXT, max_size=2),
    label=st.none() | ODD_TEXT,
    for_sql=st.booleans(),
)
def test_substitution_either_substitutes_or_raises_its_own_error(
    template, results, variables, label, for_sql
):
    try:
        out = substitute(template, results, variables, "abcd1234", label, for_sql=for_sql)
    except SubstitutionError as exc:
        assert str(exc)
        return
    assert isinstance(out, str)
    if "$" not in template and "{" not in template:
        assert out == template


def test_substituted_values_can_never_inject_sql(database, long_run):
    """Whatever a step's result holds, ``$r`` in the next statement is one
    literal: running ``SELECT $r AS v`` gives the value back."""
    with database.connect() as conn:

        @settings(SETTINGS, max_examples=1000 if long_run else 200)
        @given(value=ODD_TEXT | st.sampled_from([
            "'); DROP TABLE victims; --", "$$; DROP TABLE victims; $$", "\\'; SELECT 1; --",
            "E'\\\\'", "$r", "{v}", "'' OR 1=1 --", "$tag$ x $tag$"]))  # fmt: skip
        def property_(value: str) -> None:
            result = json.dumps({"rows": [{"v": value}], "row_count": 1})
            for template in ("SELECT $r AS v", "SELECT $r.v AS v", "SELECT '' || $r AS v"):
                text = substitute(template, {"r": result}, {}, "abcd1234", None, for_sql=True)
                assert conn.execute(text.encode()).fetchall() == [(value,)], text
            whole = json.dumps({"k": value, "n": [1, value]})
            text = substitute("SELECT ($r)::jsonb AS v", {"r": whole}, {}, "i", None, for_sql=True)
            assert conn.execute(text.encode()).fetchone()[0] == json.loads(whole)

        property_()


def test_injection_through_results_and_signal_payloads_end_to_end(database, alice, tmp_path):
    database.execute("CREATE TABLE victims (v text); INSERT INTO victims VALUES ('alive')")
    database.execute("CREATE TABLE seen (v text)")
    database.execute("GRANT ALL ON victims, seen TO alice")
    nasty = "x'); DELETE FROM victims; --$$ $q$ \\"
    graph = {
        "node_type": "THEN",
        "left_node": {
            "node_type": "THEN",
            "left_node": {"node_type": "SQL", "query": "SELECT %s AS v" % (
                "'" + nasty.replace("'", "''") + "'"), "result_name": "r"},  # fmt: skip
            "right_node": {"node_type": "SIGNAL", "result_name": "s",
                           "query": json.dumps({"signal_name": "go", "timeout_seconds": 60})},
        },
        "right_node": {"node_type": "SQL",
                       "query": "INSERT INTO seen VALUES ($r), ($s.data), (($s.data)::jsonb ->> 'k')"},
    }  # fmt: skip
    instance = database.value("SELECT df.start(%s)", [json.dumps(graph)], user="alice")
    payload = json.dumps({"k": nasty})
    database.value("SELECT df.signal(%s, 'go', %s)", [instance, payload], user="alice")
    worker = spawn_worker(database.conninfo(), "--until-idle", log=tmp_path / "w.log")
    try:
        worker.wait(60)
    finally:
        stop_process(worker)
    assert database.value("SELECT status FROM df.instances WHERE id = %s", [instance]) == (
        "completed"
    ), (tmp_path / "w.log").read_text()
    assert database.execute("SELECT v FROM victims") == [("alive",)]
    seen = [row[0] for row in database.execute("SELECT v FROM seen")]
    assert seen[0] == nasty and json.loads(seen[1]) == {"k": nasty} and seen[2] == nasty
