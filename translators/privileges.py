"""What a job's SQL needs of the role that runs it, read with sqlglot.

When a job moves from the role that scheduled it (often the superuser
``postgres``) to another one (``import-pgcron --run-as`` / ``--role-map``),
the new role must hold the privileges the old one had implicitly. This reads
each statement and lists the table privileges it uses (SELECT on what it
reads, INSERT/UPDATE/DELETE/TRUNCATE on what it writes) and the objects only
their owner may maintain (VACUUM, ANALYZE, REINDEX, CLUSTER, REFRESH
MATERIALIZED VIEW). It is a report for a person, never executed: what sqlglot
cannot read (a DO block, a procedure's body) is named as such.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import sqlglot
import sqlglot.errors
from sqlglot import exp

from pgdurable.sqltext import SqlLexError, split_statements

logging.getLogger("sqlglot").setLevel(logging.ERROR)

# statements sqlglot keeps as a Command: (pattern, what the role needs, object group)
_MAINTENANCE = re.compile(
    r"^\s*(?:VACUUM|ANALYZE|ANALYSE|REINDEX(?:\s+(?:TABLE|INDEX))?|CLUSTER"
    r"|REFRESH\s+MATERIALIZED\s+VIEW)\b(?:\s*\([^)]*\))?"
    r"(?:\s+(?:FULL|FREEZE|VERBOSE|ANALYZE|CONCURRENTLY))*\s+([\w.\"]+)",
    re.IGNORECASE,
)
_CALL = re.compile(r"^\s*CALL\s+([\w.\"]+)", re.IGNORECASE)


@dataclass
class Needs:
    """Privileges by object: table -> {SELECT, ...}; plus owned objects and calls."""

    tables: dict[str, set[str]] = field(default_factory=dict)
    owner_of: list[str] = field(default_factory=list)  # VACUUM, REFRESH ... targets
    routines: list[str] = field(default_factory=list)  # CALL / function names
    unread: list[str] = field(default_factory=list)  # statements not analysed

    def add(self, table: str, privilege: str) -> None:
        self.tables.setdefault(table, set()).add(privilege)

    def lines(self, role: str) -> list[str]:
        """One line per need, as GRANT statements where a GRANT gives it."""
        out = []
        order = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"]
        for table, privileges in sorted(self.tables.items()):
            listed = ", ".join(p for p in order if p in privileges)
            out.append(f"GRANT {listed} ON {table} TO {role}")
        for target in self.owner_of:
            out.append(f"{role} must own {target} (or, on PostgreSQL 17+, hold MAINTAIN on it)")
        for routine in self.routines:
            out.append(f"GRANT EXECUTE ON ROUTINE {routine} TO {role} (unless PUBLIC has it)")
        for text in self.unread:
            out.append(f"not analysed, check by hand: {text[:60]}")
        return out


def needs(command: str) -> Needs:
    """The privileges ``command`` (one or more statements) uses."""
    found = Needs()
    try:
        statements = [s.text for s in split_statements(command)]
    except SqlLexError:
        statements = [command]
    for text in statements:
        _statement(text, found)
    return found


def _statement(text: str, found: Needs) -> None:
    if m := _MAINTENANCE.match(text):
        if m.group(1) not in found.owner_of:
            found.owner_of.append(m.group(1))
        return
    if m := _CALL.match(text):
        found.routines.append(m.group(1))
        return
    try:
        tree = sqlglot.parse_one(text, read="postgres")
    except sqlglot.errors.SqlglotError:
        found.unread.append(text)
        return
    if tree is None or isinstance(tree, exp.Command):
        found.unread.append(text)
        return
    if isinstance(tree, exp.Analyze):  # only the owner (17+: MAINTAIN) may analyze
        target = tree.find(exp.Table)
        if target is not None and exp.table_name(target) not in found.owner_of:
            found.owner_of.append(exp.table_name(target))
        return
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    written: exp.Expression | None = None
    if isinstance(tree, exp.Insert | exp.Update | exp.Delete | exp.TruncateTable):
        kind = {
            exp.Insert: "INSERT",
            exp.Update: "UPDATE",
            exp.Delete: "DELETE",
            exp.TruncateTable: "TRUNCATE",
        }[type(tree)]
        targets = tree.expressions if isinstance(tree, exp.TruncateTable) else [tree.this]
        for target in targets:
            table = target.find(exp.Table) if not isinstance(target, exp.Table) else target
            if table is not None:
                written = table if written is None else written
                found.add(exp.table_name(table), kind)
        if isinstance(tree, exp.Update | exp.Delete) and tree.args.get("where") is not None:
            if written is not None:  # the WHERE clause reads the target's columns
                found.add(exp.table_name(written), "SELECT")
    for table in tree.find_all(exp.Table):
        name = exp.table_name(table)
        if table is written or name in ctes or not name:
            continue
        if isinstance(tree, exp.TruncateTable | exp.Insert) and table in (
            tree.expressions if isinstance(tree, exp.TruncateTable) else [tree.this]
        ):
            continue
        found.add(name, "SELECT")
    for call in tree.find_all(exp.Anonymous):
        parent = call.parent
        name = parent.sql("postgres") if isinstance(parent, exp.Dot) else call.name
        name = name.split("(")[0]
        if name not in found.routines:
            found.routines.append(name)
