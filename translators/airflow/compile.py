"""One DAG -> one workflow: run semantics compiled as task states.

**The state compilation.** Airflow decides whether a task runs from the
states of its direct upstream tasks (``rules.py``). The workflow makes those
states explicit only where they can differ from "every upstream succeeded":

1. *Possible states.* Walking the tasks in dependency order, each task's
   possible decisions are computed from its upstream tasks' possible states
   (every combination is enumerated with Airflow's own rule), plus "skipped"
   when a branch may not follow it or a short-circuit above it may stop.
2. *Captured failures.* A task whose failure some later task could survive
   (a descendant with a failure-tolerant rule such as ``all_done`` or
   ``one_failed``) has its failure caught and recorded instead of ending the
   run: a single SQL step is caught inside its own transaction (a ``DO``
   block that rolls the task back, then ``SELECT`` its state); other steps by
   ``pgdurable.try``. Other failures end the run, which is what Airflow's
   ``upstream_failed`` cascade does to every task that would still have run.
3. *Named states.* A task whose state someone reads records
   ``st_<task>``: ``SELECT 'success' AS state`` after its work (with a
   ``follow`` column for branches and short-circuits), ``'skipped'`` or
   ``'upstream_failed'`` when it does not run, ``'failed'`` when caught.
4. *Decisions.* A task whose decision is not always "run" is wrapped in
   ``df.if('SELECT <rule over ARRAY[$st_a, ...]>', <work>, <not-run state>)``.
5. *The DAG run's outcome.* When a leaf task may end ``failed`` or
   ``upstream_failed`` without ending the run, a last step raises, so the
   workflow run fails exactly when the Airflow DAG run would.

Structure: ``graph.decompose`` nests the tasks in sequences and joins.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, replace
from pathlib import PurePosixPath

from pgdurable import model as m
from pgdurable.diagnostics import Collector
from pgdurable.sqltext import comment, dollar_quote, literal
from pgdurable.translators.airflow import (
    assets,
    dag_run_conf,
    dag_zone,
    graph,
    interval_reads,
    python_mapped,
    rules,
    schedule,
    setup_teardown,
    templates,
)
from pgdurable.translators.airflow.dagfile import Dag, Duration, Task, Timestamp, Unknown
from pgdurable.translators.airflow.tasks import (
    Context,
    Trigger,
    Work,
    compile_work,
    guarded_branch,
    policies,
    sid,
    stub,
    trigger_function,
)
from pgdurable.translators.base import OUTSIDE, Workflow

SOURCE = "airflow"
_XCOM = re.compile(r"xcom_pull\(\s*(?:task_ids\s*=\s*)?['\"]([\w.-]+)['\"]")


@dataclass
class _Plan:
    decisions: set[str]
    possible: set[str]
    captured: bool = False
    needs_if: bool = False
    observed: bool = False
    forced: list[str] | None = None  # extra SQL conjuncts (branch / short-circuit)


def _rule(dag: Dag, task: Task, diag: Collector, generation: int) -> str:
    raw = dag.task_arg(task, "trigger_rule", "all_success")
    if isinstance(raw, Unknown) or not isinstance(raw, str):
        diag.add(
            "PGD315",
            f"task {task.task_id!r}: trigger_rule is not a literal ({raw}); all_success assumed",
            task.ref,
        )
        return "all_success"
    name = rules.canonical(raw.lower())
    if name is None:
        diag.add(
            "PGD315",
            f"task {task.task_id!r}: unknown trigger_rule {raw!r}; all_success assumed",
            task.ref,
        )
        return "all_success"
    if raw in rules.REMOVED_IN_3 and generation >= 3:
        diag.add(
            "PGD228",
            f"task {task.task_id!r}: trigger_rule {raw!r} does not exist in Airflow 3 (use {name!r})",
            task.ref,
        )
    if not rules.RULES[name].waits_for_all:
        diag.add(
            "PGD229",
            f"task {task.task_id!r} ({name}): Airflow may start it before all upstream "
            "tasks finish; the workflow decides once they all have (same tasks run)",
            task.ref,
        )
    return name


def _marker(state: str, name: str, follow: str | None = None) -> m.Sql:
    extra = f", {follow} AS follow" if follow is not None else ""
    return m.Sql(f"SELECT '{state}' AS state{extra}", name=name)


def _guarded(sql: str, name: str, task: Task) -> m.Sql:
    """A SQL task whose failure is recorded: the statements run in a sub-
    transaction, so a failure rolls the whole task back (as Airflow's closed
    connection does), and the step returns the task's state."""
    tag = "$task$"
    n = 0
    while tag in sql:
        n += 1
        tag = f"$task{n}$"
    body = "$sql$" + sql + "$sql$" if "$sql$" not in sql else "$sql_" + sql + "$sql_"
    return m.Sql(
        f"DO {tag}\nBEGIN\n    EXECUTE {body};\nEXCEPTION WHEN OTHERS THEN\n"
        f"    PERFORM set_config('pgdurable.task_error', SQLERRM, true);\nEND\n{tag};\n"
        "SELECT CASE WHEN coalesce(current_setting('pgdurable.task_error', true), '') = ''\n"
        "            THEN 'success' ELSE 'failed' END AS state,\n"
        "       nullif(current_setting('pgdurable.task_error', true), '') AS error",
        name=name,
        source=task.ref,
    )


