"""Airflow Python callables -> reviewable task modules and Python steps (SPEC A.4).

A DAG file cannot be imported without Airflow, so the callable of a
PythonOperator, ``@task``, branch or short-circuit task is *extracted*: its
``def`` and the module-level definitions it uses (imports, constants, helper
functions and classes, transitively), found with libcst's scope analysis, are
written to ``airflow_tasks/<dag>.py`` in the output folder. The Airflow names
they use (``Variable``, ``BaseHook``, ``PostgresHook``, ``get_current_context``,
the exceptions) are imported from ``pgdurable.airflow_context`` instead; each
task gets an entry function ``pgdurable_task_<task>`` that the Python step
calls, with the Airflow-shaped payload (``python_step``).

What cannot be extracted is refused with its reason and line, and nothing is
written for that task: a lambda, a name from the DAG-building code (a ``with
DAG`` block, an enclosing ``@dag`` function), a dynamic import, another Airflow
API, a hook other than Postgres, a ``Variable.get`` or ``xcom_pull`` whose
names are not literals, a relative or star import.

Fidelity: the same code runs with the same inputs and context, so the step is
exact (PGD243) when it imports only the standard library; third-party imports
run with the worker's packages and Python version (approximate, PGD244).
"""

from __future__ import annotations

import builtins
import dataclasses
import keyword
import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import libcst as cst
from libcst.metadata import BuiltinAssignment, GlobalScope, ScopeProvider

from pgdurable import model as m
from pgdurable.sqltext import literal
from pgdurable.translators.airflow import templates
from pgdurable.translators.airflow.dagfile import Duration, Timestamp, Unknown

if TYPE_CHECKING:
    from pgdurable.translators.airflow.dagfile import Function, Task
    from pgdurable.translators.airflow.tasks import Context

PACKAGE = "airflow_tasks"
CONTEXT_MODULE = "pgdurable.airflow_context"
# Airflow names the context module provides, by their last dotted part.
PROVIDED = {
    "Variable",
    "BaseHook",
    "PostgresHook",
    "get_current_context",
    "AirflowException",
    "AirflowFailException",
    "AirflowSkipException",
    "PokeReturnValue",
    # bases of an operator class defined in the DAG file (python_operators.py)
    "BaseOperator",
    "EmptyOperator",
    "DummyOperator",
    # outlet extras (airflow_context.OutletEvents); aliases are not provided
    "Dataset",
    "Asset",
    "Metadata",
}
_DYNAMIC = {"__import__", "importlib.import_module", "exec", "eval", "compile", "globals"}
_CONN_KEYWORDS = ("postgres_conn_id", "conn_id")


class Refused(Exception):
    """The callable cannot be extracted: ``reason`` names the construct and line."""


@dataclass
class DagModule:
    """The task module of one DAG: what it holds so far."""

    name: str  # dotted module name, airflow_tasks.<dag>
    parts: dict[int, str] = field(default_factory=dict)  # top-level statement index -> code
    imports: set[str] = field(default_factory=set)
    functions: dict[str, int] = field(default_factory=dict)  # nested callables: name -> id
    nested: list[str] = field(default_factory=list)
    entries: list[tuple[str, str, str]] = field(default_factory=list)  # (task, entry, fn)
    third_party: set[str] = field(default_factory=set)
    # literal constants bound once inside DAG-building code (`options = [...]` in a
    # `with DAG` block) that a callable reads: name -> `name = <literal>`
    constants: dict[str, str] = field(default_factory=dict)
    # bash tasks rendered at run time (runtime_templates): (task, entry, function code)
    renders: list[tuple[str, str, str]] = field(default_factory=list)

    def text(self, header: list[str]) -> str:
        lines = [f"# {h}" for h in header]
        body = [
            '"""Airflow task callables extracted by pgdurable import-airflow (review before deploying)."""',
            "",
            "from __future__ import annotations",
            "",
        ]
        body += sorted(self.imports, key=lambda line: (line.startswith("from"), line))
        if self.constants:
            body += ["", *(self.constants[k] for k in sorted(self.constants))]
        for index in sorted(self.parts):
            body += ["", "", self.parts[index].strip("\n")]
        for code in self.nested:
            body += ["", "", code.strip("\n")]
        body += ["", "", f"import {CONTEXT_MODULE} as _pgdurable_context"]
        for task_id, entry, fn in self.entries:
            body += [
                "",
                "",
                f"def {entry}(**payload):",
                f"    # task {task_id!r}",
                f"    return _pgdurable_context.run({fn}, payload)",
            ]
        if self.renders:
            body += ["", "", "import pgdurable.airflow_templates as _pgdurable_templates"]
        for _task, _entry, code in self.renders:
            body += ["", "", code.strip("\n")]
        return "\n".join([*lines, *body]) + "\n"


