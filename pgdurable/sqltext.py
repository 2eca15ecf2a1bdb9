"""Lexing PostgreSQL text without executing it.

One small tokenizer serves two readers: splitting a job's command into
statements (to keep a multi-statement command atomic and to find statements
that cannot run in a transaction block) and reading a SQL script of
``cron.schedule(...)`` calls. It knows exactly what decides where a statement
ends: single-quoted strings (with ``''``), ``E'...'`` strings (with backslash
escapes), quoted identifiers, dollar quotes (``$tag$...$tag$``, not ``$1``),
``--`` comments and nested ``/* */`` comments. Lexical errors (an unterminated
string or comment) raise ``SqlLexError`` with a 1-based line and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$")
_IDENT = re.compile(r"[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*")
_NUMBER = re.compile(r"\d+(\.\d*)?([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?")
_PARAM = re.compile(r"\$\d+")


class SqlLexError(ValueError):
    def __init__(self, message: str, line: int, col: int) -> None:
        super().__init__(f"{message} at line {line}, column {col}")
        self.reason = message
        self.line = line
        self.col = col


@dataclass(frozen=True)
class Token:
    kind: str  # ident, qident, string, number, op, semicolon, param, comment, space
    text: str  # the source text of the token
    start: int  # offset in the source
    line: int  # 1-based
    col: int  # 1-based
    value: str | None = None  # decoded value of strings and identifiers


def _decode_escape_string(body: str) -> str:
    simple = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append(simple.get(nxt, nxt))
            i += 2
        elif c == "'" and body[i + 1 : i + 2] == "'":
            out.append("'")
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def tokenize(text: str) -> list[Token]:
    """All tokens of ``text``, comments and white space included."""
    tokens: list[Token] = []
    i, line, line_start = 0, 1, 0
    n = len(text)

    def emit(kind: str, end: int, value: str | None = None) -> None:
        nonlocal i, line, line_start
        tokens.append(Token(kind, text[i:end], i, line, i - line_start + 1, value))
        newlines = text.count("\n", i, end)
        if newlines:
            line += newlines
            line_start = text.rfind("\n", i, end) + 1
        i = end

    def fail(message: str) -> SqlLexError:
        return SqlLexError(message, line, i - line_start + 1)

    while i < n:
        c = text[i]
        if c.isspace():
            j = i
            while j < n and text[j].isspace():
                j += 1
            emit("space", j)
        elif text.startswith("--", i):
            j = text.find("\n", i)
            emit("comment", n if j < 0 else j)
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while depth:
                if j >= n:
                    raise fail("unterminated /* comment")
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            emit("comment", j)
        elif c in "eE" and text.startswith("'", i + 1):
            j = i + 2
            while True:
                if j >= n:
                    raise fail("unterminated quoted string")
                if text[j] == "\\":
                    j += 2
                elif text[j] == "'":
                    if text.startswith("'", j + 1):
                        j += 2
                    else:
                        break
                else:
                    j += 1
            emit("string", j + 1, _decode_escape_string(text[i + 2 : j]))
        elif c == "'":
            j = i + 1
            while True:
                j = text.find("'", j)
                if j < 0:
                    raise fail("unterminated quoted string")
                if text.startswith("'", j + 1):
                    j += 2
                else:
                    break
            emit("string", j + 1, text[i + 1 : j].replace("''", "'"))
        elif c == '"':
            j = i + 1
            while True:
                j = text.find('"', j)
                if j < 0:
                    raise fail("unterminated quoted identifier")
                if text.startswith('"', j + 1):
                    j += 2
                else:
                    break
            emit("qident", j + 1, text[i + 1 : j].replace('""', '"'))
        elif c == "$" and (m := _DOLLAR_TAG.match(text, i)):
            tag = m.group(0)
            end = text.find(tag, m.end())
            if end < 0:
                raise fail(f"unterminated dollar-quoted string {tag}")
            emit("string", end + len(tag), text[m.end() : end])
        elif c == "$" and (m := _PARAM.match(text, i)):
            emit("param", m.end())
        elif m := _IDENT.match(text, i):
            emit("ident", m.end(), m.group(0).lower())
        elif c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            m = _NUMBER.match(text, i)
            assert m is not None
            emit("number", m.end(), m.group(0))
        elif c == ";":
            emit("semicolon", i + 1)
        elif text.startswith(("=>", ":=", "::"), i):
            emit("op", i + 2)
        else:
            emit("op", i + 1)
    return tokens


@dataclass(frozen=True)
class Statement:
    text: str  # without the terminating semicolon, stripped
    line: int  # line of its first token, 1-based, relative to the input
    words: tuple[str, ...]  # its first keywords, lower case

    def starts_with(self, *words: str) -> bool:
        return self.words[: len(words)] == words


def split_statements(text: str) -> list[Statement]:
    """The statements of ``text`` (empty ones, e.g. ``;;`` or comments only, dropped)."""
    statements: list[Statement] = []
    current: list[Token] = []

    def flush() -> None:
        significant = [t for t in current if t.kind not in ("space", "comment")]
        if significant:
            first, last = significant[0], current[-1]
            body = text[first.start : last.start + len(last.text)].strip()
            words = tuple(t.value or "" for t in significant[:6] if t.kind == "ident")
            statements.append(Statement(body, first.line, words))
        current.clear()

    for token in tokenize(text):
        if token.kind == "semicolon":
            flush()
        else:
            current.append(token)
    flush()
    return statements


def needs_autocommit(statement: Statement) -> bool:
    """True for statements PostgreSQL refuses inside a transaction block."""
    w = statement.words
    if w[:1] == ("vacuum",) or w[:2] in (("create", "database"), ("drop", "database")):
        return True
    if w[:2] in (("alter", "system"), ("create", "tablespace"), ("drop", "tablespace")):
        return True
    if w[:1] == ("cluster",) and len(w) == 1:
        return True
    concurrently = "concurrently" in w
    if concurrently and (
        w[:2] in (("create", "index"), ("drop", "index")) or w[:1] == ("reindex",)
    ):
        return True
    return concurrently and w[:3] == ("create", "unique", "index")


def is_transaction_control(statement: Statement) -> bool:
    """BEGIN / START TRANSACTION / COMMIT / END / ROLLBACK (not ROLLBACK TO a savepoint)."""
    w = statement.words
    if w[:1] in (("begin",), ("commit",), ("end",), ("abort",)):
        return True
    if w[:2] == ("start", "transaction"):
        return True
    return w[:1] == ("rollback",) and "to" not in w
