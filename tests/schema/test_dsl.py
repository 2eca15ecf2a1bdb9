"""The df graph-construction layer (SPEC B §1) against a real database.

Every expected string is written by hand from the SPEC and the reference's
serde_json output rules (key order node_type, left_node, right_node,
condition_node, extra_nodes, query, result_name; compact; children copied
verbatim one level down); none is produced by calling our own functions.
"""

from __future__ import annotations

import psycopg
import pytest

SQL1 = '{"node_type":"SQL","query":"SELECT 1"}'
SQL2 = '{"node_type":"SQL","query":"SELECT 2"}'
A = '{"node_type":"SQL","query":"a"}'
B = '{"node_type":"SQL","query":"b"}'
C = '{"node_type":"SQL","query":"c"}'


def sql_node(query: str, name: str | None = None) -> str:
    """A SQL node for a query without characters that need escaping."""
    named = f',"result_name":"{name}"' if name else ""
    return f'{{"node_type":"SQL","query":"{query}"{named}}}'


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("df.sql('SELECT 1')", SQL1),
        (
            "df.seq('SELECT 1', 'SELECT 2')",
            f'{{"node_type":"THEN","left_node":{SQL1},"right_node":{SQL2}}}',
        ),
        ("df.join('a', 'b')", f'{{"node_type":"JOIN","left_node":{A},"right_node":{B}}}'),
        (
            "df.join3('a', 'b', 'c')",
            f'{{"node_type":"JOIN","left_node":{A},"right_node":{B},"extra_nodes":[{C}]}}',
        ),
        ("df.race('a', 'b')", f'{{"node_type":"RACE","left_node":{A},"right_node":{B}}}'),
        ("df.as('a', 'x')", sql_node("a", "x")),
        (
            "df.if('c', 'a', 'b')",
            f'{{"node_type":"IF","left_node":{A},"right_node":{B},"condition_node":{C}}}',
        ),
        (
            "df.if_rows('r', 'a', 'b')",
            f'{{"node_type":"IF","left_node":{A},"right_node":{B},'
            r'"query":"{\"condition_type\":\"result_has_rows\",\"result_name\":\"r\"}"}',
        ),
        ("df.loop('a')", f'{{"node_type":"LOOP","left_node":{A}}}'),
        ("df.loop('a', 'c')", f'{{"node_type":"LOOP","left_node":{A},"condition_node":{C}}}'),
        ("df.break()", r'{"node_type":"BREAK","query":"{\"break_value\":null}"}'),
        ("df.break('done')", r'{"node_type":"BREAK","query":"{\"break_value\":\"done\"}"}'),
        (
            """df.break('{"status": "ok"}')""",
            r'{"node_type":"BREAK","query":"{\"break_value\":\"{\\\"status\\\": \\\"ok\\\"}\"}"}',
        ),
        ("df.sleep(0)", '{"node_type":"SLEEP","query":"0"}'),
        ("df.sleep(86400)", '{"node_type":"SLEEP","query":"86400"}'),
        (
            "df.wait_for_schedule('*/5 * * * *')",
            r'{"node_type":"WAIT_SCHEDULE","query":"{\"cron_expr\":\"*/5 * * * *\"}"}',
        ),
        (
            "df.wait_for_signal('approve')",
            r'{"node_type":"SIGNAL","query":"{\"signal_name\":\"approve\",\"timeout_seconds\":null}"}',
        ),
        (
            "df.wait_for_signal('approve', 60)",
            r'{"node_type":"SIGNAL","query":"{\"signal_name\":\"approve\",\"timeout_seconds\":60}"}',
        ),
    ],
)
def test_constructors_build_the_reference_bytes(database, expression, expected):
    assert database.value(f"SELECT {expression}") == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # Literal-only operands resolve to our (text, text) operators.
        (
            "'SELECT 1' ~> 'SELECT 2'",
            f'{{"node_type":"THEN","left_node":{SQL1},"right_node":{SQL2}}}',
        ),
        (
            "'SELECT 1' & 'SELECT 2'",
            f'{{"node_type":"JOIN","left_node":{SQL1},"right_node":{SQL2}}}',
        ),
        (
            "'SELECT 1' | 'SELECT 2'",
            f'{{"node_type":"RACE","left_node":{SQL1},"right_node":{SQL2}}}',
        ),
        ("'a' |=> 'x'", sql_node("a", "x")),
        ("@> 'a'", f'{{"node_type":"LOOP","left_node":{A}}}'),
        (
            "'c' ?> 'a' !> 'b'",
            f'{{"node_type":"IF","left_node":{A},"right_node":{B},"condition_node":{C}}}',
        ),
        # The partial-if marker is jsonb text: keys by length, ", " and ": ".
        ("'c' ?> 'a'", '{"condition": "c", "_partial_if": true, "then_branch": "a"}'),
        # Same precedence, left associative (SPEC B §1.3).
        (
            "'a' ~> 'b' & 'c'",
            '{"node_type":"JOIN","left_node":{"node_type":"THEN","left_node":'
            f'{A},"right_node":{B}}},"right_node":{C}}}',
        ),
        (
            "'a' |=> 'x' ~> 'b' |=> 'y'",
            f'{{"node_type":"THEN","left_node":{sql_node("a", "x")},"right_node":{B},'
            '"result_name":"y"}',
        ),
        (
            "'p' ~> 'c' ?> 't' !> 'e'",
            f'{{"node_type":"IF","left_node":{sql_node("t")},"right_node":{sql_node("e")},'
            f'"condition_node":{{"node_type":"THEN","left_node":{sql_node("p")},'
            f'"right_node":{C}}}}}',
        ),
        (
            "@> 'a' ~> 'b'",
            f'{{"node_type":"THEN","left_node":{{"node_type":"LOOP","left_node":{A}}},'
            f'"right_node":{B}}}',
        ),
        (
            "@> ('a' ~> 'b')",
            f'{{"node_type":"LOOP","left_node":{{"node_type":"THEN","left_node":{A},'
            f'"right_node":{B}}}}}',
        ),
        # A lone partial-if given to a composer becomes a SQL node holding its text.
        (
            "df.seq('c' ?> 'a', 'b')",
            '{"node_type":"THEN","left_node":{"node_type":"SQL","query":'
            r'"{\"condition\": \"c\", \"_partial_if\": true, \"then_branch\": \"a\"}"},'
            f'"right_node":{B}}}',
        ),
    ],
)
def test_operators_and_precedence(database, expression, expected):
    assert database.value(f"SELECT {expression}") == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (
            "'c' ?> 'a' ~> 'b' !> 'e'",
            "Invalid if-then-else: left side of !> must be a ?> expression",
        ),
        ("'5' !> 'e'", "Invalid if-then-else: left side of !> must be a ?> expression"),
        (
            "df.seq('a', 'b') !> 'e'",
            "Invalid if-then-else: left side of !> must be a ?> expression",
        ),
    ],
)
def test_else_without_partial_if_raises(database, expression, message):
    with pytest.raises(psycopg.errors.RaiseException, match=message.replace("?", r"\?")):
        database.value(f"SELECT {expression}")


