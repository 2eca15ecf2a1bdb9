"""Sign-in of the dashboard against a real database, through Flask's test
client (no browser needed): the role's connection is what pages use, and an
exposed dashboard refuses a sign-in the server did not check the password of."""

from __future__ import annotations

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