def module_name(dag_name: str) -> str:
    """A Python module name for a DAG (an identifier, never a keyword)."""
    name = re.sub(r"\W", "_", dag_name, flags=re.ASCII) or "dag"
    if name[0].isdigit() or keyword.iskeyword(name):
        name = "dag_" + name
    return f"{PACKAGE}.{name}"


def _walk(node: cst.CSTNode):
    yield node
    for child in node.children:
        yield from _walk(child)


class _Module:
    """Scope facts about one DAG file, computed once (cached on the reader)."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.code = reader.module
        self.scopes = reader.wrapper.resolve(ScopeProvider)
        self.top: dict[int, int] = {}  # id(node) -> index of its top-level statement
        for index, statement in enumerate(self.code.body):
            for node in _walk(statement):
                self.top[id(node)] = index
        self.accesses = [a for scope in set(self.scopes.values()) if scope for a in scope.accesses]

    def line(self, node: cst.CSTNode) -> int | None:
        return self.reader.ref(node).line

    def accesses_in(self, nodes: list[cst.CSTNode]) -> list[Any]:
        inside = {id(n) for root in nodes for n in _walk(root)}
        return [a for a in self.accesses if id(a.node) in inside], inside


def _facts(reader: Any) -> _Module:
    facts = getattr(reader, "_python_tasks", None)
    if facts is None:
        facts = _Module(reader)
        reader._python_tasks = facts
    return facts


def _import_line(statement: cst.CSTNode, name: str, facts: _Module, line: int | None) -> str:
    """The import of ``name`` alone, from ``statement`` (Airflow names re-pointed)."""
    code = facts.code
    if isinstance(statement, cst.ImportFrom):
        if statement.relative:
            raise Refused(f"{name!r} comes from a relative import (line {line})")
        if isinstance(statement.names, cst.ImportStar):
            raise Refused(f"{name!r} may come from a star import (line {line})")
        module = code.code_for_node(statement.module) if statement.module else ""
        for alias in statement.names:
            bound = code.code_for_node(alias.asname.name) if alias.asname else None
            original = code.code_for_node(alias.name)
            if (bound or original) != name:
                continue
            suffix = f" as {bound}" if bound else ""
            if module == "airflow" or module.startswith("airflow."):
                last = original.rsplit(".", 1)[-1]
                if last not in PROVIDED:
                    raise Refused(
                        f"the callable uses Airflow's {module}.{original} (line {line}), which "
                        "pgdurable's context does not provide"
                    )
                return f"from {CONTEXT_MODULE} import {last}" + (
                    f" as {name}" if name != last else ""
                )
            return f"from {module} import {original}{suffix}"
    if isinstance(statement, cst.Import):
        for alias in statement.names:
            dotted = code.code_for_node(alias.name)
            bound = code.code_for_node(alias.asname.name) if alias.asname else dotted.split(".")[0]
            if bound != name:
                continue
            if dotted == "airflow" or dotted.startswith("airflow."):
                raise Refused(
                    f"the callable uses the module {dotted} (line {line}); import the names it "
                    "needs (`from airflow.models import Variable`) so they can be provided"
                )
            return f"import {dotted}" + (f" as {bound}" if alias.asname else "")
    raise Refused(f"{name!r} is imported in an unusual way (line {line})")


def _root_module(import_line: str) -> str:
    words = import_line.split()
    return words[1].split(".")[0]


class _Extraction:
    """One callable's extraction into a DagModule (all or nothing)."""

    def __init__(self, facts: _Module, module: DagModule, isolated: str | None = None) -> None:
        self.facts = facts
        self.module = module
        # a virtualenv / external Python callable: Airflow copies only the function's
        # source into the other interpreter, so it may read nothing from the module
        # (``isolated`` is the function's own name, which the script does define)
        self.isolated = isolated
        self.constants: dict[str, str] = {}
        self.parts: dict[int, str] = {}
        self.imports: set[str] = set()
        self.third_party: set[str] = set()
        self.seen: set[int] = set()
        self.conn_ids: set[str] = set()
        self.variables: set[str] = set()
        self.xcom_tasks: set[str] = set()
        self.skip_exception = False

    def element(self, nodes: list[cst.CSTNode], what: str) -> None:
        """Collect what ``nodes`` (one definition) read from outside themselves."""
        accesses, inside = self.facts.accesses_in(nodes)
        for root in nodes:
            self._calls(root)
        for access in accesses:
            if access.is_annotation:
                continue  # not evaluated: the task module has `from __future__ import annotations`
            node_ = access.node
            name = (
                node_.value if isinstance(node_, cst.Name) else self.facts.code.code_for_node(node_)
            )
            line = self.facts.line(access.node)
            referents = list(access.referents)
            if not referents:
                if hasattr(builtins, name):
                    continue
                raise Refused(
                    f"{what} reads {name!r} (line {line}), which is not defined in the file"
                )
            for assignment in referents:
                if isinstance(assignment, BuiltinAssignment):
                    continue
                node = assignment.node
                if id(node) in inside:
                    continue
                if not isinstance(assignment.scope, GlobalScope):
                    raise Refused(
                        f"{what} reads {name!r} (line {line}) from the code around it (a closure "
                        f"over line {self.facts.line(node)}); move it to module level"
                    )
                if self.isolated is not None and name != self.isolated:
                    raise Refused(
                        f"{what} reads {name!r} (line {line}), defined outside the function: "
                        "Airflow copies only the function's source into the virtualenv / "
                        "external Python, where that name is not defined (NameError); import "
                        "or define it inside the function"
                    )
                if self.isolated is not None:
                    continue
                self.global_name(name, node, line)

    def global_name(self, name: str, node: cst.CSTNode, line: int | None) -> None:
        index = self.facts.top.get(id(node))
        if index is None:
            raise Refused(f"{name!r} (line {line}) is defined where pgdurable cannot follow it")
        statement = self.facts.code.body[index]
        if isinstance(statement, cst.SimpleStatementLine):
            smalls = list(statement.body)
            imports = [s for s in smalls if isinstance(s, cst.Import | cst.ImportFrom)]
            if imports:
                for small in imports:
                    try:
                        text = _import_line(small, name, self.facts, line)
                    except Refused:
                        if len(imports) > 1:
                            continue
                        raise
                    self.imports.add(text)
                    if "Skip" in text:
                        self.skip_exception = True
                    root = _root_module(text)
                    if root not in sys.stdlib_module_names and not text.startswith(
                        f"from {CONTEXT_MODULE}"
                    ):
                        self.third_party.add(root)
                    return
                raise Refused(f"{name!r} is imported in an unusual way (line {line})")
            if index in self.seen:
                return
            self.seen.add(index)
            self.parts[index] = self.facts.code.code_for_node(statement)
            self.element([statement], f"the definition of {name!r}")
            return
        if isinstance(statement, cst.FunctionDef | cst.ClassDef):
            if index in self.seen:
                return
            self.seen.add(index)
            self.parts[index] = self._without_airflow_decorators(statement)
            self.element(self._body_nodes(statement), f"{name}()")
            return
        constant = _single_literal(statement, node, name, self.facts)
        if constant is not None:
            self.constants[name] = f"{name} = {constant}"
            return
        kind = type(statement).__name__.lower()
        raise Refused(
            f"{name!r} (line {line}) is defined inside a `{kind}` block at line "
            f"{self.facts.line(statement)} (DAG-building code, run when Airflow parses the file)"
        )

    def _without_airflow_decorators(self, node: cst.FunctionDef | cst.ClassDef) -> str:
        """The definition without the Airflow decorators that made it a task (others,
        such as ``functools.cache``, stay: they change what the function does)."""
        kept = [d for d in node.decorators if not _airflow_decorator(d, self.facts.reader)]
        return self.facts.code.code_for_node(node.with_changes(decorators=kept))

    def _body_nodes(self, node: cst.FunctionDef | cst.ClassDef) -> list[cst.CSTNode]:
        kept = [d for d in node.decorators if not _airflow_decorator(d, self.facts.reader)]
        if isinstance(node, cst.FunctionDef):
            return [*kept, node.params, node.body] + ([node.returns] if node.returns else [])
        return [*kept, node.body, *node.bases, *node.keywords]

    def _calls(self, root: cst.CSTNode) -> None:
        """Calls whose meaning must be known statically: dynamic imports, hooks,
        Variable.get and xcom_pull names."""
        code = self.facts.code
        for node in _walk(root):
            if not isinstance(node, cst.Call):
                continue
            func = code.code_for_node(node.func)
            line = self.facts.line(node)
            last = func.rsplit(".", 1)[-1]
            if func in _DYNAMIC:
                raise Refused(f"a dynamic import or evaluation, {func}(), at line {line}")
            if last.endswith("Hook") and last not in ("PostgresHook", "BaseHook"):
                raise Refused(f"the hook {last} (line {line}) is not one pgdurable provides")
            if last in ("PostgresHook", "get_connection"):
                conn = _keyword_or_first(node, _CONN_KEYWORDS)
                if conn is _ABSENT and last == "PostgresHook":
                    conn = "postgres_default"
                if not isinstance(conn, str):
                    raise Refused(f"{func}() at line {line} names no literal connection id")
                self.conn_ids.add(conn)
            if func.endswith("Variable.get") or func == "Variable.get":
                key = _keyword_or_first(node, ("key",))
                if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                    raise Refused(
                        f"Variable.get at line {line} does not name a literal variable that a df "
                        "var can hold (letters, digits, _)"
                    )
                self.variables.add(key)
            elif re.search(r"(^|\.)Variable\.\w+$", func):
                raise Refused(f"{func}() at line {line}: only Variable.get is provided")
            if last == "xcom_pull":
                ids = _keyword_or_first(node, ("task_ids",))
                if isinstance(ids, str):
                    ids = [ids]
                if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                    raise Refused(f"xcom_pull at line {line} does not name its task_ids literally")
                self.xcom_tasks.update(ids)

    def commit(self) -> None:
        self.module.parts.update(self.parts)
        self.module.constants.update(self.constants)
        self.module.imports |= self.imports
        self.module.third_party |= self.third_party


