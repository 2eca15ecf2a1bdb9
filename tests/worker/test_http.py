"""HTTP and HTTP_MULTIPART nodes end to end, against a server on 127.0.0.1
started by the test (SPEC B §4.2): envelope, encodings, 4xx result, 5xx
failure, no redirects, timeout, substitution, multipart, and the policy
tiers (bare IP, allow-list, the private-address block after DNS, the
privilege re-check)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, content_type: str | None, **headers) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        body = self._body()
        path = self.path
        if path.startswith("/status/"):
            code = int(path.split("/")[2])
            self._send(code, b"E" * 600 if code >= 500 else b"nope", "text/plain")
        elif path == "/redirect":
            self._send(302, b"", None, Location="/echo")
        elif path == "/binary":
            self._send(200, b"\x00\x01\xffdata", "application/octet-stream")
        elif path == "/untyped":
            self._send(200, "plain ünïcode".encode(), None)
        elif path == "/slow":
            # Answers only once the test is over: any client timeout fires first.
            self.server.finished.wait(60)
            self._send(200, b"late", "text/plain")
        else:
            echo = {
                "method": self.command,
                "path": path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("latin-1"),
            }
            self._send(200, json.dumps(echo).encode(), "application/json", X_Test="yes")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.finished = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.finished.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def policy(database, wf):
    """Set the tier (and allow-list) for the test database; alice may use HTTP."""
    database.execute("SELECT df.grant_usage('alice', true)")

    def set_policy(tier: str, allowed_hosts: str | None = None) -> None:
        name = database.name
        database.execute(f"ALTER DATABASE {name} SET pg_durable.http_policy = '{tier}'")
        if allowed_hosts is not None:
            database.execute(
                f"ALTER DATABASE {name} SET pgdurable.http_allowed_hosts = '{allowed_hosts}'"
            )

    return set_policy


def http(wf, url, method="GET", body=None, headers=None, timeout=30, name=None):
    config = {
        "url": url,
        "method": method,
        "body": body,
        "headers": headers,
        "timeout_seconds": timeout,
    }
    return wf.node("HTTP", query=json.dumps(config), result_name=name)


def multipart(wf, url, parts, headers=None, method="POST"):
    config = {
        "url": url,
        "method": method,
        "parts": parts,
        "headers": headers,
        "timeout_seconds": 30,
    }
    return wf.node("HTTP_MULTIPART", query=json.dumps(config))


def run_one(wf, graph) -> str:
    instance = wf.start(graph)
    wf.run()
    return instance


def test_get_returns_the_envelope_with_substituted_url_headers_and_body(wf, policy, server):
    policy("allow-all")
    graph = wf.then(
        wf.sql("SELECT 'abc' AS token, 7 AS n", name="cfg"),
        http(
            wf,
            f"http://{server}/echo?n=$cfg.n&id={{sys_instance_id}}",
            body="token=$cfg.token",
            headers={"X-Token": "$cfg.token", "Accept": "application/json", "X-Num": 5},
        ),
    )
    instance = run_one(wf, graph)
    wf.wait_status(instance)
    result = wf.result(instance)
    # The journal keeps the envelope as written (json, not jsonb): its key order.
    journaled = wf.database.value(
        "SELECT j.result::text FROM pgdurable.journal j JOIN df.nodes n"
        " ON n.instance_id = j.instance_id AND n.id = j.node_id"
        " WHERE j.instance_id = %s AND n.node_type = 'HTTP'",
        [instance],
    )
    assert list(json.loads(journaled)) == [
        "status",
        "body",
        "encoding",
        "headers",
        "ok",
        "duration_ms",
    ]
    assert (result["status"], result["ok"], result["encoding"]) == (200, True, "text")
    assert result["headers"]["x-test"] == "yes"
    assert result["headers"]["content-type"] == "application/json"
    assert isinstance(result["duration_ms"], int)
    echo = json.loads(result["body"])
    assert echo["method"] == "GET"
    assert echo["path"] == f"/echo?n=7&id={instance}"
    assert echo["body"] == "token=abc"  # the body is sent even for GET
    assert echo["headers"]["x-token"] == "abc"
    assert "x-num" not in echo["headers"]  # non-string header values are dropped
    assert echo["headers"]["user-agent"] == "pg_durable/0.2.6"
    details = database_details(wf, instance, "HTTP")
    assert details["delivery"] == "at_least_once"


def database_details(wf, instance, node_type):
    return wf.database.value(
        "SELECT status_details FROM df.nodes WHERE instance_id = %s AND node_type = %s",
        [instance, node_type],
    )


def test_4xx_and_3xx_are_results_and_redirects_are_not_followed(wf, policy, server):
    policy("allow-all")
    instance = run_one(
        wf,
        wf.join(
            http(wf, f"http://{server}/status/404"), http(wf, f"http://{server}/redirect", "POST")
        ),
    )
    wf.wait_status(instance)
    not_found, redirect = wf.result(instance)
    assert (not_found["status"], not_found["ok"], not_found["body"]) == (404, False, "nope")
    assert (redirect["status"], redirect["ok"]) == (302, False)
    assert redirect["headers"]["location"] == "/echo"


def test_5xx_fails_with_the_first_512_bytes_of_the_body(wf, policy, server):
    policy("allow-all")
    url = f"http://{server}/status/503"
    instance = run_one(wf, http(wf, url, "PUT"))
    wf.wait_status(instance, "failed")
    assert wf.output(instance) == f"HTTP PUT {url} returned 503: " + "E" * 512


def test_binary_bodies_are_base64_and_undeclared_utf8_is_text(wf, policy, server):
    policy("allow-all")
    instance = run_one(
        wf, wf.join(http(wf, f"http://{server}/binary"), http(wf, f"http://{server}/untyped"))
    )
    wf.wait_status(instance)
    binary, untyped = wf.result(instance)
    assert (binary["encoding"], binary["body"]) == ("base64", "AAH/ZGF0YQ==")
    assert (untyped["encoding"], untyped["body"]) == ("text", "plain ünïcode")


def test_timeout_and_connection_errors_fail_the_node(wf, policy, server):
    policy("allow-all")
    slow = f"http://{server}/slow"
    closed = "http://127.0.0.1:9/"  # discard port: nothing listens there
    first = run_one(wf, http(wf, slow, timeout=1))
    second = run_one(wf, http(wf, closed))
    wf.wait_status(first, "failed")
    wf.wait_status(second, "failed")
    assert wf.output(first) == f"HTTP timeout after 1s: {slow}"
    assert wf.output(second).startswith(f"HTTP connection failed: {closed} - ")


def test_multipart_sends_parts_with_whole_value_references(wf, policy, server):
    policy("allow-all")
    parts = [
        {"name": "literal", "data_b64": "aGVs\nbG8="},  # whitespace inside base64 is allowed
        {
            "name": "file",
            "filename": "{fname}.txt",
            "content_type": "text/plain",
            "data_b64": "$enc.data",
        },
    ]
    database = wf.database
    database.execute("SELECT df.setvar('fname', 'report')", user="alice")
    graph = wf.then(
        wf.sql("SELECT encode('from sql', 'base64') AS data", name="enc"),
        multipart(wf, f"http://{server}/upload", parts, headers={"Content-Type": "text/x-wrong"}),
    )
    instance = run_one(wf, graph)
    wf.wait_status(instance)
    echo = json.loads(wf.result(instance)["body"])
    content_type = echo["headers"]["content-type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    boundary = content_type.split("boundary=")[1]
    body = echo["body"]
    assert body.startswith(f"--{boundary}\r\n") and body.endswith(f"--{boundary}--\r\n")
    assert 'Content-Disposition: form-data; name="literal"\r\n\r\nhello\r\n' in body
    assert (
        'Content-Disposition: form-data; name="file"; filename="report.txt"\r\n'
        "Content-Type: text/plain\r\n\r\nfrom sql\r\n"
    ) in body


def test_multipart_data_with_mixed_references_fails(wf, policy, server):
    policy("allow-all")
    graph = wf.then(
        wf.sql("SELECT 'aGk=' AS data", name="enc"),
        multipart(wf, f"http://{server}/upload", [{"name": "x", "data_b64": "QQ==$enc.data"}]),
    )
    instance = run_one(wf, graph)
    wf.wait_status(instance, "failed")
    assert "whole-value reference" in wf.output(instance)


@pytest.mark.parametrize(
    ("tier", "allowed", "host", "expected"),
    [
        (
            "disabled",
            None,
            "127.0.0.1",
            "Blocked: outbound HTTP requests are disabled. Rebuild with the 'http-allow-azure-domains' Cargo feature to enable them.",
        ),
        (
            "azure",
            None,
            "127.0.0.1",
            "Blocked: requests to bare IP addresses are not permitted. Use an approved Azure service hostname instead.",
        ),
        (
            "test",
            None,
            "[::1]",
            "Blocked: requests to bare IP addresses are not permitted. Use an approved Azure service hostname instead.",
        ),
        (
            "azure",
            None,
            "localhost",
            "Blocked: 'localhost' is not in the allowed endpoint list. Only requests to approved Azure service domains are permitted.",
        ),
        (
            "test",
            "localhost, .example.invalid",
            "localhost",
            "Blocked: the resolved IP address for 'localhost' is in a restricted range. df.http() cannot access private or internal network addresses.",
        ),
    ],
)
def test_policy_tiers_block_loopback(wf, policy, server, tier, allowed, host, expected):
    policy(tier, allowed)
    port = server.rsplit(":", 1)[1]
    instance = run_one(wf, http(wf, f"http://user@{host}:{port}/echo"))
    wf.wait_status(instance, "failed")
    assert wf.output(instance) == expected


def test_scheme_and_privilege_are_checked_at_execution(wf, policy, database, server):
    policy("allow-all")
    bad_scheme = run_one(wf, http(wf, "ftp://example.com/file"))
    wf.wait_status(bad_scheme, "failed")
    assert wf.output(bad_scheme) == (
        "Blocked: unsupported URL scheme 'ftp'. Only http and https are allowed."
    )
    database.execute("REVOKE EXECUTE ON FUNCTION df.http(text,text,text,jsonb,integer) FROM alice")
    revoked = run_one(wf, http(wf, f"http://{server}/echo"))
    wf.wait_status(revoked, "failed")
    assert wf.output(revoked) == (
        "Blocked: role 'alice' does not have EXECUTE privilege on df.http(). Grant EXECUTE ON"
        " FUNCTION df.http(text,text,text,jsonb,integer) TO alice to allow HTTP requests."
    )
