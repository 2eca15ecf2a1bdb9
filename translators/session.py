"""One psql session split into steps: carrying its session settings along.

psql runs all of its ``-c`` commands and every statement of its ``-f``
scripts in ONE session, so ``SET search_path TO reporting`` (or
``set_config(name, value, false)``, or a ``PGOPTIONS='-c name=value'`` /
``PGTZ`` given to libpq) still applies to the statements after it. A
workflow runs each of those as its own step, in a fresh transaction of a
pooled connection, where the setting is gone. ``carry`` walks a translated
psql invocation's steps in the order they run and prepends, to every step
after a setting (or to every step, for settings from the environment), the
transaction-local form of each setting still in effect: ``SET LOCAL ...`` for
a ``SET``, ``set_config(name, value, true)`` otherwise. Inside the step's
transaction that is the same setting psql's session had.

What cannot be carried that way is reported, never silently dropped:

* ``SET ROLE`` / ``SET SESSION AUTHORIZATION`` before a later step: the
  later statements ran as another role in the source (PGD363, manual);
* a later step that cannot run in a transaction block (``VACUUM`` ...), so no
  setting can be prepended to it, ``--portable`` (one statement per step),
  a ``set_config`` whose arguments are not literals, temporary tables,
  prepared statements, ``WITH HOLD`` cursors, ``LISTEN``: PGD263,
  approximate, naming the statement and what the later steps lose.

Shared by every psql reader (crontab, Kubernetes, Airflow's BashOperator).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace

from pgdurable import model as m
from pgdurable.diagnostics import Collector
from pgdurable.sqltext import (
    SqlLexError,
    Token,
    literal,
    needs_autocommit,
    split_statements,
    tokenize,
)


@dataclass
class _State:
    base: dict[str, str]  # name -> local statement, from the connection (PGOPTIONS...)
    carried: dict[str, str] = field(default_factory=dict)
    role_change: str | None = None  # the statement that switched role
    lost: list[str] = field(default_factory=list)  # what later steps lose (PGD263)
    pending: list[str] = field(default_factory=list)  # lost only if a step follows
    shown: set[str] = field(default_factory=set)  # the settings prepended somewhere

    def current(self) -> dict[str, str]:
        return {**self.base, **self.carried} if self.carried else dict(self.base)


def local_setting(name: str, value: str) -> str:
    """The transaction-local statement for one setting (name, value from a source)."""
    return f"SELECT set_config({literal(name)}, {literal(value)}, true)"


def _words(text: str) -> list[Token]:
    return [t for t in tokenize(text) if t.kind not in ("space", "comment")]


def _kw(token: Token | None) -> str:
    return (token.value or token.text).lower() if token and token.kind == "ident" else ""


def _observe(text: str, state: _State) -> None:
    """Update the session state with one statement's effect."""
    try:
        tokens = _words(text)
    except SqlLexError:
        return
    if not tokens:
        return
    first = _kw(tokens[0])
    second = _kw(tokens[1]) if len(tokens) > 1 else ""
    third = _kw(tokens[2]) if len(tokens) > 2 else ""
    short = " ".join(text.split())[:60]
    if first == "set":
        rest = 1
        if second == "session":
            if third in ("authorization", "characteristics"):
                if third == "authorization":
                    state.role_change = short
                else:
                    state.pending.append(f"{short!r} (a session default)")
                return
            rest = 2
        elif second == "local" or second in ("transaction", "constraints"):
            return  # ends with the transaction in psql too
        head = _kw(tokens[rest]) if len(tokens) > rest else ""
        if head == "role":
            state.role_change = short
            return
        if head == "time" and _kw(tokens[rest + 1] if len(tokens) > rest + 1 else None) == "zone":
            name = "timezone"
        elif head == "schema":
            name = "search_path"
        elif head == "names":
            name = "client_encoding"
        elif len(tokens) > rest and tokens[rest].kind in ("ident", "qident"):
            parts, j = [], rest
            while j < len(tokens) and tokens[j].kind in ("ident", "qident"):
                parts.append((tokens[j].value or tokens[j].text).lower())
                j += 1
                if j < len(tokens) and tokens[j].text == ".":
                    j += 1
                    continue
                break
            name = ".".join(parts)
            values = tokens[j + 1 :]
            if len(values) == 1 and _kw(values[0]) == "default":
                state.carried.pop(name, None)  # back to the connection's value (base)
                return
        else:
            state.pending.append(f"{short!r}")
            return
        if name == "client_encoding":
            state.pending.append(f"{short!r} (the client encoding)")
            return
        state.carried[name] = "SET LOCAL " + text[tokens[rest].start :]
        return
    if first == "reset":
        if second == "all":
            state.carried = {}
        elif second == "role" or (second == "session" and third == "authorization"):
            state.role_change = None  # back to the login role: what the steps run as
        elif second:
            name = (tokens[1].value or tokens[1].text).lower()
            if second == "time" and third == "zone":
                name = "timezone"
            state.carried.pop(name, None)  # back to the connection's value (base)
        return
    if first == "discard" and second == "all":
        state.carried = {}
        return
    if first == "discard":
        return
    if _set_config(tokens, text, state, short):
        return
    if first == "create" and (
        second in ("temp", "temporary")
        or (second in ("local", "global") and third in ("temp", "temporary"))
    ):
        state.pending.append(f"{short!r} (a temporary object)")
    elif first == "prepare" and second != "transaction":
        state.pending.append(f"{short!r} (a prepared statement)")
    elif first == "declare" and any(_kw(t) == "hold" for t in tokens):
        state.pending.append(f"{short!r} (a WITH HOLD cursor)")
    elif first == "listen":
        state.pending.append(f"{short!r} (a LISTEN)")
    elif first == "do" and "set_config" in text.lower():
        state.pending.append(f"{short!r} (may call set_config)")