def test_else_after_non_json_fails_like_the_reference(database):
    with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="type json"):
        database.value("SELECT 'SELECT 1' !> 'e'")


@pytest.mark.parametrize(
    ("argument", "expected_child"),
    [
        # Our own output nests unchanged.
        (SQL1, SQL1),
        # A child's own keys are normalised, unknown keys dropped, whitespace removed ...
        ('  {"query":"q", "extra": [1], "node_type" : "SQL"}  ', sql_node("q")),
        ('{"node_type":"SQL","query":"q","result_name":null,"left_node":null}', sql_node("q")),
        # ... but grandchildren are copied byte for byte, whatever they hold.
        (
            '{"right_node": {"z" : 1},"node_type":"THEN","left_node":{ "node_type":"SQL" }}',
            '{"node_type":"THEN","left_node":{ "node_type":"SQL" },"right_node":{"z" : 1}}',
        ),
        (
            '{"node_type":"JOIN","extra_nodes":[ {"a":1} , {"b":2} ],"left_node":{}}',
            '{"node_type":"JOIN","left_node":{},"extra_nodes":[{"a":1},{"b":2}]}',
        ),
        ('{"node_type":"JOIN","extra_nodes":[]}', '{"node_type":"JOIN"}'),
        # Escapes in strings are re-written the serde_json way.
        (
            '{"node_type":"SQL","query":"caf\\u00e9 \\/ \\u001f"}',
            r'{"node_type":"SQL","query":"café / \u001f"}',
        ),
        # Unknown type, no type, non-object JSON and plain text become SQL nodes.
        ('{"node_type":"NOPE"}', r'{"node_type":"SQL","query":"{\"node_type\":\"NOPE\"}"}'),
        ('{"query":"x"}', r'{"node_type":"SQL","query":"{\"query\":\"x\"}"}'),
        ('{"node_type":5}', r'{"node_type":"SQL","query":"{\"node_type\":5}"}'),
        ("[1, 2]", '{"node_type":"SQL","query":"[1, 2]"}'),
        ('"text"', r'{"node_type":"SQL","query":"\"text\""}'),
        ("{not json", '{"node_type":"SQL","query":"{not json"}'),
    ],
)
def test_auto_wrap_of_children(database, argument, expected_child):
    assert database.value("SELECT df.seq(%s, 'b')", [argument]) == (
        f'{{"node_type":"THEN","left_node":{expected_child},"right_node":{B}}}'
    )
    assert database.value("SELECT pgdurable.dsl_node(%s)", [argument]) == expected_child


