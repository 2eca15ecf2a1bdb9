"""Airflow setup and teardown tasks (2.7+): how they are marked, and the rules
that make them differ from ordinary tasks (read from Airflow's own source:
``AbstractOperator.as_teardown``, ``utils/setup_teardown.py``,
``TriggerRuleDep`` and ``DagRun._tis_for_dagrun_state``).

* ``.as_setup()``, ``@setup``: the task is a setup. ``.as_teardown(setups=s)``,
  ``@teardown``: the task is a teardown, each ``s`` a setup upstream of it, and
  its trigger rule becomes ``all_done_setup_success`` whatever it was.
* ``all_done_setup_success``: the teardown waits until every upstream task is
  done; with setups among its direct upstream tasks it runs when at least one
  of them succeeded, is skipped when they were all skipped, and is
  upstream_failed when none succeeded. Without any, it runs (``all_done``).
  So a teardown runs after a failed work task, as long as its setup succeeded.
* The DAG run's outcome ignores teardowns: a task counts as a leaf when every
  task downstream of it is a teardown (not itself a teardown), so a failed
  teardown does not fail the run and a failed work task still does, unless the
  teardown says ``on_failure_fail_dagrun=True``.
* ``with teardown_task:`` / ``with setup_task:`` (also ``with s >> t:``):
  the tasks created inside without an upstream get the setups upstream, those
  without a downstream get the teardown downstream (``set_work_task_roots_and_leaves``).

The compiler (``compile.py``) asks this module for the rule, the decision over
the upstream states, the leaves and whether a teardown's failure is caught; the
workflow's ``pgdurable.try`` around a teardown records its failure and goes on,
which is what "does not fail the DAG run" means here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence

from pgdurable.translators.airflow import rules
from pgdurable.translators.airflow.dagfile import Dag, Task

SETUP, TEARDOWN = "setup", "teardown"
RULE = "all_done_setup_success"
_MAX_WALK = 50  # graph hops when looking for a teardown's setups (Airflow recurses)


def mark_setup(task: Task) -> None:
    task.setup_role = SETUP


def mark_teardown(
    dag: Dag,
    task: Task,
    setups: Iterable[str],
    fail_dagrun: object,
    edge: Callable[[Dag, str, str], None],
) -> None:
    task.setup_role = TEARDOWN
    if isinstance(fail_dagrun, bool):
        task.fail_dagrun = fail_dagrun
    for s in setups:
        if s in dag.tasks:
            dag.tasks[s].setup_role = SETUP
            edge(dag, s, task.task_id)


def role(dag: Dag, task_id: str) -> str | None:
    task = dag.tasks.get(task_id)
    return task.setup_role if task is not None else None


def _neighbours(dag: Dag, ids: Iterable[str], upstream: bool | None) -> list[str]:
    wanted = set(ids)
    found: list[str] = []
    for u, d in dag.edges:
        if upstream in (True, None) and d in wanted:
            found.append(u)
        if upstream in (False, None) and u in wanted:
            found.append(d)
    return found


def _find(dag: Dag, start: str, kind: str, upstream: bool) -> list[str]:
    """Airflow's ``_get_setups``/``_get_teardowns``: the direct up-(down-)stream
    tasks of that kind, else the search goes on through every neighbour."""
    frontier = _neighbours(dag, [start], upstream)
    for _ in range(_MAX_WALK):
        hits = [t for t in dict.fromkeys(frontier) if role(dag, t) == kind]
        if hits or not frontier:
            return hits
        frontier = [t for t in _neighbours(dag, frontier, None) if t != start]
    return []


def context_exit(
    dag: Dag,
    entered: Sequence[str],
    created: Sequence[str],
    edge: Callable[[Dag, str, str], None],
) -> None:
    """``with <setup or teardown tasks>:`` has ended; ``created``: the tasks made inside."""
    work = [t for t in created if t in dag.tasks and role(dag, t) is None]
    if not work or not entered:
        return
    ups = {d: [u for u, dd in dag.edges if dd == d] for d in work}
    downs = {u: [d for uu, d in dag.edges if uu == u] for u in work}
    roots = [t for t in work if not ups[t]] or [work[0]]
    leaves = [t for t in work if not downs[t]] or [work[-1]]
    if role(dag, entered[0]) == SETUP:
        setups = list(entered)
        teardowns = _find(dag, entered[0], TEARDOWN, upstream=False)
    else:
        teardowns = list(entered)
        setups = _find(dag, entered[0], SETUP, upstream=True)
    for s in setups:
        for r in roots:
            edge(dag, s, r)
    for leaf in leaves:
        for t in teardowns:
            edge(dag, leaf, t)


# -- compiling -------------------------------------------------------------------


def rule_of(task: Task, name: str) -> str:
    """A teardown's trigger rule is ``all_done_setup_success`` (``as_teardown`` sets it)."""
    return RULE if task.setup_role == TEARDOWN else name


def decide(states: Sequence[tuple[bool, str]]) -> str:
    """Airflow's decision for ``all_done_setup_success`` over (is setup, state) pairs."""
    setups = [s for is_setup, s in states if is_setup]
    if not setups:
        return rules.RUN
    if all(s == rules.SKIPPED for s in setups):
        return rules.SKIPPED
    if rules.SUCCESS not in setups:
        return rules.UPSTREAM_FAILED
    return rules.RUN


def possible_decisions(upstream: Sequence[tuple[bool, Iterable[str]]]) -> set[str]:
    sets = [[(flag, s) for s in sorted(set(states))] for flag, states in upstream]
    return {decide(combo) for combo in itertools.product(*sets)} or {rules.RUN}


def sql(refs: Sequence[str], setup_flags: Sequence[bool]) -> tuple[str, str]:
    """(run condition, upstream_failed condition) over the direct setups' states."""
    setups = [r for r, flag in zip(refs, setup_flags, strict=True) if flag]
    if not setups:
        return "true", "false"
    array = "ARRAY[" + ", ".join(setups) + "]::text[]"
    return f"'success' = ANY({array})", f"NOT {array} <@ ARRAY['skipped']"


def ignorable(task: Task) -> bool:
    """A teardown whose state does not count for the DAG run (the default)."""
    return task.setup_role == TEARDOWN and not task.fail_dagrun


def effective_leaves(dag: Dag, order: Sequence[str], down: dict[str, list[str]]) -> list[str]:
    """``DagRun._tis_for_dagrun_state``: the tasks whose states decide the run."""
    leaves = [
        t
        for t in order
        if all(ignorable(dag.tasks[d]) for d in down[t]) and not ignorable(dag.tasks[t])
    ]
    return leaves or [t for t in order if not down[t]]


def scope_notes(
    dag: Dag, order: Sequence[str], rule_of: dict[str, str], desc: dict[str, set[str]]
) -> list[str]:
    """Tasks the workflow may decide differently: Airflow also makes a task below a
    setup (not directly) upstream_failed or skipped when that setup failed or was
    skipped, before its trigger rule. Under ``all_success`` the ordinary cascade
    gives the same state; under another rule (of the task or of one in between)
    it may not."""
    found: list[str] = []
    for s in order:
        if dag.tasks[s].setup_role != SETUP:
            continue
        for t in order:
            if t in desc[s] and dag.tasks[t].setup_role != TEARDOWN and rule_of[t] != "all_success":
                found.append(
                    f"task {t!r} ({rule_of[t]}) is below setup {s!r}: Airflow makes it "
                    f"upstream_failed or skipped when {s!r} failed or was skipped (and so "
                    "every task below it that depends on that); the workflow decides it by "
                    "its trigger rule over its direct upstream tasks only"
                )
    return found
