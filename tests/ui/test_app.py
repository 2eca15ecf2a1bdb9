"""The dashboard's application on a real database through Flask's test client
(no browser needed): sign-in opens the role's connection, an exposed dashboard
refuses a sign-in whose password the server did not check, database refusals
are messages, loopback answers only loopback Host names, and only the reports'
generated files are served."""

from __future__ import annotations

import json
import re

from pgdurable.ui import Settings, create_app

ORIGIN = "http://127.0.0.1:8765"


def _client(database, **settings):
    app = create_app(Settings(conninfo=database.conninfo(), login=True, **settings))
    return app.test_client()


def _sign_in(client, user: str):
    page = client.get("/login", base_url=ORIGIN)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return client.post(
        "/login",
        data={"csrf": csrf, "user": user, "password": "secret", "next": "/"},
        headers={"Origin": ORIGIN},
        base_url=ORIGIN,
        follow_redirects=True,
    )


def test_sign_in_opens_the_roles_connection(database):
    database.create_role("carol")
    database.execute("SELECT df.grant_usage('carol')")
    client = _client(database)
    assert client.get("/", base_url=ORIGIN).status_code == 302  # to the sign-in form
    page = _sign_in(client, "carol").get_data(as_text=True)
    assert '<strong id="role">carol</strong>' in page


def test_an_exposed_dashboard_refuses_unchecked_passwords(database):
    # The test cluster trusts its socket: PostgreSQL never looks at the password.
    client = _client(database, require_password=True)
    page = _sign_in(client, "postgres").get_data(as_text=True)
    assert "did not check the password (trust authentication)" in page
    assert client.get("/", base_url=ORIGIN).status_code == 302  # still signed out


def test_a_database_refusal_is_a_message_not_a_traceback(database):
    database.create_role("nobody")  # no df usage granted
    client = _client(database)
    _sign_in(client, "nobody")
    response = client.get("/", base_url=ORIGIN)
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert "permission denied" in text and "Traceback" not in text


def test_without_login_the_started_role_is_used_and_sign_in_is_off(database):
    app = create_app(Settings(conninfo=database.conninfo(), loopback_only=True))
    client = app.test_client()
    page = client.get("/", base_url=ORIGIN)
    assert page.status_code == 200 and '<strong id="role">postgres</strong>' in page.get_data(
        as_text=True
    )
    assert client.get("/login", base_url=ORIGIN).status_code == 404
    # DNS rebinding: a page of another name that resolves to 127.0.0.1
    assert client.get("/", base_url="http://attacker.example:8765").status_code == 400


def test_only_generated_files_of_the_reports_are_served(database, tmp_path):
    (tmp_path / "job.sql").write_text("SELECT 1;\n")
    report = tmp_path / "report.json"
    item = {"name": "job", "source_ref": "x", "fidelity": "exact", "output": "job.sql"}
    report.write_text(json.dumps({"source": "pg_cron", "items": [item]}))
    app = create_app(Settings(conninfo=database.conninfo(), reports=(report,)))
    client = app.test_client()
    wanted = str(tmp_path / "job.sql")
    assert client.get("/report/file", query_string={"path": wanted}).get_data() == b"SELECT 1;\n"
    for other in (str(report), "/etc/passwd"):
        assert client.get("/report/file", query_string={"path": other}).status_code == 404
