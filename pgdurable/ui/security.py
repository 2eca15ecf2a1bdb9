"""Sessions, sign-in and cross-site request forgery protection for the dashboard.

There is no user store: a session holds the connection string the person's
database role opens (the server's own one on loopback; on an exposed address,
the user and password typed into the sign-in form, checked by PostgreSQL when
it opens the connection). Sessions live in this process's memory only, behind a
random cookie (HttpOnly, SameSite=Strict, Secure under TLS); the password never
leaves the server.

Every POST must carry the session's CSRF token and, when the browser names one,
come from the dashboard's own origin; on loopback the Host header must name the
loopback address, so a page of another site cannot reach the dashboard through
DNS rebinding.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

COOKIE = "pgdurable_ui"
IDLE_SECONDS = 8 * 3600
# Every cookie-less request gets a session (it needs a CSRF token): a bound
# keeps a flood of them from growing the process without limit.
MAX_SESSIONS = 10_000


@dataclass
class Session:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    conninfo: str | None = None  # None until signed in
    user: str | None = None
    notices: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) to show once
    seen: float = field(default_factory=time.monotonic)


class Sessions:
    """Random token -> Session, expired after ``IDLE_SECONDS`` without use."""

    def __init__(self) -> None:
        self._by_token: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get(self, token: str | None) -> Session | None:
        now = time.monotonic()
        with self._lock:
            for key in [k for k, s in self._by_token.items() if now - s.seen > IDLE_SECONDS]:
                del self._by_token[key]
            session = self._by_token.get(token or "")
            if session is not None:
                session.seen = now
            return session

    def new(self, session: Session | None = None) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        session = session or Session()
        with self._lock:
            if len(self._by_token) >= MAX_SESSIONS:  # forget the longest unused
                oldest = min(self._by_token, key=lambda k: self._by_token[k].seen)
                del self._by_token[oldest]
            self._by_token[token] = session
        return token, session

    def drop(self, token: str | None) -> None:
        with self._lock:
            self._by_token.pop(token or "", None)


def token_matches(session: Session, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(session.csrf, given or "")


def same_origin(origin: str | None, referer: str | None, host_url: str) -> bool:
    """True when the request's Origin (or, without it, its Referer) is ours. A POST
    that names neither is refused too: every browser that can run a form sends one."""
    ours = urlsplit(host_url)
    claimed = origin if origin and origin != "null" else referer
    if not claimed:
        return False
    theirs = urlsplit(claimed)
    return (theirs.scheme, theirs.netloc) == (ours.scheme, ours.netloc)


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})


def loopback_host(host: str) -> bool:
    """True when a Host header names the loopback interface (any port)."""
    name, _, port = host.rpartition(":")
    if not port.isdigit():  # no port given
        name = host
    return name.lower() in LOOPBACK_NAMES