@pytest.mark.parametrize(
    ("argument", "error"),
    [
        (
            '{"node_type":"SQL","query":5}',
            "invalid type: integer `5`, expected a string at line 1 column 28",
        ),
        (
            '{"node_type":"SQL","query":-2.50}',
            "invalid type: floating point `-2.5`, expected a string at line 1 column 32",
        ),
        (
            '{"node_type":"SQL","query":["x"]}',
            "invalid type: sequence, expected a string at line 1 column 27",
        ),
        (
            '{"node_type":"SQL","result_name":true}',
            "invalid type: boolean `true`, expected a string at line 1 column 37",
        ),
        (
            '{"node_type":"THEN","left_node":"x"}',
            "Durofut children must be JSON objects at line 1 column 35",
        ),
        (
            '{"node_type":"THEN","right_node":[1]}',
            "Durofut children must be JSON objects at line 1 column 36",
        ),
        (
            '{"node_type":"IF","condition_node":"c"}',
            "condition_node must be a Durofut JSON object at line 1 column 38",
        ),
        (
            '{"node_type":"IF","condition_node":7}',
            "condition_node must be a Durofut JSON object at line 1 column 36",
        ),
        (
            '{"node_type":"JOIN","extra_nodes":[{}, 1]}',
            "extra_nodes entries must be Durofut JSON objects at line 1 column 41",
        ),
        (
            '{"node_type":"JOIN","extra_nodes":{}}',
            "invalid type: map, expected a sequence at line 1 column 34",
        ),
        (
            '{"node_type":"JOIN","extra_nodes":null}',
            "invalid type: null, expected a sequence at line 1 column 38",
        ),
        (
            '{"node_type":"SQL","query":"a","query":"b"}',
            "duplicate field `query` at line 1 column 38",
        ),
        # The first bad member wins, even before node_type; lines count newlines.
        (
            '{"left_node":"x",\n "node_type":"THEN"}',
            "Durofut children must be JSON objects at line 1 column 16",
        ),
        (
            '{"node_type":"SQL",\n  "query":{}}',
            "invalid type: map, expected a string at line 2 column 10",
        ),
        # Even an unknown type is an envelope once node_type is a string.
        (
            '{"node_type":"NOPE","left_node":1}',
            "Durofut children must be JSON objects at line 1 column 33",
        ),
    ],
)
def test_malformed_envelopes_raise(database, argument, error):
    expected = "Invalid Durofut JSON: failed to deserialize workflow step: " + error
    with pytest.raises(psycopg.errors.RaiseException) as caught:
        database.value("SELECT df.seq(%s, 'b')", [argument])
    assert caught.value.diag.message_primary == expected


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (
            '{"node_type":"NOPE"}',
            "Invalid durable function: Unknown node_type 'NOPE'. Valid types: "
            "SQL, THEN, IF, JOIN, LOOP, BREAK, RACE, SLEEP, WAIT_SCHEDULE, HTTP, HTTP_MULTIPART, "
            "SIGNAL",
        ),
        (
            '{"node_type":"IF","condition_node":"c"}',
            "Invalid durable function: Malformed Durofut JSON "
            "with node_type 'IF': condition_node must be a Durofut JSON object at line 1 column 38",
        ),
    ],
)
def test_strict_normalisation_for_df_start(database, argument, message):
    with pytest.raises(psycopg.errors.RaiseException) as caught:
        database.value("SELECT pgdurable.dsl_node_strict(%s)", [argument])
    assert caught.value.diag.message_primary == message
    assert database.value("SELECT pgdurable.dsl_node_strict('SELECT 1')") == SQL1


