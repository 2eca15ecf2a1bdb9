"""Read DSL text back into a workflow model, without a database.

The inverse of ``pgdurable.render`` for the language it writes: string literals
(SQL steps), ``df.*`` and ``pgdurable.*`` constructor calls with positional or
named arguments, the operators ``~>``, ``|=>``, ``&``, ``|`` (one precedence,
left-associative, as in PostgreSQL, SPEC B §1.3) and prefix ``@>``, and the
``-- source: FILE:LINE (what)`` comments, which give the next node its source.
``pgdurable show FILE`` uses it to draw a generated file offline; anything
outside that language is a ``DslError`` naming the line, never a guess.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

from pgdurable import model as m
from pgdurable.diagnostics import SourceRef
from pgdurable.sqltext import SqlLexError, Token, tokenize

_OPERATORS = ("|=>", "~>", "@>", "=>", "::")
_SOURCE = re.compile(r"^--\s*source:\s*(.*?)(?::(\d+))?(?::(\d+))?(?:\s+\((.*)\))?\s*$")


class DslError(ValueError):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.reason = message


@dataclass
class _Tok:
    kind: str  # string, number, ident, op, source
    text: str
    line: int
    value: str | None = None


def _tokens(text: str) -> list[_Tok]:
    """Tokens without blanks, multi-character operators joined, source comments kept."""
    try:
        raw = tokenize(text)
    except SqlLexError as exc:
        raise DslError(str(exc), exc.line) from None
    out: list[_Tok] = []
    previous: Token | None = None
    for t in raw:
        if t.kind == "space" or (t.kind == "comment" and not _SOURCE.match(t.text)):
            previous = None
            continue
        if t.kind == "comment":
            out.append(_Tok("source", t.text, t.line))
        elif (
            t.kind == "op"
            and previous is not None
            and previous.kind == "op"
            and previous.start + len(previous.text) == t.start
            and any(op.startswith(out[-1].text + t.text) for op in _OPERATORS)
        ):
            out[-1].text += t.text
        else:
            out.append(_Tok(t.kind, t.text, t.line, t.value))
        previous = t
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def line(self) -> int:
        tok = self.peek() or (self.toks[-1] if self.toks else None)
        return tok.line if tok else 1

    def take(self, text: str | None = None) -> _Tok:
        tok = self.peek()
        if tok is None or (text is not None and tok.text.lower() != text):
            found = "the end" if tok is None else repr(tok.text)
            raise DslError(f"expected {text or 'more'}, found {found}", self.line())
        self.i += 1
        return tok

    def kind(self) -> str | None:
        tok = self.peek()
        return tok.kind if tok is not None else None

    def at(self, text: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "op" and tok.text == text

    # expression := unary (("~>" | "|=>" | "&" | "|") unary)*
    def expression(self) -> Any:
        left = self.unary()
        while True:
            # render puts a step's source comment before the operator that joins it
            mark = self.i
            source = None
            while self.kind() == "source":
                source = _source_ref(self.take().text)
            tok = self.peek()
            if tok is None or tok.kind != "op" or tok.text not in ("~>", "|=>", "&", "|"):
                self.i = mark
                return left
            self.i += 1
            right = self.unary()
            if source is not None and isinstance(right, str):  # a bare SQL step
                right = m.Sql(right, source=source)
            elif source is not None and isinstance(right, m.NodeBase) and right.source is None:
                right = _with(right, source=source)
            left = _operator(tok.text, left, right, tok.line)

    def unary(self) -> Any:
        source = None
        while self.kind() == "source":
            source = _source_ref(self.take().text)
        if self.at("@>"):
            self.take()
            value: Any = m.Loop(_node(self.unary(), self.line()))
        else:
            value = self.primary()
        if self.at("::"):  # a cast, as render writes for jsonb headers and text[] argv
            self.take()
            self.take()
            if self.at("["):
                self.take("[")
                self.take("]")
        if source is not None and isinstance(value, str):  # a SQL step with its source
            value = m.Sql(value, source=source)
        elif source is not None and isinstance(value, m.Seq) and value.name is None:
            # render moves the first step's comment out of the sequence's parentheses
            first = _with(value.steps[0], source=source)
            value = m.Seq((first, *value.steps[1:]))
        elif source is not None and isinstance(value, m.NodeBase):
            value = _with(value, source=source)
        return value

    def primary(self) -> Any:
        tok = self.take()
        if tok.kind == "string":
            return tok.value
        if tok.kind == "number" or (tok.kind == "op" and tok.text == "-"):
            number = tok.text if tok.kind == "number" else "-" + self.take().text
            return float(number) if "." in number else int(number)
        if tok.kind == "op" and tok.text == "(":
            value = self.expression()
            self.take(")")
            return value
        if tok.kind == "ident" and tok.text.lower() == "null":
            return None
        if tok.kind == "ident" and tok.text.lower() == "array" and self.at("["):
            self.take("[")
            items: list[Any] = []
            while not self.at("]"):
                items.append(self.expression())
                if not self.at("]"):
                    self.take(",")
            self.take("]")
            return tuple(items)
        if tok.kind == "ident" and self.at("."):
            self.take(".")
            name = f"{tok.text.lower()}.{self.take().text.lower()}"
            self.take("(")
            args: list[Any] = []
            named: dict[str, Any] = {}
            while not self.at(")"):
                nxt = self.toks[self.i + 1] if self.i + 1 < len(self.toks) else None
                if self.kind() == "ident" and nxt is not None and nxt.text == "=>":
                    key = self.take().text.lower()
                    self.take("=>")
                    named[key] = self.expression()
                else:
                    args.append(self.expression())
                if not self.at(")"):
                    self.take(",")
            self.take(")")
            return _call(name, args, named, tok.line)
        raise DslError(f"unexpected {tok.text!r}", tok.line)


def _source_ref(comment: str) -> SourceRef:
    match = _SOURCE.match(comment)
    assert match is not None
    file, line, col, what = match.groups()
    return SourceRef(file, int(line) if line else None, int(col) if col else None, what=what)


def _with(node: m.Node, **changes: Any) -> m.Node:
    return replace(node, **changes)


def _node(value: Any, line: int) -> m.Node:
    """A node argument: node values as they are, text auto-wrapped as SQL (B §1.2)."""
    if isinstance(value, m.NodeBase):
        return value
    if isinstance(value, str):
        return m.Sql(value)
    raise DslError(f"{value!r} is not a workflow step", line)


def _operator(op: str, left: Any, right: Any, line: int) -> m.Node:
    if op == "|=>":
        if not isinstance(right, str):
            raise DslError("|=> needs a result name (a string)", line)
        return _with(_node(left, line), name=right)
    a, b = _node(left, line), _node(right, line)
    if op == "~>":
        if isinstance(a, m.Seq) and a.name is None:
            return m.Seq((*a.steps, b))
        return m.Seq((a, b))
    return m.Join((a, b)) if op == "&" else m.Race(a, b)


def _call(name: str, args: list[Any], named: dict[str, Any], line: int) -> Any:
    def arg(i: int, key: str, default: Any = ...) -> Any:
        if key in named:
            return named[key]
        if i < len(args):
            return args[i]
        if default is ...:
            raise DslError(f"{name}() needs {key}", line)
        return default

    def node(i: int, key: str) -> m.Node:
        return _node(arg(i, key), line)

    if name == "df.sql":
        return m.Sql(arg(0, "query"))
    if name == "df.seq":
        return _operator("~>", node(0, "a"), node(1, "b"), line)
    if name == "df.as":
        return _operator("|=>", node(0, "fut"), arg(1, "name"), line)
    if name == "df.join":
        return m.Join((node(0, "a"), node(1, "b")))
    if name == "df.join3":
        rest = node(2, "c")
        # render writes a join of more than three branches as join3(a, b, <join of the rest>)
        tail = rest.branches if isinstance(rest, m.Join) and rest.name is None else (rest,)
        return m.Join((node(0, "a"), node(1, "b"), *tail))
    if name == "df.race":
        return m.Race(node(0, "a"), node(1, "b"))
    if name == "df.if":
        return m.If(node(0, "condition"), node(1, "then_branch"), node(2, "else_branch"))
    if name == "df.if_rows":
        return m.IfRows(arg(0, "result_name"), node(1, "then_branch"), node(2, "else_branch"))
    if name == "df.loop":
        cond = arg(1, "condition", None)
        return m.Loop(node(0, "body"), None if cond is None else _node(cond, line))
    if name == "df.break":
        return m.Break(arg(0, "value", None))
    if name == "df.sleep":
        return m.Sleep(arg(0, "seconds"))
    if name == "df.wait_for_schedule":
        return m.WaitForSchedule(arg(0, "cron"))
    if name == "df.wait_for_signal":
        return m.WaitForSignal(arg(0, "signal_name"), arg(1, "timeout_seconds", None))
    if name == "pgdurable.retry":
        return m.Retry(
            node(0, "node"),
            arg(1, "max_attempts"),
            arg(2, "delay_seconds"),
            float(arg(3, "backoff", 1.0)),
            arg(4, "max_delay_seconds", None),
        )
    if name == "pgdurable.timeout":
        return m.Timeout(node(0, "node"), arg(1, "seconds"))
    if name == "pgdurable.try":
        return m.Try(node(0, "node"), node(1, "on_failure"))
    if name == "df.http":
        return _http(arg, line)
    if name == "pgdurable.python":
        args_json, kwargs_json = arg(1, "args", None), arg(2, "kwargs", None)
        return m.Python(
            arg(0, "callable"),
            tuple(json.loads(args_json)) if args_json else (),
            tuple(json.loads(kwargs_json).items()) if kwargs_json else (),
        )
    if name == "pgdurable.command":
        env = arg(1, "env", None)
        return m.Command(
            tuple(arg(0, "argv")),
            tuple(json.loads(env).items()) if env else None,
            arg(2, "cwd", None),
        )
    raise DslError(f"{name}() is not a workflow constructor pgdurable can read offline", line)


def _http(arg: Any, line: int) -> m.Http:
    headers = arg(3, "headers", None)
    pairs = tuple(json.loads(headers).items()) if headers else None
    return m.Http(
        arg(0, "url"),
        arg(1, "method", "POST"),
        arg(2, "body", None),
        pairs,
        arg(4, "timeout_seconds", 30),
    )


def parse(text: str) -> m.Node:
    """The workflow model of DSL ``text`` (one expression)."""
    p = _Parser(text)
    try:
        value = p.expression()
    except ValueError as exc:  # a constructor refused its arguments, as SQL would
        if isinstance(exc, DslError):
            raise
        raise DslError(str(exc), p.line()) from None
    rest = p.peek()
    if rest is not None:
        raise DslError(f"unexpected {rest.text!r} after the expression", rest.line)
    return _node(value, p.line())