def _record_outlets(dag: Dag, task: Task, work: Work) -> None:
    """A task with ``outlets`` signals the DAGs waiting for those assets once it
    succeeds (``assets``); an outlet that cannot be read changes nothing."""
    outlets = assets.keys(task.args.get("outlets"))
    if not outlets or work.node is None:
        return
    who = f"{dag.dag_id}.{task.task_id}"
    steps = [assets.producer_step(key, who) for key in outlets]
    work.node = m.Seq((work.node, *steps))
    work.plain_sql = None


def compile_dag(dag: Dag, ctx: Context, plan: schedule.Plan) -> tuple[m.Node, m.Node, str]:
    """(scheduled body, one run, profile) of a DAG. Diagnostics go to ctx.diag."""
    diag = ctx.diag
    order_ids = list(dag.tasks)
    edges = [(u, d) for u, d in dag.edges if u in dag.tasks and d in dag.tasks]
    order = graph.topological(order_ids, edges)
    up: dict[str, list[str]] = {t: [] for t in order}
    down: dict[str, list[str]] = {t: [] for t in order}
    for u, d in edges:
        up[d].append(u)
        down[u].append(d)

    # TaskFlow/xcom: which tasks' results are read by name later.
    pulled: set[str] = set()
    for task in dag.tasks.values():
        for value in task.args.values():
            if isinstance(value, str):
                pulled.update(_XCOM.findall(value))
    ctx.env.xcom = {t: f"r_{sid(t)}" for t in pulled if t in dag.tasks}

    works: dict[str, Work] = {}
    for tid in order:
        task = dag.tasks[tid]
        before = len(ctx.env.problems)
        work = _mapped(task, ctx) if task.mapped is not None else compile_work(task, ctx)
        for problem in ctx.env.problems[before:]:
            diag.add("PGD312", f"task {tid!r}: {problem}; not translated, fix by hand", task.ref)
        if work.node is not None and tid in ctx.env.xcom and isinstance(work.node, m.Sql):
            work.node = m.Sql(work.node.query, name=ctx.env.xcom[tid], source=work.node.source)
            work.plain_sql = None
        works[tid] = work
        _record_outlets(dag, task, work)
        if task.removed_in is not None and ctx.generation >= task.removed_in:
            diag.add(
                "PGD228",
                f"task {tid!r}: {task.operator} does not exist in Airflow {task.removed_in}.x "
                f"(use {task.replacement}); translated as that operator",
                task.ref,
            )

    # descendants (for short-circuit and tolerant detection)
    desc: dict[str, set[str]] = {}
    for tid in reversed(order):
        acc: set[str] = set()
        for d in down[tid]:
            acc.add(d)
            acc |= desc[d]
        desc[tid] = acc

    rule_of = {
        tid: setup_teardown.rule_of(
            dag.tasks[tid], _rule(dag, dag.tasks[tid], diag, ctx.generation)
        )
        for tid in order
    }
    is_setup = {tid: dag.tasks[tid].setup_role == setup_teardown.SETUP for tid in order}
    for note in setup_teardown.scope_notes(dag, order, rule_of, desc):
        diag.add("PGD296", note)
    plans: dict[str, _Plan] = {}
    for tid in order:
        work = works[tid]
        forced: list[str] = []
        extra_skip = False
        for u in up[tid]:
            uw = works[u]
            if uw.follow_static is not None:
                if tid not in uw.follow_static:
                    forced.append(f"${'st_' + sid(u)} <> 'success'")
                    extra_skip = True
            elif uw.follow_ids:
                # the Python branch's chosen ids, read from its state row (NULL when it
                # did not run, so the trigger rule alone decides)
                alias = '"st_' + sid(u) + '"'  # the row set's alias (sid: word characters)
                forced.append(
                    f"coalesce((SELECT (to_jsonb({alias}) ->> 'follow')::jsonb ? {literal(tid)} "
                    f"FROM ${'st_' + sid(u)}.*), true)"
                )
                extra_skip = True
            elif uw.follow is not None and not uw.short_circuit:
                branch = dag.tasks[u]
                yes = _ids(branch.args.get("follow_task_ids_if_true"))
                no = _ids(branch.args.get("follow_task_ids_if_false"))
                if tid in yes and tid in no:
                    continue
                if tid in yes:
                    forced.append(f"coalesce(${'st_' + sid(u)}.follow?, true)")
                elif tid in no:
                    forced.append(f"coalesce(NOT ${'st_' + sid(u)}.follow?, true)")
                else:
                    forced.append(f"${'st_' + sid(u)} <> 'success'")
                extra_skip = True
        for s in order:
            sw = works[s]
            if sw.short_circuit and (tid in desc[s] if sw.short_circuit_all else tid in down[s]):
                if sw.follow == "false":
                    forced.append("false")
                elif sw.follow != "true":
                    forced.append(f"coalesce(${'st_' + sid(s)}.follow?, true)")
                extra_skip = sw.follow != "true"
        if rule_of[tid] == setup_teardown.RULE:
            decisions = setup_teardown.possible_decisions(
                [(is_setup[u], plans[u].possible) for u in up[tid]]
            )
        else:
            decisions = rules.possible_decisions(rule_of[tid], [plans[u].possible for u in up[tid]])
        if extra_skip:
            decisions.add(rules.SKIPPED)
        captured = work.can_fail and (
            any(rule_of[d] in rules.TOLERANT for d in desc[tid])
            or setup_teardown.ignorable(dag.tasks[tid])  # its failure leaves the run as it is
        )
        possible = {d for d in decisions if d != rules.RUN}
        if rules.RUN in decisions:
            possible.add(rules.SUCCESS)
            if captured:
                possible.add(rules.FAILED)
            if work.may_skip:
                possible.add(rules.SKIPPED)
        plans[tid] = _Plan(
            decisions,
            possible,
            captured=captured,
            needs_if=decisions != {rules.RUN} or bool(forced),
            forced=forced,
        )

    leaves = setup_teardown.effective_leaves(dag, order, down)
    failing_leaves = [
        t for t in leaves if plans[t].possible & {rules.FAILED, rules.UPSTREAM_FAILED}
    ]
    for tid in order:
        p = plans[tid]
        if any(plans[d].needs_if for d in down[tid]) or tid in failing_leaves:
            p.observed = True
        if works[tid].follow is not None or works[tid].follow_static is not None:
            p.observed = True

    if ctx.portable and any(p.captured for p in plans.values()):
        names = [t for t in order if plans[t].captured and not works[t].plain_sql]
        if names:
            diag.add(
                "PGD237",
                "--portable: a failure of " + ", ".join(names[:8]) + " ends the run; Airflow "
                "goes on with the tasks whose trigger rule tolerates it (pgdurable.try is not df.*)",
            )

    nodes: dict[str, m.Node | None] = {}
    uses_extensions = False
    for tid in order:
        node, ext = _task_node(
            dag.tasks[tid], works[tid], plans[tid], up[tid], rule_of[tid], ctx, is_setup
        )
        uses_extensions |= ext
        nodes[tid] = node

    structure, added = graph.decompose(order, edges)
    if added:
        pairs = ", ".join(f"{b} waits for {a}" for a, b in added[:6])
        more = f" and {len(added) - 6} more" if len(added) > 6 else ""
        diag.add(
            "PGD227",
            "the dependency graph is not series-parallel: every Airflow ordering is kept "
            f"but {len(added)} extra one(s) are added, losing parallelism: {pairs}{more}",
        )
    body = _assemble(structure, nodes)
    steps: list[m.Node] = []
    if ctx.env.uses_dates and plan.dates_sql:  # none: the schedule is not translated
        module = ctx.python_module  # code steps read dag_run.conf (dag_run_conf.py)
        code = module is not None and bool(module.entries or module.renders)
        dates = dag_run_conf.with_conf(plan.dates_sql) if code else plan.dates_sql
        steps.append(m.Sql(dates, name="dag_run"))
    if body is not None:
        steps.append(body)
    if failing_leaves:
        cond = " OR ".join(
            f"${'st_' + sid(t)} IN ('failed', 'upstream_failed')" for t in failing_leaves
        )
        listing = " || ', ' || ".join(f"'{t}=' || ${'st_' + sid(t)}" for t in failing_leaves)
        steps.append(
            m.Sql(
                f"DO $run$ BEGIN IF {cond} THEN RAISE EXCEPTION "
                f"'DAG run {dag.dag_id} failed: %', {listing}; END IF; END $run$"
            )
        )
    if not steps:
        run: m.Node = m.Sleep(0)
    elif len(steps) == 1:
        run = steps[0]
    else:
        run = m.Seq(tuple(_flatten(steps)))
    profile = m.PGDURABLE if uses_extensions or ctx.multi_statement else m.PORTABLE
    return run, run, profile