@pytest.mark.parametrize(
    ("query", "encoded"),
    [
        ('it\'s "quoted"', r"it's \"quoted\""),
        ("back\\slash", r"back\\slash"),
        ("line\nbreak\ttab\rcr", r"line\nbreak\ttab\rcr"),
        ("bell\x07 esc\x1b del\x7f", r"bell\u0007 esc\u001b del" + "\x7f"),
        ("naïve 日本語 😀 /slash", "naïve 日本語 😀 /slash"),
        ("", ""),
    ],
)
def test_escaping_matches_serde_json(database, query, encoded):
    assert (
        database.value("SELECT df.sql(%s)", [query]) == f'{{"node_type":"SQL","query":"{encoded}"}}'
    )
    assert database.value("SELECT %s::text ~> 'b'", [query]) == (
        f'{{"node_type":"THEN","left_node":{{"node_type":"SQL","query":"{encoded}"}},'
        f'"right_node":{B}}}'
    )


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("df.as('a', '')", "df.as: result name cannot be empty"),
        (
            "df.as('a', '1x')",
            "df.as: result name '1x' is not a valid identifier — must match [a-zA-Z_][a-zA-Z0-9_]*",
        ),
        (
            "'a' |=> 'has space'",
            "df.as: result name 'has space' is not a valid identifier — must match "
            "[a-zA-Z_][a-zA-Z0-9_]*",
        ),
        ("df.sleep(-1)", "Sleep duration must be non-negative"),
        ("df.wait_for_signal('')", "Signal name cannot be empty"),
        ("df.wait_for_signal('s', 0)", "Timeout must be positive"),
        ("df.wait_for_signal('s', -5)", "Timeout must be positive"),
    ],
)
def test_validation_errors(database, expression, message):
    with pytest.raises(psycopg.errors.RaiseException) as caught:
        database.value(f"SELECT {expression}")
    assert caught.value.diag.message_primary == message


