"""The simple ``WHERE`` and ``SET`` clauses of statements on ``cron.job``.

A pg_cron script may edit the job table directly (``UPDATE cron.job SET database
= 'x' WHERE jobname = 'y'``, ``DELETE FROM cron.job WHERE command LIKE ...``,
``(SELECT jobid FROM cron.job WHERE jobname = 'n')``). The script reader replays
those edits on its in-memory table; this module reads the clauses and decides,
per job, whether a row matches.

Only what can be decided exactly is read: comparisons of one column with
literals (``=``, ``<>``, ``!=``, ``LIKE``, ``ILIKE``, ``IN (...)``, ``IS [NOT]
NULL``), combined with ``AND``, ``OR``, ``NOT`` and parentheses. Anything else
raises ``Unsupported``, and the caller makes the jobs it might touch manual.

A replayed job does not know every column: a script does not say which role ran
it (``username`` is NULL in the replay, meaning "the script's role") nor, without
``\\c``, the database (``cron.database_name``), the host (``cron.host``) or the
port. A comparison with such a column is ``UNKNOWN``: the row may or may not
match, which the caller reports instead of guessing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pgdurable.sqltext import Token


class Unsupported(ValueError):
    """A clause this module cannot decide exactly (the message names the construct)."""


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()  # a value (or truth value) the replay cannot know
# Three-valued SQL logic plus UNKNOWN: True, False, None (SQL NULL), UNKNOWN.
Truth = bool | None | _Unknown

TEXT_COLUMNS = {"jobname", "schedule", "command", "database", "username", "nodename"}
INT_COLUMNS = {"jobid", "nodeport"}
BOOL_COLUMNS = {"active"}
COLUMNS = TEXT_COLUMNS | INT_COLUMNS | BOOL_COLUMNS

# A row as the evaluator sees it: column name -> value (None = NULL, UNKNOWN).
Row = Callable[[str], object]


def _and(a: Truth, b: Truth) -> Truth:
    if a is False or b is False:
        return False
    if a is UNKNOWN or b is UNKNOWN:
        return UNKNOWN
    if a is None or b is None:
        return None
    return True


def _or(a: Truth, b: Truth) -> Truth:
    if a is True or b is True:
        return True
    if a is UNKNOWN or b is UNKNOWN:
        return UNKNOWN
    if a is None or b is None:
        return None
    return False


def _not(a: Truth) -> Truth:
    if a is UNKNOWN or a is None:
        return a
    return not a


def like_regex(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """SQL ``LIKE`` as a regular expression (``%``, ``_``, backslash escapes the next
    character, the default ESCAPE)."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


@dataclass(frozen=True)
class Literal:
    value: str | None  # the literal's text; None for NULL
    kind: str  # string, number, bool, null


def _coerce(column: str, lit: Literal) -> object:
    """The literal as the column's type; Unsupported if PostgreSQL would refuse it
    or convert it in a way not worth guessing."""
    if lit.value is None:
        return None
    if column in INT_COLUMNS:
        if not re.fullmatch(r"[0-9]+", lit.value.strip()):
            raise Unsupported(f"{column} compared with {lit.value!r}, which is not an integer")
        return int(lit.value)
    if column in BOOL_COLUMNS:
        text = lit.value.strip().lower()
        if text in ("t", "true", "y", "yes", "on", "1"):
            return True
        if text in ("f", "false", "n", "no", "off", "0"):
            return False
        raise Unsupported(f"active compared with {lit.value!r}, which is not a boolean")
    return lit.value