_ABSENT = object()

_LITERAL_NODES = (
    cst.SimpleString,
    cst.ConcatenatedString,
    cst.Integer,
    cst.Float,
    cst.List,
    cst.Tuple,
    cst.Set,
    cst.Dict,
    cst.Element,
    cst.StarredElement,
    cst.DictElement,
    cst.Comma,
    cst.LeftSquareBracket,
    cst.RightSquareBracket,
    cst.LeftCurlyBrace,
    cst.RightCurlyBrace,
    cst.LeftParen,
    cst.RightParen,
    cst.Colon,
    cst.UnaryOperation,
    cst.Minus,
    cst.ParenthesizedWhitespace,
    cst.SimpleWhitespace,
    cst.TrailingWhitespace,
    cst.EmptyLine,
    cst.Newline,
    cst.Comment,
)


def _single_literal(statement: cst.CSTNode, target: cst.CSTNode, name: str, facts: _Module):
    """The value text of ``name = <literal>`` when that is the only binding of
    ``name`` in the file and it sits inside DAG-building code (a ``with DAG``
    block): a callable reading it at run time reads that value, whatever the
    block does around it. Else None."""
    module_scope = next(s for s in set(facts.scopes.values()) if isinstance(s, GlobalScope))
    if len(list(module_scope[name])) != 1:
        return None
    for node in _walk(statement):
        if (
            isinstance(node, cst.Assign)
            and len(node.targets) == 1
            and node.targets[0].target is target
        ):
            value = node.value
            if isinstance(value, cst.StarredElement) or not all(
                isinstance(n, _LITERAL_NODES)
                or (isinstance(n, cst.Name) and n.value in ("True", "False", "None"))
                for n in _walk(value)
            ):
                return None
            # parenthesised: continuation lines indented for the block stay valid
            return "(" + facts.code.code_for_node(value).strip() + ")"
    return None


