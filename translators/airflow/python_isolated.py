"""Airflow's virtualenv / external-Python tasks -> Python steps on the worker (approximate).

``PythonVirtualenvOperator`` / ``@task.virtualenv``, ``ExternalPythonOperator`` /
``@task.external_python`` and their branch variants run the callable in another
interpreter: Airflow copies only the function's source (``inspect.getsource``,
decorator removed) into a script, pickles ``op_args``/``op_kwargs`` to it and
passes only the *serializable* context keys (``BASE_SERIALIZABLE_CONTEXT_KEYS``;
the Airflow and pendulum keys only when that environment has them: virtualenv
with ``system_site_packages`` (its default) or ``apache-airflow``/``pendulum``
in ``requirements``; external Python when Airflow is installed there). There is
no ``ti`` and no module-level name.

Here the same function runs as a Python step in the worker's own environment
(approximate, PGD290): the requirements must be installed there, the
interpreter path / Python version of the task is not used, arguments and the
result travel as JSON instead of pickle/dill/cloudpickle. What Airflow's
isolation implies is mirrored: the extraction refuses a function that reads a
module-level name (Airflow's script would raise NameError) or imports Airflow
inside itself (not importable on the worker), and the step passes only the
context keys Airflow would pass (``context_keys`` in the payload).

``is_venv_installed()`` guards in the DAG file are decided by Airflow on the
host that parses the file; here they count as installed (PGD291).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import libcst as cst

if TYPE_CHECKING:
    from pgdurable.translators.airflow.dagfile import Task
    from pgdurable.translators.airflow.tasks import Context, Work

# Airflow's serializable context keys (2.10 and providers-standard 1.x), restricted
# to the ones pgdurable's context provides at all (airflow_context.py).
BASE_KEYS = {
    "ds",
    "ds_nodash",
    "ts",
    "ts_nodash",
    "run_id",
    "next_ds",
    "prev_ds",
    "tomorrow_ds",
    "yesterday_ds",
    "test_mode",
    "task_instance_key_str",
}
PENDULUM_KEYS = {"data_interval_start", "data_interval_end", "logical_date", "execution_date"}
AIRFLOW_KEYS = {"dag", "dag_run", "task", "params"}

_ARGUMENTS_NOT_CARRIED = ("skip_on_exit_code", "string_args", "use_airflow_context")


@dataclass
class Isolation:
    flavour: str  # "virtualenv" or "external"
    context_keys: set[str]
    requirements: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _flavour(task: Task) -> str:
    return "external" if "xternal" in task.operator else "virtualenv"


def _requirements(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    from pgdurable.translators.airflow.python_tasks import Refused

    raise Refused(f"requirements are not a literal list ({value})")


def _names(requirements: list[str]) -> set[str]:
    names = set()
    for line in requirements:
        text = re.sub(r"#.*$", "", line).strip()
        found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", text)
        if found:
            names.add(found.group(0).lower().replace("_", "-"))
    return names


def isolation(task: Task) -> Isolation | None:
    """How Airflow isolates ``task``'s callable, or None for an ordinary Python task;
    raises Refused for an argument whose effect pgdurable does not reproduce."""
    from pgdurable.translators.airflow.python_tasks import Refused

    if task.kind not in HANDLERS:
        return None
    args = task.args
    for name in _ARGUMENTS_NOT_CARRIED:
        if args.get(name) not in (None, False, [], ()):
            raise Refused(f"{task.operator} with {name}=... is not translated")
    flavour = _flavour(task)
    notes: list[str] = []
    requirements = _requirements(args.get("requirements")) if flavour == "virtualenv" else []
    keys = set(BASE_KEYS)
    if flavour == "virtualenv":
        system = args.get("system_site_packages", True)
        if not isinstance(system, bool):
            raise Refused(f"system_site_packages is not a literal ({system})")
        names = _names(requirements)
        if system or "apache-airflow" in names:
            keys |= PENDULUM_KEYS | AIRFLOW_KEYS
        elif "pendulum" in names:
            keys |= PENDULUM_KEYS
        if system:
            notes.append(
                "system_site_packages=True: Airflow's virtualenv also sees the Airflow "
                "host's packages, here the worker's environment is used as it is"
            )
        else:
            notes.append(
                "system_site_packages=False: Airflow's virtualenv holds only the "
                "requirements, here every package of the worker's environment is importable"
            )
        if args.get("python_version") is not None:
            notes.append(f"python_version={args['python_version']!r} is not used")
    else:
        python = args.get("python")
        shown = python if isinstance(python, str) else "its `python`"
        notes.append(f"the interpreter {shown} is not used, the worker's Python runs it")
        if args.get("expect_airflow", True) is not False:
            keys |= PENDULUM_KEYS | AIRFLOW_KEYS
            notes.append(
                "Airflow passes dag, dag_run, params and the dates only when that Python "
                "has Airflow installed; pgdurable passes them"
            )
    serializer = args.get("serializer") or ("dill" if args.get("use_dill") else "pickle")
    notes.append(f"arguments and the result pass as JSON, not {serializer}")
    for name in ("venv_cache_path", "pip_install_options", "index_urls", "env_vars"):
        if args.get(name) is not None:
            notes.append(f"{name} is not used")
    return Isolation(flavour, keys, requirements, notes)


def inner_imports(node: cst.FunctionDef, code: cst.Module, line: int | None) -> set[str]:
    """The top-level packages the function imports inside itself (not the standard
    library); raises Refused for an Airflow import (the worker has no Airflow)."""
    from pgdurable.translators.airflow.python_tasks import Refused, _walk

    found: set[str] = set()
    for inner in _walk(node.body):
        modules: list[str] = []
        if isinstance(inner, cst.Import):
            modules = [code.code_for_node(a.name) for a in inner.names]
        elif isinstance(inner, cst.ImportFrom):
            if inner.relative or inner.module is None:
                raise Refused(f"the function {node.name.value}() (line {line}) imports relatively")
            modules = [code.code_for_node(inner.module)]
        for module in modules:
            root = module.split(".")[0]
            if root == "airflow":
                raise Refused(
                    f"the function {node.name.value}() (line {line}) imports {module} inside "
                    "itself, which the worker's environment does not have"
                )
            if root not in sys.stdlib_module_names:
                found.add(root)
    return found


def venv_installed(reader: Any, node: cst.CSTNode) -> bool:
    """``is_venv_installed()`` in the DAG file: decided as installed (PGD291)."""
    reader.problem(
        "PGD291",
        "`is_venv_installed()` is decided by Airflow on the host that parses the file; "
        "pgdurable takes it as installed (the virtualenv tasks run as Python steps in the "
        "worker's environment), so the branch written for a missing virtualenv is not used",
        node,
    )
    return True


def _work(task: Task, ctx: Context, mode: str) -> Work:
    from pgdurable.translators.airflow import tasks

    name = f"r_{tasks.sid(task.task_id)}"
    step = tasks._code_step(task, ctx, mode, name)
    what = "the branch callable" if mode == "branch" else "the callable"
    if isinstance(step, str):
        return tasks.stub(task, f"{task.operator}: {what} is Python: {step}", ctx)
    iso = isolation(task)
    assert iso is not None
    needs = (
        f"install {', '.join(repr(r) for r in iso.requirements)} in the worker's environment"
        if iso.requirements
        else "no requirements are listed"
    )
    ctx.diag.add(
        "PGD290",
        f"task {task.task_id!r} ({task.operator}): runs in the worker's own Python "
        f"environment, not in Airflow's {'virtualenv' if iso.flavour == 'virtualenv' else 'external Python'}"
        f": {needs}; {'; '.join(iso.notes)}",
        task.ref,
    )
    if mode == "branch":
        return tasks.Work(step, follow=f"${name}.follow::jsonb", follow_ids=True)
    return tasks.Work(step)


def _python_venv(task: Task, ctx: Context) -> Work:
    return _work(task, ctx, "python")


def _branch_python_venv(task: Task, ctx: Context) -> Work:
    return _work(task, ctx, "branch")


HANDLERS = {"python_venv": _python_venv, "branch_python_venv": _branch_python_venv}
