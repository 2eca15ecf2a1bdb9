"""Whether a translated DAG's tasks read the run's data interval (PGD248).

A skipped tick (a run still going) or a catch-up interval the workflow never runs
is a data difference only when a task uses the run's dates. The compiled run says
where they go: ``$dag_run.<field>`` in SQL, HTTP and bash text; the AIRFLOW_CTX_*
environment every bash step gets (a use only when the command names it; a script
file it runs is not read); the context every Python step gets, read when the
callable can receive it (a context parameter such as ``ds`` or ``**kwargs``, or
``get_current_context`` anywhere in the DAG's task module). Whatever cannot be
decided counts as a read.
"""

from __future__ import annotations

import ast
import re
from typing import Any

# an entry of the AIRFLOW_CTX_* environment every bash step gets
_CTX_ENV = re.compile(r'\\*"AIRFLOW_CTX_\w+\\*": \\*"[^"\\]*\\*"')
# the whole context a Python step gets
_PY_CONTEXT = re.compile(r'\\*"dag_run\\*": \\*"\$dag_run\.\*\\*"')
_CONTEXT_PARAMS = {
    "ds", "ds_nodash", "ts", "ts_nodash", "ts_nodash_with_tz", "logical_date",
    "execution_date", "data_interval_start", "data_interval_end", "dag_run", "run_id",
    "prev_ds", "next_ds", "prev_ds_nodash", "next_ds_nodash", "yesterday_ds",
    "tomorrow_ds", "prev_execution_date", "next_execution_date", "ti", "task_instance",
    "macros", "context", "templates_dict", "prev_data_interval_start_success",
    "prev_data_interval_end_success", "prev_start_date_success", "dag", "task",
}  # fmt: skip


def reads_interval(encoded: str, module: Any) -> bool:
    """``encoded``: the run as JSON; ``module``: the DAG's python_tasks.DagModule (or None)."""
    rest = _CTX_ENV.sub("", encoded)
    if "AIRFLOW_CTX_" in rest:
        return True
    without_python = _PY_CONTEXT.sub("", rest)
    if "$dag_run." in without_python:
        return True
    if without_python == rest:
        return False  # no Python step
    return _python_reads(module)


def _python_reads(module: Any) -> bool:
    try:
        text = module.text([])
        tree = ast.parse(text)
        callables = {fn for _task, _entry, fn in module.entries}
    except (AttributeError, SyntaxError, ValueError, TypeError):
        return True
    if "get_current_context" in text:
        return True
    defs = {
        node.name: node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    for name in callables:
        node = defs.get(name.rsplit(".", 1)[-1])
        if node is None:
            return True
        args = node.args
        if args.kwarg is not None:
            return True
        names = [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]
        if _CONTEXT_PARAMS & set(names):
            return True
    return False