def _airflow_decorator(decorator: cst.Decorator, reader: Any) -> bool:
    """``@task``, ``@task.branch(...)``, ``@dag``: a decorator from Airflow."""
    expr = decorator.decorator
    if isinstance(expr, cst.Call):
        expr = expr.func
    qualified = reader.qualified(expr) or ""
    if qualified == "airflow" or qualified.startswith("airflow."):
        return True
    head = expr
    while isinstance(head, cst.Attribute):
        head = head.value
    return isinstance(head, cst.Name) and head.value in ("task", "dag") and not qualified


def _keyword_or_first(call: cst.Call, names: tuple[str, ...]) -> Any:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value in names:
            return _literal(arg.value)
    positional = [a for a in call.args if a.keyword is None and not a.star]
    if positional:
        return _literal(positional[0].value)
    return _ABSENT


def _literal(node: cst.CSTNode) -> Any:
    if isinstance(node, cst.SimpleString):
        return node.evaluated_value
    if isinstance(node, cst.List | cst.Tuple):
        values = [_literal(e.value) for e in node.elements]
        return values if all(isinstance(v, str) for v in values) else None
    return None


@dataclass
class Step:
    """A translated Python task: its step and what the fidelity rests on."""

    node: m.Python
    entry: str
    third_party: set[str]
    skip_exception: bool
    outlet_extras: bool = False  # sets outlet_events[...].extra or yields Metadata


