"""A command string sent as ONE simple query, turned into workflow steps.

pg_cron (libpq mode) and ``psql -c`` both hand a whole command string to
PostgreSQL with the simple query protocol, so they share its semantics
(SOURCES Part 1 §1.3): several statements run as one implicit transaction;
an explicit ``BEGIN``/``COMMIT`` inside the string commits the part before
it; a statement that cannot run in a transaction block (``VACUUM`` ...) fails
when mixed with others. ``command_steps`` maps those rules onto steps once,
for every translator that reads such commands; only the wording of the
diagnostics (which program ran the command) differs, through ``Runner``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import sqlglot
import sqlglot.errors

from pgdurable import model as m
from pgdurable.diagnostics import Collector
from pgdurable.sqltext import (
    SqlLexError,
    Statement,
    Token,
    is_transaction_control,
    needs_autocommit,
    split_statements,
    tokenize,
)

logging.getLogger("sqlglot").setLevel(logging.ERROR)  # we report parse problems ourselves


@dataclass(frozen=True)
class Runner:
    """Who sent the command, for the diagnostics' wording."""

    name: str  # e.g. "pg_cron", "psql -c"
    commit_note: str  # how that runner treats an embedded COMMIT


PG_CRON = Runner(
    "pg_cron",
    "as pg_cron's default (libpq) mode commits them; in background-worker mode pg_cron "
    "keeps the whole command atomic",
)


def looks_invalid(statement: Statement) -> str | None:
    """sqlglot's complaint about a statement, or None. sqlglot falls back to an
    opaque command for syntax it does not model (VACUUM, CALL, DO...), so a
    complaint means the statement is very likely broken."""
    try:
        sqlglot.parse_one(statement.text, read="postgres")
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError) as exc:
        return str(exc).splitlines()[0]
    return None


def unquoted_do(command: str) -> Token | None:
    """The ``DO`` keyword of a ``DO`` whose body is not a string (``DO BEGIN ... END``):
    PostgreSQL rejects it, and splitting it at its ``BEGIN``/``END`` would hide that."""
    words = [t for t in tokenize(command) if t.kind not in ("space", "comment")]
    starts = [0] + [i + 1 for i, t in enumerate(words) if t.kind == "semicolon"]
    for i in starts:
        if i >= len(words) or words[i].kind != "ident" or words[i].value.lower() != "do":
            continue
        j = i + 1
        if j < len(words) and words[j].kind == "ident" and words[j].value.lower() == "language":
            j += 2  # DO LANGUAGE plpgsql '...'
        if j >= len(words) or words[j].kind != "string":
            return words[i]
    return None


# What the worker substitutes in a step's text before running it (SPEC B §5): the
# system variables always, ``{identifier}`` when the role has a df var of that name.
_SYSTEM_BRACES = re.compile(r"\{sys_(?:instance_id|label)\}")
_USER_BRACES = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


def check_braces(command: str, who: str, diag: Collector) -> None:
    """Diagnostics for brace references the worker would rewrite at run time."""
    system = sorted(set(_SYSTEM_BRACES.findall(command)))
    if system:
        diag.add(
            "PGD318",
            f"the command contains {', '.join(system)}, which the worker replaces with the "
            f"instance's id/label before running it; {who} runs it as written. Rewrite the "
            "command so it does not contain that text, then set start => true",
        )
    user = sorted(set(_USER_BRACES.findall(command)) - set(system))
    if user:
        diag.add(
            "PGD240",
            f"the command contains {', '.join(user)}: the worker replaces such a reference "
            "with the df var of that name when the workflow's role has one (df.setvar), so "
            f"it runs as written, as {who} runs it, only while the role sets no such var",
        )


def command_steps(
    command: str, runner: Runner, diag: Collector, *, portable: bool
) -> tuple[m.Node, bool] | None:
    """The command as workflow steps, and whether it needs the pgdurable profile
    (an atomic multi-statement step, SPEC A.2.1). None when it cannot run."""
    who = runner.name
    try:
        statements = split_statements(command)
    except SqlLexError as exc:
        diag.add(
            "PGD103",
            f"the command cannot be lexed: {exc.reason} (line {exc.line} of the "
            f"command); {who} fails it on every run. Fix the command in {who} first",
        )
        return None
    if not statements:
        diag.add("PGD103", f"the command is empty; {who} fails it on every run")
        return None
    check_braces(command, who, diag)
    do = unquoted_do(command)
    if do is not None:
        # Kept whole and as written: it fails exactly as it does in the source.
        diag.add(
            "PGD303",
            f"DO at line {do.line}, column {do.col} of the command has no quoted body "
            f"(syntax error at or near the word after DO); {who} fails this job on every "
            "run. Quote the block (DO $$ BEGIN ... END $$), fix the job in the source, "
            "then regenerate",
        )
        return m.Sql(command), False
    for st in statements:
        if problem := looks_invalid(st):
            diag.add(
                "PGD303",
                f"statement {st.text[:60]!r} may not be valid SQL ({problem}); "
                f"{who} fails such a job on every run. Check the command, then set "
                "start => true",
            )

    def step(sts: list[Statement]) -> tuple[m.Node, bool]:
        if len(sts) == 1:
            return m.Sql(sts[0].text), False
        if not portable:
            # One atomic multi-statement step (SPEC A.2.1), as the runner sends it.
            return m.Sql(";\n".join(s.text for s in sts)), True
        diag.add(
            "PGD203",
            f"--portable: the {len(sts)} statements run as separate steps, each "
            f"in its own transaction; {who} runs them in one, so a failure no longer "
            "rolls back the earlier ones. Drop --portable to keep them atomic",
        )
        return m.Seq(tuple(m.Sql(s.text) for s in sts)), False

    if len(statements) > 1 and any(needs_autocommit(s) for s in statements):
        diag.add(
            "PGD302",
            "the command mixes a statement that cannot run in a transaction "
            f"block (VACUUM, ... CONCURRENTLY) with others; {who} runs them as one "
            "transaction, so the job fails on every run. The workflow runs each "
            "statement as its own step; check that this is intended, then set start => true",
        )
        return m.Seq(tuple(m.Sql(s.text) for s in statements)), False
    if any(is_transaction_control(s) for s in statements):
        groups = transaction_groups(statements, is_transaction_control)
        diag.add(
            "PGD209",
            "the command contains BEGIN/COMMIT: it is split at those points "
            f"into separate steps, {runner.commit_note}",
        )
        if not groups:
            diag.add("PGD103", "the command holds only transaction control statements")
            return None
        parts = [step(g) for g in groups]
        if len(parts) == 1:
            return parts[0]
        return m.Seq(tuple(p for p, _ in parts)), any(multi for _, multi in parts)
    return step(statements)


def transaction_groups(
    statements: list[Statement], is_boundary: Callable[[Statement], bool]
) -> list[list[Statement]]:
    """Statements grouped between boundaries (transaction control), boundaries dropped."""
    groups: list[list[Statement]] = [[]]
    for s in statements:
        if is_boundary(s):
            if groups[-1]:
                groups.append([])
        else:
            groups[-1].append(s)
    return [g for g in groups if g]
