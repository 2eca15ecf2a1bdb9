"""Identity (SPEC A.2.3): steps run logged in as the submitting role, and the
SECURITY DEFINER completion function cannot be used to forge progress."""

from __future__ import annotations

import psycopg
import pytest


def test_a_step_has_exactly_the_submitters_privileges(wf, database):
    database.execute("CREATE TABLE secret (v text)")
    database.execute("INSERT INTO secret VALUES ('s3cr3t')")
    read = wf.start(wf.sql("SELECT v FROM secret"))
    escape = wf.start(wf.sql("RESET ROLE; SELECT v FROM secret"))
    who = wf.start(
        wf.sql(
            "SELECT current_user AS u, session_user AS s, current_setting('df.in_workflow') AS w"
        )
    )
    wf.run()
    denied = (
        "SQL execution failed: error returned from database: permission denied for table secret"
    )
    assert wf.output(read) == denied
    assert wf.output(escape) == denied
    assert wf.result(who)["rows"] == [{"u": "alice", "s": "alice", "w": "true"}]


# v1 and v2 are kept for workers of earlier releases; v2 and v3 also carry
# node stamps.
COMPLETIONS = {
    "v1": "SELECT pgdurable.complete_step_v1(%s, 1, 'guess', %s, 1, %s, '{}')",
    **{
        version: f"SELECT pgdurable.complete_step_{version}(%s, 1, 'guess', %s, 1, %s, '{{}}',"
        ' \'[{"node": "00000000", "status": "completed", "exec": "x"}]\')'
        for version in ("v2", "v3")
    },
}


@pytest.mark.parametrize("version", sorted(COMPLETIONS))
def test_completions_cannot_be_forged_without_the_lease_token(wf, database, version):
    instance = wf.start(wf.sql("SELECT 1"))
    node = database.value("SELECT root_node FROM df.instances WHERE id = %s", [instance])
    database.execute(
        "UPDATE pgdurable.runs SET epoch = 1, token_hash = sha256('x'),"
        " lease_expires_at = now() + interval '1 hour' WHERE instance_id = %s",
        [instance],
    )
    with pytest.raises(psycopg.Error, match="lease lost"):
        database.execute(COMPLETIONS[version], [instance, instance, node], user="alice")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        database.execute("SELECT * FROM pgdurable.runs", user="alice")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        database.execute(
            "SELECT pgdurable.record_v1(%s, 1, 'x', %s, 1, %s, 'completed',"
            " '{}', NULL, NULL, NULL, true)",
            [instance, instance, node],
            user="alice",
        )
    assert database.value("SELECT count(*) FROM pgdurable.journal") == 0
