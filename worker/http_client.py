"""A small asyncio HTTP/1.1 client for HTTP nodes: one request per connection.

Built on h11 (a sans-I/O HTTP/1.1 state machine: it frames requests and
parses responses, including chunked bodies) with asyncio streams for the
I/O. We own the connect step, which is what the policy needs: the host is
resolved once, restricted addresses are dropped (``http_policy``), and the
socket goes to an address that was checked; TLS still verifies the
certificate for the host name (SNI). Redirects are never followed (a 3xx is
a result), no proxy is used, nothing is decompressed, and the only headers
added are Host, framing and a default User-Agent: the request is what the
node says, as in the reference.

The caller bounds the whole exchange with its timeout; the error classes
map onto the reference's messages (connection failed vs request failed).
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import quote, unquote

import h11

from pgdurable.worker import http_policy
from pgdurable.worker.http_policy import Blocked, Url

READ_CHUNK = 65536
# A response body larger than this fails the node instead of filling the
# worker's memory (setting pgdurable.http_max_response_bytes).
DEFAULT_MAX_BODY = 8 * 1024 * 1024
# Characters kept as written in the request target: RFC 3986 reserved and
# unreserved ones and '%' (already-encoded text stays encoded); the rest
# (spaces, quotes, non-ASCII…) is percent-encoded, as a URL parser would.
TARGET_SAFE = "/?#[]@!$&'()*+,;=:-._~%"


class ConnectFailed(Exception):
    """No connection could be made (resolution, refused, unreachable, TLS)."""


class RequestFailed(Exception):
    """The connection was made but the exchange broke (protocol, reset)."""


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str | None]]  # lowercase names; None = not visible ASCII
    body: bytes


def _ssl_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


_TLS: ssl.SSLContext | None = None


async def _addresses(host: str, port: int, restrict: bool) -> list[tuple]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ConnectFailed(f"dns error: {exc}") from exc
    if restrict:
        infos = [i for i in infos if not http_policy.blocked_address(i[4][0])]
        if not infos:
            raise http_policy.restricted(host)
    return infos


async def _connect(url: Url, restrict: bool):
    global _TLS
    host = url.host
    try:
        ascii_host = host.encode("idna").decode() if not host.isascii() else host
    except UnicodeError as exc:
        raise ConnectFailed(f"invalid host name: {exc}") from exc
    infos = await _addresses(ascii_host, url.port, restrict)
    tls = None
    if url.scheme == "https":
        _TLS = _TLS or _ssl_context()
        tls = _TLS
    last: Exception | None = None
    for family, _, proto, _, sockaddr in infos:
        try:
            return await asyncio.open_connection(
                sockaddr[0],
                sockaddr[1],
                family=family,
                proto=proto,
                ssl=tls,
                server_hostname=ascii_host if tls else None,
            )
        except (OSError, ssl.SSLError) as exc:
            last = exc
    raise ConnectFailed(f"error trying to connect: {last}")


def _request_headers(url: Url, headers: list[tuple[str, str]], body: bytes | None, method: str):
    names = {name.lower() for name, _ in headers}
    host = url.host if ":" not in url.host else f"[{url.host}]"
    if url.port != (443 if url.scheme == "https" else 80):
        host = f"{host}:{url.port}"
    out = [("Host", host)]
    out += [(n, v) for n, v in headers if n.lower() not in ("host", "content-length")]
    if "user-agent" not in names:
        out.append(("User-Agent", USER_AGENT))
    if url.userinfo is not None and "authorization" not in names:
        credentials = unquote(url.userinfo).encode()
        out.append(("Authorization", "Basic " + base64.b64encode(credentials).decode()))
    if body is not None or method in ("POST", "PUT", "PATCH"):
        out.append(("Content-Length", str(len(body or b""))))
    return [(n.encode(), v.encode()) for n, v in out]


async def request(
    method: str,
    url: Url,
    headers: list[tuple[str, str]],
    body: bytes | None,
    *,
    restrict: bool,
    max_body: int = DEFAULT_MAX_BODY,
) -> Response:
    """Send one request and read the whole response.

    Raises ``Blocked`` (all addresses restricted), ``ConnectFailed`` or
    ``RequestFailed``. No timeout here: the caller wraps the call.
    """
    reader, writer = await _connect(url, restrict)
    try:
        conn = h11.Connection(our_role=h11.CLIENT)
        try:
            target = quote(url.target, safe=TARGET_SAFE)
            data = conn.send(
                h11.Request(
                    method=method,
                    target=target,
                    headers=_request_headers(url, headers, body, method),
                )
            )
            if body:
                data += conn.send(h11.Data(data=body))
            data += conn.send(h11.EndOfMessage())
        except (h11.LocalProtocolError, UnicodeError) as exc:
            raise RequestFailed(f"builder error: {exc}") from exc
        writer.write(data)
        await writer.drain()
        return await _read_response(conn, reader, max_body)
    except (OSError, h11.RemoteProtocolError, ssl.SSLError) as exc:
        raise RequestFailed(f"error sending request: {exc}") from exc
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass  # closing a broken connection: nothing left to report


async def _read_response(
    conn: h11.Connection, reader: asyncio.StreamReader, max_body: int
) -> Response:
    response: h11.Response | None = None
    chunks: list[bytes] = []
    size = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(READ_CHUNK))
            continue
        if isinstance(event, h11.InformationalResponse):
            continue  # 100 Continue and friends precede the real response
        if isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > max_body:
                raise RequestFailed(
                    f"response body larger than {max_body} bytes"
                    " (pgdurable.http_max_response_bytes)"
                )
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    if response is None:
        raise RequestFailed("connection closed before a response")
    headers = []
    for name, value in response.headers:
        try:
            text: str | None = value.decode("ascii")
            if not text.isprintable():
                text = None
        except UnicodeDecodeError:
            text = None
        headers.append((name.decode("ascii", "replace").lower(), text))
    return Response(response.status_code, headers, b"".join(chunks))


USER_AGENT = "pg_durable/0.2.6"

__all__ = ["Blocked", "ConnectFailed", "RequestFailed", "Response", "USER_AGENT", "request"]