# Airflow's [core] max_map_length: a mapping with more instances fails the task.
MAX_MAP_LENGTH = 1024


def _mapped(task: Task, ctx: Context) -> Work:
    """``.expand(...)`` over literal values: one instance per combination (the cross
    product of the keyword lists, as Airflow builds them), run in parallel in a
    join, which fails when an instance fails, as the mapped task does. Anything only
    known at run time (an upstream's output) is a manual stub naming it."""
    mapped = task.mapped
    assert mapped is not None
    looped = python_mapped.mapped_work(task, ctx)  # a TaskFlow callable: one looping step
    if looped is not None:
        return looped
    line = f" (line {task.ref.line})" if task.ref.line else ""
    call = f".{mapped.how}(...)"
    if mapped.instances is None:
        ctx.diag.add(
            "PGD315",
            f"task {task.task_id!r}{line} is mapped with {call} over {mapped.unknown}, "
            "known only when the DAG runs: write the loop over those values by hand "
            "(a df.join of one step per value)",
            task.ref,
        )
        return stub(task, f"dynamically mapped over {mapped.unknown}", ctx, reported=True)
    count = len(mapped.instances)
    if count == 0 or count > MAX_MAP_LENGTH:
        why = (
            "maps over an empty list, so Airflow skips it"
            if count == 0
            else f"has {count} mapped instances; Airflow fails it above max_map_length "
            f"({MAX_MAP_LENGTH})"
        )
        ctx.diag.add("PGD315", f"task {task.task_id!r}{line} {why}", task.ref)
        return stub(task, why, ctx, reported=True)
    seen = len(ctx.diag.items)
    works = []
    for i, values in enumerate(mapped.instances):
        if task.operator.startswith("@"):
            fn = mapped.callables[i] if i < len(mapped.callables) else task.callable
            instance = replace(task, callable=fn, call_kwargs={**task.call_kwargs, **values})
        else:
            instance = replace(task, args={**task.args, **values})
        works.append(compile_work(instance, ctx))
    if any(w.manual for w in works):
        _dedupe(ctx, seen)
        return next(w for w in works if w.manual)
    # Airflow retries and times out each mapped instance on its own
    nodes = [policies(task, w.node, ctx) for w in works if w.node is not None]
    _dedupe(ctx, seen)
    if not nodes:
        return Work(None, can_fail=False)
    node = nodes[0] if len(nodes) == 1 else m.Join(tuple(nodes))
    return Work(node, policies_applied=True)