def _json_value(value: Any, env: templates.Env, what: str) -> Any:
    """A static argument as JSON, Jinja strings rendered (run-time fields as ``$dag_run``)."""
    from pgdurable.translators.airflow.visitor import TaskRef

    if isinstance(value, TaskRef):
        return {"__xcom__": value.task_id}
    if isinstance(value, str):
        return templates.render_raw(value, env) if "{{" in value or "{%" in value else value
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(v, env, what) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _json_value(v, env, what) for k, v in value.items()}
    if isinstance(value, Duration | Timestamp | Unknown):
        raise Refused(f"{what} is not a static JSON value ({value})")
    raise Refused(f"{what} is not a static JSON value ({type(value).__name__})")


def python_step(task: Task, ctx: Context, mode: str, name: str) -> Step:
    """The Python step of ``task`` (its callable extracted into the DAG's module);
    raises Refused naming what keeps it manual."""
    from pgdurable.translators.airflow import python_isolated
    from pgdurable.translators.airflow.visitor import TaskRef

    fn: Function | None = task.callable
    if fn is None:
        raw = task.args.get("python_callable")
        if isinstance(raw, Unknown):
            raise Refused(
                f"python_callable {raw} is not a function of the DAG file (imported from "
                "another module, or computed): deploy that module on the worker's code path "
                "and call it with a Python step by hand"
            )
        raise Refused("no python_callable the reader could follow")
    reader = getattr(fn, "reader", None)
    isolation = python_isolated.isolation(task)
    lambda_ = isinstance(fn.node, cst.Lambda) and reader is not None and isolation is None
    if not (isinstance(fn.node, cst.FunctionDef) or lambda_) or reader is None:
        raise Refused(f"the callable at line {task.ref.line} is a lambda or built dynamically")
    module = ctx.python_module
    assert module is not None
    facts = _facts(reader)
    work = _Extraction(facts, module, fn.name if isolation is not None else None)
    line = fn.ref.line if fn.ref else None
    if lambda_:
        work.element([fn.node.params, fn.node.body], f"the lambda at line {line}")
    else:
        work.element(work._body_nodes(fn.node), f"{fn.name}() (line {line})")
    if isolation is not None:
        work.third_party |= python_isolated.inner_imports(fn.node, facts.code, line)
    nested = id(fn.node) not in {id(s) for s in facts.code.body}
    if lambda_:
        pass
    elif nested:
        known = module.functions.get(fn.name)
        if known is not None and known != id(fn.node):
            raise Refused(f"another callable of this DAG is also named {fn.name}()")
        # written at the module's top level, it must not replace another definition
        # of that name there (a helper, an import, another DAG's callable)
        module_scope = next(s for s in set(facts.scopes.values()) if isinstance(s, GlobalScope))
        others = [a for a in module_scope[fn.name] if a.node is not fn.node]
        if others:
            raise Refused(
                f"{fn.name}() (line {line}) has the name of another module-level definition "
                f"(line {facts.line(others[0].node)}); rename one of them"
            )
    env = ctx.env
    upstream = _ancestors(task.task_id, ctx)
    for tid in sorted(work.xcom_tasks):
        if tid not in ctx.dag.tasks:
            raise Refused(f"xcom_pull names task {tid!r}, which is not in this DAG")
        if tid not in env.python_results:
            raise Refused(
                f"xcom_pull reads task {tid!r}, which is not a translated Python task "
                "(its Airflow XCom is rows of tuples)"
            )
    args = task.call_args if task.call_args or task.call_kwargs else task.args.get("op_args") or []
    kwargs = (
        task.call_kwargs if task.call_args or task.call_kwargs else task.args.get("op_kwargs") or {}
    )
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        raise Refused("op_args/op_kwargs are not static")
    for value in _refs([*args, *kwargs.values()]):  # nested too: a mapped value, a list
        if isinstance(value, TaskRef) and value.task_id not in env.python_results:
            raise Refused(
                f"the argument from task {value.task_id!r} is not a translated Python task's result"
            )
    _unprovided_context(fn.node, len(args), kwargs, ctx.generation, line)
    xcom_from = sorted(work.xcom_tasks | {v.task_id for v in _refs([*args, *kwargs.values()])})
    params = {**(ctx.dag.args.get("params") or {}), **(task.args.get("params") or {})}
    payload: dict[str, Any] = {
        "dag_id": ctx.dag.dag_id,
        "task_id": task.task_id,
        "mode": mode,
        "generation": ctx.generation,
        "dag_run": "$dag_run.*",
        "params": _json_value(params, env, "params"),
        "op_args": _json_value(list(args), env, "op_args"),
        "op_kwargs": _json_value(dict(kwargs), env, "op_kwargs"),
        "xcom": {t: f"$r_{_sid(t)}.*" for t in xcom_from if t in upstream},
    }
    missing = [t for t in xcom_from if t not in upstream]
    if missing:
        raise Refused(f"reads the result of {missing[0]!r}, which is not upstream of it")
    if ctx.generation < 2 and not task.operator.startswith("@"):
        # Airflow 1.x passes the context only with provide_context=True (then all of
        # it, as keywords); without it the callable gets op_args/op_kwargs alone
        provide = task.args.get("provide_context", False)
        if not isinstance(provide, bool):
            raise Refused(f"provide_context is not a literal ({provide})")
        payload["provide_context"] = provide
    if task.args.get("templates_dict") is not None:
        payload["templates_dict"] = _json_value(task.args["templates_dict"], env, "templates_dict")
    if work.variables:
        payload["variables"] = {v: "{" + v + "}" for v in sorted(work.variables)}
        env.variables |= work.variables
    conns: dict[str, Any] = {}
    for conn in sorted(work.conn_ids):  # reported only once the task is translated
        known, database = ctx.connections.database(conn)
        if not known:
            ctx.unmapped_conn(conn, task)
        conns[conn] = database
    if conns:
        payload["connections"] = conns
    if mode == "branch":
        payload["downstream"] = sorted(d for u, d in ctx.dag.edges if u == task.task_id)
    if isolation is not None:
        payload["context_keys"] = sorted(isolation.context_keys)
    if work.skip_exception and mode == "python" and not (task.kind == "python_venv"):
        # AirflowSkipException ends the task skipped (python_operators.skippable)
        payload["skippable"] = True
    env.uses_dates = True
    work.commit()
    fn_name = fn.name
    if lambda_:
        fn_name = _lambda_function(fn.node, task.task_id, module, facts)
    elif nested and fn.name not in module.functions:
        module.functions[fn.name] = id(fn.node)
        module.nested.append(work._without_airflow_decorators(fn.node))
    elif not nested:
        index = facts.top[id(fn.node)]
        module.parts[index] = work._without_airflow_decorators(fn.node)
    entry = f"pgdurable_task_{_sid(task.task_id)}"
    module.entries.append((task.task_id, entry, fn_name))
    node = m.Python(
        f"{module.name}:{entry}", (), tuple(sorted(payload.items())), name=name, source=task.ref
    )
    env.python_results.add(task.task_id)
    source = facts.code.code_for_node(fn.node)
    extras = "outlet_events" in source or any(i.endswith("import Metadata") for i in work.imports)
    return Step(node, entry, set(work.third_party), work.skip_exception, extras)


