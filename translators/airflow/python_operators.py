"""Operator classes defined in the DAG file itself -> a Python step running ``execute``.

A DAG file may define its own operator (``class AddOneOperator(BaseOperator)``
with ``execute(self, context)``). Its code is in the file, so it is extracted
like a callable (python_tasks.py): the class and the module-level definitions
it uses go to ``airflow_tasks/<dag>.py``, ``BaseOperator`` comes from
``pgdurable.airflow_context`` (a stand-in holding ``task_id``, the constructor's
keyword arguments as attributes and ``log``), and the step builds the operator
with the task's constructor arguments and calls ``execute(context)``.

As in Airflow, only the class's ``template_fields`` are rendered (and only
there an upstream's ``.output`` becomes its value); the returned value is the
task's XCom. ``AirflowSkipException`` ends the task *skipped*: the step returns
``skipped`` and the task's state row says so, so downstream tasks follow
Airflow's trigger rules for a skipped upstream.

Approximate (PGD293): the stand-in is not Airflow's BaseOperator; an
``execute`` using other members (``self.dag``, ``self.render_template``, hooks
the context does not provide) fails when it runs. A class deriving from
anything but an in-file operator or Airflow's ``BaseOperator`` stays manual.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import libcst as cst

from pgdurable import model as m

if TYPE_CHECKING:
    from pgdurable.translators.airflow.dagfile import Task
    from pgdurable.translators.airflow.tasks import Context, Work

OPERATOR_KEY = "__pgdurable_operator__"  # airflow_context.execute_operator reads it
MAP_KEY = "__pgdurable_map__"  # python_mapped.py
_BASES = ("BaseOperator", "EmptyOperator", "DummyOperator")  # airflow_context provides them


def _class(reader: Any, name: str) -> cst.ClassDef | None:
    for statement in reader.module.body:
        if isinstance(statement, cst.ClassDef) and statement.name.value == name:
            return statement
    return None


def _is_operator(node: cst.ClassDef, reader: Any, depth: int = 0) -> bool:
    """Derives from Airflow's BaseOperator, directly or through in-file classes."""
    if depth > 10:
        return False
    for base in node.bases:
        qualified = reader.qualified(base.value) or ""
        if qualified.startswith("airflow") and qualified.rsplit(".", 1)[-1] in _BASES:
            return True
        if isinstance(base.value, cst.Name):
            parent = _class(reader, base.value.value)
            if parent is not None and _is_operator(parent, reader, depth + 1):
                return True
    return False


def _template_fields(node: cst.ClassDef, reader: Any) -> set[str] | None:
    """The literal ``template_fields`` of the class (empty when it sets none), or
    None when they are not a literal here (inherited ones included)."""
    for statement in node.body.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            targets = []
            if isinstance(small, cst.Assign):
                targets, value = [t.target for t in small.targets], small.value
            elif isinstance(small, cst.AnnAssign) and small.value is not None:
                targets, value = [small.target], small.value
            if any(isinstance(t, cst.Name) and t.value == "template_fields" for t in targets):
                if isinstance(value, cst.List | cst.Tuple | cst.Set):
                    names = [e.value for e in value.elements]
                    if all(isinstance(n, cst.SimpleString) for n in names):
                        return {n.evaluated_value for n in names}
                return None
    for base in node.bases:
        if isinstance(base.value, cst.Name):
            parent = _class(reader, base.value.value)
            if parent is not None:
                return _template_fields(parent, reader)
    return set()


def _plain(value: Any, what: str) -> Any:
    """A non-templated constructor argument as JSON (no rendering, no XCom)."""
    from pgdurable.translators.airflow.python_tasks import Refused
    from pgdurable.translators.airflow.visitor import TaskRef

    if isinstance(value, TaskRef):
        raise Refused(f"{what} is an upstream's output but not a template field")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v, what) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, what) for k, v in value.items()}
    raise Refused(f"{what} is not a static JSON value ({type(value).__name__})")


def operator_work(task: Task, ctx: Context, mapped: tuple[str, Any] | None = None) -> Work | None:
    """The Python step of a task whose operator class is defined in its DAG file,
    a stub naming why not, or None when the class is not such an operator."""
    from pgdurable.translators.airflow import python_tasks, tasks
    from pgdurable.translators.airflow.python_tasks import Refused

    reader = getattr(task, "reader", None)
    cls = class_name(task)
    if reader is None or cls is None:
        return None
    node = _class(reader, cls)
    if node is None or not _is_operator(node, reader):
        return None
    line = reader.ref(node).line
    what = f"{cls} (line {line}), an operator class defined in the DAG file"
    if ctx.portable or ctx.python_module is None:
        return tasks.stub(task, f"{what}: code steps are not portable (--portable)", ctx)
    module = ctx.python_module
    try:
        step, third_party, fields = _step(task, ctx, node, reader, module, mapped)
    except Refused as exc:
        return tasks.stub(task, f"{what}: {exc}", ctx)
    python_tasks.report(python_tasks.Step(step, "", third_party, False), task, ctx)
    shown = ", ".join(sorted(fields)) or "none"
    ctx.diag.add(
        "PGD293",
        f"task {task.task_id!r}: {cls}.execute() runs as a Python step on "
        "pgdurable's stand-in BaseOperator (task_id, the constructor's arguments, log; "
        f"template fields rendered: {shown}); other BaseOperator members are not there and "
        "fail when used; AirflowSkipException skips the task as in Airflow",
        task.ref,
    )
    return skippable(task, step)


