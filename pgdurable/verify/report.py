"""The verdict of one verification, as text for people and JSON for CI.

Equal means: every run ended the same way on both sides (the run's own
outcome: a pg_cron command, a queue job, a DAG run), every compared table
holds the same rows and, for Airflow, every task state the workflow records
matches the reference. Outcomes count, not only rows: one side failed and the
other not is DIFFERENT even when the data match; both sides failed is
``BOTH FAILED`` (not equal: a job that fails everywhere verifies nothing)
unless the caller accepts it (``--accept-failures``). Every failed task's or
step's error text is shown, in the text and in JSON.

The text shows each run's outcomes and errors, per table ``equal`` or the
differing rows (the first N of each side, with how many there are), then the
task state differences.
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
class RunOutcome:
    """How one run of one side ended: ``failed`` and every error text it produced."""

    failed: bool
    summary: str  # "failed: ERROR:  permission denied ..." / "completed (instance ...)"
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"failed": self.failed, "summary": self.summary, "errors": self.errors}


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
    old_outcomes: list[RunOutcome] = field(default_factory=list)  # per run, like old_runs
    new_outcomes: list[RunOutcome] = field(default_factory=list)
    accept_failures: bool = False  # both sides failing the same run counts as equal
    not_compared: list[str] = field(default_factory=list)  # targets the job writes, not compared
    roles: dict[str, str] = field(default_factory=dict)  # {"old": role, "new": role}

    def outcome_of(self, run: int) -> str:
        """``same`` | ``different`` | ``both failed`` for run ``run`` (0-based)."""
        old, new = self.old_outcomes[run], self.new_outcomes[run]
        if old.failed != new.failed:
            return "different"
        return "both failed" if old.failed else "same"

    def _outcomes(self) -> list[str]:
        count = min(len(self.old_outcomes), len(self.new_outcomes))
        return [self.outcome_of(i) for i in range(count)]

    @property
    def verdict(self) -> str:
        """``EQUAL`` | ``DIFFERENT`` | ``BOTH FAILED``."""
        outcomes = self._outcomes()
        if "different" in outcomes or self.states or not all(t.equal for t in self.tables):
            return "DIFFERENT"
        if "both failed" in outcomes and not self.accept_failures:
            return "BOTH FAILED"
        return "EQUAL"

    @property
    def equal(self) -> bool:
        return self.verdict == "EQUAL"

    def as_dict(self, limit: int = 10) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "kind": self.kind,
            "reference": self.reference,
            "fixture": self.fixture,
            "equal": self.equal,
            "verdict": self.verdict,
            "accept_failures": self.accept_failures,
            "runs": [
                {
                    "run": i + 1,
                    "outcome": outcome,
                    "old": self.old_outcomes[i].as_dict(),
                    "new": self.new_outcomes[i].as_dict(),
                }
                for i, outcome in enumerate(self._outcomes())
            ],
            "not_compared": self.not_compared,
            "roles": self.roles,
            "tables": [t.as_dict(limit) for t in self.tables],
            "task_states": [s.__dict__ for s in self.states],
            "old_runs": self.old_runs,
            "new_runs": self.new_runs,
            "chaos": self.chaos,
            "reference_states": self.reference_states,
            "notes": self.notes,
        }

    def text(self, limit: int = 10) -> str:
        lines = [f"verify {self.subject}: {self.verdict}"]
        lines.append(f"  fixture {self.fixture}; reference {self.reference}")
        if self.roles:
            lines.append(f"  runs as: old {self.roles['old']}, new {self.roles['new']}")
        outcomes = self._outcomes()
        for i, (old, new) in enumerate(zip(self.old_runs, self.new_runs, strict=False), 1):
            lines.append(f"  run {i}: old {old}; new {new}")
            if i > len(outcomes):
                continue
            if outcomes[i - 1] == "different":
                lines.append("    outcome DIFFERENT: one side failed, the other did not")
            elif outcomes[i - 1] == "both failed":
                lines.append(
                    "    both sides failed"
                    + (
                        " (accepted: --accept-failures)"
                        if self.accept_failures
                        else ": nothing was verified; fix the fixture or the job, or pass "
                        "--accept-failures if failing is what the job does"
                    )
                )
            for side, outcome in (
                ("old", self.old_outcomes[i - 1]),
                ("new", self.new_outcomes[i - 1]),
            ):
                for error in outcome.errors:
                    lines.append(f"    {side} error: {error}")
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
        for target in self.not_compared:
            lines.append(f"  not compared: {target}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)


@dataclass
class BatchItem:
    path: str
    subject: str
    outcome: str  # equal | different | both failed | failed
    verification: Verification | None = None
    error: str | None = None


def batch_text(items: list[BatchItem]) -> str:
    width = max([len(i.path) for i in items] + [4])
    lines = [f"{'file':<{width}}  outcome      subject / error"]
    for i in items:
        detail = i.error if i.outcome == "failed" else i.subject
        lines.append(f"{i.path:<{width}}  {i.outcome:<11}  {detail}")
        if i.verification is not None and i.outcome != "equal":
            for run, (old, new) in enumerate(
                zip(i.verification.old_outcomes, i.verification.new_outcomes, strict=False), 1
            ):
                for side, outcome in (("old", old), ("new", new)):
                    for error in outcome.errors:
                        lines.append(f"{'':<{width}}    run {run} {side} error: {error}")
    kinds = ("equal", "different", "both failed", "failed")
    counts = {k: sum(1 for i in items if i.outcome == k) for k in kinds}
    lines.append(", ".join(f"{n} {k}" for k, n in counts.items()))
    return "\n".join(lines)