def _set_config(tokens: list[Token], text: str, state: _State, short: str) -> bool:
    """``SELECT set_config('n', 'v', false)`` (alone in its statement) as a setting."""
    calls = [
        i
        for i, t in enumerate(tokens)
        if _kw(t) == "set_config" and i + 1 < len(tokens) and tokens[i + 1].text == "("
    ]
    if not calls:
        return False
    i = calls[0]
    args = tokens[i + 2 : i + 7]
    plain = (
        len(calls) == 1
        and _kw(tokens[0]) == "select"
        and (i == 1 or (i == 3 and _kw(tokens[1]) == "pg_catalog" and tokens[2].text == "."))
        and len(tokens) == i + 8
        and tokens[-1].text == ")"
        and len(args) == 5
        and args[0].kind == "string"
        and args[2].kind == "string"
        and args[1].text == ","
        and args[3].text == ","
    )
    if plain:
        flag = (args[4].value or args[4].text).lower()
        if flag in ("true", "t", "on", "yes", "1"):
            return True  # transaction-local: ends with the statement's transaction
        if flag in ("false", "f", "off", "no", "0"):
            state.carried[(args[0].value or "").lower()] = local_setting(
                args[0].value or "", args[2].value or ""
            )
            return True
    state.pending.append(f"{short!r} (set_config whose effect is not read)")
    return True


def _leaves(node: m.Node) -> bool:
    """True when the node is made only of Seq / Try / Sleep / Sql."""
    if isinstance(node, m.Sql | m.Sleep):
        return True
    if isinstance(node, m.Seq):
        return all(_leaves(s) for s in node.steps)
    if isinstance(node, m.Try):
        return _leaves(node.node) and _leaves(node.on_failure)
    return False


