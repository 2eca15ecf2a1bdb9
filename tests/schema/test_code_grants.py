"""Code steps' SQL side (SPEC A.4, migration 0014): the PYTHON and COMMAND
constructors, pgdurable.grant_code / revoke_code, and the refusal of code
nodes a role was not granted, wherever the rows come from (df.start in both
modes, deploy_workflow, a hand-written INSERT). Tried as an ordinary role
with df.grant_usage, which gets no code execution. Execution and the
worker's run-time check are tested in tests/worker/test_code_steps.py."""

from __future__ import annotations

import json

import psycopg
import pytest

from pgdurable import model as m
from pgdurable.render import render

PY = "pgdurable.python('etl.jobs:load', '[1]', '{\"day\": \"2024-01-01\"}')"


@pytest.fixture
def carol(database) -> str:
    """An ordinary role with df usage (and nothing about code)."""
    database.create_role("carol")
    database.execute("SELECT df.grant_usage('carol')")
    return "carol"


def refused(database, statement: str, user: str, *fragments: str) -> str:
    with pytest.raises(psycopg.Error) as caught:
        database.execute(statement, user=user)
    text = str(caught.value) + " " + str(getattr(caught.value.diag, "message_hint", ""))
    for fragment in fragments:
        assert fragment in text, text
    return text


def grant(database, role: str, pattern: str) -> bool:
    return database.value("SELECT pgdurable.grant_code(%s, %s)", [role, pattern])


# -- constructors -------------------------------------------------------------


def test_constructors_build_leaf_nodes(database):
    node = json.loads(database.value(f"SELECT {PY}"))
    assert node["node_type"] == "PYTHON"
    assert json.loads(node["query"]) == {
        "callable": "etl.jobs:load",
        "args": [1],
        "kwargs": {"day": "2024-01-01"},
    }
    node = json.loads(
        database.value(
            "SELECT pgdurable.command(ARRAY['bin/report.sh', '--day', '$d'],"
            " '{\"LANG\": \"C\"}', 'out') |=> 'rep'"
        )
    )
    assert node["result_name"] == "rep"
    assert json.loads(node["query"]) == {
        "argv": ["bin/report.sh", "--day", "$d"],
        "env": {"LANG": "C"},
        "cwd": "out",
    }
    # they compose with df.* and the other extension nodes
    composed = database.value("SELECT pgdurable.timeout(pgdurable.python('m:f'), 5) ~> 'SELECT 1'")
    assert json.loads(composed)["left_node"]["left_node"]["node_type"] == "PYTHON"


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("pgdurable.python('etl.jobs')", "not of the form 'package.module:function'"),
        ("pgdurable.python('etl/jobs:f')", "not of the form"),
        ("pgdurable.python('m:f', '{}')", "args must be a JSON array"),
        ("pgdurable.python('m:f', '[]', '[]')", "kwargs must be a JSON object"),
        ("pgdurable.command(ARRAY[]::text[])", "argv must be a non-empty array"),
        ("pgdurable.command(ARRAY['bin/../../etc/x'])", "contains a '..' component"),
        ("pgdurable.command(ARRAY['..'])", "contains a '..' component"),
        ("pgdurable.command(ARRAY['x'], '{\"A\": 1}')", "env must be a JSON object of strings"),
        ("pgdurable.command(ARRAY['x', NULL])", "argv must not contain NULL"),
    ],
)
def test_constructors_refuse_bad_configs(database, expr, message):
    with pytest.raises(psycopg.Error, match=message.replace("(", r"\(").replace("'", "'")):
        database.value(f"SELECT {expr}")


def test_explain_labels_name_the_code(database):
    text = database.value(
        f"SELECT df.explain($${PY} |=> 'r' ~> pgdurable.command(ARRAY['bin/x.sh'])$$)"
    )
    assert "PYTHON etl.jobs:load |=> 'r'" in text
    assert "→ COMMAND bin/x.sh" in text


# -- grants ---------------------------------------------------------------------


def test_df_grant_usage_gives_no_code_execution(database, carol):
    refused(
        database,
        f"SELECT df.start({PY})",
        carol,
        'role "carol" is not allowed to run Python callable "etl.jobs:load"',
        "SELECT pgdurable.grant_code('carol', 'python:etl.jobs:load')",
    )
    refused(
        database,
        "SELECT df.start(pgdurable.command(ARRAY['bin/x.sh']))",
        carol,
        'not allowed to run program "bin/x.sh"',
    )
    assert database.value("SELECT count(*) FROM df.nodes") == 0


def test_a_grant_allows_matching_code_only(database, carol):
    assert grant(database, carol, "python:etl.jobs:*") is True
    assert grant(database, carol, "python:etl.jobs:*") is False  # already there
    assert grant(database, carol, "command:bin/report_?.sh") is True
    assert database.value(f"SELECT df.start({PY})", user=carol)
    assert database.value(
        "SELECT df.start(pgdurable.command(ARRAY['bin/report_1.sh']))", user=carol
    )
    refused(database, "SELECT df.start(pgdurable.python('etl.other:f'))", carol, "etl.other:f")
    # `_` and `%` are literal, not LIKE wildcards
    refused(
        database,
        "SELECT df.start(pgdurable.command(ARRAY['bin/reportX1.sh']))",
        carol,
        "bin/reportX1.sh",
    )
    refused(
        database,
        "SELECT df.start(pgdurable.command(ARRAY['bin/report_12.sh']))",
        carol,
        "bin/report_12.sh",
    )
    # python and command patterns are separate namespaces
    refused(
        database,
        "SELECT df.start(pgdurable.command(ARRAY['etl.jobs:load']))",
        carol,
        "program",
    )


