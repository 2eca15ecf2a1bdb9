"""Runs of registered workflows as the worker sees them: log lines and metrics.

The database decides what a run is and records it (``pgdurable.workflow_runs``,
migration 0012); the journal functions that start or end one return it, and
``Journal`` hands it here. This module only reports:

- ``run_started`` (INFO) when a tick's first timer fires or a started run is
  first claimed; ``run_succeeded``/``run_cancelled`` (INFO) and ``run_failed``
  (WARNING, with workflow, run number and error) when it ends. A run whose
  failure ``pgdurable.try`` recovered is a failed run, though its loop goes on;
- the run, step and latency series of ``metrics.Metrics``.

Plain instances never reach this module, except for step durations.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from pgdurable.worker.logs import event

if TYPE_CHECKING:
    from pgdurable.worker.metrics import Metrics

# The labels generated enqueue and trigger functions give the runs they start;
# only claims of instances labelled so ask the database for their run.
RUN_LABEL_SUFFIX = "#run"
TRIGGER_LABEL_PREFIX = "airflow:"


def may_be_run(label: str | None) -> bool:
    """Whether an instance with this label may be a started run of a workflow."""
    return bool(label) and (
        label.endswith(RUN_LABEL_SUFFIX) or label.startswith(TRIGGER_LABEL_PREFIX)
    )


class RunEvents:
    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics
        # instance id -> (workflow, monotonic start, seconds already waited)
        self._first_step: dict[str, tuple[str, float, float]] = {}

    def started(self, run: dict[str, Any]) -> None:
        event(
            "run_started",
            workflow=run["workflow"],
            run=run["run"],
            kind=run["kind"],
            instance=run["instance"],
            execution=run["execution"],
            due_at=run["due_at"],
            delay_s=_rounded(run.get("delay_seconds")),
        )
        if self.metrics is None:
            return
        self.metrics.runs_started.labels(run["workflow"], run["kind"]).inc()
        if run.get("delay_seconds") is not None:
            self.metrics.schedule_delay.labels(run["workflow"]).observe(
                max(float(run["delay_seconds"]), 0.0)
            )
        waited = float(run.get("waited_seconds") or 0.0)  # df.start -> this claim
        self._first_step[run["instance"]] = (run["workflow"], time.monotonic(), waited)

    def ended(self, run: dict[str, Any]) -> None:
        outcome = run["outcome"]
        fields = {
            "workflow": run["workflow"],
            "run": run["run"],
            "kind": run["kind"],
            "instance": run["instance"],
            "execution": run["execution"],
            "duration_s": _rounded(run.get("duration_seconds")),
        }
        if outcome == "failed":
            event("run_failed", logging.WARNING, **fields, error=run.get("error"))
        else:
            event(f"run_{outcome}", **fields)
        self._first_step.pop(run["instance"], None)
        if self.metrics is None:
            return
        counter = {
            "succeeded": self.metrics.runs_completed,
            "failed": self.metrics.runs_failed,
            "cancelled": self.metrics.runs_cancelled,
        }.get(outcome)
        if counter is not None:
            counter.labels(run["workflow"], run["kind"]).inc()

    def step_started(self, instance_id: str) -> None:
        pending = self._first_step.pop(instance_id, None) if self._first_step else None
        if pending is not None and self.metrics is not None:
            workflow, since, waited = pending
            self.metrics.first_step_latency.labels(workflow).observe(
                waited + time.monotonic() - since
            )

    def step_finished(self, node_type: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.step_duration.labels(node_type).observe(seconds)

    def claim_ended(self, instance_id: str) -> None:
        """Forget what a claim left: a run whose first step comes only in a later
        claim (its first step waited) has no start-to-first-step figure."""
        self._first_step.pop(instance_id, None)

    def lease_lost(self) -> None:
        if self.metrics is not None:
            self.metrics.leases_lost.inc()


def _rounded(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)