HTTP_CONFIG = (
    r'{"node_type":"HTTP","query":"{\"url\":\"https://x.blob.core.windows.net/c\",'
    r"\"method\":\"GET\",\"body\":\"{\\\"a\\\": 1}\",\"headers\":{\"A\":2.5,"
    r'\"X-Key\":\"k\"},\"timeout_seconds\":5}"}'
)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (
            "df.http('https://x.blob.core.windows.net/c', 'get', '{\"a\": 1}', "
            '\'{"X-Key": "k", "A": 2.50}\', 5)',
            HTTP_CONFIG,
        ),
        (
            "df.http('http://h/x')",
            r'{"node_type":"HTTP","query":"{\"url\":\"http://h/x\",\"method\":\"POST\",'
            r'\"body\":null,\"headers\":null,\"timeout_seconds\":30}"}',
        ),
        # A URL that still holds a {placeholder} skips the scheme check.
        (
            "df.http('{base}/x', 'PATCH')",
            r'{"node_type":"HTTP","query":"{\"url\":\"{base}/x\",\"method\":\"PATCH\",'
            r'\"body\":null,\"headers\":null,\"timeout_seconds\":30}"}',
        ),
        (
            "df.http_multipart('HTTPS://h/u', 'put', "
            '\'[{"name": "f", "data_b64": "aGk=", "filename": "a.txt"}]\', '
            "'{\"n\": 1.0}', 9)",
            r'{"node_type":"HTTP_MULTIPART","query":"{\"url\":\"HTTPS://h/u\",\"method\":\"PUT\",'
            r"\"parts\":[{\"name\":\"f\",\"data_b64\":\"aGk=\",\"filename\":\"a.txt\"}],"
            r'\"headers\":{\"n\":1.0},\"timeout_seconds\":9}"}',
        ),
    ],
)
def test_http_constructors(database, expression, expected):
    with database.connect() as conn:
        conn.execute("SET pg_durable.http_policy = 'azure'")
        assert conn.execute(f"SELECT {expression}".encode()).fetchone()[0] == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (
            "df.http('ftp://h/x')",
            "Blocked: unsupported URL scheme 'ftp'. Only http and https are allowed.",
        ),
        (
            "df.http('File:///etc/passwd')",
            "Blocked: unsupported URL scheme 'file'. Only http and https are allowed.",
        ),
        (
            "df.http('no-scheme')",
            "Blocked: unsupported URL scheme 'no-scheme'. Only http and https are allowed.",
        ),
        (
            "df.http('https://h', 'TRACE')",
            "Invalid HTTP method: TRACE. Must be GET, POST, PUT, DELETE, or PATCH",
        ),
        ("df.http('https://h', 'GET', NULL, NULL, 0)", "Timeout must be positive"),
        (
            "df.http_multipart('gopher://h')",
            "Blocked: unsupported URL scheme 'gopher'. Only http and https are allowed.",
        ),
        (
            "df.http_multipart('https://h', 'get', '[{}]')",
            "Invalid HTTP method for multipart: get. Must be POST, PUT, or PATCH",
        ),
        ("df.http_multipart('https://h', 'POST', '[{}]', NULL, -1)", "Timeout must be positive"),
        ("df.http_multipart('https://h')", "parts is required and cannot be NULL"),
        (
            "df.http_multipart('https://h', 'POST', '{}')",
            "parts must be a JSON array of part objects",
        ),
        ("df.http_multipart('https://h', 'POST', '[]')", "parts must contain at least one part"),
    ],
)
def test_http_validation_errors(database, expression, message):
    with database.connect() as conn:
        conn.execute("SET pg_durable.http_policy = 'allow-all'")
        with pytest.raises(psycopg.errors.RaiseException) as caught:
            conn.execute(f"SELECT {expression}".encode())
    assert caught.value.diag.message_primary == message


@pytest.mark.parametrize("function", ["df.http", "df.http_multipart"])
def test_http_is_disabled_by_default(database, function):
    with pytest.raises(psycopg.errors.RaiseException) as caught:
        database.value(f"SELECT {function}('https://x.blob.core.windows.net/c', 'POST', NULL)")
    assert caught.value.diag.message_primary == (
        f"{function}() is disabled. Rebuild with the 'http-allow-azure-domains' Cargo feature "
        "to enable outbound HTTP requests."
    )


def test_unknown_http_policy_is_refused(database):
    with database.connect() as conn:
        conn.execute("SET pg_durable.http_policy = 'open'")
        with pytest.raises(
            psycopg.errors.RaiseException, match='invalid pg_durable.http_policy "open"'
        ):
            conn.execute("SELECT df.http('https://h')")