def _dedupe(ctx: Context, start: int) -> None:
    """The mapped instances repeat each other's diagnostics: keep each once (and
    keep ``ctx.once``'s positions pointing at the diagnostics they update)."""
    items = ctx.diag.items
    kept: list[int] = []
    for i in range(start, len(items)):
        if all(items[i] != items[k] for k in kept):
            kept.append(i)
    moved = {old: start + n for n, old in enumerate(kept)}
    items[start:] = [items[i] for i in kept]
    for key, (index, tasks) in list(ctx.reported.items()):
        if index >= start:
            ctx.reported[key] = (moved[index], tasks)


def _ids(value: object) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, list | tuple):
        return {v for v in value if isinstance(v, str)}
    return set()


def _flatten(steps: list[m.Node]) -> list[m.Node]:
    out: list[m.Node] = []
    for s in steps:
        if isinstance(s, m.Seq) and s.name is None:
            out.extend(s.steps)
        else:
            out.append(s)
    return out


def _task_node(
    task: Task,
    work: Work,
    plan: _Plan,
    upstream: list[str],
    rule: str,
    ctx: Context,
    is_setup: dict[str, bool] | None = None,
) -> tuple[m.Node | None, bool]:
    st = f"st_{sid(task.task_id)}"
    ext = False
    run = work.node
    ext = run is not None and m.uses_extensions(run)  # code steps are extension nodes
    if run is not None and work.policies_applied:
        ext |= m.uses_extensions(run)
    elif run is not None and not work.manual:
        wrapped = policies(task, run, ctx)
        ext |= wrapped is not run
        run = wrapped
    marker = _marker("success", st, work.follow if work.follow else None)
    if work.follow_static is not None:
        marker = _marker("success", st)
    if plan.captured and run is not None:
        if (
            work.plain_sql is not None
            and run is work.node
            and not work.state_node
            and work.follow is None
        ):
            run = _guarded(work.plain_sql, st, task)
        elif work.branch_query is not None and run is work.node:
            run = guarded_branch(work.branch_query, st, task.ref)
        elif ctx.portable:
            run = m.Seq((run, marker)) if plan.observed else run
        else:
            ext = True
            success = run if work.state_node else m.Seq((*_flatten([run]), marker))
            run = m.Try(success, _marker("failed", st))
    elif plan.observed and not work.state_node:
        run = marker if run is None else m.Seq((*_flatten([run]), marker))
    if not plan.needs_if:
        return run, ext
    if run is None:
        run = m.Sleep(0)
    refs = [f"$st_{sid(u)}" for u in upstream]
    if rule == setup_teardown.RULE:
        cond, upfailed = setup_teardown.sql(
            refs, [(is_setup or {}).get(u, False) for u in upstream]
        )
    else:
        cond, upfailed = rules.sql(rule, refs) if refs else ("true", "false")
    conjuncts = [c for c in [cond, *(plan.forced or [])] if c != "true"] or ["true"]
    condition = " AND ".join(f"({c})" if len(conjuncts) > 1 else c for c in conjuncts)
    if plan.observed:
        if upfailed == "false" or rules.UPSTREAM_FAILED not in plan.decisions:
            otherwise: m.Node = _marker("skipped", st)
        elif upfailed == "true":
            otherwise = _marker("upstream_failed", st)
        else:
            otherwise = m.Sql(
                f"SELECT CASE WHEN {upfailed} THEN 'upstream_failed' ELSE 'skipped' END AS state",
                name=st,
            )
        if plan.forced:
            # a branch or short-circuit that stops the task makes it skipped, whatever the rule
            forced = " AND ".join(plan.forced)
            if isinstance(otherwise, m.Sql) and "CASE" in otherwise.query:
                otherwise = m.Sql(
                    f"SELECT CASE WHEN NOT ({forced}) THEN 'skipped' WHEN {upfailed} "
                    "THEN 'upstream_failed' ELSE 'skipped' END AS state",
                    name=st,
                )
            elif otherwise.query.startswith("SELECT 'upstream_failed'"):  # type: ignore[union-attr]
                otherwise = m.Sql(
                    f"SELECT CASE WHEN NOT ({forced}) THEN 'skipped' ELSE 'upstream_failed' END AS state",
                    name=st,
                )
    else:
        otherwise = m.Sleep(0)
    return m.If(m.Sql(f"SELECT {condition}", source=task.ref), run, otherwise), ext