def test_revoke_stops_new_starts(database, carol):
    grant(database, carol, "python:etl.*")
    assert database.value(f"SELECT df.start({PY})", user=carol)
    assert database.value("SELECT pgdurable.revoke_code('carol', 'python:etl.*')") is True
    assert database.value("SELECT pgdurable.revoke_code('carol', 'python:etl.*')") is False
    refused(database, f"SELECT df.start({PY})", carol, "not allowed")


def test_grants_to_a_group_cover_its_members(database, carol):
    database.create_role("etl_group", login=False)
    database.execute("GRANT etl_group TO carol")
    try:
        grant(database, "etl_group", "python:etl.jobs:load")
        assert database.value(f"SELECT df.start({PY})", user=carol)
    finally:
        database.execute("REVOKE etl_group FROM carol")
    refused(database, f"SELECT df.start({PY})", carol, "not allowed")


def test_new_mode_and_deploy_workflow_are_checked_too(database, carol):
    refused(database, f"SELECT df.start({PY}, NULL, NULL, 'new')", carol, "not allowed")
    refused(
        database,
        f"SELECT pgdurable.deploy_workflow('queue', 'load', {PY},"
        " NULL, 'pgdurable', 'exact', 'carol', NULL, true)",
        "postgres",
        'role "carol" is not allowed to run Python callable',
    )


def test_bad_patterns_are_refused(database, carol):
    for pattern in ("etl.*", "shell:rm", "python:", None):
        with pytest.raises(psycopg.Error, match="invalid code pattern"):
            grant(database, carol, pattern)


# -- an ordinary role trying to get around it -----------------------------------


def test_only_an_administrator_grants(database, carol):
    refused(
        database,
        "SELECT pgdurable.grant_code('carol', 'python:*')",
        carol,
        "only a superuser or the owner of schema pgdurable",
    )
    refused(
        database, "SELECT pgdurable.revoke_code('carol', 'python:*')", carol, "permission denied"
    )
    refused(
        database,
        "INSERT INTO pgdurable.code_grants (grantee, kind, pattern) VALUES ('carol', 'python', '*')",
        carol,
        "permission denied",
    )
    refused(database, "SELECT * FROM pgdurable.code_grants", carol, "permission denied")
    refused(
        database,
        "SELECT pgdurable.code_refusal('carol', 'PYTHON', '{}')",
        carol,
        "permission denied",
    )
    assert database.value("SELECT count(*) FROM pgdurable.code_grants") == 0


def test_hand_written_rows_are_checked(database, carol):
    """A role may insert df.nodes rows itself (df.grant_usage allows it): the
    trigger checks those as well, whatever the session's settings say."""
    config = json.dumps({"callable": "etl.jobs:load", "args": [], "kwargs": {}})
    with database.connect(carol, autocommit=False) as conn:
        conn.execute("SET search_path = public, pg_catalog")
        conn.execute("SET pgdurable.code_grants = 'python:*'")  # an invented setting: no effect
        conn.execute(
            "INSERT INTO df.instances (id, root_node, submitted_by)"
            " VALUES ('0000000a', '0000000b', 'carol')"
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not allowed"):
            conn.execute(
                "INSERT INTO df.nodes (id, instance_id, node_type, query, submitted_by)"
                " VALUES ('0000000b', '0000000a', 'PYTHON', %s, 'carol')",
                [config],
            )
        conn.rollback()
        # the trigger cannot be switched off by an ordinary role
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SET session_replication_role = replica")
        conn.rollback()
    assert database.value("SELECT count(*) FROM df.nodes") == 0


def test_traversal_and_absolute_paths_need_their_own_grant(database, carol):
    grant(database, carol, "command:bin/*")
    refused(
        database,
        """SELECT df.start('{"node_type":"COMMAND","query":"{\\"argv\\":[\\"bin/../../usr/bin/id\\"]}"}')""",
        carol,
        "contains a '..' component",
    )
    refused(
        database,
        "SELECT df.start(pgdurable.command(ARRAY['/bin/sh', '-c', 'id']))",
        carol,
        'program "/bin/sh"',
    )
    assert database.value(
        "SELECT df.start(pgdurable.command(ARRAY['bin/sub/tool', '../x']))", user=carol
    )


# -- the model renders what the constructors build -------------------------------


@pytest.mark.parametrize(
    "node",
    [
        m.Python("etl.jobs:load"),
        m.Python(
            "etl.jobs:load", (1, "two", None, True, [3]), (("day", "x"), ("b", {"z": 1, "aa": 2}))
        ),
        m.Command(("bin/x.sh",)),
        m.Command(
            ("/bin/sh", "-c", "echo 'it''s' \"$HOME\"\n"), (("LANG", "C"), ("A", "é")), "out"
        ),
        m.Seq((m.Sql("SELECT 1"), m.Command(("bin/x",), name="x"))),
    ],
)
def test_model_encoding_is_what_the_constructors_build(database, node):
    assert database.value(f"SELECT {render(node)}") == m.encode(node)


def test_generated_files_check_the_grants_of_the_role_they_start_as(database, carol):
    graph = database.value(f"SELECT {PY}")
    refused(
        database,
        f"SELECT pgdurable.check_code_grants($${graph}$$, 'carol')",
        "postgres",
        'role "carol" is not allowed to run Python callable "etl.jobs:load"',
        "pgdurable.grant_code('carol', 'python:etl.jobs:load')",
    )
    grant(database, carol, "python:etl.*")
    database.execute(f"SELECT pgdurable.check_code_grants($${graph}$$, 'carol')")
    # nobody learns another role's grants this way
    database.create_role("mallory")
    database.execute("SELECT df.grant_usage('mallory')")
    refused(
        database,
        f"SELECT pgdurable.check_code_grants($${graph}$$, 'carol')",
        "mallory",
        'permission denied to check the code grants of role "carol"',
    )
