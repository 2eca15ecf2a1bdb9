"""``pgdurable apply DIR``: run generated workflow files, one transaction each.

The same loop serves ``apply`` and ``apply --sql`` (alembic's offline mode):
only the sink differs. ``DatabaseSink`` executes each file inside its own
transaction, with the step labels of its workflow (``pgdurable.steplabels``);
``PrintSink`` prints exactly those statements, ``BEGIN`` and
``COMMIT`` included, instead. ``cutover.sql`` and ``rollback.sql`` are never
applied (``pgdurable cutover`` / ``rollback`` run them). The first file that
fails stops the run; files before it stay committed, the failing one is rolled
back entirely.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from pgdurable import db, steplabels
from pgdurable.errors import ApplyFailed
from pgdurable.output import NOT_WORKFLOWS


class Sink(Protocol):
    def run_file(self, path: Path, text: str) -> str | None: ...


def execute_file(conn: db.Connection, path: Path, text: str) -> str | None:
    """Run one generated file on ``conn`` in the transaction the caller holds; the
    outcome is the first column of the last result that has rows (a file may run
    setup statements first, e.g. an enqueue function, then deploy_workflow)."""
    try:
        cursor = conn.execute(text.encode())  # bytes: sent as one simple query
        row = None
        while True:
            if cursor.description:
                row = cursor.fetchone()
            if not cursor.nextset():
                break
    except db.DatabaseError as exc:
        diag = getattr(exc, "diag", None)
        detail = getattr(diag, "message_primary", None) or " ".join(str(exc).split())
        hint = getattr(diag, "message_hint", None)
        if any(f"pgdurable.{n}" in detail for n in ("try", "retry", "timeout")):
            hint = (
                "this file uses pgdurable extension nodes (SPEC A.4), which this "
                "database does not have: run `pgdurable schema upgrade` (migration "
                "0007), or regenerate with --portable"
            )
        raise ApplyFailed(
            f"applying {path} failed and was rolled back: {detail}"
            + (f" Hint: {hint}" if hint else "")
        ) from exc
    return None if row is None else str(row[0])


def apply_file(conn: db.Connection, path: Path, text: str) -> str | None:
    """``execute_file``, then what the source calls each step of the workflow it
    deployed, which the registry's graph does not keep (``pgdurable show`` and
    the dashboard label nodes with it), in the same transaction."""
    outcome = execute_file(conn, path, text)
    steplabels.record(conn, path, text)
    return outcome


@dataclass
class DatabaseSink:
    conn: db.Connection

    def run_file(self, path: Path, text: str) -> str | None:
        with self.conn.transaction():
            return apply_file(self.conn, path, text)


@dataclass
class PrintSink:
    out: TextIO

    def run_file(self, path: Path, text: str) -> str | None:
        self.out.write(f"-- {path}\nBEGIN;\n{text.rstrip()}\nCOMMIT;\n\n")
        return None


def files_to_apply(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ApplyFailed(f"{directory} is not a directory of generated files: run an import first")
    return sorted(p for p in directory.glob("*.sql") if p.name not in NOT_WORKFLOWS)


def apply_directory(
    directory: Path, sink: Sink, progress: Callable[[str], None] = lambda _: None
) -> list[tuple[Path, str | None]]:
    """Apply every workflow file of ``directory`` in name order."""
    outcomes = []
    for path in files_to_apply(directory):
        outcome = sink.run_file(path, path.read_text(encoding="utf-8"))
        if outcome is not None:
            progress(f"{path.name}: {outcome}")
        outcomes.append((path, outcome))
    return outcomes