def _assemble(structure: graph.Structure | None, nodes: dict[str, m.Node | None]) -> m.Node | None:
    if structure is None:
        return None
    if isinstance(structure, graph.Leaf):
        return nodes[structure.task]
    parts = [p for p in (_assemble(s, nodes) for s in structure.parts) if p is not None]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    if isinstance(structure, graph.Series):
        return m.Seq(tuple(_flatten(parts)))
    return m.Join(tuple(parts))


# -- the whole workflow ------------------------------------------------------------


def schedule_args(dag: Dag, generation: int) -> tuple[object, bool]:
    args = dag.args
    present = False
    value: object = None
    for key in ("schedule", "schedule_interval", "timetable"):
        if key in args:
            present, value = True, args[key]
            if key != "schedule" and generation >= 3:
                return value, present
    return value, present


def workflow(dag: Dag, ctx: Context, name: str) -> Workflow:
    diag = ctx.diag
    gen = ctx.generation
    value, present = schedule_args(dag, gen)
    if gen >= 3 and ("schedule_interval" in dag.args or "timetable" in dag.args):
        diag.add(
            "PGD228",
            "schedule_interval/timetable is a TypeError in Airflow 3 (use schedule=); translated "
            "with its Airflow 2 meaning",
            dag.ref,
        )
    _note_unknown_defaults(dag, diag)
    start_date = dag.args.get("start_date", dag.default("start_date"))
    tz = dag_zone.of(dag.args.get("start_date"), dag.default("start_date"))
    plan = schedule.plan(value, present=present, generation=gen, start_date=start_date, timezone=tz)
    for code, message in plan.notes:
        diag.add(code, message, dag.ref)
    repeating = plan.kind in ("cron", "sleep", "continuous", "timetable")
    window = _window(dag, plan, start_date, diag) if repeating or plan.kind == "once" else None
    if window is not None and window.inside is not None:
        ctx.env.uses_dates = True  # the window is read from the run's own dates
    run, one_run, profile = compile_dag(dag, ctx, plan)
    # the tasks read the run's dates (templates, Python context): a skipped interval
    # is then a data difference (the window below reads them too, but only to decide)
    reads_interval = interval_reads.reads_interval(m.encode(run), ctx.python_module)
    if window is not None and window.inside is not None:
        run = _in_window(run, window, dag)
    targets = set(ctx.databases.values())
    if len(targets) > 1:
        diag.add(
            "PGD316",
            "the tasks use connections to different databases ("
            + ", ".join(sorted(t or "(current)" for t in targets))
            + "); a workflow runs its SQL in one database",
            dag.ref,
        )
    target = next(iter(targets)) if len(targets) == 1 else None

    extension = profile == m.PGDURABLE
    timeout = dag.args.get("dagrun_timeout")
    if isinstance(timeout, Duration):
        if ctx.portable:
            diag.add(
                "PGD217", f"--portable: dagrun_timeout {int(timeout.seconds)} s is dropped", dag.ref
            )
        else:
            run = m.Timeout(run, max(1, int(timeout.seconds)))
            extension = True
    catchup = dag.args.get("catchup", dag.default("catchup", gen < 3))
    if repeating and not plan.triggered and reads_interval:
        caught = catchup is True and start_date is not None
        diag.add(
            "PGD248",
            "the tasks read the run's data interval (ds, data_interval_*, logical_date, ts...): "
            "a tick that comes due while a run is going is skipped here, so that interval's "
            "run never happens (Airflow queues it, up to max_active_runs="
            f"{dag.args.get('max_active_runs', 16)})"
            + (
                "; catchup is on: Airflow also runs every interval missed since start_date "
                "(or while it was stopped), the workflow starts with the next tick and never "
                "runs missed ones"
                if caught
                else ""
            ),
            dag.ref,
        )
    elif repeating and not plan.triggered:
        if catchup is True and start_date is not None:
            diag.add(
                "PGD238",
                "catchup is on: Airflow creates a run for every missed interval since "
                "start_date; the workflow starts with the next tick (runs Airflow already did "
                "are not repeated)",
                dag.ref,
            )
        diag.add(
            "PGD205",
            "runs never overlap: a tick that comes due while a run is going is skipped "
            f"(Airflow queues it, up to max_active_runs={dag.args.get('max_active_runs', 16)})",
            dag.ref,
        )
    if repeating:
        if any(dag.task_arg(t, "depends_on_past") is True for t in dag.tasks.values()):
            diag.add(
                "PGD239",
                "depends_on_past: runs are sequential, but a task whose previous run failed "
                "still runs in the next one",
                dag.ref,
            )
        if ctx.portable:
            diag.add(
                "PGD204",
                "--portable: a failed run fails the whole instance and ends the schedule; "
                "Airflow marks the DAG run failed and runs the next one",
                dag.ref,
            )
        else:
            run = m.Try(run, m.Sleep(0))
            extension = True
    if plan.kind == "cron":
        waits = [m.WaitForSchedule(c, source=dag.ref) for c in plan.crons]
        wait: m.Node = waits[0] if len(waits) == 1 else m.Race(waits[0], waits[1])
        body: m.Node = m.Loop(m.Seq((wait, *_flatten([run]))))
    elif plan.kind == "sleep":
        body = m.Loop(m.Seq((m.Sleep(plan.sleep_seconds, source=dag.ref), *_flatten([run]))))
    elif plan.kind == "continuous":
        body = m.Loop(run)
    elif plan.build is not None:  # a timetable (translators/airflow/timetables.py)
        body = plan.build(run)
    elif plan.kind == "once" and window is not None and window.not_before is not None:
        # @once runs at start_date: until then, wait (in steps of at most a minute)
        not_yet = f"SELECT now() < {window.not_before}"
        body = m.Seq((m.If(m.Sql(not_yet), m.Loop(m.Sleep(60), m.Sql(not_yet)), m.Sleep(0)), run))
    else:
        body = run
    start = plan.kind in ("cron", "sleep", "continuous", "once", "timetable")
    if start and ctx.run_as is None:
        diag.add(
            "PGD306",
            "Airflow does not say which database role runs the DAG; pass --default-username "
            "ROLE and regenerate",
            dag.ref,
        )
    if diag.fidelity >= 2:
        start = False
    description = [
        f"Airflow {gen}.x DAG {dag.dag_id!r} ({len(dag.tasks)} tasks)",
        f"schedule: {plan.text} -> "
        + (
            " | ".join(f"df.wait_for_schedule('{c}')" for c in plan.crons)
            if plan.kind == "cron"
            else {
                "sleep": f"df.sleep({plan.sleep_seconds}) loop",
                "once": "one run when applied",
                "on_demand": f"on demand: SELECT {trigger_function(dag.dag_id)}()",
                "continuous": "a loop without waiting",
                "manual": "none (manual)",
                "timetable": plan.summary,
            }.get(plan.kind, plan.kind)
        ),
    ]
    if plan.rule:
        description.append(f"dates: {plan.rule}")
    for variable in sorted(ctx.env.variables):
        description.append(
            f"variable: {variable} - before applying, as the run_as role: "
            f"SELECT df.setvar({literal(variable)}, '<value of the Airflow Variable>');"
        )
    from pgdurable.model import encode

    graph_json = encode(one_run)
    start_run = (
        f"\n    SELECT df.start({dag_run_conf.started_graph(literal(graph_json))}, "
        f"coalesce(label, {literal('airflow:' + dag.dag_id)})"
        f"{', ' + literal(target) if target else ''})\n"
    )
    function = trigger_function(dag.dag_id)
    without_conf = f"\n    SELECT {function}(label, '{{}}'::jsonb)\n"
    comment_text = literal(SOURCE + "/" + name + "#trigger")
    # Two functions, no DROP: (label, conf) starts the run with conf as its dag_run.conf;
    # (label DEFAULT NULL) is the form older imports created, kept for their callers
    # (a two-argument function without defaults can never make a one-argument call
    # ambiguous). The comment says whose they are: `pgdurable retire` drops both.
    epilogue = (
        "-- Start one run of this DAG on demand (TriggerDagRunOperator, manual runs);\n"
        "-- conf becomes the run's dag_run.conf:\n"
        "CREATE SCHEMA IF NOT EXISTS airflow_dags;\n"
        f"CREATE OR REPLACE FUNCTION {function}(label text, conf jsonb)\n"
        f"RETURNS varchar LANGUAGE sql AS {dollar_quote(start_run, 'trigger')};\n"
        f"COMMENT ON FUNCTION {function}(text, jsonb) IS {comment_text};\n"
        f"CREATE OR REPLACE FUNCTION {function}(label text DEFAULT NULL)\n"
        f"RETURNS varchar LANGUAGE sql AS {dollar_quote(without_conf, 'trigger')};\n"
        f"COMMENT ON FUNCTION {function}(text) IS {comment_text};\n"
    )
    return Workflow(
        name=name,
        source=SOURCE,
        body=body,
        profile=m.PGDURABLE if extension else m.PORTABLE,
        schedule=plan.text,
        run_as=ctx.run_as,
        database=target,
        start=start,
        description=tuple(description),
        cutover=f"{OUTSIDE}airflow dags pause {comment(shlex.quote(dag.dag_id))}",
        rollback=f"{OUTSIDE}airflow dags unpause {comment(shlex.quote(dag.dag_id))}",
        epilogue=epilogue,
    )