@pytest.mark.parametrize(
    "helper", ["df.setvar", "df.unsetvar", "df.clearvars", "df.await_instance"]
)
def test_helper_result_in_the_same_statement_is_refused(database, helper):
    message = f"{helper} cannot be used as a workflow step. Call {helper} before df.start()."
    with database.connect() as conn:
        with pytest.raises(psycopg.errors.RaiseException) as caught:
            conn.execute(
                "SELECT df.seq(x.helper_result, 'SELECT 1') FROM (SELECT 'OK' AS helper_result"
                " FROM pgdurable.mark_non_future_helper(%s)) AS x OFFSET 0",
                [helper],
            )
    assert caught.value.diag.message_primary == message


def test_helper_mark_only_affects_its_own_statement(database):
    with database.connect(autocommit=False) as conn:
        conn.execute("SELECT pgdurable.mark_non_future_helper('df.setvar')")
        # A later statement of the same transaction composes freely.
        assert conn.execute("SELECT df.seq('OK', 'SELECT 1')").fetchone()[0] == (
            f'{{"node_type":"THEN","left_node":{sql_node("OK")},"right_node":{SQL1}}}'
        )
        # JSON arguments are never attributed to a helper, even in the marking statement.
        row = conn.execute(
            "SELECT pgdurable.mark_non_future_helper('df.setvar'), df.seq(%s, %s)", [A, B]
        ).fetchone()
        assert row[1] == f'{{"node_type":"THEN","left_node":{A},"right_node":{B}}}'


@pytest.mark.parametrize(
    "expression",
    [
        "* * * * *",
        "*/5 * * * *",
        "0 9 * * MON-FRI",
        "0 9 * * mon,wed,Fri",
        "0 9 * * 1-7",
        "0 0 1 JAN *",
        "0 0 1 jan-jun/2 *",
        "0 0 ? * SUN",
        "0 0 1 * ?",
        "5/15 * * * *",
        "1-20/3 * * * *",
        "0 12 * * * 2030",
        "0 0 31 2 *",
        "1, 2 * * * *",
        " 0  0 * * * ",
    ],
)
def test_cron_accepts(database, expression):
    assert database.value("SELECT df.wait_for_schedule(%s)", [expression]) == (
        '{"node_type":"WAIT_SCHEDULE","query":"{\\"cron_expr\\":\\"' + expression + '\\"}"}'
    )


@pytest.mark.parametrize(
    "expression",
    [
        "* * * * 0",  # Quartz day-of-week: Sunday is 1, 0 is invalid
        "* * * * 8",
        "@daily",  # macros are rejected because "0 " is prepended
        "@hourly",
        "* * * *",
        "* * * * * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * 32 * *",
        "* * * 13 *",
        "* * * * * 1969",
        "*/0 * * * *",
        "*/61 * * * *",
        "10-5 * * * *",
        "MON * * * *",
        "? * * * *",
        "* * * * SAT-SUN",
        "0 0 L * *",
        "0 0 * * MON#1",
        "* * * * FUNDAY",
        "",
    ],
)
def test_cron_rejects(database, expression):
    with pytest.raises(psycopg.errors.RaiseException) as caught:
        database.value("SELECT df.wait_for_schedule(%s)", [expression])
    assert caught.value.diag.message_primary == (
        f"Invalid cron expression '{expression}': Invalid expression: Invalid cron expression."
    )


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/5 * * * *", "2024-01-01 00:00:00+00", "2024-01-01 00:05:00+00"),
        ("*/5 * * * *", "2024-01-01 00:04:59.5+00", "2024-01-01 00:05:00+00"),
        ("0 9 * * 2", "2024-01-01 10:00:00+00", "2024-01-08 09:00:00+00"),  # 2 = Monday
        ("0 9 * * 1", "2024-01-01 10:00:00+00", "2024-01-07 09:00:00+00"),  # 1 = Sunday
        ("0 0 13 * FRI", "2024-01-01 00:00:00+00", "2024-09-13 00:00:00+00"),  # both must match
        ("0 0 29 2 *", "2024-03-01 00:00:00+00", "2028-02-29 00:00:00+00"),
        ("30 23 31 12 * 2030", "2024-01-01 00:00:00+00", "2030-12-31 23:30:00+00"),
        ("0 0 * * *", "2024-06-01 01:59:00+02", "2024-06-01 00:00:00+00"),  # evaluated in UTC
        ("0 0 31 2 *", "2024-01-01 00:00:00+00", None),
    ],
)
def test_cron_next(database, expression, after, expected):
    with database.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        value = conn.execute(
            "SELECT pgdurable.cron_next(%s, %s::timestamptz)::text", [expression, after]
        ).fetchone()[0]
    assert value == expected


