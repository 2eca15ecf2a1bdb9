"""The HTTP policy rules (SPEC B §4.2): host parsing, tiers, the address block."""

from __future__ import annotations

import pytest

from pgdurable.worker.http_policy import (
    Blocked,
    blocked_address,
    check_allowlist,
    check_scheme,
    parse_allowed_hosts,
    split_url,
)
from pgdurable.worker.http_step import declares_text, decode_body


@pytest.mark.parametrize(
    ("url", "host", "port", "target"),
    [
        ("https://a.blob.core.windows.net/c?x=1", "a.blob.core.windows.net", 443, "/c?x=1"),
        ("http://u:p@host.example:8080/p#frag", "host.example", 8080, "/p"),
        ("http://[::1]:81?q", "::1", 81, "/?q"),
        # '?' or '#' ends the authority: a fake suffix after them is not the host
        ("https://evil.com?.azurewebsites.net", "evil.com", 443, "/?.azurewebsites.net"),
        ("https://evil.com#@x.azurewebsites.net/", "evil.com", 443, "/"),
        # userinfo ends at the last '@'
        ("https://x.azurewebsites.net@evil.com/", "evil.com", 443, "/"),
    ],
)
def test_split_url(url, host, port, target):
    parts = split_url(url)
    assert (parts.host, parts.port, parts.target) == (host, port, target)


def test_scheme_check():
    check_scheme("HTTPS://x")
    with pytest.raises(Blocked, match="unsupported URL scheme 'file'"):
        check_scheme("file:///etc/passwd")
    with pytest.raises(Blocked, match="unsupported URL scheme 'no-scheme-here'"):
        check_scheme("no-scheme-here")


@pytest.mark.parametrize(
    ("tier", "host", "allowed"),
    [
        ("azure", "acct.blob.core.windows.net", True),
        ("azure", "ACCT.Vault.Azure.Net", True),
        ("azure", "blob.core.windows.net", False),  # a subdomain is required
        ("azure", "api.github.com", True),
        ("azure", "x.api.github.com", False),  # exact only
        ("azure", "httpbingo.org", False),
        ("test", "httpbingo.org", True),
        ("test", "evilblob.core.windows.net", False),
        ("allow-all", "anything.example", True),
    ],
)
def test_tiers(tier, host, allowed):
    if allowed:
        check_allowlist(f"https://{host}/", tier)
    else:
        with pytest.raises(Blocked, match="is not in the allowed endpoint list"):
            check_allowlist(f"https://{host}/", tier)


def test_allowed_hosts_setting_extends_the_list_but_not_to_bare_ips():
    hosts = parse_allowed_hosts("api.example.com, .corp.example  10.0.0.1")
    assert hosts == ("api.example.com", ".corp.example", "10.0.0.1")
    check_allowlist("https://api.example.com/x", "azure", hosts)
    check_allowlist("https://svc.corp.example/x", "azure", hosts)
    with pytest.raises(Blocked, match="not in the allowed endpoint list"):
        check_allowlist("https://corp.example/x", "azure", hosts)
    with pytest.raises(Blocked, match="bare IP"):
        check_allowlist("https://10.0.0.1/x", "azure", hosts)
    with pytest.raises(Blocked, match="disabled"):
        check_allowlist("https://api.example.com/x", "disabled", hosts)


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("100.64.0.1", True),
        ("100.128.0.1", False),
        ("169.254.169.254", True),
        ("172.16.0.1", True),
        ("172.32.0.1", False),
        ("192.168.1.1", True),
        ("0.1.2.3", True),
        ("8.8.8.8", False),
        ("::", True),
        ("::1", True),
        ("fe80::1%eth0", True),
        ("fd00::1", True),
        ("::ffff:127.0.0.1", True),  # v4-mapped is unwrapped first
        ("::ffff:8.8.8.8", False),
        ("2001:db8::1", False),
    ],
)
def test_blocked_addresses(address, blocked):
    assert blocked_address(address) is blocked


@pytest.mark.parametrize(
    ("content_type", "textual"),
    [
        ("text/html; charset=utf-8", True),
        ("application/vnd.api+json", True),
        ("image/svg+xml", True),
        ("application/x-www-form-urlencoded", True),
        ("application/octet-stream", False),
        ("", False),
        (None, False),
    ],
)
def test_declared_text(content_type, textual):
    assert declares_text(content_type) is textual


def test_body_decoding():
    assert decode_body("text/plain; charset=iso-8859-1", b"caf\xe9") == ("café", "text")
    assert decode_body(None, "ok ✓".encode()) == ("ok ✓", "text")
    assert decode_body(None, b"a\x00b") == ("YQBi", "base64")
    assert decode_body("application/octet-stream", b"\xff\xfe") == ("//4=", "base64")
