"""What every translator shares: the context it gets, the result it returns
per source item, and a registry of translators by source name.

A translator is a pure function ``translate(items, ctx) -> list[ItemResult]``
(no database, no clock). It returns one result per item, in order, and never
raises for a bad item: the item gets fidelity ``failed`` and a ``PGD1xx``
diagnostic instead (LibCST's Translated / Failed per file).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pgdurable.diagnostics import Diagnostic, Fidelity, SourceRef, worst
from pgdurable.model import PORTABLE, Node
from pgdurable.sqltext import UnsafeText

# Starts a cutover.sql / rollback.sql comment naming a step outside the database.
OUTSIDE = "-- outside the database: "


@dataclass(frozen=True)
class TranslateContext:
    """Options of one translation run."""

    portable: bool = False  # emit only df.* (SPEC A.5) and report what is lost
    default_database: str | None = None  # when the source does not say
    default_username: str | None = None
    source_version: str | None = None  # e.g. pg_cron's extension version, when known
    timezone: str | None = None  # e.g. pg_cron's cron.timezone, when known


@dataclass(frozen=True)
class Workflow:
    """A translated item ready to be written as a deployable file."""

    name: str  # registry name, unique per source
    source: str  # e.g. "pg_cron"
    body: Node
    profile: str = PORTABLE
    schedule: str | None = None  # the source's schedule text, for the registry
    run_as: str | None = None  # the role the instance runs as
    database: str | None = None  # the database its SQL steps run in
    start: bool = True  # start the instance on apply (False: register only)
    description: tuple[str, ...] = ()  # extra header lines
    # cutover.sql / rollback.sql lines that retire / restore the source item: SQL for
    # a source in the database (pg_cron), else a comment starting with OUTSIDE that
    # says exactly what to run or remove outside it (`pgdurable cutover` prints those).
    cutover: str | None = None
    rollback: str | None = None
    # Statements the file runs before deploying, in the same transaction (e.g.
    # the queue translators' idempotent enqueue functions). Each ends with ';'.
    setup_sql: tuple[str, ...] = ()
    epilogue: str | None = None  # SQL run after the deploy call (e.g. a trigger function)
    # Code the workflow's code steps call, written beside it: (relative path, text)
    code_files: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ItemResult:
    name: str
    source_ref: SourceRef
    diagnostics: tuple[Diagnostic, ...] = ()
    workflow: Workflow | None = None  # None when the item failed

    @property
    def fidelity(self) -> Fidelity:
        if self.workflow is None:
            return Fidelity.FAILED
        return worst(self.diagnostics)

    @property
    def profile(self) -> str | None:
        return self.workflow.profile if self.workflow else None


def crash(code: str, exc: Exception, ref: SourceRef | None = None) -> Diagnostic:
    """The diagnostic of an item whose reading or translation raised: text that
    PostgreSQL cannot hold (PGD107), else an internal error reported under ``code``
    (a bug must not lose the rest of the batch, and never shows a traceback)."""
    if isinstance(exc, UnsafeText):
        return Diagnostic("PGD107", str(exc), ref)
    return Diagnostic(code, f"internal error while translating: {type(exc).__name__}: {exc}", ref)


# The largest count or number of seconds a generated file holds: the df.* and
# pgdurable.* constructors take int4 arguments.
INT_MAX = 2**31 - 1


class BadValue(ValueError):
    """A value the source system refuses itself (wrong type, out of range): the entry
    becomes ``Unreadable`` with PGD108 and the value's line."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def whole_number(
    value: Any, what: str, *, line: int | None = None, minimum: int = 0, maximum: int = INT_MAX
) -> int:
    """``value`` as a count between ``minimum`` and ``maximum`` (a bool or "2" is not one)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadValue(f"{what} is {value!r}, not a whole number (the source refuses it too)", line)
    if not minimum <= value <= maximum:
        raise BadValue(f"{what} is {value}, outside {minimum}..{maximum}", line)
    return value


def seconds(value: Any, what: str, *, line: int | None = None, minimum: float = 0) -> int:
    """A duration given as a number (int or float) in whole seconds, within INT_MAX."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadValue(
            f"{what} is {value!r}, not a number of seconds (the source refuses it too)", line
        )
    if not (math.isfinite(value) and minimum <= value <= INT_MAX):
        raise BadValue(f"{what} is {value}, outside {minimum}..{INT_MAX} seconds", line)
    return round(value)


class Translator(Protocol):
    source: str

    def translate(self, items: Sequence[Any], ctx: TranslateContext) -> list[ItemResult]: ...


@dataclass
class Registry:
    translators: dict[str, Callable[..., list[ItemResult]]] = field(default_factory=dict)

    def register(self, source: str, function: Callable[..., list[ItemResult]]) -> None:
        self.translators[source] = function

    def get(self, source: str) -> Callable[..., list[ItemResult]]:
        return self.translators[source]


registry = Registry()