class Parser:
    """Reads tokens (no spaces or comments) from ``pos``; ``alias`` is the table's
    alias, if any (``UPDATE cron.job AS j``)."""

    def __init__(self, tokens: Sequence[Token], pos: int = 0, alias: str | None = None):
        self.tokens = tokens
        self.pos = pos
        self.alias = alias

    # -- token helpers
    def peek(self, ahead: int = 0) -> Token | None:
        i = self.pos + ahead
        return self.tokens[i] if i < len(self.tokens) else None

    def word(self, ahead: int = 0) -> str | None:
        t = self.peek(ahead)
        return t.value if t is not None and t.kind == "ident" else None

    def at_end(self) -> bool:
        return self.pos >= len(self.tokens)

    def expect(self, text: str) -> None:
        t = self.peek()
        if t is None or (t.text.lower() != text and t.value != text):
            got = "the end of the statement" if t is None else repr(t.text)
            raise Unsupported(f"expected {text!r}, found {got}")
        self.pos += 1

    # -- pieces
    def column(self) -> str:
        """A column of cron.job, unqualified or qualified by the table or its alias."""
        names: list[str] = []
        while True:
            t = self.peek()
            if t is None or t.kind not in ("ident", "qident"):
                got = "the end" if t is None else repr(t.text)
                raise Unsupported(f"expected a column of cron.job, found {got}")
            names.append(t.value or "")
            self.pos += 1
            nxt = self.peek()
            if nxt is not None and nxt.text == ".":
                self.pos += 1
                continue
            break
        qualifier, name = names[:-1], names[-1]
        allowed = (["job"], ["cron", "job"], [self.alias] if self.alias else None)
        if qualifier and qualifier not in allowed:
            raise Unsupported(f"{'.'.join(names)!r} is not a column of cron.job")
        if name not in COLUMNS:
            raise Unsupported(f"{name!r} is not a column of cron.job")
        return name

    def literal(self) -> Literal:
        t = self.peek()
        if t is None:
            raise Unsupported("expected a literal, found the end of the statement")
        if t.kind == "string":
            lit = Literal(t.value, "string")
        elif t.kind == "number":
            lit = Literal(t.text, "number")
        elif t.kind == "ident" and t.value in ("true", "false"):
            lit = Literal(t.value, "bool")
        elif t.kind == "ident" and t.value == "null":
            lit = Literal(None, "null")
        else:
            raise Unsupported(f"{t.text!r} is not a literal")
        self.pos += 1
        self.skip_casts()
        return lit

    def skip_casts(self) -> None:
        # 'x'::text, 'x'::varchar: the cast does not change a text comparison
        while (t := self.peek()) is not None and t.text == "::":
            nxt = self.peek(1)
            if nxt is None or nxt.value not in (
                "text",
                "varchar",
                "name",
                "bigint",
                "int",
                "integer",
                "boolean",
                "bool",
                "int4",
                "int8",
            ):
                raise Unsupported(f"a cast to {nxt.text if nxt else '?'!r}")
            self.pos += 2

    # -- WHERE
    def condition(self) -> Callable[[Row], Truth]:
        left = self._term()
        while self.word() == "or":
            self.pos += 1
            right = self._term()
            left = (lambda a, b: lambda row: _or(a(row), b(row)))(left, right)
        return left

    def _term(self) -> Callable[[Row], Truth]:
        left = self._factor()
        while self.word() == "and":
            self.pos += 1
            right = self._factor()
            left = (lambda a, b: lambda row: _and(a(row), b(row)))(left, right)
        return left

    def _factor(self) -> Callable[[Row], Truth]:
        if self.word() == "not":
            self.pos += 1
            inner = self._factor()
            return lambda row: _not(inner(row))
        t = self.peek()
        if t is not None and t.text == "(":
            self.pos += 1
            inner = self.condition()
            self.expect(")")
            return inner
        return self._predicate()

    def _predicate(self) -> Callable[[Row], Truth]:
        column = self.column()
        t = self.peek()
        op = t.text.lower() if t is not None else ""
        negate = False
        if op == "not":
            negate, self.pos = True, self.pos + 1
            t = self.peek()
            op = t.text.lower() if t is not None else ""
        if op in ("=", "<", ">", "!") and not negate:
            op = self._operator()
            lit = _coerce(column, self.literal())

            def compare(row: Row, column=column, op=op, lit=lit) -> Truth:
                value = row(column)
                if value is UNKNOWN:
                    return UNKNOWN
                if value is None or lit is None:
                    return None
                return (value == lit) if op == "=" else (value != lit)

            return compare
        if op in ("like", "ilike"):
            self.pos += 1
            if column not in TEXT_COLUMNS:
                raise Unsupported(f"{column} {op.upper()} (not a text column)")
            lit = self.literal()
            if lit.value is None:
                return lambda row: None
            pattern = like_regex(lit.value, ignore_case=op == "ilike")
            if self.word() == "escape":
                raise Unsupported("LIKE ... ESCAPE")

            def like(row: Row, column=column, pattern=pattern, negate=negate) -> Truth:
                value = row(column)
                if value is UNKNOWN:
                    return UNKNOWN
                if value is None:
                    return None
                return bool(pattern.fullmatch(str(value))) != negate

            return like
        if op == "in":
            self.pos += 1
            self.expect("(")
            values = [_coerce(column, self.literal())]
            while (t := self.peek()) is not None and t.text == ",":
                self.pos += 1
                values.append(_coerce(column, self.literal()))
            self.expect(")")

            def member(row: Row, column=column, values=values, negate=negate) -> Truth:
                value = row(column)
                if value is UNKNOWN:
                    return UNKNOWN
                if value is None:
                    return None
                if value in values:
                    return not negate
                return None if None in values else negate

            return member
        if op == "is" and not negate:
            self.pos += 1
            is_not = self.word() == "not"
            if is_not:
                self.pos += 1
            self.expect("null")

            def null(row: Row, column=column, is_not=is_not) -> Truth:
                value = row(column)
                if value is UNKNOWN:
                    return UNKNOWN
                return (value is None) != is_not

            return null
        if (
            column in BOOL_COLUMNS
            and not negate
            and (
                t is None
                or t.kind == "semicolon"
                or t.value in ("and", "or", "returning")
                or t.text == ")"
            )
        ):
            return lambda row: row(column)  # type: ignore[return-value]
        got = "the end" if t is None else repr(t.text)
        raise Unsupported(f"the comparison {column} {got} ...")

    def _operator(self) -> str:
        t = self.peek()
        assert t is not None
        nxt = self.peek(1)
        if t.text == "=":
            self.pos += 1
            return "="
        if t.text == "<" and nxt is not None and nxt.text == ">" and nxt.start == t.start + 1:
            self.pos += 2
            return "<>"
        if t.text == "!" and nxt is not None and nxt.text == "=" and nxt.start == t.start + 1:
            self.pos += 2
            return "<>"
        raise Unsupported(f"the operator {t.text!r} (only =, <>, !=, LIKE, IN, IS NULL)")
