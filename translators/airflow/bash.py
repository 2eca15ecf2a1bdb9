"""BashOperator commands that are not psql, as command steps (SPEC A.4).

Airflow runs ``bash -c <command>`` on a worker after rendering the command's
Jinja, with the environment ``env`` (or the worker's, plus ``env`` with
``append_env``) and ``AIRFLOW_CTX_*`` variables naming the DAG, task and run.
The translation does the same on a pgdurable worker: the command rendered
with ``templates.render_raw`` (run dates become ``$dag_run.*`` references,
substituted when the step runs), ``AIRFLOW_CTX_*`` in its environment, and
``cwd``. A command without shell syntax runs as its program and arguments
(``sleep 5`` needs only ``sleep`` granted); the rest runs through ``bash -c``.

Approximate (PGD271): another host and OS user than the Airflow worker's, no
inherited environment, and ``skip_on_exit_code`` (99 by default) fails the
node instead of skipping the task. ``--portable`` output keeps the stub
(code steps are not portable).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgdurable import model as m
from pgdurable.sqltext import literal
from pgdurable.translators.airflow import templates
from pgdurable.translators.shell import argv, deployment

if TYPE_CHECKING:
    from pgdurable.translators.airflow.dagfile import Task
    from pgdurable.translators.airflow.tasks import Context

SHELL = "bash"


def context_env(dag_id: str, task: Task, env: templates.Env) -> dict[str, str]:
    """The ``AIRFLOW_CTX_*`` variables Airflow sets for a task, as run-time references."""
    env.uses_dates = True
    return {
        "AIRFLOW_CTX_DAG_ID": dag_id,
        "AIRFLOW_CTX_TASK_ID": task.task_id,
        "AIRFLOW_CTX_EXECUTION_DATE": "$dag_run.ts",
        "AIRFLOW_CTX_LOGICAL_DATE": "$dag_run.ts",
        "AIRFLOW_CTX_DAG_RUN_ID": "$dag_run.run_id",
        "AIRFLOW_CTX_TRY_NUMBER": "1",
    }


def command_step(task: Task, ctx: Context, command: str, env: templates.Env) -> m.Command | None:
    """The command step of a bash command, with its PGD271 note; None when it cannot be one."""
    own_env = task.args.get("env")
    cwd = task.args.get("cwd")
    if ctx.portable or (own_env is not None and not isinstance(own_env, dict)):
        return None
    if cwd is not None and not isinstance(cwd, str):
        return None
    rendered = templates.render_raw(command, env)
    args = argv(rendered, SHELL)  # Airflow's shell is bash, found on PATH
    variables = {str(k): templates.render_raw(str(v), env) for k, v in (own_env or {}).items()}
    variables.update(context_env(ctx.dag.dag_id, task, env))
    report(task, ctx, args[0])
    return m.Command(args, tuple(sorted(variables.items())), cwd, source=task.ref)


def report(
    task: Task, ctx: Context, program: str, rendered_by: str | None = None, module: str = ""
) -> None:
    """The PGD271 note of a bash task: what differs from Airflow, what to deploy and grant
    (``rendered_by``: the Python step that renders its templates when it runs)."""
    role = ctx.run_as or "ROLE"
    render = ""
    if rendered_by is not None:
        grant = literal("python:" + module + ":*")
        render = (
            f"; its templates are rendered when it runs, by the Python step {rendered_by} "
            f"(Airflow's Jinja, in a sandbox; grant: SELECT pgdurable.grant_code("
            f"{literal(role)}, {grant}))"
        )
    ctx.diag.add(
        "PGD271",
        f"task {task.task_id!r}: the bash command runs as a code step on a pgdurable worker's "
        "host as the worker's OS user, with only AIRFLOW_CTX_* and the task's env (not the "
        "Airflow worker's environment), and an exit code of skip_on_exit_code (99) fails it "
        f"instead of skipping; {deployment(program)}, and grant: "
        f"SELECT pgdurable.grant_code({literal(role)}, {literal('command:' + program)})"
        + (
            " (bash runs the whole command: granting it grants any command)"
            if program == SHELL
            else ""
        )
        + render,
        task.ref,
    )
