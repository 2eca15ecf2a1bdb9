"""Substitution (SPEC B §5): the pure rules, then every form end to end."""

from __future__ import annotations

import pytest

from pgdurable.worker.substitution import SubstitutionError, substitute

ROWS = '{"rows":[{"a":1,"b":"it\'s","c":null,"j":{"k":[1]}}],"row_count":1}'
EMPTY = '{"rows":[],"row_count":0}'
ENVELOPE = '{"status":404,"ok":false,"body":"nope"}'


def sub(text, results=None, variables=None, *, for_sql=True, label="nightly"):
    return substitute(text, results or {}, variables or {}, "abcd1234", label, for_sql=for_sql)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SELECT $r", "SELECT 1"),
        ("SELECT $r.b", "SELECT 'it''s'"),
        ("SELECT $r.c?", "SELECT NULL"),
        ("SELECT $r.j", """SELECT '{"k":[1]}'"""),
        ("SELECT $r.missing", "SELECT $r.missing"),  # left for PostgreSQL to reject
        ("SELECT $r.missing?", "SELECT $r.missing?"),
        ("SELECT $rx, $1, $$x$$", "SELECT $rx, $1, $$x$$"),  # unknown names stay
        (
            "SELECT * FROM $r.*",
            """SELECT * FROM (VALUES (1,'it''s'::text,NULL,'{"k":[1]}'::text)) AS "r"("a", "b", "c", "j")""",
        ),
        ("SELECT * FROM $e.*", 'SELECT * FROM (SELECT NULL WHERE false) AS "e"'),
        ("SELECT $e?", "SELECT NULL"),
        ("SELECT $h.status, $h", """SELECT 404, '{"status":404,"ok":false,"body":"nope"}'"""),
        ("'$r' $r.b", "'1' 'it''s'"),  # no SQL lexing: quoted text is substituted too
    ],
)
def test_dollar_forms_in_sql_mode(text, expected):
    assert sub(text, {"r": ROWS, "e": EMPTY, "h": ENVELOPE}) == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("$e", "$e has no rows — query returned zero results"),
        ("$r.c", "$r.c is NULL"),
        ("$n.a", "$n.a: result is neither a row set nor a JSON object"),
    ],
)
def test_strict_forms_fail_with_the_reference_text(text, error):
    with pytest.raises(SubstitutionError) as exc:
        sub(text, {"r": ROWS, "e": EMPTY, "n": "[1,2]"})
    assert str(exc.value) == error


def test_raw_mode_inserts_unquoted_and_rejects_missing_fields():
    assert (
        sub("/x?b=$r.b&s=$h.status", {"r": ROWS, "h": ENVELOPE}, for_sql=False) == "/x?b=it's&s=404"
    )
    with pytest.raises(
        SubstitutionError, match=r"result has no field 'zz' \(available: body, ok, status\)"
    ):
        sub("$h.zz", {"h": ENVELOPE}, for_sql=False)


def test_longest_name_wins_and_word_boundaries_hold():
    results = {
        "doc": '{"rows":[{"v":1}],"row_count":1}',
        "document": '{"rows":[{"v":2}],"row_count":1}',
    }
    assert sub("$document $doc $docs", results) == "2 1 $docs"


def test_braces_pass_is_single_and_raw():
    variables = {"t": "my_table", "loop": "{t}", "ref": "$r"}
    text = '{sys_instance_id} {sys_label} {t} {loop} {nope} {1,2} {"a":1} {ref} {unclosed'
    assert sub(text, {"r": ROWS}, variables) == (
        'abcd1234 nightly my_table {t} {nope} {1,2} {"a":1} 1 {unclosed'
    )
    assert sub("{sys_label}", label=None) == ""


def lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def test_substitution_end_to_end(wf, database):
    database.execute("SELECT df.setvar('tbl', 'pg_class')", user="alice")
    final = (
        "SELECT $r AS n, $r.s AS s, (SELECT sum(a) FROM $rows.*) AS total,"
        " (SELECT count(*) > 0 FROM {tbl}) AS has, '{sys_instance_id}' AS id, '{sys_label}' AS label"
    )
    expr = (
        f"({lit('SELECT 7 AS n, ' + lit('x') + ' AS s')} |=> 'r')"
        f" ~> ({lit('SELECT 1 AS a UNION ALL SELECT 2')} |=> 'rows') ~> {lit(final)}"
    )
    instance = database.value(f"SELECT df.start({expr}, 'L')", user="alice")
    wf.run()
    row = wf.result(instance)["rows"][0]
    assert row == {"n": 7, "s": "x", "total": 3, "has": True, "id": instance, "label": "L"}


def test_a_substitution_error_fails_the_step(wf, database):
    expr = f"({lit('SELECT 1 WHERE false')} |=> 'r') ~> {lit('SELECT $r')}"
    instance = database.value(f"SELECT df.start({expr})", user="alice")
    wf.run()
    assert wf.status(instance) == "failed"
    assert wf.output(instance) == "$r has no rows — query returned zero results"
