"""Trigger rules as data: for each rule, Airflow's decision over the states of
the *direct* upstream tasks (SOURCES Part 2 §4), once in Python (to know at
translation time which decisions are possible) and once as SQL over the
states the workflow records (to decide at run time).

A task's state is one of ``success``, ``failed``, ``skipped`` and
``upstream_failed``. A decision is ``run``, ``skipped`` or
``upstream_failed``. In SQL the upstream states are ``s``, a ``text[]`` such
as ``ARRAY[$st_extract, $st_load]``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SUCCESS, FAILED, SKIPPED, UPSTREAM_FAILED = "success", "failed", "skipped", "upstream_failed"
STATES = (SUCCESS, FAILED, SKIPPED, UPSTREAM_FAILED)
RUN = "run"

ALIASES = {"none_failed_or_skipped": "none_failed_min_one_success", "dummy": "always"}
REMOVED_IN_3 = {"none_failed_or_skipped", "dummy"}


@dataclass(frozen=True)
class Rule:
    name: str
    run: str  # SQL: true when the task runs
    upstream_failed: str  # SQL: when it does not run, true for upstream_failed (else skipped)
    waits_for_all: bool = True  # False: Airflow may start it before every upstream is done


B = "ARRAY['failed','upstream_failed']"  # the failure states, in SQL
RULES = {
    "all_success": Rule("all_success", "{s} <@ ARRAY['success']", "{s} && " + B),
    "all_failed": Rule("all_failed", "{s} <@ " + B, "false"),
    "all_done": Rule("all_done", "true", "false"),
    "all_skipped": Rule("all_skipped", "{s} <@ ARRAY['skipped']", "false"),
    "one_success": Rule(
        "one_success", "'success' = ANY({s})", "NOT {s} <@ ARRAY['skipped']", waits_for_all=False
    ),
    "one_failed": Rule("one_failed", "{s} && " + B, "false", waits_for_all=False),
    "one_done": Rule("one_done", "{s} && ARRAY['success','failed']", "false", waits_for_all=False),
    "none_failed": Rule("none_failed", "NOT {s} && " + B, "true"),
    "none_failed_min_one_success": Rule(
        "none_failed_min_one_success",
        "NOT {s} && " + B + " AND 'success' = ANY({s})",
        "{s} && " + B,
    ),
    "none_skipped": Rule("none_skipped", "NOT 'skipped' = ANY({s})", "false"),
    "all_done_min_one_success": Rule("all_done_min_one_success", "'success' = ANY({s})", "false"),
    "all_done_setup_success": Rule("all_done_setup_success", "true", "false"),
    "always": Rule("always", "true", "false"),
}


def canonical(name: str) -> str | None:
    """The rule's current name (legacy aliases resolved), None when unknown."""
    name = ALIASES.get(name, name)
    return name if name in RULES else None


def decide(rule: str, states: Sequence[str]) -> str:
    """Airflow's decision for a task with ``rule`` whose direct upstream tasks
    all finished in ``states``."""
    if not states:
        return RUN
    n = len(states)
    success = states.count(SUCCESS)
    failed = states.count(FAILED) + states.count(UPSTREAM_FAILED)
    skipped = states.count(SKIPPED)
    plain_failed = states.count(FAILED)
    if rule == "all_success":
        return UPSTREAM_FAILED if failed else SKIPPED if skipped else RUN
    if rule == "all_failed":
        return RUN if failed == n else SKIPPED
    if rule in ("all_done", "always", "all_done_setup_success"):
        return RUN
    if rule == "all_skipped":
        return RUN if skipped == n else SKIPPED
    if rule == "one_success":
        return RUN if success else SKIPPED if skipped == n else UPSTREAM_FAILED
    if rule == "one_failed":
        return RUN if failed else SKIPPED
    if rule == "one_done":
        return RUN if success or plain_failed else SKIPPED
    if rule == "none_failed":
        return UPSTREAM_FAILED if failed else RUN
    if rule == "none_failed_min_one_success":
        return UPSTREAM_FAILED if failed else SKIPPED if skipped == n else RUN
    if rule == "none_skipped":
        return SKIPPED if skipped else RUN
    if rule == "all_done_min_one_success":
        return RUN if success else SKIPPED
    raise ValueError(rule)


def possible_decisions(rule: str, upstream: Sequence[Iterable[str]], limit: int = 4096) -> set[str]:
    """Every decision reachable over the combinations of upstream states."""
    sets = [sorted(set(u)) for u in upstream]
    total = 1
    for s in sets:
        total *= max(len(s), 1)
    if total > limit:  # too many to enumerate: assume anything can happen
        return {RUN, SKIPPED, UPSTREAM_FAILED}
    return {decide(rule, combo) for combo in itertools.product(*sets)}


# Rules under which a failed (or upstream_failed) upstream can still lead to a run:
# a failure upstream of such a task must be caught, not end the workflow.
TOLERANT = {
    r
    for r in RULES
    if decide(r, (FAILED, SUCCESS)) == RUN
    or decide(r, (FAILED,)) == RUN
    or decide(r, (UPSTREAM_FAILED,)) == RUN
}


def sql(rule: str, upstream_refs: Sequence[str]) -> tuple[str, str]:
    """(run condition, upstream_failed condition) as SQL over the upstream states."""
    spec = RULES[rule]
    array = "ARRAY[" + ", ".join(upstream_refs) + "]::text[]"
    return spec.run.replace("{s}", array), spec.upstream_failed.replace("{s}", array)
