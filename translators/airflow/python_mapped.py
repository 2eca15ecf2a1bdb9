"""Mapped TaskFlow Python tasks -> one Python step looping over the mapped values.

``@task`` callables mapped with ``.expand(x=...)``, ``.partial(...).expand(...)``
or ``.expand_kwargs(...)``: the values may be literals or an upstream Python
task's returned list, known only when the DAG runs. Airflow creates one task
instance per value (the cross product of ``expand``'s keyword lists, in map
index order) and hands downstream tasks the lazy list of their results.

Here one Python step resolves the values at run time, calls the callable once
per combination in map-index order (``ti.map_index`` set) and returns the list
of results, which downstream Python tasks receive as that list (approximate,
PGD292: the instances run one after another in one step, a retry reruns them
all, ``max_active_tis_per_dag`` and ``max_map_length`` are not applied, an empty
list makes the step return ``[]`` where Airflow skips the task).

A literal mapping whose every instance translates to SQL keeps the per-instance
SQL steps of ``compile._mapped``. ``X.partial(...).expand(...)`` of an operator
class defined in the DAG file loops the same way, building the operator per
value (python_operators.py). Airflow's classic operators and ``XComArg.map``
keep ``compile._mapped``'s handling.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pgdurable import model as m

if TYPE_CHECKING:
    from pgdurable.translators.airflow.dagfile import Task
    from pgdurable.translators.airflow.tasks import Context, Work

MAP_KEY = "__pgdurable_map__"  # the op_kwargs entry holding the mapped values
_KINDS = ("python", "python_venv")


def _mapped_value(value: Any) -> bool:
    """A value ``expand`` can map over here: a literal list or an upstream task's result."""
    from pgdurable.translators.airflow.visitor import TaskRef

    return isinstance(value, TaskRef | list | tuple)


def mapped_work(task: Task, ctx: Context) -> Work | None:
    """The looping step of a mapped TaskFlow Python task, a manual stub naming what
    keeps it manual, or None when ``compile._mapped``'s per-instance steps apply."""
    from pgdurable.translators.airflow import tasks

    mapped = task.mapped
    if mapped is None:
        return None
    if task.operator.endswith(".partial") and task.kind == "unsupported":
        return _operator(task, ctx)
    if task.kind not in _KINDS or not task.operator.startswith("@"):
        return None
    if (
        mapped.instances is not None
        and mapped.callables
        and all(getattr(fn, "sql_calls", None) for fn in mapped.callables)
    ):
        return None  # every instance is literal SQL: the exact per-instance steps
    values = mapped.values
    if mapped.how == "expand":
        if not isinstance(values, dict) or not values or task.call_args:
            return None
        bad = [k for k, v in values.items() if not _mapped_value(v)]
        if bad:
            return None
    elif not _mapped_value(values):
        return None
    from pgdurable.translators.airflow.python_tasks import _refs

    if any(r.task_id not in ctx.env.python_results for r in _refs([values])):
        return None  # an upstream that is not a Python step: compile._mapped says so
    kwargs = {**task.call_kwargs, MAP_KEY: dict(values) if mapped.how == "expand" else values}
    looped = replace(task, call_kwargs=kwargs, mapped=None)
    name = f"r_{tasks.sid(task.task_id)}"
    if task.kind == "python_venv":
        work = tasks._compile_work(looped, ctx)
        step = work.node if not work.manual else None
        if step is None:
            return work
    else:
        step = tasks._code_step(looped, ctx, "python", name)
        if isinstance(step, str):
            return tasks.stub(task, f"a mapped Python callable: {step}", ctx)
    step = replace(step, kwargs=tuple(sorted({**dict(step.kwargs), "map_how": mapped.how}.items())))
    _report(task, ctx)
    return tasks.Work(step)


def _operator(task: Task, ctx: Context) -> Work | None:
    """``X.partial(...).expand(...)`` of an operator class defined in the DAG file: one
    step building it per value (python_operators.py), the results as a list."""
    from pgdurable.translators.airflow import python_operators, tasks
    from pgdurable.translators.airflow.python_tasks import _refs

    mapped = task.mapped
    assert mapped is not None
    values = mapped.values
    if mapped.how == "expand":
        if not isinstance(values, dict) or not values:
            return None
        if not all(_mapped_value(v) for v in values.values()):
            return None
    elif not _mapped_value(values):
        return None
    if any(r.task_id not in ctx.env.python_results for r in _refs([values])):
        return None
    single = replace(task, mapped=None)
    single.reader = getattr(task, "reader", None)  # type: ignore[attr-defined]
    work = python_operators.operator_work(single, ctx, (mapped.how, values))
    if work is None or work.manual:
        return work
    _report(task, ctx)
    return tasks.Work(work.node.steps[0]) if isinstance(work.node, m.Seq) else work


def _report(task: Task, ctx: Context) -> None:
    mapped = task.mapped
    assert mapped is not None
    call = f".{mapped.how}(...)"
    line = f" (line {task.ref.line})" if task.ref.line else ""
    ctx.diag.add(
        "PGD292",
        f"task {task.task_id!r}{line} is mapped with {call}: one Python step calls the "
        "callable once per value, in map-index order, and returns the list of results "
        "(Airflow runs a task instance per value: here they run one after another in one "
        "step, a retry reruns them all, max_active_tis_per_dag and max_map_length are not "
        "applied, and an empty list makes the step return [] where Airflow skips the task)",
        task.ref,
    )