CONSTRUCTION_FUNCTIONS = (
    "as",
    "as_op",
    "break",
    "http",
    "http_multipart",
    "if",
    "if_else_op",
    "if_rows",
    "if_then_op",
    "join",
    "join3",
    "loop",
    "loop_prefix_op",
    "race",
    "seq",
    "sleep",
    "sql",
    "wait_for_schedule",
    "wait_for_signal",
)


def test_constructors_have_the_reference_signatures(database):
    # Only the construction layer's functions: other files add more to df.
    rows = database.execute(
        "SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ')' FROM pg_proc p "
        "WHERE p.pronamespace = 'df'::regnamespace AND p.proname = ANY(%s) ORDER BY 1",
        [list(CONSTRUCTION_FUNCTIONS)],
    )
    assert [r[0] for r in rows] == [
        "as(fut text, name text)",
        "as_op(fut text, name text)",
        "break(value text DEFAULT NULL::text)",
        "http(url text, method text DEFAULT 'POST'::text, body text DEFAULT NULL::text, "
        "headers jsonb DEFAULT NULL::jsonb, timeout_seconds integer DEFAULT 30)",
        "http_multipart(url text, method text DEFAULT 'POST'::text, "
        "parts jsonb DEFAULT NULL::jsonb, headers jsonb DEFAULT NULL::jsonb, "
        "timeout_seconds integer DEFAULT 30)",
        "if(condition text, then_branch text, else_branch text)",
        "if_else_op(partial_if text, else_branch text)",
        "if_rows(result_name text, then_branch text, else_branch text)",
        "if_then_op(condition text, then_branch text)",
        "join(a text, b text)",
        "join3(a text, b text, c text)",
        "loop(body text, condition text DEFAULT NULL::text)",
        "loop_prefix_op(body text)",
        "race(a text, b text)",
        "seq(a text, b text)",
        "sleep(seconds bigint)",
        "sql(query text)",
        "wait_for_schedule(cron_expr text)",
        "wait_for_signal(name text, timeout_seconds integer DEFAULT NULL::integer)",
    ]


def test_named_arguments_match_the_reference(database):
    assert database.value("SELECT df.loop(body => 'a', condition => 'c')") == (
        f'{{"node_type":"LOOP","left_node":{A},"condition_node":{C}}}'
    )
    assert database.value(
        "SELECT df.if(condition => 'c', then_branch => 'a', else_branch => 'b')"
    ) == (f'{{"node_type":"IF","left_node":{A},"right_node":{B},"condition_node":{C}}}')


def test_deep_nesting_keeps_children_verbatim(database):
    # 300 levels: composition must not depend on the depth of what it wraps.
    value = database.value(
        "WITH RECURSIVE chain(n, fut) AS (SELECT 1, df.sql('s') UNION ALL "
        "SELECT n + 1, fut ~> 's' FROM chain WHERE n < 300) SELECT fut FROM chain WHERE n = 300"
    )
    leaf = sql_node("s")
    expected = leaf
    for _ in range(299):
        expected = f'{{"node_type":"THEN","left_node":{expected},"right_node":{leaf}}}'
    assert value == expected