# Airflow context keys (2.x and 3.x) that pgdurable's context does not provide: a
# callable naming one as a parameter would get its default (often None) here.
_AIRFLOW_CONTEXT_KEYS = {
    "conf", "conn", "exception", "expanded_ti_count", "inlets", "inlet_events",
    "macros", "map_index_template", "next_ds_nodash", "next_execution_date", "outlets",
    "prev_data_interval_start_success", "prev_data_interval_end_success",
    "prev_ds_nodash", "prev_execution_date", "prev_execution_date_success",
    "prev_start_date_success", "prev_end_date_success", "tomorrow_ds_nodash",
    "triggering_dataset_events", "triggering_asset_events", "ts_nodash_with_tz", "var",
    "yesterday_ds_nodash", "task_state_store", "asset_state_store",
    "task_reschedule_count", "partition_key", "partition_date",
}  # fmt: skip
# provided only for Airflow 1.x/2.x (airflow_context._Run.context)
_BEFORE_3 = {"execution_date", "next_ds", "prev_ds", "yesterday_ds", "tomorrow_ds"}


def _unprovided_context(node: Any, positional: int, kwargs: dict, generation: int, line) -> None:
    """Refuse a callable whose parameters name an Airflow context key pgdurable does
    not provide (the step would run with the parameter's default instead)."""
    params = node.params
    names = [p.name.value for p in [*params.posonly_params, *params.params]][positional:]
    names += [p.name.value for p in params.kwonly_params]
    missing = set(_AIRFLOW_CONTEXT_KEYS)
    if generation >= 3:
        missing |= _BEFORE_3
    for name in names:
        mapped = kwargs.get("__pgdurable_map__")
        if (
            name in missing
            and name not in kwargs
            and not (isinstance(mapped, dict) and name in mapped)
        ):
            raise Refused(
                f"the callable (line {line}) takes the Airflow context key {name!r}, which "
                "pgdurable's context does not provide"
            )


