"""HTTP and HTTP_MULTIPART steps (SPEC B §4.2): substitution, checks, request,
the response envelope, and the outcome.

Order, as in the reference: raw substitution (SPEC B §5) of the node's
fields; then the role's EXECUTE privilege on ``df.http`` (or
``df.http_multipart``), re-checked on every request so a REVOKE also stops
hand-written graph JSON; the URL scheme; the tier's allow-list; then the
request, whose connection applies the private-address block.

Outcomes: 2xx, 3xx (redirects are not followed) and 4xx are results, the
envelope ``{"status","body","encoding","headers","ok","duration_ms"}``; a
5xx fails the node, as do timeouts and connection errors. Nothing is retried.

Delivery is at-least-once: the request runs with no database transaction
open, and its outcome is journaled afterwards, so a crash between the two
repeats the request on replay. The node's ``status_details`` says so
(``"delivery":"at_least_once"``), like an autocommit SQL step.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgdurable import db
from pgdurable.worker import http_client, http_policy
from pgdurable.worker.http_policy import Blocked
from pgdurable.worker.outcomes import Failed
from pgdurable.worker.results import dumps
from pgdurable.worker.substitution import (
    SubstitutionError,
    is_whole_value_reference,
    substitute,
)

if TYPE_CHECKING:
    from pgdurable.worker.graph import Node
    from pgdurable.worker.interpreter import Execution, Scope

HTTP_SIGNATURE = "df.http(text,text,text,jsonb,integer)"
MULTIPART_SIGNATURE = "df.http_multipart(text,text,jsonb,jsonb,integer)"
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
MULTIPART_METHODS = ("POST", "PUT", "PATCH")
ERROR_PREVIEW_BYTES = 512

# Content types that declare a textual body (after parameters are removed).
TEXTUAL_TYPES = {
    "application/json",
    "application/xml",
    "application/javascript",
    "application/ecmascript",
    "application/x-www-form-urlencoded",
    "application/graphql",
    "application/yaml",
    "application/x-yaml",
}
MIME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*;.*)?", re.S)


@dataclass(frozen=True)
class Policy:
    tier: str
    allowed_hosts: tuple[str, ...]
    privileged: bool
    max_body: int = http_client.DEFAULT_MAX_BODY


POLICY_QUERY = (
    "SELECT pgdurable.http_policy(),"
    " current_setting('pgdurable.http_allowed_hosts', true),"
    " pgdurable.admin_setting('pgdurable.http_max_response_bytes', %s),"
    " current_setting('pgdurable.http_max_response_bytes', true),"
    " coalesce((SELECT has_function_privilege(r.oid, to_regprocedure(%s), 'EXECUTE')"
    "           FROM pg_catalog.pg_roles r WHERE r.rolname = %s), false)"
)


async def _policy(ex: Execution, signature: str) -> Policy:
    """The tier, the allow-list setting and the role's privilege, read together
    on the worker's connection (the settings of the instance's control database)."""
    try:
        async with ex.journal.pool.connection() as conn:
            cursor = await conn.execute(
                POLICY_QUERY,
                [str(http_client.DEFAULT_MAX_BODY), signature, ex.instance.role or ""],
            )
            tier, hosts, max_body, database_max_body, privileged = await cursor.fetchone()
    except db.DatabaseError as exc:
        if db.is_connection_error(exc):
            raise
        raise Failed(db.error_text(exc)) from exc
    # The administrator's cap; a database's own value may only lower it.
    try:
        limit = min(int(value) for value in (max_body, database_max_body or max_body))
    except ValueError as exc:
        raise Failed(
            "pgdurable.http_max_response_bytes must be a number of bytes:"
            f" {max_body!r} / {database_max_body!r}"
        ) from exc
    return Policy(tier, http_policy.parse_allowed_hosts(hosts), bool(privileged), limit)


# -- substitution -------------------------------------------------------------


def _raw(ex: Execution, scope: Scope, text: str) -> str:
    instance = ex.instance
    return substitute(
        text, scope.results, instance.vars, instance.id, instance.label, for_sql=False
    )


def _headers(ex: Execution, scope: Scope, headers: Any) -> list[tuple[str, str]]:
    """String-valued headers, substituted, in key order (others are dropped)."""
    if not isinstance(headers, dict):
        return []
    return [
        (key, _raw(ex, scope, value))
        for key, value in sorted(headers.items())
        if isinstance(value, str)
    ]


@dataclass
class Request:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes | None
    timeout: int
    label: str  # "HTTP" or "HTTP_MULTIPART", the prefix of the 5xx message


def _timeout(config: dict[str, Any]) -> int:
    value = config.get("timeout_seconds")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 30


def _http_request(ex: Execution, node: Node, scope: Scope) -> Request:
    config = _config(node, "HTTP")
    body = config.get("body")
    return Request(
        method=str(config.get("method") or "POST").upper(),
        url=_raw(ex, scope, str(config.get("url") or "")),
        headers=_headers(ex, scope, config.get("headers")),
        body=None if body is None else _raw(ex, scope, str(body)).encode(),
        timeout=_timeout(config),
        label="HTTP",
    )


def _config(node: Node, kind: str) -> dict[str, Any]:
    try:
        config = json.loads(node.query or "")
    except ValueError as exc:
        raise Failed(f"Invalid {'multipart ' if kind != 'HTTP' else ''}HTTP config: {exc}") from exc
    if not isinstance(config, dict):
        raise Failed(f"Invalid {'multipart ' if kind != 'HTTP' else ''}HTTP config: not an object")
    return config


def _part_data(ex: Execution, scope: Scope, name: str, data: str) -> bytes:
    """A part's bytes: base64, substituted only as a whole-value reference."""
    if is_whole_value_reference(data):
        data = _raw(ex, scope, data.strip())
    elif "$" in data or "{" in data:
        raise Failed(
            f"data_b64 of part '{name}' must be literal base64 or a whole-value reference"
            " ($x, $x?, $x.c, $x.c? or {var}); mixed text cannot be substituted"
        )
    compact = re.sub(r"\s+", "", data)  # PostgreSQL's encode() wraps base64 at 76 columns
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Failed(f"Invalid base64 in part '{name}': {exc}") from exc


