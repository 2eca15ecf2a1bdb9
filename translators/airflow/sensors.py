"""Airflow sensors whose poke is Python -> a durable poke loop around a code step.

``PythonSensor`` and ``@task.sensor``: the callable is extracted like a
``PythonOperator``'s (``python_tasks.py``) and runs as a Python step in mode
``sensor``: the worker side (``pgdurable.airflow_context.run``) tests the
returned value's Python truth, as Airflow's ``poke`` does (a ``PokeReturnValue``
is true when ``is_done``, and only its ``xcom_value`` becomes the task's result).
The loop is ``tasks._sensor_loop``: poke, sleep ``poke_interval`` durably,
until true or ``timeout`` (from the first poke); ``soft_fail`` skips on
timeout; an exception in the callable fails the task, as in Airflow.
``mode="reschedule"`` changes nothing here: the wait is a durable sleep that
holds no worker slot, which is what reschedule is for.
"""

from __future__ import annotations

from pgdurable import model as m
from pgdurable.translators.airflow.dagfile import Task
from pgdurable.translators.airflow.tasks import Context, Work, _code_step, _sensor_loop, sid, stub


def python_sensor(task: Task, ctx: Context) -> Work:
    name = f"r_{sid(task.task_id)}"
    step = _code_step(task, ctx, "sensor", name)
    if isinstance(step, str):
        return stub(task, f"the sensor callable is Python: {step}", ctx)
    backoff = ctx.dag.task_arg(task, "exponential_backoff", False)
    if backoff is not False and backoff is not None:
        ctx.diag.add(
            "PGD283",
            f"task {task.task_id!r}: exponential_backoff is not carried: the sensor pokes "
            "every poke_interval (Airflow doubles the wait after each poke, with jitter)",
            task.ref,
        )
    for flag in ("silent_fail", "never_fail"):
        if ctx.dag.task_arg(task, flag, False) not in (False, None):
            return stub(
                task,
                f"{flag}=True (a failing poke counts as false / skips) is not translated; "
                "catch the exception in the callable and return False",
                ctx,
            )
    poke = m.Seq((step, m.Sql(f"SELECT ${name}.follow")))
    return _sensor_loop(task, ctx, poke, "poke")