# default_args keys that change nothing a workflow does (notification, ownership, UI)
_NO_WORKFLOW_MEANING = frozenset(
    {"owner", "email", "email_on_failure", "email_on_retry", "doc_md", "doc", "tags"}
)


def _note_unknown_defaults(dag: Dag, diag: Collector) -> None:
    """A non-static value under such a key is noted (PGD249), not a reason for manual."""
    defaults = dag.args.get("default_args")
    if not isinstance(defaults, dict):
        return
    for key, value in defaults.items():
        if key in _NO_WORKFLOW_MEANING and isinstance(value, Unknown):
            diag.add(
                "PGD249",
                f"default_args[{key!r}] is only known when the file runs (`{str(value)[:60]}`); "
                "it has no effect on the workflow (Airflow uses it for notifications and "
                "display), so it is left out",
                dag.ref,
            )


def _instant(stamp: Timestamp) -> str:
    """A literal date as SQL: a naive one is in UTC (Airflow's default_timezone)."""
    zone = stamp.timezone or "UTC"
    return f"(timestamp {literal(stamp.iso)} AT TIME ZONE {literal(zone)})"


def _shown(stamp: Timestamp) -> str:
    """A literal date for a message, with its zone (naive: UTC, Airflow's default_timezone)."""
    return f"{stamp.iso} {stamp.timezone or 'UTC'}"


