"""Which outbound HTTP requests a workflow may make (SPEC B §4.2, policy tiers).

Pure rules, no I/O. The tier comes from ``pg_durable.http_policy`` (read by
``pgdurable.http_policy()``: disabled | azure | test | allow-all, default
disabled); ``pgdurable.http_allowed_hosts`` adds hosts to the allowed
endpoint list of the ``azure`` and ``test`` tiers.

Checks run in the reference's order, each with its message: the URL scheme,
then the allow-list (disabled tier, bare IP, host not allowed). A host that
passes is still resolved under the address block (``blocked_address``):
every address it resolves to that lies in a private, loopback or link-local
range is dropped, and when none is left the request fails. The connection
then goes to one of the addresses that were checked, never to a second
resolution, so DNS rebinding cannot slip past the block.

URL parsing is done here once (``split_url``) and the HTTP client requests
exactly the host this module approved, so no parser differential can
separate what is checked from what is fetched.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

TIERS = ("disabled", "azure", "test", "allow-all")

# A leading dot requires at least one more label: the apex never matches.
AZURE_SUFFIXES = (
    ".blob.core.windows.net",
    ".blob.storage.azure.net",
    ".queue.core.windows.net",
    ".table.core.windows.net",
    ".file.core.windows.net",
    ".azurewebsites.net",
    ".azure-api.net",
    ".documents.azure.com",
    ".servicebus.windows.net",
    ".openai.azure.com",
    ".cognitiveservices.azure.com",
    ".vault.azure.net",
    ".redis.cache.windows.net",
    ".database.windows.net",
    ".kusto.windows.net",
    ".azurefd.net",
    ".azureedge.net",
    ".azure-devices.net",
    ".trafficmanager.net",
    ".cloudapp.azure.com",
)
AZURE_EXACT = ("api.github.com",)
TEST_EXACT = ("httpbingo.org",)

BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "::/128",
        "::1/128",
        "fe80::/10",
        "fc00::/7",
    )
)

DISABLED = (
    "Blocked: outbound HTTP requests are disabled. Rebuild with the "
    "'http-allow-azure-domains' Cargo feature to enable them."
)
BARE_IP = (
    "Blocked: requests to bare IP addresses are not permitted. "
    "Use an approved Azure service hostname instead."
)
NO_HOST = "Blocked: unable to extract hostname from URL."


class Blocked(Exception):
    """A request the policy refuses; the message is the node's error."""


@dataclass(frozen=True)
class Url:
    """A URL split the way the checks read it and the client requests it."""

    scheme: str  # ASCII-lowercased
    host: str  # without brackets, userinfo or port
    port: int
    target: str  # path and query, fragment removed; at least "/"
    userinfo: str | None


def split_url(url: str) -> Url | None:
    """Scheme, host, port and request target, or None when no host can be read.

    The host is the text after ``://`` up to the first ``/``, ``?`` or ``#``,
    without userinfo (up to the last ``@``) and port; a bracketed IPv6
    literal loses its brackets.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    scheme = scheme.lower() if scheme.isascii() else scheme
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, target = rest[:end], rest[end:]
    userinfo, at, host_port = authority.rpartition("@")
    port_text = ""
    if host_port.startswith("["):
        closing = host_port.find("]")
        if closing < 0:
            return None
        host = host_port[1:closing]
        port_text = host_port[closing + 1 :].removeprefix(":")
    else:
        host, colon, port_text = host_port.rpartition(":")
        if not colon:
            host, port_text = host_port, ""
    if not host:
        return None
    default_port = 443 if scheme == "https" else 80
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        return None
    target = target.partition("#")[0]
    if not target.startswith("/"):
        target = "/" + target
    return Url(scheme, host, port, target, userinfo if at else None)


def check_scheme(url: str) -> None:
    scheme = url.split("://", 1)[0]
    scheme = "".join(c.lower() if c.isascii() else c for c in scheme)
    if scheme not in ("http", "https"):
        raise Blocked(
            f"Blocked: unsupported URL scheme '{scheme}'. Only http and https are allowed."
        )


def parse_allowed_hosts(setting: str | None) -> tuple[str, ...]:
    """``pgdurable.http_allowed_hosts``: comma- or space-separated host names;
    ``.example.com`` allows every subdomain (not the apex), as the built-in
    suffixes do; ``example.com`` allows exactly that host."""
    if not setting:
        return ()
    return tuple(h.strip().lower() for h in setting.replace(",", " ").split() if h.strip())


def _host_allowed(host: str, tier: str, extra: tuple[str, ...]) -> bool:
    exact = AZURE_EXACT + (TEST_EXACT if tier == "test" else ())
    if host in exact:
        return True
    for entry in AZURE_SUFFIXES + extra:
        if entry.startswith("."):
            if host.endswith(entry) and len(host) > len(entry):
                return True
        elif host == entry:
            return True
    return False


def check_allowlist(url: str, tier: str, allowed_hosts: tuple[str, ...] = ()) -> None:
    """The tier's endpoint check (after the scheme check)."""
    if tier == "allow-all":
        return
    if tier not in ("azure", "test"):
        raise Blocked(DISABLED)
    parts = split_url(url)
    if parts is None:
        raise Blocked(NO_HOST)
    host = parts.host.lower() if parts.host.isascii() else parts.host
    if is_ip_literal(host):
        raise Blocked(BARE_IP)
    if not _host_allowed(host, tier, allowed_hosts):
        raise Blocked(
            f"Blocked: '{parts.host}' is not in the allowed endpoint list. "
            "Only requests to approved Azure service domains are permitted."
        )


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def blocked_address(address: str) -> bool:
    """True for an address in a restricted range (v4-mapped v6 is unwrapped first)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in BLOCKED_NETWORKS)


def restricted(host: str) -> Blocked:
    return Blocked(
        f"Blocked: the resolved IP address for '{host}' is in a restricted range. "
        "df.http() cannot access private or internal network addresses."
    )
