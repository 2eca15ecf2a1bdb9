"""Lexing PostgreSQL text without executing it.

One small tokenizer serves two readers: splitting a job's command into
statements (to keep a multi-statement command atomic and to find statements
that cannot run in a transaction block) and reading a SQL script of
``cron.schedule(...)`` calls. It knows exactly what decides where a statement
ends: single-quoted strings (with ``''``), ``E'...'`` strings (with backslash
escapes), quoted identifiers, dollar quotes (``$tag$...$tag$``, not ``$1``),
``--`` comments and nested ``/* */`` comments. Lexical errors (an unterminated
string or comment) raise ``SqlLexError`` with a 1-based line and column.

The second half writes PostgreSQL text: it is the one place where text from
a source (job names, DAG and task ids, file paths, commands, role names)
enters a generated file. Every text from a source is hostile, so:

* ``comment(text)`` makes text safe inside a ``--`` comment (or, with
  ``block``, a ``/* */`` one): no character that ends a line for PostgreSQL,
  psql, an editor or a terminal (CR, LF, NEL, U+2028/U+2029, other controls,
  bidi overrides), no NUL, no ``/*`` (and for a block no ``*/``); each
  control is shown as an escape, so the reader still sees it.
* ``literal(text)`` is a string literal that means the same whatever
  ``standard_conforming_strings`` says (dollar quotes as soon as the text has
  a quote, a backslash or a line break); ``dollar_quote(body, tag)`` wraps a
  function body in a tag the body does not contain.
* ``identifier(name)`` is a quoted identifier; ``derived_identifier(prefix,
  name)`` a plain lower-case one derived from a name (e.g. a function name),
  shortened with a hash suffix to PostgreSQL's 63 bytes.

Text PostgreSQL cannot hold at all (NUL, lone surrogates) raises
``UnsafeText``; the pipeline turns that into a failed item.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

# PostgreSQL's own classes: ASCII digits, its five white-space characters (not
# U+00A0 or U+2028, which are identifier characters to it like every non-ASCII one).
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$")
_IDENT = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*")
_NUMBER = re.compile(r"[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?|\.[0-9]+([eE][-+]?[0-9]+)?")
_PARAM = re.compile(r"\$[0-9]+")
_SPACE = " \t\n\r\f\v"
_DIGITS = "0123456789"


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
        if c in _SPACE:
            j = i
            while j < n and text[j] in _SPACE:
                j += 1
            emit("space", j)
        elif text.startswith("--", i):
            # PostgreSQL's scanner ends a -- comment at \n or \r: a comment running on
            # past a lone \r would hide the statements after it from our checks
            ends = [j for j in (text.find("\n", i), text.find("\r", i)) if j >= 0]
            emit("comment", min(ends) if ends else n)
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
        elif m := _NUMBER.match(text, i):
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


# -- Writing source text into generated SQL ---------------------------------------------


class UnsafeText(ValueError):
    """Text that no SQL literal or identifier can carry (NUL, a lone surrogate)."""


# Categories never written raw into a comment: controls (CR, LF, NUL, NEL, VT, FF, ESC...),
# format characters (bidi overrides that reorder what a reader sees, zero-width ones),
# line and paragraph separators, surrogates (not UTF-8 at all) and private use.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_BLOCK_OPENER = re.compile(r"(?<=/)(?=\*)")  # between the two characters of "/*"
_BLOCK_DELIMITER = re.compile(r"(?<=/)(?=\*)|(?<=\*)(?=/)")  # ... and of "*/"


def comment(text: object, *, block: bool = False) -> str:
    """``text`` as one line that is safe in a ``--`` comment (with ``block``: inside
    ``/* */`` too). No ``/*`` survives, so source text never opens a block comment that
    would swallow the SQL after it in a tool that reads one; ``*/`` can only close a
    comment that is already open, so it is kept outside ``block`` (``*/10`` in a cron
    schedule stays readable)."""
    shown = "".join(_e_escape(c) if _hidden(c) else c for c in str(text))
    return (_BLOCK_DELIMITER if block else _BLOCK_OPENER).sub(" ", shown)


def _check_text(text: str, what: str) -> None:
    if "\x00" in text:
        raise UnsafeText(f"{what} contains a NUL character, which PostgreSQL text cannot hold")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnsafeText(
            f"{what} contains {comment(exc.object[exc.start])}, which is not UTF-8"
        ) from None


def dollar_quote(body: str, tag: str = "sql") -> str:
    """``body`` between ``$tag$`` quotes (``$tagN$`` when the body holds the tag)."""
    _check_text(body, "a SQL text")
    quote, n = f"${tag}$", 0
    # the closing tag must not occur earlier, not even straddling the body's end
    while (body + quote).find(quote) != len(body):
        n += 1
        quote = f"${tag}{n}$"
    return quote + body + quote


def _hidden(char: str) -> bool:
    return unicodedata.category(char) in _HIDDEN_CATEGORIES


def literal(text: str) -> str:
    """A SQL string literal of ``text``: single quotes for one plain line, dollar quotes
    when the text holds a quote, a backslash (whose meaning in single quotes depends on
    ``standard_conforming_strings``) or line breaks, and an ``E''`` string with escapes
    when it holds any other control or invisible character (a raw CR would not survive
    an editor or a newline-translating read; U+2028 would look like a line break)."""
    _check_text(text, "a SQL string")
    if any(_hidden(c) and c not in "\n\t" for c in text):
        escaped = "".join(
            "\\\\" if c == "\\" else "\\'" if c == "'" else _e_escape(c) if _hidden(c) else c
            for c in text
        )
        return "E'" + escaped + "'"
    if not any(c in text for c in "'\\\n"):
        return "'" + text + "'"
    return dollar_quote(text)


def _e_escape(char: str) -> str:
    """``char`` as an escape of an ``E''`` string (a code point, never a raw byte); the
    same notation shows a hidden character in a comment."""
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    code = ord(char)
    return named.get(char) or (f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")


def identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier (so keywords such as current_user stay names).
    A name with a control or invisible character is refused: a quoted identifier cannot
    escape one, and a role called "app<CR>" is not a role anyone means."""
    _check_text(name, "an identifier")
    if any(_hidden(c) for c in name):
        raise UnsafeText(f"the name {comment(name)!r} contains a control or invisible character")
    if len(name.encode()) > 63:
        raise UnsafeText(f"the name {comment(name)!r} is longer than PostgreSQL's 63 bytes")
    return '"' + name.replace('"', '""') + '"'


def _hashed(name: str, whole: str) -> str:
    """``name`` cut to fit 63 bytes with ``_`` and a hash of ``whole`` (the name it was
    derived from), so two names that share a start or lose characters stay distinct."""
    digest = hashlib.sha256(whole.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return name.encode()[: 63 - 11].decode("utf-8", "ignore") + "_" + digest


def _shortened(name: str, whole: str) -> str:
    return name if len(name.encode()) <= 63 else _hashed(name, whole)


def derived_identifier(prefix: str, name: str, *, quoted: bool = False) -> str:
    """An identifier ``<prefix><name>`` for an object generated for ``name``: a plain
    lower-case one (runs of other characters as ``_``), or with ``quoted`` the name
    itself as a quoted identifier; either at most 63 bytes."""
    if quoted:
        _check_text(name, "a name")
        shown = "".join("_" if _hidden(c) else c for c in name)
        if shown != name:  # lossy: the hash keeps two such names apart
            return identifier(_hashed(prefix + shown, name))
        return identifier(_shortened(prefix + name, name))
    base = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "job"
    return _shortened(prefix + base, name)