def skippable(task: Task, step: m.Python) -> Work:
    """The work of a Python step; when it may raise AirflowSkipException (its payload
    says ``skippable``) the task's state row records ``skipped`` or ``success`` from
    the step's row, so downstream trigger rules see a skipped upstream as in Airflow."""
    from pgdurable.translators.airflow import tasks

    if not dict(step.kwargs).get("skippable"):
        return tasks.Work(step)
    name = step.name
    assert name is not None
    st = f"st_{tasks.sid(task.task_id)}"
    finish = m.If(
        m.Sql(f"SELECT ${name}.skipped"),
        m.Sql("SELECT 'skipped' AS state", name=st),
        m.Sql("SELECT 'success' AS state", name=st),
    )
    return tasks.Work(m.Seq((step, finish)), state_node=True, may_skip=True)


def class_name(task: Task) -> str | None:
    """The class a task instantiates (``X`` or ``X.partial``), when it is a plain name."""
    name = task.operator.removesuffix(".partial")
    return name if re.fullmatch(r"[A-Za-z_]\w*", name) else None


def _step(task: Task, ctx: Context, node: cst.ClassDef, reader: Any, module: Any, mapped=None):
    from pgdurable.translators.airflow import python_tasks
    from pgdurable.translators.airflow.python_tasks import Refused

    facts = python_tasks._facts(reader)
    work = python_tasks._Extraction(facts, module)
    work.global_name(node.name.value, node, reader.ref(node).line)
    fields = _template_fields(node, reader)
    if fields is None:
        raise Refused("its template_fields are not a literal list of names")
    env = ctx.env
    kwargs: dict[str, Any] = {}
    for key, value in task.args.items():
        if key in ("dag", "task_group"):
            continue
        if key in fields:
            kwargs[key] = python_tasks._json_value(value, env, key)
        else:
            kwargs[key] = _plain(value, key)
    refs = python_tasks._refs([task.args.get(k) for k in fields if k in task.args])
    if mapped is not None:
        refs += python_tasks._refs([mapped[1]])
    upstream = python_tasks._ancestors(task.task_id, ctx)
    for ref in refs:
        if ref.task_id not in env.python_results:
            raise Refused(
                f"the argument from task {ref.task_id!r} is not a translated Python result"
            )
        if ref.task_id not in upstream:
            raise Refused(f"reads the result of {ref.task_id!r}, which is not upstream of it")
    for tid in sorted(work.xcom_tasks):
        if tid not in env.python_results or tid not in upstream:
            raise Refused(f"xcom_pull reads task {tid!r}, which is not an upstream Python task")
    xcom_from = sorted(work.xcom_tasks | {r.task_id for r in refs})
    params = {**(ctx.dag.args.get("params") or {}), **(task.args.get("params") or {})}
    payload: dict[str, Any] = {
        "dag_id": ctx.dag.dag_id,
        "task_id": task.task_id,
        "mode": "python",
        "skippable": True,
        "generation": ctx.generation,
        "dag_run": "$dag_run.*",
        "params": python_tasks._json_value(params, env, "params"),
        "op_args": [],
        "op_kwargs": {OPERATOR_KEY: kwargs},
        **(
            {
                "map_how": mapped[0],
                "map_target": "operator",
                "op_kwargs": {
                    OPERATOR_KEY: kwargs,
                    MAP_KEY: python_tasks._json_value(mapped[1], env, "the mapped values"),
                },
            }
            if mapped is not None
            else {}
        ),
        "xcom": {t: f"$r_{python_tasks._sid(t)}.*" for t in xcom_from},
    }
    if work.variables:
        payload["variables"] = {v: "{" + v + "}" for v in sorted(work.variables)}
        env.variables |= work.variables
    conns: dict[str, Any] = {}
    for conn in sorted(work.conn_ids):
        known, database = ctx.connections.database(conn)
        if not known:
            ctx.unmapped_conn(conn, task)
        conns[conn] = database
    if conns:
        payload["connections"] = conns
    env.uses_dates = True
    work.commit()
    safe = re.sub(r"\W", "_", task.task_id, flags=re.ASCII)
    wrapper = f"_pgdurable_operator_{safe}"
    n = 1
    while wrapper in module.functions:
        n += 1
        wrapper = f"_pgdurable_operator_{safe}_{n}"
    module.functions[wrapper] = id(task)
    module.nested.append(
        f"def {wrapper}(**context):\n"
        f"    return _pgdurable_context.execute_operator({node.name.value}, context)\n"
    )
    entry = f"pgdurable_task_{python_tasks._sid(task.task_id)}"
    module.entries.append((task.task_id, entry, wrapper))
    name = f"r_{python_tasks._sid(task.task_id)}"
    step = m.Python(
        f"{module.name}:{entry}", (), tuple(sorted(payload.items())), name=name, source=task.ref
    )
    env.python_results.add(task.task_id)
    return step, set(work.third_party), fields
