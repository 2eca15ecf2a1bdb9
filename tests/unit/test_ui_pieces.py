"""Pure parts of the dashboard: the SVG drawing (escaping, layout of loops),
the origin check and the address policy."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest

from pgdurable.show import Graph
from pgdurable.ui import security, server, svg
from pgdurable.ui.app import _local


def test_svg_escapes_hostile_labels_and_links_nodes():
    g = Graph("<b>title</b>")
    a = g.add("SQL: SELECT '<script>alert(1)</script>' & 1", "box", "failed", "0000000a")
    b = g.add("loop", "loop", "running", "0000000b")
    g.edge(a, b)
    g.edge(b, a, "again", dashed=True)  # a back edge must not break the ranking
    picture = svg.render(g)
    assert "<script>" not in picture
    root = ElementTree.fromstring(picture)  # well-formed XML
    links = root.findall("{http://www.w3.org/2000/svg}a")
    assert [link.get("href") for link in links] == ["#node-0000000a", "#node-0000000b"]
    assert [link.get("data-status") for link in links] == ["failed", "running"]
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert titles[0].startswith("SQL: SELECT '<script>")  # full text, escaped in the file


def test_svg_ranks_follow_the_flow():
    g = Graph("t")
    keys = [g.add(f"step {i}") for i in range(3)]
    g.edge(keys[0], keys[1])
    g.edge(keys[1], keys[2])
    g.edge(keys[2], keys[0], "again", dashed=True)
    assert svg._ranks(g) == {keys[0]: 0, keys[1]: 1, keys[2]: 2}


@pytest.mark.parametrize(
    ("origin", "referer", "ok"),
    [
        ("http://127.0.0.1:8765", None, True),
        ("http://evil.example", None, False),
        ("http://127.0.0.1:9999", None, False),
        ("null", None, False),
        (None, "http://127.0.0.1:8765/instances/x", True),
        (None, "https://127.0.0.1:8765/", False),
        (None, None, False),
    ],
)
def test_same_origin(origin, referer, ok):
    assert security.same_origin(origin, referer, "http://127.0.0.1:8765/") is ok


def test_redirect_targets_stay_on_the_site():
    assert _local("/instances/abc?x=1") == "/instances/abc?x=1"
    for outside in ("https://evil.example/", "//evil.example/", "/\\evil.example", "", None):
        assert _local(outside) == "/"


def test_address_policy(tmp_path):
    loop = server.parse_address("127.0.0.1:8765")
    assert loop.loopback and server.parse_address(":9000") == server.Address("127.0.0.1", 9000)
    settings = server.settings_for("", loop, login=False, tls=None, insecure=False, reports=())
    assert not settings.login and settings.loopback_only
    assert security.loopback_host("localhost:8765") and security.loopback_host("[::1]:1")
    assert not security.loopback_host("attacker.example:8765")
    exposed = server.parse_address("0.0.0.0:8765")
    with pytest.raises(server.AddressError, match="--tls-cert FILE --tls-key FILE, or --insecure"):
        server.settings_for("", exposed, login=False, tls=None, insecure=False, reports=())
    insecure = server.settings_for("", exposed, login=False, tls=None, insecure=True, reports=())
    assert insecure.login and not insecure.loopback_only and not insecure.secure_cookie
    assert insecure.require_password and not settings.require_password
    cert = (tmp_path / "c.pem", tmp_path / "k.pem")
    tls = server.settings_for("", exposed, login=False, tls=cert, insecure=False, reports=())
    assert tls.login and tls.secure_cookie
    with pytest.raises(server.AddressError, match="HOST:PORT"):
        server.parse_address("8765")


def test_sessions_are_bounded(monkeypatch):
    monkeypatch.setattr(security, "MAX_SESSIONS", 3)
    sessions = security.Sessions()
    tokens = [sessions.new()[0] for _ in range(3)]
    assert sessions.get(tokens[0]) is not None  # used: now the most recent
    fourth, _ = sessions.new()
    assert sessions.get(tokens[1]) is None  # the longest unused was forgotten
    assert all(sessions.get(t) is not None for t in (tokens[0], tokens[2], fourth))


def test_a_ticks_body_is_the_loop_without_its_wait():
    from pgdurable.ui.data import tick_body

    wait = {"node_type": "WAIT_SCHEDULE", "query": '{"cron_expr": "0 3 * * *"}'}
    a, b = {"node_type": "SQL", "query": "SELECT 1"}, {"node_type": "SQL", "query": "SELECT 2"}
    two = {"node_type": "THEN", "left_node": wait, "right_node": a}
    assert tick_body({"node_type": "LOOP", "left_node": two}) == a
    three = {"node_type": "THEN", "left_node": two, "right_node": b}  # left-nested
    assert tick_body({"node_type": "LOOP", "left_node": three}) == {
        "node_type": "THEN", "left_node": a, "right_node": b,
    }  # fmt: skip
    assert tick_body(two) is None  # not a loop
    assert tick_body({"node_type": "LOOP", "left_node": two, "condition_node": a}) is None
    no_wait = {"node_type": "THEN", "left_node": a, "right_node": b}
    assert tick_body({"node_type": "LOOP", "left_node": no_wait}) is None


def test_step_labels_follow_graph_order_and_the_wrapper_that_names_a_step():
    from pgdurable import model as m
    from pgdurable import steplabels
    from pgdurable.diagnostics import SourceRef

    def named(node, what):
        return type(node)(**{**node.__dict__, "source": SourceRef("dag.py", 1, what=what)})

    same = "INSERT INTO log VALUES (1)"
    workflow = m.Seq(
        (
            named(m.Sql(same), "task first"),
            named(m.Retry(m.Sql("SELECT 2"), 3, 10), "task retried"),
            named(m.Sql(same), "task again"),
        )
    )
    labels = steplabels.of_model(workflow)
    assert labels[steplabels.key("SQL", same)] == ["task first", "task again"]
    assert labels[steplabels.key("SQL", "SELECT 2")] == ["task retried"]
    # an instance's flat tree (explain_instance_nodes): THEN(THEN(a, RETRY(b)), c)
    nodes = {
        "r": {"type": "THEN", "left": "t", "right": "c"},
        "t": {"type": "THEN", "left": "a", "right": "y"},
        "y": {"type": "RETRY", "left": "b"},
        "a": {"type": "SQL", "query": same},
        "b": {"type": "SQL", "query": "SELECT 2"},
        "c": {"type": "SQL", "query": same},
    }
    assert steplabels.assign("r", nodes, labels) == {
        "a": "task first", "b": "task retried", "c": "task again",
    }  # fmt: skip
    # a part of the graph (one of the two same steps): ambiguous, so unnamed
    assert steplabels.assign("c", nodes, labels) == {}
    assert steplabels.workflow_of_label("airflow:events_daily") == "airflow/events_daily"