def _lambda_function(node: cst.Lambda, task_id: str, module: DagModule, facts: _Module) -> str:
    """A lambda written out as a named function of the task module (one per lambda,
    however many tasks share it): ``def name(<its parameters>): return (<its body>)``,
    the same signature, so Airflow's context-keyword rule treats it alike."""
    for name, known in module.functions.items():
        if known == id(node):
            return name
    module_scope = next(s for s in set(facts.scopes.values()) if isinstance(s, GlobalScope))
    base = "_pgdurable_lambda_" + re.sub(r"\W", "_", task_id, flags=re.ASCII)
    name, n = base, 1
    while name in module.functions or module_scope[name]:
        n += 1
        name = f"{base}_{n}"
    module.functions[name] = id(node)
    params = facts.code.code_for_node(node.params)
    body = facts.code.code_for_node(node.body).strip()
    module.nested.append(f"def {name}({params}):\n    return (\n        {body}\n    )\n")
    return name


def _refs(values: list[Any]) -> list[Any]:
    from pgdurable.translators.airflow.visitor import TaskRef

    found: list[Any] = []
    for value in values:
        if isinstance(value, TaskRef):
            found.append(value)
        elif isinstance(value, list | tuple):
            found += _refs(list(value))
        elif isinstance(value, dict):
            found += _refs(list(value.values()))
    return found


def _sid(task_id: str) -> str:
    return re.sub(r"\W", "_", task_id)


def _ancestors(task_id: str, ctx: Context) -> set[str]:
    up: dict[str, set[str]] = {}
    for u, d in ctx.dag.edges:
        up.setdefault(d, set()).add(u)
    seen: set[str] = set()
    todo = [task_id]
    while todo:
        for u in up.get(todo.pop(), ()):
            if u not in seen:
                seen.add(u)
                todo.append(u)
    return seen


