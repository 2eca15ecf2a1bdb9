"""Where the dashboard listens and how: the address policy and the WSGI server.

Loopback (the default, ``127.0.0.1:8765``): no sign-in, the resolved
connection's role is the viewer, and only loopback Host headers are answered.
Any other address exposes it: every visitor signs in with a database role and
its password (a connection the server let in without checking the password,
under trust authentication, is refused), and it refuses to start without TLS
(``--tls-cert``/``--tls-key``) unless ``--insecure`` says plain HTTP is wanted
(e.g. behind a TLS proxy).
cheroot (CherryPy's server) serves it: threaded, production-grade, TLS built in.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from pgdurable.errors import PgDurableError
from pgdurable.ui.app import Settings, create_app

DEFAULT_ADDRESS = "127.0.0.1:8765"


class AddressError(PgDurableError):
    """The address or TLS options do not allow starting the dashboard."""

    exit_code = 2


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def url(self, tls: bool) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if tls else 'http'}://{host}:{self.port}/"


def parse_address(text: str) -> Address:
    """``host:port``, ``[v6]:port`` or ``:port`` (loopback); port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise AddressError(f"--address {text!r}: give HOST:PORT, e.g. {DEFAULT_ADDRESS}")
    host = host.strip("[]") or "127.0.0.1"
    return Address(host, int(port))


def settings_for(
    conninfo: str,
    address: Address,
    *,
    login: bool,
    tls: tuple[Path, Path] | None,
    insecure: bool,
    reports: tuple[Path, ...],
) -> Settings:
    """The app's settings under the address policy (module docstring)."""
    if not address.loopback and tls is None and not insecure:
        raise AddressError(
            f"{address.host} is not a loopback address: the dashboard would be reachable "
            "by others. Give --tls-cert FILE --tls-key FILE, or --insecure to serve plain "
            "HTTP anyway (e.g. behind a TLS-terminating proxy)."
        )
    return Settings(
        conninfo=conninfo,
        login=login or not address.loopback,
        require_password=not address.loopback,
        secure_cookie=tls is not None,
        loopback_only=address.loopback,
        reports=reports,
    )


def serve(settings: Settings, address: Address, tls: tuple[Path, Path] | None = None, ready=None):
    """Serve until interrupted (KeyboardInterrupt / SIGTERM stop the server)."""
    from cheroot import wsgi

    server = wsgi.Server((address.host, address.port), create_app(settings), numthreads=8)
    if tls is not None:
        from cheroot.ssl.builtin import BuiltinSSLAdapter

        server.ssl_adapter = BuiltinSSLAdapter(str(tls[0]), str(tls[1]))
    try:
        server.prepare()
    except OSError as exc:
        raise PgDurableError(f"cannot listen on {address.host}:{address.port}: {exc}") from exc
    if ready is not None:
        bound = Address(address.host, server.bind_addr[1])  # the port chosen for port 0
        ready(bound.url(tls is not None))
    try:
        server.serve()
    finally:
        server.stop()