@dataclass(frozen=True)
class _Window:
    """start_date / end_date as SQL: ``inside`` (this tick's run is in the window),
    ``past`` (the schedule is over), ``not_before`` (@once: the instant to wait for)."""

    inside: str | None = None
    past: str | None = None
    not_before: str | None = None


def _window(dag: Dag, plan: schedule.Plan, start_date: object, diag: Collector) -> _Window | None:
    """The DAG's start_date / end_date over the run's own dates. Airflow creates a
    run only for a data interval that starts at or after start_date and no later
    than end_date (a trigger timetable's interval starts at the tick). The
    translation cannot tell whether a date is still ahead (it reads no clock), so
    every literal date becomes a condition. None when neither date applies."""
    end_date = dag.args.get("end_date", dag.default("end_date"))
    unknown = [
        f"{name} `{value}`"
        for name, value in (("start_date", start_date), ("end_date", end_date))
        if isinstance(value, Unknown)
    ]
    if unknown:
        diag.add(
            "PGD255",
            f"{' and '.join(unknown)} cannot be known without running the file, so the "
            "workflow does not enforce it (Airflow runs nothing before start_date or after "
            "end_date): if it matters, write it as a condition in the workflow",
            dag.ref,
        )
    start = (
        start_date
        if isinstance(start_date, Timestamp) and not start_date.iso.startswith("days_ago")
        else None
    )
    end = end_date if isinstance(end_date, Timestamp) else None
    if start is None and end is None:
        return None
    if plan.kind == "once":
        if start is None:
            return None
        diag.add(
            "PGD256",
            f"@once with start_date {_shown(start)}: if that is still ahead, the run waits for "
            "it (checked every minute), as Airflow does not run it before",
            dag.ref,
        )
        return _Window(not_before=_instant(start))
    interval_start = "$dag_run.data_interval_start::timestamptz"
    conditions = []
    if start is not None:
        conditions.append(f"{interval_start} >= {_instant(start)}")
    if end is not None:
        conditions.append(f"{interval_start} <= {_instant(end)}")
    inside = f"SELECT {' AND '.join(conditions)}"
    past = f"SELECT {interval_start} > {_instant(end)}" if end is not None else None
    told = [
        f"start_date {_shown(start)}" if start else "",
        f"end_date {_shown(end)}" if end else "",
    ]
    diag.add(
        "PGD256",
        f"{' and '.join(t for t in told if t)}: each tick runs the DAG only when its data "
        "interval starts inside that window, as Airflow schedules it"
        + ("; after end_date the schedule ends" if end is not None else ""),
        dag.ref,
    )
    return _Window(inside, past)


def _in_window(run: m.Node, window: _Window, dag: Dag) -> m.Node:
    """The run with everything after its ``dag_run`` step done only inside the window;
    past end_date a ``df.break`` ends the schedule loop (a pgdurable.try lets it pass)."""
    steps = list(run.steps) if isinstance(run, m.Seq) else [run]
    first, rest = steps[0], steps[1:]
    assert isinstance(first, m.Sql) and first.name == "dag_run", "dag_run comes first"
    outside: m.Node = m.Sleep(0)
    if window.past is not None:
        outside = m.If(m.Sql(window.past), m.Break(), m.Sleep(0))
    work: m.Node = m.Sleep(0) if not rest else rest[0] if len(rest) == 1 else m.Seq(tuple(rest))
    assert window.inside is not None
    return m.Seq((first, m.If(m.Sql(window.inside, source=dag.ref), work, outside)))


def dag_dir(path: str) -> str:
    return str(PurePosixPath(path).parent)


__all__ = ["Trigger", "workflow", "templates"]
