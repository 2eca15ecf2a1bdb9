"""HTTP steps cannot reach private, loopback or link-local addresses unless
an administrator allows it (SPEC B §4.2 policy tiers; issue 11 §4).

Against a loopback server that counts what it receives:
- host spellings that are, or resolve to, loopback (``localhost``, the
  decimal and hexadecimal forms of 127.0.0.1, ``127.1``, v4-mapped IPv6),
  even when an administrator put the name itself on the allow-list, are
  refused with a ``Blocked:`` error, and the server receives nothing;
- a redirect to a private address is never followed;
- only the ``allow-all`` tier, an administrator's choice, reaches loopback.
The address block itself is property-tested over the restricted ranges.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgdurable.testing import spawn_worker, stop_process
from pgdurable.worker.http_policy import BLOCKED_NETWORKS, blocked_address

TRICKY_HOSTS = [
    "localhost",
    "2130706433",
    "0x7f000001",
    "127.1",
    "0177.0.0.1",
    "[::ffff:127.0.0.1]",
]


class Counting(BaseHTTPRequestHandler):
    hits: list[str] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.hits.append(self.path)
        port = self.server.server_address[1]
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", f"http://169.254.169.254:{port}/latest/meta-data")
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def server():
    Counting.hits = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def run(database, tmp_path, tier: str, allowed: str, urls: list[str]) -> dict[str, tuple]:
    database.create_role("alice")
    database.execute("SELECT df.grant_usage('alice', true)")
    database.execute(f"ALTER DATABASE {database.name} SET pg_durable.http_policy = '{tier}'")
    database.execute(
        f"ALTER DATABASE {database.name} SET pgdurable.http_allowed_hosts = '{allowed}'"
    )
    ids = {}
    for url in urls:
        node = {"url": url, "method": "GET", "body": None, "headers": None, "timeout_seconds": 5}
        graph = json.dumps({"node_type": "HTTP", "query": json.dumps(node)})
        ids[url] = database.value("SELECT df.start(%s)", [graph], user="alice")
    worker = spawn_worker(database.conninfo(), "--until-idle", log=tmp_path / "worker.log")
    try:
        worker.wait(60)
    finally:
        stop_process(worker)
    return {
        url: tuple(
            database.execute(
                "SELECT i.status, n.result FROM df.instances i JOIN df.nodes n"
                " ON n.id = i.root_node AND n.instance_id = i.id WHERE i.id = %s",
                [instance],
            )[0]
        )
        for url, instance in ids.items()
    }


def test_loopback_spellings_are_blocked_even_when_allow_listed(database, server, tmp_path):
    allowed = ", ".join(h for h in TRICKY_HOSTS if not h.startswith("["))
    urls = [f"http://{host}:{server}/x" for host in TRICKY_HOSTS]
    outcomes = run(database, tmp_path, "test", allowed, urls)
    for url, (status, result) in outcomes.items():
        assert status == "failed" and str(result).startswith("Blocked:"), (url, result)
    assert Counting.hits == []


def test_redirects_to_private_addresses_are_not_followed(database, server, tmp_path):
    # An administrator allowed everything; the redirect target is still not fetched.
    outcomes = run(database, tmp_path, "allow-all", "", [f"http://127.0.0.1:{server}/redirect"])
    [(status, result)] = outcomes.values()
    assert status == "completed" and result["status"] == 302, result
    assert Counting.hits == ["/redirect"]


@given(
    network=st.sampled_from(BLOCKED_NETWORKS),
    offset=st.integers(min_value=0),
    mapped=st.booleans(),
)
def test_every_address_of_a_restricted_range_is_blocked(network, offset, mapped):
    address = network[offset % network.num_addresses]
    text = str(address)
    if mapped and address.version == 4:
        text = f"::ffff:{address}"
    if address.version == 6 and address in ipaddress.ip_network("fe80::/10"):
        text += "%eth0"  # a zone id does not hide a link-local address
    assert blocked_address(text)


@given(address=st.ip_addresses(v=4))
def test_public_v4_addresses_are_not_blocked(address):
    inside = any(address.version == n.version and address in n for n in BLOCKED_NETWORKS)
    assert blocked_address(str(address)) == inside