def _quoted(value: str) -> str:
    # Form-data parameters are quoted strings: quote and line breaks are escaped.
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _multipart_request(ex: Execution, node: Node, scope: Scope) -> Request:
    config = _config(node, "HTTP_MULTIPART")
    parts = config.get("parts")
    if not isinstance(parts, list) or not parts:
        raise Failed("Invalid multipart HTTP config: parts must be a non-empty array")
    boundary = secrets.token_hex(16)
    body = bytearray()
    for index, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise Failed(f"Invalid multipart HTTP config: part {index} needs a string 'name'")
        if not isinstance(part.get("data_b64"), str):
            raise Failed(f"Invalid multipart HTTP config: part {index} needs a string 'data_b64'")
        name = _raw(ex, scope, part["name"])
        data = _part_data(ex, scope, name, part["data_b64"])
        disposition = f'form-data; name="{_quoted(name)}"'
        if isinstance(part.get("filename"), str):
            disposition += f'; filename="{_quoted(_raw(ex, scope, part["filename"]))}"'
        lines = [f"--{boundary}", f"Content-Disposition: {disposition}"]
        content_type = part.get("content_type")
        if isinstance(content_type, str):
            if not MIME.fullmatch(content_type.strip()):
                raise Failed(
                    f"Invalid content_type for part '{name}': not a media type: {content_type}"
                )
            lines.append(f"Content-Type: {content_type.strip()}")
        body += ("\r\n".join(lines) + "\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    # The boundary is ours: a caller's Content-Type would make the body unreadable.
    headers = [
        (k, v) for k, v in _headers(ex, scope, config.get("headers")) if k.lower() != "content-type"
    ]
    headers.append(("Content-Type", f"multipart/form-data; boundary={boundary}"))
    return Request(
        method=str(config.get("method") or "POST").upper(),
        url=_raw(ex, scope, str(config.get("url") or "")),
        headers=headers,
        body=bytes(body),
        timeout=_timeout(config),
        label="HTTP_MULTIPART",
    )


# -- the response -------------------------------------------------------------


def declares_text(content_type: str | None) -> bool:
    if not content_type:
        return False
    mime = content_type.split(",", 1)[0].split(";", 1)[0].strip().lower()
    return bool(mime) and (
        mime.startswith("text/")
        or mime.endswith(("+json", "+xml", "+yaml"))
        or mime in TEXTUAL_TYPES
    )


def _charset(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return "utf-8"


def decode_body(content_type: str | None, raw: bytes) -> tuple[str, str]:
    """(body, encoding): declared text in its charset, else text when the bytes
    are UTF-8 without NUL, else base64."""
    if declares_text(content_type):
        assert content_type is not None
        try:
            text = raw.decode(_charset(content_type), errors="replace")
        except LookupError:  # an unknown charset name: read it as UTF-8
            text = raw.decode("utf-8", errors="replace")
        # PostgreSQL text cannot hold NUL: such a body travels as base64 instead.
        if "\x00" not in text:
            return text, "text"
    elif b"\x00" not in raw:
        try:
            return raw.decode("utf-8"), "text"
        except UnicodeDecodeError:
            pass
    return base64.b64encode(raw).decode("ascii"), "base64"


def _preview(body: str) -> str:
    """The first 512 bytes of the body text, cut on a character boundary."""
    data = body.encode()
    if len(data) <= ERROR_PREVIEW_BYTES:
        return body
    return data[:ERROR_PREVIEW_BYTES].decode("utf-8", errors="ignore")


def envelope(response: http_client.Response, duration_ms: int) -> tuple[str, str]:
    headers: dict[str, str] = {}
    content_type = None
    for name, value in response.headers:
        if name == "content-type" and content_type is None:
            content_type = value
        if value is not None:
            headers[name] = value  # a repeated header keeps its last value
    body, encoding = decode_body(content_type, response.body)
    result = dumps(
        {
            "status": response.status,
            "body": body,
            "encoding": encoding,
            "headers": dict(sorted(headers.items())),
            "ok": 200 <= response.status < 300,
            "duration_ms": duration_ms,
        }
    )
    return result, body


# -- the step -----------------------------------------------------------------


async def perform(request: Request, policy: Policy, signature: str, role: str) -> str:
    """Checks, then the request; the envelope (JSON text) or ``Failed``."""
    if not policy.privileged:
        function = signature.split("(", 1)[0]
        kind = "multipart HTTP" if request.label == "HTTP_MULTIPART" else "HTTP"
        raise Failed(
            f"Blocked: role '{role}' does not have EXECUTE privilege on {function}(). "
            f"Grant EXECUTE ON FUNCTION {signature} TO {role} to allow {kind} requests."
        )
    try:
        http_policy.check_scheme(request.url)
        http_policy.check_allowlist(request.url, policy.tier, policy.allowed_hosts)
    except Blocked as exc:
        raise Failed(str(exc)) from exc
    allowed = METHODS if request.label == "HTTP" else MULTIPART_METHODS
    if request.method not in allowed:
        suffix = " for multipart" if request.label == "HTTP_MULTIPART" else ""
        raise Failed(f"Unsupported HTTP method{suffix}: {request.method}")
    url = http_policy.split_url(request.url)
    if url is None:
        raise Failed(f"HTTP request failed: {request.url} - builder error: invalid URL")
    started = time.monotonic()
    try:
        async with asyncio.timeout(request.timeout):
            response = await http_client.request(
                request.method,
                url,
                request.headers,
                request.body,
                restrict=policy.tier != "allow-all",
                max_body=policy.max_body,
            )
    except TimeoutError as exc:
        raise Failed(f"HTTP timeout after {request.timeout}s: {request.url}") from exc
    except Blocked as exc:
        raise Failed(str(exc)) from exc
    except http_client.ConnectFailed as exc:
        raise Failed(f"HTTP connection failed: {request.url} - {exc}") from exc
    except http_client.RequestFailed as exc:
        raise Failed(f"HTTP request failed: {request.url} - {exc}") from exc
    result, body = envelope(response, int((time.monotonic() - started) * 1000))
    if response.status >= 500:
        raise Failed(
            f"{request.label} {request.method} {request.url} returned {response.status}: "
            f"{_preview(body)}"
        )
    return result


async def run_http(ex: Execution, node: Node, scope: Scope) -> str:
    """Executor of HTTP and HTTP_MULTIPART nodes (registered in ``steps``)."""
    from pgdurable.worker.steps import record_failure

    multipart = node.type == "HTTP_MULTIPART"
    signature = MULTIPART_SIGNATURE if multipart else HTTP_SIGNATURE
    try:
        try:
            request = (_multipart_request if multipart else _http_request)(ex, node, scope)
        except SubstitutionError as exc:
            raise Failed(str(exc)) from exc
        await ex.flush()  # our 'running' stamp, and a cancel check, before the request
        policy = await _policy(ex, signature)
        limit = ex.services.step_timeout  # bounds the node's own timeout_seconds too
        try:
            async with ex.services.step_slots.hold(ex.instance.role):
                async with asyncio.timeout(limit):  # the wait for a slot does not count
                    result = await perform(request, policy, signature, ex.instance.role or "")
        except TimeoutError as exc:
            raise Failed(
                f"HTTP step exceeded the step time limit, pgdurable.step_timeout ({limit:g} s)"
            ) from exc
    except Failed as failure:
        raise await record_failure(ex, node, scope, failure.error) from failure
    await ex.journal.record(
        scope.name, scope.gen, node.id, "completed", result=result, delivery="at_least_once"
    )
    return result