def report(step: Step, task: Task, ctx: Context) -> None:
    """The diagnostics of a translated Python task: what to deploy and grant."""
    role = ctx.run_as or "ROLE"
    module = ctx.python_module
    assert module is not None
    grant = (
        f"SELECT pgdurable.grant_code({literal(role)}, {literal('python:' + module.name + ':*')})"
    )
    # One PGD243 per DAG (the deploy and grant advice is the DAG's): each Python
    # task adds its step to the list of the first one.
    steps = f"{task.task_id!r} as {step.node.callable}"
    items = ctx.diag.items
    first = next((i for i, d in enumerate(items) if d.code == "PGD243"), None)
    if first is not None:
        steps = items[first].message.split(": ", 1)[1].split("; written to ", 1)[0] + f", {steps}"
    message = (
        f"Python tasks run as Python steps: {steps}; written to "
        f"{module.name.replace('.', '/')}.py; deploy the output folder on the workers' code "
        f"path (pgdurable worker --code-path OUT) and grant: {grant}"
    )
    if first is None:
        ctx.diag.add("PGD243", message, task.ref)
    else:
        items[first] = dataclasses.replace(items[first], message=message)
    if step.third_party:
        ctx.diag.add(
            "PGD244",
            f"task {task.task_id!r}: the callable imports {', '.join(sorted(step.third_party))}, "
            "which run with the packages and the Python version of the worker's environment, "
            "not the Airflow worker's: install the same versions there",
            task.ref,
        )
    if step.outlet_extras:
        ctx.diag.add(
            "PGD294",
            f"task {task.task_id!r}: the extras it sets on outlet assets (outlet_events[...]"
            ".extra, yield Metadata) are kept in the step's result row (outlet_events), not "
            "in an asset event: a consumer reading inlet_events or triggering events does "
            "not see them",
            task.ref,
        )
    if step.skip_exception and not dict(step.node.kwargs).get("skippable"):
        ctx.diag.add(
            "PGD245",
            f"task {task.task_id!r}: raising AirflowSkipException fails the step instead of "
            "skipping the task",
            task.ref,
        )


def attach(workflow: Any, module: DagModule, source: str) -> Any:
    """``workflow`` with its task module as a code file and the header lines naming
    every code step, the code root and the grant it needs."""
    from dataclasses import replace

    if not module.entries and not module.renders:
        return workflow
    role = workflow.run_as or "ROLE"
    grant = (
        f"SELECT pgdurable.grant_code({literal(role)}, {literal('python:' + module.name + ':*')});"
    )
    path = module.name.replace(".", "/") + ".py"
    lines = [
        f"code step: task {t!r} -> pgdurable.python('{module.name}:{e}')"
        for t, e, _ in [*module.entries, *module.renders]
    ]
    lines += [
        f"code root: the folder holding {PACKAGE}/ (this output folder): "
        "pgdurable worker --code-path <it>",
        f"grant: {grant} (an administrator runs it)",
    ]
    header = [
        f"generated by pgdurable import-airflow from {_one_line(source)}",
        *(_one_line(line) for line in lines),
    ]
    text = module.text(header)
    return replace(
        workflow,
        description=(*workflow.description, *lines),
        code_files=((path, text),),
    )


def _one_line(text: str) -> str:
    """Header text for a Python comment: one line, no control characters."""
    return "".join(c if c.isprintable() else "?" for c in text)


PACKAGE_INIT = (
    '"""Task modules written by pgdurable import-airflow: put the folder holding this'
    ' package on the worker\'s code path (pgdurable worker --code-path DIR)."""\n'
)


def renamed(workflow: Any, name: str) -> Any:
    """``workflow`` (renamed to ``name``, a dag_id defined in several files) with its
    task module renamed too, so no file's module overwrites another's."""
    from dataclasses import fields, replace

    if not workflow.code_files:
        return workflow
    ((path, text),) = workflow.code_files
    old, new = module_of(workflow), module_name(name)

    def swap_(value: str) -> str:
        return swap(value, old, new)

    def rebuild(node: Any) -> Any:
        changes: dict[str, Any] = {}
        for f in fields(node):
            value = getattr(node, f.name)
            if isinstance(value, m.NodeBase):
                changes[f.name] = rebuild(value)
            elif (
                isinstance(value, tuple) and value and all(isinstance(v, m.NodeBase) for v in value)
            ):
                changes[f.name] = tuple(rebuild(v) for v in value)
        if isinstance(node, m.Python):
            changes["callable"] = swap_(node.callable)
        return replace(node, **changes) if changes else node

    return replace(
        workflow,
        body=rebuild(workflow.body),
        description=tuple(swap_(line) for line in workflow.description),
        epilogue=swap_(workflow.epilogue) if workflow.epilogue else workflow.epilogue,
        code_files=((new.replace(".", "/") + ".py", swap_(text)),),
    )


def module_of(workflow: Any) -> str:
    """The dotted name of the workflow's task module (it has code files)."""
    ((path, _),) = workflow.code_files
    return str(path[: -len(".py")].replace("/", "."))


def swap(text: str, old: str, new: str) -> str:
    """``text`` naming module ``new`` where it named ``old`` (callables, grant, path)."""
    old_path, new_path = old.replace(".", "/") + ".py", new.replace(".", "/") + ".py"
    return text.replace(f"{old}:", f"{new}:").replace(old_path, new_path)
