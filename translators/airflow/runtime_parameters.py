"""``PostgresOperator(runtime_parameters={...})`` -> settings before the task's SQL.

providers-postgres 5.x turns each item into ``SET name TO %(name)s`` and puts
those statements before the task's SQL in the list the hook runs on one
connection (one transaction unless autocommit, then closed). The translation
sets them with ``set_config(name, value, true)`` at the start of every step of
the task, the path ``hook_params`` options take (tasks._group_steps): the
task's SQL sees the same settings, and they end with the task, as the closed
connection's did. Airflow 1.10's PostgresOperator has no such argument (an
unknown keyword is only warned about), so there nothing is set.
"""

from __future__ import annotations

from typing import Any

from pgdurable.sqltext import literal

_OPERATORS = ("PostgresOperator",)


def settings(task: Any, ctx: Any) -> list[str]:
    """The ``set_config`` statements for the task's runtime_parameters (reported)."""
    params = ctx.dag.task_arg(task, "runtime_parameters")
    if params is None or task.operator.rsplit(".", 1)[-1] not in _OPERATORS:
        return []
    if ctx.generation < 2:
        ctx.diag.add(
            "PGD225",
            f"task {task.task_id!r}: Airflow 1.10's PostgresOperator ignores runtime_parameters "
            "(an unknown argument), so nothing is set",
            task.ref,
        )
        return []
    if not isinstance(params, dict) or not all(
        isinstance(k, str) and isinstance(v, str | int | float) and not isinstance(v, bool)
        for k, v in params.items()
    ):
        ctx.diag.add(
            "PGD252",
            f"task {task.task_id!r}: runtime_parameters is not a literal dict of values "
            f"({params}); the SET statements Airflow runs before the SQL are not carried: "
            "set them in the step's SQL by hand",
            task.ref,
        )
        return []
    if not params:
        return []
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    if ctx.portable:
        ctx.diag.add(
            "PGD252",
            f"--portable: task {task.task_id!r}: runtime_parameters ({shown}) are not carried "
            "(a setting needs a second statement in the step's transaction)",
            task.ref,
        )
        return []
    ctx.diag.add(
        "PGD253",
        f"task {task.task_id!r}: runtime_parameters ({shown}) are set before its SQL with "
        "set_config(..., true), as Airflow's SET statements on the task's connection",
        task.ref,
    )
    return [f"SELECT set_config({literal(k)}, {literal(str(v))}, true)" for k, v in params.items()]
