"""Bash tasks whose Jinja is rendered at run time, on the worker (SPEC A.4).

``templates.py`` turns a known subset of Jinja into ``$dag_run.*`` references.
What it cannot (``{{ task_instance_key_str }}``, ``{% for %}`` blocks, filters,
``{{ macros.ds_add(ds, 7) }}`` in a shell command, ``{{ dag_run.conf... }}``,
``{{ ti.xcom_pull(...) }}`` of an upstream Python task, a ``@task.bash``
callable's returned command) is rendered when the task runs, with real Jinja2
in Airflow's template environment (``pgdurable/airflow_templates.py``):

    render_<task>   pgdurable.python('airflow_tasks.<dag>:pgdurable_render_<task>')
                    -> {"command": ..., "e0": ...}   (the template lives in the module)
    then            pgdurable.command(['bash', '-c', $render_<task>.command], env)

Both steps are one work node, so ``retries`` re-render and re-run the command,
as an Airflow retry does. The command step keeps its own journal (exit code,
output tails) and its ``command:bash`` grant.

Before anything is written, the template is parsed here and every name it uses
is checked against what the run-time context provides with Airflow's value: an
unknown name, filter or test, ``{% include %}``, ``ti.xcom_push`` or an
``xcom_pull`` of a task that is not an upstream translated Python task keeps the
task manual (PGD345, naming it). Values that differ (``ti.try_number`` is always
1; Airflow 1.10 renders without a sandbox; in-place changes of lists in a
template) are approximate (PGD285).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pgdurable import airflow_macros, airflow_templates
from pgdurable import model as m
from pgdurable.translators.airflow import bash, python_tasks

if TYPE_CHECKING:
    from pgdurable.translators.airflow.dagfile import Task
    from pgdurable.translators.airflow.tasks import Context

# Top-level names of Airflow's task context that airflow_context provides with
# Airflow's value, by the generations that have them.
_ALWAYS = {
    "ds", "ds_nodash", "ts", "ts_nodash", "run_id", "params", "ti", "task_instance",
    "dag", "task", "dag_run", "macros", "var", "conn", "task_instance_key_str",
}  # fmt: skip
_FROM_2 = {"logical_date", "data_interval_start", "data_interval_end"}
_BEFORE_3 = {"execution_date", "next_ds", "prev_ds", "yesterday_ds", "tomorrow_ds"}
_JINJA_GLOBALS = {"range", "dict", "lipsum", "cycler", "joiner", "namespace"}
# Attributes of context objects that we provide (the first attribute after the name).
_ATTRIBUTES = {
    "dag_run": {"conf", "run_id", "logical_date", "data_interval_start", "data_interval_end",
                "dag_id", "execution_date"},
    "ti": {"xcom_pull", "xcom_push", "dag_id", "task_id", "run_id", "try_number", "map_index"},
    "dag": {"dag_id"},
    "task": {"task_id"},
    "macros": set(airflow_macros.PROVIDED),
    "var": {"value", "json"},
}  # fmt: skip
_ATTRIBUTES["task_instance"] = _ATTRIBUTES["ti"]
_DATE_OBJECTS = {"logical_date", "execution_date", "data_interval_start", "data_interval_end"}


def needs_rendering(text: Any) -> bool:
    return isinstance(text, str) and ("{{" in text or "{%" in text or "{#" in text)


@dataclass
class Uses:
    """What the templates of one task read, found by parsing them."""

    problems: list[str] = field(default_factory=list)  # manual: construct and what to do
    notes: list[str] = field(default_factory=list)  # approximate: the difference
    variables: set[str] = field(default_factory=set)
    connections: set[str] = field(default_factory=set)
    xcom: set[str] = field(default_factory=set)


def _names(generation: int) -> set[str]:
    names = set(_ALWAYS) | _JINJA_GLOBALS
    if generation >= 2:
        names |= _FROM_2
    if generation < 3:
        names |= _BEFORE_3
    return names


def _const(node: Any) -> Any:
    from jinja2 import nodes

    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.List | nodes.Tuple) and all(
        isinstance(i, nodes.Const) for i in node.items
    ):
        return [i.value for i in node.items]
    return None


def analyse(text: str, generation: int, uses: Uses) -> None:
    """Parse ``text`` as Airflow would and record what it reads into ``uses``."""
    import jinja2
    from jinja2 import meta, nodes

    env = airflow_templates.environment(generation)
    try:
        tree = env.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        uses.problems.append(f"the template does not parse (line {exc.lineno}: {exc.message})")
        return
    for node in tree.find_all(nodes.Filter):
        if node.name not in env.filters:
            uses.problems.append(f"the filter {node.name!r} is not one of Jinja's or Airflow's")
    for node in tree.find_all(nodes.Test):
        if node.name not in env.tests:
            uses.problems.append(f"the test {node.name!r} is not one of Jinja's")
    try:
        undeclared = meta.find_undeclared_variables(tree)
    except jinja2.TemplateError as exc:
        uses.problems.append(f"the template does not compile ({exc})")
        return
    known = _names(generation)
    for name in sorted(undeclared):
        if name not in known:
            uses.problems.append(
                f"the template reads {name!r}, which the run-time context does not provide "
                "(only Airflow's task context: ds, params, dag_run, ti, macros, var, conn, ...): "
                "compute it in the command or pass it through env"
            )
    for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        uses.problems.append(
            f"{{% {type(node).__name__.lower()} %}} reads another template file, which is not "
            "deployed with the task: inline it"
        )
    for node in tree.find_all(nodes.Getattr):
        base = node.node
        if isinstance(base, nodes.Name) and base.name in _ATTRIBUTES:
            if node.attr not in _ATTRIBUTES[base.name]:
                uses.problems.append(
                    f"{base.name}.{node.attr} is not provided by the run-time context "
                    f"(it has {', '.join(sorted(_ATTRIBUTES[base.name]))})"
                )
            if base.name in ("ti", "task_instance") and node.attr == "try_number":
                uses.notes.append("ti.try_number is always 1 (Airflow counts the retries)")
        if isinstance(base, nodes.Getattr) and isinstance(base.node, nodes.Name):
            if base.node.name == "var" and base.attr in ("value", "json") and node.attr != "get":
                uses.variables.add(node.attr)
            if base.node.name == "conn":
                uses.connections.add(base.attr)
        if isinstance(base, nodes.Name) and base.name == "conn" and node.attr != "get":
            uses.connections.add(node.attr)
    for node in tree.find_all(nodes.Call):
        _call(node, uses)
    for node in tree.find_all(nodes.Output):
        for child in node.nodes:
            note = _printed_object(child)
            if note:
                uses.notes.append(note)
    mutating = {"append", "extend", "insert", "pop", "remove", "update", "setdefault",
                "clear", "add", "discard", "popitem", "sort", "reverse"}  # fmt: skip
    for node in tree.find_all(nodes.Call):
        if isinstance(node.node, nodes.Getattr) and node.node.attr in mutating:
            uses.notes.append(
                f".{node.node.attr}(...) may not change a list, dict or set in place here "
                "(an immutable sandbox), which Airflow's template environment allows"
            )
    if generation < 2:
        for node in tree.find_all(nodes.Getattr):
            if node.attr.startswith("__"):
                uses.notes.append(
                    f"the attribute {node.attr!r} is refused by the sandbox here (Airflow "
                    "1.10 renders without one)"
                )


_OBJECTS = {"dag_run", "ti", "task_instance", "dag", "task", "macros", "var", "conn", "params"}


def _printed_object(node: Any) -> str | None:
    """Why printing ``node`` as text may differ from Airflow: ours are stand-ins for
    Airflow's objects (a DagRun, a TaskInstance, a pendulum DateTime), whose text is
    not theirs; None for values (strings, numbers, conf's dict) that print the same."""
    from jinja2 import nodes

    if isinstance(node, nodes.Name) and node.name in _OBJECTS:
        return (
            f"{{{{ {node.name} }}}} prints pgdurable's stand-in for Airflow's object, whose "
            "text differs from Airflow's (print one of its fields instead)"
        )
    dated = (isinstance(node, nodes.Name) and node.name in _DATE_OBJECTS) or (
        isinstance(node, nodes.Getattr) and node.attr in _DATE_OBJECTS
    )
    if dated:
        return (
            "a date printed as text is a Python datetime ('2024-01-01 00:00:00+00:00'), "
            "in Airflow a pendulum DateTime (with pendulum 2: '2024-01-01T00:00:00+00:00')"
        )
    return None


def _call(node: Any, uses: Uses) -> None:
    from jinja2 import nodes

    target = node.node
    if not isinstance(target, nodes.Getattr):
        return
    method = target.attr
    owner = target.node
    if isinstance(owner, nodes.Getattr) and isinstance(owner.node, nodes.Name):
        if owner.node.name == "var" and method == "get" and node.args:
            name = _const(node.args[0])
            if isinstance(name, str):
                uses.variables.add(name)
            else:
                uses.problems.append("var.value.get(...) with a name that is not a literal")
        return
    if not isinstance(owner, nodes.Name):
        return
    if owner.name == "conn" and method == "get":
        name = _const(node.args[0]) if node.args else None
        if isinstance(name, str):
            uses.connections.add(name)
        else:
            uses.problems.append("conn.get(...) with a conn_id that is not a literal")
    if owner.name not in ("ti", "task_instance"):
        return
    if method == "xcom_push":
        uses.problems.append(
            "ti.xcom_push(...) in a command template: the pushed value would not reach the "
            "tasks that pull it; push it from a Python task"
        )
    if method != "xcom_pull":
        return
    found = None
    if node.args:
        found = _const(node.args[0])
    for kw in node.kwargs:
        if kw.key == "task_ids":
            found = _const(kw.value)
        elif kw.key == "dag_id":
            uses.problems.append("ti.xcom_pull(dag_id=...) of another DAG is not translated")
    if isinstance(found, str):
        found = [found]
    if not (isinstance(found, list) and found and all(isinstance(t, str) for t in found)):
        uses.problems.append("ti.xcom_pull(...) without literal task_ids: name the task")
        return
    uses.xcom.update(found)


def _env_dict(task: Task) -> dict[str, str] | str:
    own = task.args.get("env")
    if own is None:
        return {}
    if not isinstance(own, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in own.items()
    ):
        return "env is not a dict of literal strings"
    return own


def steps(task: Task, ctx: Context, command: str | None) -> m.Node | str:
    """The render + command steps of a bash task (``command`` None: ``@task.bash``,
    whose callable returns the command); a reason string when it stays manual."""
    if ctx.portable:
        return "code steps are not portable (--portable)"
    if ctx.python_module is None:
        return "no task module"
    env = _env_dict(task)
    if isinstance(env, str):
        return env
    cwd = task.args.get("cwd")
    if cwd is not None and (not isinstance(cwd, str) or needs_rendering(cwd)):
        return "cwd is not a literal path"
    uses = Uses()
    for text in [*([command] if command is not None else []), *env.values()]:
        try:
            analyse(text, ctx.generation, uses)
        except Exception as exc:  # a hostile template must not fail the whole DAG
            uses.problems.append(f"pgdurable could not read the template ({type(exc).__name__})")
    from pgdurable.translators.airflow import tasks as tasks_module

    upstream = python_tasks._ancestors(task.task_id, ctx)
    for tid in sorted(uses.xcom):
        if tid not in upstream or tid not in ctx.env.python_results:
            uses.problems.append(
                f"ti.xcom_pull reads task {tid!r}, which is not an upstream translated Python "
                "task (a bash or SQL task's XCom is not kept): pass the value through a "
                "Python task"
            )
    if uses.problems:
        return "; ".join(dict.fromkeys(uses.problems))
    module = ctx.python_module
    # unique per module: task ids that differ only in punctuation ('a.b', 'a_b') and
    # the expanded copies of a mapped task must not share a function or a result
    sid = tasks_module.sid(task.task_id)
    taken = {e for _, e, _ in module.renders}
    suffix, n = "", 1
    while f"pgdurable_render_{sid}{suffix}" in taken:
        n += 1
        suffix = f"_{n}"
    name = f"render_{sid}{suffix}"
    entry = f"pgdurable_render_{sid}{suffix}"
    if getattr(task, "mapped", None) is not None and any(
        "map_index" in t for t in [command or "", *env.values()]
    ):
        uses.notes.append("ti.map_index is -1 here, not the index of the mapped copy")
    if command is None:
        try:
            step = python_tasks.python_step(task, ctx, "python", name)
        except python_tasks.Refused as exc:
            return str(exc)
        # the callable's entry is ours: it renders the returned command
        (_task, _entry, fn) = module.entries.pop()
        ctx.env.python_results.discard(task.task_id)
        payload = dict(step.node.kwargs)
        body = (
            f"def {entry}(**payload):\n"
            f"    # task {task.task_id!r}: @task.bash, its callable returns the command\n"
            f"    return _pgdurable_templates.decorated({fn}, {env!r}, payload)\n"
        )
    else:
        params = {**(ctx.dag.args.get("params") or {}), **(task.args.get("params") or {})}
        try:  # Airflow does not render params: they reach the template as written
            json.dumps(params, allow_nan=False)
        except (TypeError, ValueError):
            return "params are not static JSON values"
        # params are static: written into the module, so the worker's substitution of
        # the payload ($name, {var}) never touches their text
        payload = {
            "dag_id": ctx.dag.dag_id,
            "task_id": task.task_id,
            "generation": ctx.generation,
            "dag_run": "$dag_run.*",
        }
        body = (
            f"def {entry}(**payload):\n"
            f"    # task {task.task_id!r}: its bash command and env, rendered when it runs\n"
            f"    payload['params'] = {params!r}\n"
            f"    return _pgdurable_templates.command({command!r}, {env!r}, payload)\n"
        )
    if uses.xcom:
        payload["xcom"] = {
            **(payload.get("xcom") or {}),
            **{t: f"$r_{tasks_module.sid(t)}.*" for t in sorted(uses.xcom)},
        }
    if uses.variables:
        payload["variables"] = {
            **(payload.get("variables") or {}),
            **{v: "{" + v + "}" for v in sorted(uses.variables)},
        }
        ctx.env.variables |= uses.variables
    if uses.connections:
        conns = dict(payload.get("connections") or {})
        for conn in sorted(uses.connections):
            known, database = ctx.connections.database(conn)
            if not known:
                ctx.unmapped_conn(conn, task)
            conns[conn] = database
        payload["connections"] = conns
    ctx.env.uses_dates = True
    module.renders.append((task.task_id, entry, body))
    render = m.Python(
        f"{module.name}:{entry}", (), tuple(sorted(payload.items())), name=name, source=task.ref
    )
    variables = {key: f"${name}.e{i}" for i, key in enumerate(env)}
    variables.update(bash.context_env(ctx.dag.dag_id, task, ctx.env))
    run = m.Command(
        (bash.SHELL, "-c", f"${name}.command"),
        tuple(sorted(variables.items())),
        cwd,
        source=task.ref,
    )
    if command is None:  # the callable's own notes: what to deploy, its imports
        python_tasks.report(replace(step, node=render), task, ctx)
    bash.report(task, ctx, bash.SHELL, rendered_by=render.callable, module=module.name)
    for note in dict.fromkeys(uses.notes):
        ctx.diag.add("PGD285", f"task {task.task_id!r}: rendered at run time: {note}", task.ref)
    return m.Seq((render, run))


def compiles(task: Task, ctx: Context, command: str) -> bool:
    """``templates.py`` can turn the command's and env's Jinja into references (tried on
    a copy of the environment, so nothing is recorded)."""
    from pgdurable.translators.airflow import templates

    trial = replace(
        ctx.env,
        problems=[],
        variables=set(ctx.env.variables),
        uses_xcom=set(ctx.env.uses_xcom),
    )
    own = task.args.get("env")
    texts = [command, *(str(v) for v in own.values())] if isinstance(own, dict) else [command]
    for text in texts:
        templates.render_raw(text, trial)
    if trial.problems:
        return False
    # Compile-time rendering puts the text into the command node, where the worker
    # substitutes {var}, {sys_*} and $result references (SPEC B §5); source text that
    # spells one would change when it runs, so it is rendered at run time instead.
    params = {**(ctx.dag.args.get("params") or {}), **(task.args.get("params") or {})}
    spelled = [*texts, *(v for v in _strings(params))]
    return not any(_substituted(text, ctx.env.variables) for text in spelled)


_RESULT_REFERENCE = re.compile(r"\$(?:dag_run|r_|render_|trig_|st_|br_)")
_BRACED = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _substituted(text: str, variables: set[str]) -> bool:
    """Whether the worker's substitution would change this source text."""
    if _RESULT_REFERENCE.search(text):
        return True
    return any(
        name.startswith("sys_") or name in variables for name in _BRACED.findall(text)
    )


def _strings(value: object):
    """Every string inside a params value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def manual(task: Task, ctx: Context, reason: str) -> None:
    """Why the run-time rendering could not take a task (PGD345): with the PGD312
    items of the compile-time attempt, the user sees both."""
    ctx.diag.add(
        "PGD345",
        f"task {task.task_id!r}: its templates cannot be rendered at run time either: {reason}",
        task.ref,
    )
