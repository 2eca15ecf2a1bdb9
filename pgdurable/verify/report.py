"""The verdict of one verification, as text for people and JSON for CI.

Equal means: every compared table holds the same rows on both sides and, for
Airflow, every task state the workflow records and the DAG run's outcome
match the reference. The text shows per table ``equal`` or the differing
rows (the first N of each side, with how many there are), then the task
state differences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pgdurable.verify.compare import TableDiff


@dataclass
class StateDiff:
    run: int
    task: str
    old: str
    new: str


@dataclass
class Verification:
    subject: str
    kind: str
    reference: str
    fixture: str
    tables: list[TableDiff] = field(default_factory=list)
    states: list[StateDiff] = field(default_factory=list)
    old_runs: list[str] = field(default_factory=list)  # one line per replayed run
    new_runs: list[str] = field(default_factory=list)
    chaos: list[str] = field(default_factory=list)
    reference_states: list[dict[str, str]] = field(default_factory=list)  # Airflow, per run
    notes: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return all(t.equal for t in self.tables) and not self.states

    def as_dict(self, limit: int = 10) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "kind": self.kind,
            "reference": self.reference,
            "fixture": self.fixture,
            "equal": self.equal,
            "tables": [t.as_dict(limit) for t in self.tables],
            "task_states": [s.__dict__ for s in self.states],
            "old_runs": self.old_runs,
            "new_runs": self.new_runs,
            "chaos": self.chaos,
            "reference_states": self.reference_states,
            "notes": self.notes,
        }

    def text(self, limit: int = 10) -> str:
        verdict = "EQUAL" if self.equal else "DIFFERENT"
        lines = [f"verify {self.subject}: {verdict}"]
        lines.append(f"  fixture {self.fixture}; reference {self.reference}")
        for i, (old, new) in enumerate(zip(self.old_runs, self.new_runs, strict=False), 1):
            lines.append(f"  run {i}: old {old}; new {new}")
        for event in self.chaos:
            lines.append(f"  chaos: {event}")
        for t in self.tables:
            if t.equal:
                lines.append(f"  table {t.table}: equal ({t.old_rows} rows)")
                continue
            lines.append(
                f"  table {t.table}: DIFFERENT (old {t.old_rows} rows, new {t.new_rows} rows)"
            )
            for label, items in (("only in old", t.only_old), ("only in new", t.only_new)):
                count = sum(n for _, n in items)
                if not count:
                    continue
                lines.append(f"    {label} ({count}):")
                for row, n in items[:limit]:
                    values = ", ".join(
                        f"{c}={'NULL' if v is None else v!r}"
                        for c, v in zip(t.columns, row, strict=False)
                    )
                    lines.append(f"      ({values})" + (f" x{n}" if n > 1 else ""))
                if len(items) > limit:
                    lines.append(f"      ... {len(items) - limit} more distinct row(s)")
            if t.ignored:
                lines.append(f"    ignored columns: {', '.join(t.ignored)}")
        for s in self.states:
            lines.append(f"  task {s.task} (run {s.run}): old {s.old}, new {s.new}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)


@dataclass
class BatchItem:
    path: str
    subject: str
    outcome: str  # equal | different | failed
    verification: Verification | None = None
    error: str | None = None


def batch_text(items: list[BatchItem]) -> str:
    width = max([len(i.path) for i in items] + [4])
    lines = [f"{'file':<{width}}  outcome    subject / error"]
    for i in items:
        detail = i.error if i.outcome == "failed" else i.subject
        lines.append(f"{i.path:<{width}}  {i.outcome:<9}  {detail}")
    counts = {k: sum(1 for i in items if i.outcome == k) for k in ("equal", "different", "failed")}
    lines.append(", ".join(f"{n} {k}" for k, n in counts.items()))
    return "\n".join(lines)