def carry(
    node: m.Node,
    diag: Collector,
    where: str,
    *,
    portable: bool,
    base: dict[str, str] | None = None,
) -> tuple[m.Node, bool]:
    """The steps with the session's settings carried into each of them, and whether
    a step got a prefix (a multi-statement step: the pgdurable profile).

    ``base`` maps a setting name to its local statement, for settings the
    connection itself makes (PGOPTIONS, PGTZ); ``where`` names the invocation
    for the diagnostics."""
    state = _State(dict(base or {}))
    if not _leaves(node):
        # Steps wrapped in other nodes: nothing is rewritten, but nothing is hidden either.
        leaves = [n for n in m.walk(node) if isinstance(n, m.Sql)]
        for leaf in leaves[:-1]:
            try:
                for st in split_statements(leaf.query):
                    _observe(st.text, state)
            except SqlLexError:
                continue
        changed = state.carried or state.pending or state.role_change or state.base
        if changed and len(leaves) > 1:
            diag.add(
                "PGD263",
                f"{where}: psql ran the statements in one session; the workflow's steps "
                "here are wrapped in other nodes, so the session settings are not carried "
                "into the later steps. Check that the later statements do not depend on them",
            )
        return node, False

    def visit(n: m.Node) -> m.Node:
        if isinstance(n, m.Seq):
            return replace(n, steps=tuple(visit(s) for s in n.steps))
        if isinstance(n, m.Try):
            return replace(n, node=visit(n.node))
        if not isinstance(n, m.Sql):
            return n
        query = n.query
        try:
            statements = split_statements(query)
        except SqlLexError:
            statements = []
        if state.role_change is not None:
            diag.add(
                "PGD363",
                f"{where}: {state.role_change!r} switches the session's role, so psql ran "
                f"{' '.join(query.split())[:60]!r} as that role; the workflow runs each step "
                "as its own role. Run the job as that role (--role-map / --default-username) "
                "and drop the SET ROLE, or put the statements in one step, then regenerate",
            )
            state.role_change = None
        if state.pending:
            state.lost += state.pending
            state.pending = []
        current = state.current()
        if current:
            if portable:
                state.lost.append(
                    f"the settings {', '.join(sorted(current))} (--portable: a step holds "
                    "one statement, so they cannot be set in it)"
                )
            elif any(needs_autocommit(s) for s in statements):
                state.lost.append(
                    f"the settings {', '.join(sorted(current))} for "
                    f"{' '.join(query.split())[:40]!r}, which cannot run in a transaction "
                    "block, so nothing can be set before it in its step"
                )
            else:
                query = ";\n".join([*current.values(), query])
                state.shown.update(current)
        for st in statements:
            _observe(st.text, state)
        return replace(n, query=query) if query != n.query else n

    result = visit(node)
    if state.lost:
        lost = "; ".join(dict.fromkeys(state.lost))
        diag.add(
            "PGD263",
            f"{where}: psql ran the statements in one session, the workflow runs them in "
            f"one transaction per step, and the later steps do not see: {lost}. Check that "
            "the later statements do not depend on it",
        )
    if state.shown:
        shown = ", ".join(sorted(state.shown))
        diag.add(
            "PGD264",
            f"{where}: the session settings ({shown}) are set again, for its own transaction, "
            "at the start of every step they applied to in psql's session "
            "(SET LOCAL / set_config(..., true))",
        )
    return result, bool(state.shown)


# -- the connection's own settings (libpq environment) -------------------------

# libpq variables that set a server setting at connection start (libpq's
# PQconndefaults table): carried as set_config per step.
_SETTING_ENV = {
    "PGTZ": "TimeZone",
    "PGDATESTYLE": "DateStyle",
    "PGGEQO": "geqo",
    "PGAPPNAME": "application_name",
}
# libpq variables that change what a run does but have no per-step equivalent.
_OTHER_ENV = {
    "PGCLIENTENCODING": "the client encoding (characters the server cannot convert fail)",
    "PGPORT": "the server port (another cluster on the same host?)",
    "PGSERVICE": "a pg_service.conf entry (its database, user and options are not read)",
    "PGSERVICEFILE": "a pg_service.conf file (its entries are not read)",
    "PGTARGETSESSIONATTRS": "which server of a list it connects to",
    "PGHOSTADDR": "the server address",
}


def libpq_options(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """PGOPTIONS / ``options``: ``-c a=1 -cb=2 --c=3`` as (name, value) pairs, and
    the words that are something else (backslash escapes a space, as in libpq)."""
    try:
        words = shlex.split(text)
    except ValueError:
        return [], [text]
    found: list[tuple[str, str]] = []
    other: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c" and i + 1 < len(words):
            pair, i = words[i + 1], i + 2
        elif word.startswith("-c") and len(word) > 2:
            pair, i = word[2:], i + 1
        elif word.startswith("--") and "=" in word:
            name, _, value = word[2:].partition("=")
            pair, i = name.replace("-", "_") + "=" + value, i + 1
        else:
            other.append(word)
            i += 1
            continue
        name, eq, value = pair.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):
            other.append(pair)
            continue
        found.append((name, value))
    return found, other


def env_settings(env: dict[str, str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The server settings the libpq environment makes (PGOPTIONS, PGTZ, ...), and
    (code, message) caveats for the variables that cannot be carried."""
    settings: list[tuple[str, str]] = []
    caveats: list[tuple[str, str]] = []
    if env.get("PGOPTIONS"):
        found, other = libpq_options(env["PGOPTIONS"])
        settings += found
        if other:
            caveats.append(
                (
                    "PGD265",
                    f"PGOPTIONS holds {' '.join(other)[:60]!r}, which is not '-c name=value'; "
                    "the workflow's steps do not get it",
                )
            )
    for var, name in _SETTING_ENV.items():
        if env.get(var):
            settings.append((name, env[var]))
    for var, what in _OTHER_ENV.items():
        if env.get(var):
            caveats.append(
                (
                    "PGD265",
                    f"{var}={env[var][:40]!r} sets {what} for psql; the workflow's steps "
                    "run on the worker's own connection without it",
                )
            )
    return settings, caveats
