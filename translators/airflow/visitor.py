"""Reading DAG files statically with libcst, never importing Airflow or
running the file.

The reader walks a module the way Python would execute its top level, but
only evaluates what is statically knowable: literals, names bound to them,
f-strings, ``range``/``enumerate``/``zip``/``dict.items()``, ``timedelta``,
and the Airflow constructs that build a DAG (``DAG(...)`` in a ``with`` or an
assignment, ``@dag`` functions that are called, operators, TaskFlow calls,
``TaskGroup``/``@task_group``, ``>>``/``<<``, ``chain``, ``cross_downstream``,
``set_upstream``/``set_downstream``, ``Label``). ``for`` loops and
comprehensions over literal lists, ranges and dicts are unrolled. Anything
else evaluates to ``Unknown`` and becomes a diagnostic of the DAG it touches,
never an exception. Class names are resolved through the file's imports
(``import_table``, what libcst's ``QualifiedNameProvider`` computes, without
its cost), so every Airflow generation's module path works.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from pgdurable.diagnostics import SourceRef
from pgdurable.translators import pyguard
from pgdurable.translators.airflow import operators, setup_teardown, static_calls
from pgdurable.translators.airflow.dagfile import (
    Asset,
    ClockTime,
    Dag,
    DagFile,
    Duration,
    Function,
    Mapped,
    OrTime,
    Task,
    Timestamp,
    Unknown,
)

_DAG_CLASSES = {"DAG"}
_GROUP_CLASSES = {"TaskGroup"}
_MAX_UNROLL = 1000  # tasks built by one loop; more is a diagnostic
# False whenever Python runs the file (Airflow's parser included): only type checkers
# take the `if TYPE_CHECKING:` branch, so the reader takes the `else:` one.
_TYPE_CHECKING = {"typing.TYPE_CHECKING", "typing_extensions.TYPE_CHECKING"}


class ReadError(Exception):
    """The file cannot be parsed; ``line`` is 1-based."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


@dataclass
class TaskRef:
    """A task (or a TaskFlow call's XComArg) as a Python value."""

    dag: Dag
    task_id: str


@dataclass
class Group:
    dag: Dag
    prefix: str  # "" for no prefix, else "outer.inner."
    members: list[str] = field(default_factory=list)

    def roots(self) -> list[str]:
        inside = set(self.members)
        has_up = {d for u, d in self.dag.edges if u in inside and d in inside}
        return [t for t in self.members if t not in has_up]

    def leaves(self) -> list[str]:
        inside = set(self.members)
        has_down = {u for u, d in self.dag.edges if u in inside and d in inside}
        return [t for t in self.members if t not in has_down]


@dataclass
class LabelEdge:
    """``a >> Label("x")``: waits for the right-hand side of the next ``>>``."""

    upstream: list[str]
    dag: Dag | None
    text: str


@dataclass
class LabelValue:
    text: str


@dataclass
class BoundMethod:
    target: Any
    name: str


@dataclass
class Partial:
    """``Operator.partial(...)`` or ``task.partial(...)`` waiting for ``.expand``."""

    call: Any
    kwargs: dict[str, Any]


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


def _dotted(node: cst.CSTNode) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    return ""


def import_table(statements: Iterable[cst.CSTNode]) -> dict[str, str]:
    """Local name -> qualified name, from every import statement of the file
    (also inside ``try``/``if``/``def`` bodies), the way libcst's
    ``QualifiedNameProvider`` resolves imported names. Its scope analysis costs
    ~35 ms per file, which alone would exceed the 1 000-file budget, and DAG
    files do not rebind imported names in ways that need it."""
    table: dict[str, str] = {}
    for statement in statements:
        if isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                if isinstance(small, cst.ImportFrom) and not small.relative and small.module:
                    module = _dotted(small.module)
                    if isinstance(small.names, cst.ImportStar):
                        continue
                    for alias in small.names:
                        name = _dotted(alias.name)
                        local = alias.asname.name.value if alias.asname else name  # type: ignore[union-attr]
                        table[local] = f"{module}.{name}"
                elif isinstance(small, cst.Import):
                    for alias in small.names:
                        name = _dotted(alias.name)
                        if alias.asname:
                            table[alias.asname.name.value] = name  # type: ignore[union-attr]
                        else:
                            table[name.split(".")[0]] = name.split(".")[0]
        else:
            for attr in ("body", "orelse", "finalbody", "handlers"):
                child = getattr(statement, attr, None)
                if child is None:
                    continue
                if isinstance(child, list | tuple):
                    table.update(import_table(child))
                elif hasattr(child, "body"):
                    body = child.body
                    table.update(import_table(body if isinstance(body, list | tuple) else [child]))
    return table


def detect_generation(module: cst.Module, code: str) -> tuple[int, str]:
    """The Airflow major version a file is written for, and why we think so."""
    if "airflow.sdk" in code or "airflow.providers.standard" in code:
        return 3, "imports from airflow.sdk / airflow.providers.standard"
    if "Asset(" in code or "AssetAlias" in code:
        return 3, "uses Asset"
    for marker in (
        "airflow.operators.bash_operator",
        "airflow.operators.python_operator",
        "airflow.operators.dummy_operator",
        "airflow.operators.postgres_operator",
        "airflow.operators.http_operator",
        "airflow.operators.check_operator",
        "airflow.operators.sql import",
        "airflow.sensors.sql_sensor",
        "airflow.hooks.postgres_hook",
        "airflow.contrib",
        "provide_context",
    ):
        if marker in code:
            return 1, f"uses the 1.10 spelling {marker}"
    return 2, "Airflow 2 imports"


class Reader:
    """Evaluates one module's top level; collects DAGs."""

    def __init__(self, path: str, code: str) -> None:
        self.path = path
        self.code = code
        refused = pyguard.refusal(code, path)
        if refused is not None:
            raise ReadError(f"the file does not parse: {refused.message}", refused.line)
        try:
            module = cst.parse_module(code)
        except cst.ParserSyntaxError as exc:
            raise ReadError(f"the file does not parse: {exc.message}", exc.raw_line) from exc
        self.wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
        self.imports = import_table(module.body)
        self.positions = self.wrapper.resolve(PositionProvider)
        self.module = self.wrapper.module
        self.generation, self.evidence = detect_generation(self.module, code)
        self.dags: list[Dag] = []
        self.dag_stack: list[Dag] = []
        self.group_stack: list[Group] = []
        self.problems: list[tuple[str, str, SourceRef]] = []  # not tied to one DAG yet
        self.depth = 0
        self.setup_context_depth = 0  # inside `with <setup/teardown task>:`

    # -- helpers ----------------------------------------------------------------

    def ref(self, node: cst.CSTNode) -> SourceRef:
        pos = self.positions.get(node)
        if pos is None:
            return SourceRef(self.path)
        return SourceRef(self.path, pos.start.line, pos.start.column + 1)

    def src(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node).strip()

    def problem(self, code: str, message: str, node: cst.CSTNode) -> None:
        target = self.dag_stack[-1] if self.dag_stack else None
        entry = (code, message, self.ref(node))
        if target is not None:
            target.problems.append(entry)
        else:
            self.problems.append(entry)

    def qualified(self, node: cst.CSTNode) -> str | None:
        """The qualified name of a Name/Attribute through the file's imports."""
        dotted = _dotted(node)
        if not dotted:
            return None
        head, _, rest = dotted.partition(".")
        if head not in self.imports:
            return None
        return self.imports[head] + (f".{rest}" if rest else "")

    # -- statements -------------------------------------------------------------

    def run(self) -> DagFile:
        env: dict[str, Any] = {}
        self.exec_block(self.module.body, env)
        for dag in self.dags:
            dag.problems[:0] = [p for p in self.problems]
        return DagFile(self.path, self.generation, self.dags, self.evidence)

    def exec_block(self, statements: Iterable[cst.CSTNode], env: dict[str, Any]) -> None:
        for statement in statements:
            self.exec_statement(statement, env)

    def exec_statement(self, node: cst.CSTNode, env: dict[str, Any]) -> None:
        if isinstance(node, cst.SimpleStatementLine):
            for small in node.body:
                self.exec_small(small, env)
        elif isinstance(node, cst.With):
            self.exec_with(node, env)
        elif isinstance(node, cst.For):
            self.exec_for(node, env)
        elif isinstance(node, cst.If):
            self.exec_if(node, env)
        elif isinstance(node, cst.FunctionDef):
            env[node.name.value] = self.function(node, env)
        elif isinstance(node, cst.Try):
            self.exec_block(node.body.body, env)  # import fallbacks: the first spelling
        elif isinstance(node, cst.IndentedBlock):
            self.exec_block(node.body, env)

    def exec_small(self, node: cst.CSTNode, env: dict[str, Any]) -> None:
        if isinstance(node, cst.Expr):
            self.eval(node.value, env)
        elif isinstance(node, cst.Assign):
            value = self.eval(node.value, env)
            for target in node.targets:
                self.bind(target.target, value, env)
        elif isinstance(node, cst.AnnAssign) and node.value is not None:
            self.bind(node.target, self.eval(node.value, env), env)
        elif isinstance(node, cst.AugAssign):
            current = self.eval(node.target, env)
            value = self.eval(node.value, env)
            if isinstance(node.operator, cst.AddAssign):
                self.bind(node.target, _add(current, value, self.src(node)), env)
        elif isinstance(node, cst.Return):
            raise _Return(None if node.value is None else self.eval(node.value, env))

    def bind(self, target: cst.CSTNode, value: Any, env: dict[str, Any]) -> None:
        if isinstance(target, cst.Name):
            env[target.value] = value
        elif isinstance(target, cst.Tuple | cst.List):
            elements = [e.value for e in target.elements]
            if isinstance(value, list | tuple) and len(value) == len(elements):
                for element, item in zip(elements, value, strict=True):
                    self.bind(element, item, env)
            else:
                for element in elements:
                    self.bind(element, Unknown(self.src(target)), env)
        elif isinstance(target, cst.Subscript):
            container = self.eval(target.value, env)
            key = self.eval(target.slice[0].slice.value, env) if target.slice else None
            if isinstance(container, dict) and not isinstance(key, Unknown):
                container[key] = value

    def exec_with(self, node: cst.With, env: dict[str, Any]) -> None:
        pushed: list[str] = []
        values: list[Any] = []
        for item in node.items:
            value = self.eval(item.item, env)
            values.append(value)
            if isinstance(value, Dag):
                self.dag_stack.append(value)
                pushed.append("dag")
            elif isinstance(value, Group):
                self.group_stack.append(value)
                pushed.append("group")
            if item.asname is not None:
                self.bind(item.asname.name, value, env)
        contexts = [(d, ids) for d, ids in (self._setup_context(v) for v in values) if ids]
        if contexts and self.setup_context_depth:
            self.problem(
                "PGD315",
                "nested `with` blocks of setup/teardown tasks are not translated (Airflow "
                "links the inner setups and teardowns to the outer ones); write the "
                "dependencies with >>",
                node,
            )
            contexts = []
        before = {id(d): list(d.tasks) for d, _ in contexts}
        self.setup_context_depth += bool(contexts)
        try:
            self.exec_block(node.body.body, env)
        finally:
            self.setup_context_depth -= bool(contexts)
            for kind in reversed(pushed):
                (self.dag_stack if kind == "dag" else self.group_stack).pop()
        for dag, entered in contexts:
            created = [t for t in dag.tasks if t not in before[id(dag)]]
            setup_teardown.context_exit(dag, entered, created, self.edge)

    @staticmethod
    def _setup_context(value: Any) -> tuple[Dag | None, list[str]]:
        """``with task:`` over setup or teardown tasks (a task, an XComArg, a list,
        ``s >> t``): the DAG and the tasks entered, else (None, [])."""
        refs = _task_refs(value)
        if not refs or any(r.dag is not refs[0].dag for r in refs):
            return None, []
        dag = refs[0].dag
        ids = [r.task_id for r in refs]
        if all(setup_teardown.role(dag, t) is not None for t in ids):
            return dag, ids
        return None, []

    def exec_for(self, node: cst.For, env: dict[str, Any]) -> None:
        items = self.eval(node.iter, env)
        if not isinstance(items, list | tuple | dict | range | str):
            self.problem(
                "PGD315",
                f"the loop `for ... in {self.src(node.iter)}` iterates over a value that "
                "cannot be known without running the file; its tasks are not translated",
                node,
            )
            return
        for n, item in enumerate(items):
            if n >= _MAX_UNROLL:
                self.problem("PGD315", f"loop unrolled only {_MAX_UNROLL} times", node)
                break
            self.bind(node.target, item, env)
            self.exec_block(node.body.body, env)

    def exec_if(self, node: cst.If, env: dict[str, Any]) -> None:
        test = self.eval(node.test, env)
        if isinstance(test, Unknown):
            if "__name__" in self.src(node.test):
                return  # `if __name__ == "__main__": dag.test()` - not part of the DAG
            self.problem(
                "PGD315",
                f"`if {self.src(node.test)}` cannot be decided without running the file; "
                "tasks created under it are not translated",
                node,
            )
            return
        if test:
            self.exec_block(node.body.body, env)
        elif node.orelse is not None:
            orelse = node.orelse
            if isinstance(orelse, cst.If):
                self.exec_if(orelse, env)
            else:
                self.exec_block(orelse.body.body, env)

    # -- functions ----------------------------------------------------------------

    def function(self, node: cst.FunctionDef, env: dict[str, Any]) -> Function:
        fn = Function(node.name.value, node, ref=self.ref(node))
        fn.closure = env  # type: ignore[attr-defined]
        fn.reader = self  # type: ignore[attr-defined]  # python_tasks extracts from its module
        for decorator in node.decorators:
            expr = decorator.decorator
            call_args: dict[str, Any] = {}
            if isinstance(expr, cst.Call):
                call_args = {
                    a.keyword.value: self.eval(a.value, env) for a in expr.args if a.keyword
                }
                expr = expr.func
            name = self.qualified(expr) or ""
            short = self.src(expr)
            if name.endswith(".dag") or short == "dag":
                fn.decorator = "dag"
            elif (name.startswith("airflow") and name.endswith((".setup", ".teardown"))) or (
                not name and short in ("setup", "teardown")
            ):
                fn.decorator = (
                    "task"  # @setup/@teardown wrap a @task (decorators/setup_teardown.py)
                )
                fn.setup_role = short.rsplit(".", 1)[-1]  # type: ignore[attr-defined]
            elif name.endswith(".task_group") or short == "task_group":
                fn.decorator = "task_group"
            elif short.startswith("task") and (name.startswith("airflow") or not name):
                fn.decorator = short if short in operators.DECORATORS else short
            fn.decorator_args = call_args
        if getattr(fn, "setup_role", None) == "teardown":
            fn.fail_dagrun = fn.decorator_args.pop("on_failure_fail_dagrun", False)  # type: ignore[attr-defined]
        return fn

    def analyze(self, fn: Function, bound: dict[str, Any] | None = None) -> None:
        """What a Python callable does, statically: its SQL hook calls when that is
        all it does (``sql_calls``), a literal return value (``static_return``),
        and a summary for the report (arguments, hooks, calls). ``bound``: argument
        values known statically (a mapped instance's); the others are unknown."""
        if getattr(fn, "analyzed", False):
            return
        fn.analyzed = True  # type: ignore[attr-defined]
        env = dict(getattr(fn, "closure", {}))
        summary: dict[str, Any] = {"params": [], "hooks": set(), "calls": []}
        fn.summary = summary  # type: ignore[attr-defined]
        node = fn.node
        if isinstance(node, cst.Lambda):
            value = self.eval(node.body, env)
            if not isinstance(value, Unknown):
                fn.static_return = value  # type: ignore[attr-defined]
            return
        params = node.params
        summary["params"] = [p.name.value for p in [*params.params, *params.kwonly_params]]
        for p in summary["params"]:
            env[p] = (bound or {}).get(p, Unknown(p))
        for found in _walk(node.body):
            if isinstance(found, cst.Call):
                qname = self.qualified(found.func) or self.src(found.func)
                summary["calls"].append(self.src(found.func))
                if "Hook" in qname:
                    summary["hooks"].add(qname.rsplit(".", 1)[-1])
        calls: list[dict[str, Any]] = []
        hooks: dict[str, Any] = {}
        pure = True
        statements = list(node.body.body)
        for index, statement in enumerate(statements):
            smalls = (
                statement.body if isinstance(statement, cst.SimpleStatementLine) else [statement]
            )
            for small in smalls:
                if (
                    isinstance(small, cst.Expr)
                    and isinstance(small.value, cst.SimpleString | cst.ConcatenatedString)
                    and index == 0
                ):
                    continue
                if isinstance(small, cst.Pass):
                    continue
                value_node = None
                returns = False
                if isinstance(small, cst.Assign) and len(small.targets) == 1:
                    value_node = small.value
                    target = small.targets[0].target
                    hook = self._hook(value_node, env)
                    if hook is not None and isinstance(target, cst.Name):
                        hooks[target.value] = hook
                        continue
                elif isinstance(small, cst.Expr):
                    value_node = small.value
                    if isinstance(value_node, cst.Call) and self.src(value_node.func).split(".")[
                        -1
                    ] in ("print", "info", "debug", "warning"):
                        continue
                elif isinstance(small, cst.Return):
                    returns = True
                    value_node = small.value
                    if value_node is None:
                        continue
                    literal = self.eval(value_node, env)
                    if not isinstance(literal, Unknown | TaskRef):
                        fn.static_return = literal  # type: ignore[attr-defined]
                        continue
                call = self._sql_call(value_node, hooks, env) if value_node is not None else None
                if call is None:
                    pure = False
                    continue
                call["returns"] = returns
                calls.append(call)
        if pure and calls:
            fn.sql_calls = calls  # type: ignore[attr-defined]

    def _hook(self, node: cst.CSTNode, env: dict[str, Any]) -> dict[str, Any] | None:
        if not isinstance(node, cst.Call):
            return None
        qname = self.qualified(node.func) or ""
        if qname.rsplit(".", 1)[-1] not in operators.SQL_HOOKS:
            return None
        conn = None
        for a in node.args:
            if a.keyword is not None and a.keyword.value in operators.SQL_HOOK_CONN:
                conn = self.eval(a.value, env)
        return {"conn": conn if isinstance(conn, str) else None}

    def _sql_call(
        self, node: cst.CSTNode, hooks: dict[str, Any], env: dict[str, Any]
    ) -> dict[str, Any] | None:
        # hook.get_first(sql)[0] -> the call
        while isinstance(node, cst.Subscript):
            node = node.value
        if not isinstance(node, cst.Call) or not isinstance(node.func, cst.Attribute):
            return None
        method = node.func.attr.value
        if method not in operators.SQL_HOOK_METHODS - {"get_pandas_df"}:
            return None
        target = node.func.value
        hook = hooks.get(target.value) if isinstance(target, cst.Name) else self._hook(target, env)
        if hook is None:
            return None
        args = [a for a in node.args if a.keyword is None]
        kwargs = {a.keyword.value: a.value for a in node.args if a.keyword is not None}
        sql_node = args[0].value if args else kwargs.get("sql")
        if sql_node is None:
            return None
        sql = self.eval(sql_node, env)
        if not isinstance(sql, str):
            return None
        parameters = self.eval(kwargs["parameters"], env) if "parameters" in kwargs else None
        autocommit = self.eval(kwargs["autocommit"], env) if "autocommit" in kwargs else False
        return {
            "sql": sql,
            "conn": hook["conn"],
            "parameters": parameters,
            "autocommit": autocommit is True,
            "method": method,
        }

    def call_function(self, fn: Function, args: list[Any], kwargs: dict[str, Any], node) -> Any:
        if fn.decorator == "dag":
            dag_args = dict(fn.decorator_args)
            dag_id = dag_args.pop("dag_id", fn.name)
            dag = self.new_dag(str(dag_id), dag_args, node)
            self.dag_stack.append(dag)
            try:
                self.run_body(fn, args, kwargs)
            finally:
                self.dag_stack.pop()
            return dag
        if fn.decorator == "task_group":
            group_id = fn.decorator_args.get("group_id", fn.name)
            group = self.new_group(str(group_id), fn.decorator_args, node)
            if group is None:
                return Unknown(self.src(node))
            self.group_stack.append(group)
            try:
                result = self.run_body(fn, args, kwargs)
            finally:
                self.group_stack.pop()
            return result if result is not None else group
        if fn.decorator is not None and fn.decorator.startswith("task"):
            return self.taskflow_call(fn, args, kwargs, node)
        if self.depth > 20:
            return Unknown(self.src(node))
        return self.run_body(fn, args, kwargs)

    def run_body(self, fn: Function, args: list[Any], kwargs: dict[str, Any]) -> Any:
        local = dict(getattr(fn, "closure", {}))
        params = fn.node.params
        positional = [*params.posonly_params, *params.params]
        for p, value in zip(positional, args, strict=False):
            local[p.name.value] = value
        named = set()
        for p in [*positional, *params.kwonly_params]:
            name = p.name.value
            named.add(name)
            if name in kwargs:
                local[name] = kwargs[name]
            elif name not in local:
                local[name] = (
                    self.eval(p.default, local) if p.default is not None else Unknown(name)
                )
        # `def make(task_id, *args, **kwargs)`: what the named parameters do not take
        if isinstance(params.star_arg, cst.Param):
            local[params.star_arg.name.value] = tuple(args[len(positional) :])
        if isinstance(params.star_kwarg, cst.Param):
            local[params.star_kwarg.name.value] = {
                k: v for k, v in kwargs.items() if k not in named
            }
        self.depth += 1
        try:
            self.exec_block(fn.node.body.body, local)
        except _Return as ret:
            return ret.value
        finally:
            self.depth -= 1
        return None

    # -- DAGs, groups, tasks ------------------------------------------------------

    def new_dag(self, dag_id: str, args: dict[str, Any], node) -> Dag:
        dag = Dag(dag_id, self.ref(node), args)
        self.dags.append(dag)
        return dag

    def current_dag(self, explicit: Any = None) -> Dag | None:
        if isinstance(explicit, Dag):
            return explicit
        return self.dag_stack[-1] if self.dag_stack else None

    def new_group(self, group_id: str, args: dict[str, Any], node) -> Group | None:
        dag = self.current_dag(args.get("dag"))
        if dag is None:
            self.problem("PGD315", "a TaskGroup outside any DAG is ignored", node)
            return None
        parent = self.group_stack[-1].prefix if self.group_stack else ""
        prefix = parent + f"{group_id}." if args.get("prefix_group_id", True) else parent
        group = Group(dag, prefix)
        return group

    def add_task(self, task: Task, dag: Dag, node) -> TaskRef:
        if self.group_stack and self.group_stack[-1].dag is dag:
            task.task_id = self.group_stack[-1].prefix + task.task_id
        if task.task_id in dag.tasks:
            if task.operator.startswith("@"):
                # TaskFlow re-uses a function: Airflow appends __1, __2, ...
                n = 1
                while f"{task.task_id}__{n}" in dag.tasks:
                    n += 1
                task.task_id = f"{task.task_id}__{n}"
            else:
                dag.problems.append(
                    (
                        "PGD106",
                        f"task id {task.task_id!r} is used twice; Airflow refuses "
                        "the DAG (DuplicateTaskIdFound)",
                        self.ref(node),
                    )
                )
                return TaskRef(dag, task.task_id)
        dag.tasks[task.task_id] = task
        for group in self.group_stack:
            if group.dag is dag:
                group.members.append(task.task_id)
        return TaskRef(dag, task.task_id)

    def operator_call(self, qname: str, cls: str, kwargs: dict[str, Any], node) -> Any:
        spec = operators.lookup(qname)
        task_id = kwargs.get("task_id")
        if spec is None and task_id is None:
            return Unknown(self.src(node))
        dag = self.current_dag(kwargs.get("dag"))
        if dag is None:
            self.problem("PGD315", f"{cls} {task_id!r} is not inside any DAG", node)
            return Unknown(self.src(node))
        if not isinstance(task_id, str):
            dag.problems.append(
                (
                    "PGD315",
                    f"{cls} has a task_id that cannot be known statically "
                    f"({self.src(node)[:60]}); not translated",
                    self.ref(node),
                )
            )
            return Unknown(self.src(node))
        if spec is None:
            kind, removed, replacement = "unsupported", None, None
        else:
            kind, removed, replacement = spec.kind, spec.removed_in, spec.replacement
        callable_ = kwargs.get("python_callable")
        if isinstance(callable_, Function):
            self.analyze(callable_)
        task = Task(
            task_id,
            cls,
            kind,
            kwargs,
            replace(self.ref(node), what=f"task {task_id}"),
            callable=callable_ if isinstance(callable_, Function) else None,
            removed_in=removed,
            replacement=replacement,
            qualified=qname,
        )
        task.reader = self  # type: ignore[attr-defined]  # an in-file operator class is extracted
        ref = self.add_task(task, dag, node)
        if spec is None:
            # an upstream's .output given to an operator of the file: Airflow makes that
            # task upstream (python_operators.py refuses it outside template_fields)
            for up in _task_refs(list(kwargs.values())):
                if up.dag is dag:
                    self.edge(dag, up.task_id, ref.task_id)
        return ref

    def taskflow_call(self, fn: Function, args: list[Any], kwargs: dict[str, Any], node) -> Any:
        dag = self.current_dag()
        if dag is None:
            self.problem("PGD315", f"@{fn.decorator} {fn.name} called outside any DAG", node)
            return Unknown(self.src(node))
        flavour = fn.decorator or "task"
        self.analyze(fn)
        kind = operators.DECORATORS.get(flavour, "unsupported")
        task_args = dict(fn.decorator_args)
        task_id = str(task_args.pop("task_id", fn.name))
        task = Task(
            task_id,
            f"@{flavour}",
            kind,
            task_args,
            replace(self.ref(node), what=f"task {task_id}"),
            callable=fn,
            call_args=list(args),
            call_kwargs=dict(kwargs),
        )
        ref = self.add_task(task, dag, node)
        # TaskFlow data edges: an XComArg passed in makes its task upstream.
        for value in [*args, *kwargs.values()]:
            for up in _task_refs(value):
                if up.dag is dag:
                    self.edge(dag, up.task_id, ref.task_id)
        flavour_role = getattr(fn, "setup_role", None)
        if flavour_role == "setup":
            setup_teardown.mark_setup(dag.tasks[ref.task_id])
        elif flavour_role == "teardown":
            fail = getattr(fn, "fail_dagrun", False)
            setup_teardown.mark_teardown(dag, dag.tasks[ref.task_id], [], fail, self.edge)
        return ref

    def map_task(
        self,
        ref: TaskRef,
        how: str,
        args: list[Any],
        kwargs: dict[str, Any],
        fixed: dict[str, Any],
        fn: Function | None,
    ) -> None:
        """Record a mapping on the task ``ref``: its instances when every mapped value
        is a literal, else what is not (an upstream's output, a Variable). A mapped
        XComArg makes its task upstream, as Airflow does."""
        task = ref.dag.tasks.get(ref.task_id)
        if task is None:
            return
        for up in _task_refs([args, kwargs]):
            if up.dag is ref.dag:
                self.edge(ref.dag, up.task_id, ref.task_id)
        instances: list[dict[str, Any]] | None = None
        unknown = ""
        if how == "expand":
            lists = list(kwargs.items())
            bad = [f"{k}={_describe(v)}" for k, v in lists if not _literal_list(v)]
            if args or not lists:
                unknown = "positional arguments"
            elif bad:
                unknown = ", ".join(bad)
            else:
                keys = [k for k, _ in lists]
                instances = [
                    dict(zip(keys, combo, strict=True))
                    for combo in itertools.product(*(list(v) for _, v in lists))
                ]
        else:
            value = args[0] if args else None
            if _literal_list(value) and all(
                isinstance(v, dict) and all(isinstance(k, str) for k in v) for v in value
            ):
                instances = [dict(v) for v in value]
            else:
                unknown = _describe(value)
        task.mapped = Mapped(how, instances, unknown[:120])
        task.mapped.values = dict(kwargs) if how == "expand" else (args[0] if args else None)
        if fn is not None and instances is not None:
            # a TaskFlow callable is analysed again per instance, with its mapped
            # arguments bound, so SQL built from them becomes literal SQL
            for instance in instances:
                clone = Function(fn.name, fn.node, fn.decorator, dict(fn.decorator_args), fn.ref)
                clone.closure = getattr(fn, "closure", {})  # type: ignore[attr-defined]
                clone.reader = getattr(fn, "reader", None)  # type: ignore[attr-defined]
                self.analyze(clone, {**fixed, **instance})
                task.mapped.callables.append(clone)

    def setup_teardown(self, ref: TaskRef, how: str, kwargs: dict[str, Any], node) -> Any:
        task = ref.dag.tasks.get(ref.task_id)
        if task is None:
            return ref
        if how == "as_setup":
            setup_teardown.mark_setup(task)
            return ref
        setups = kwargs.get("setups", [])
        ids = [t for d, t in self.endpoints(setups, downstream=False) if d is ref.dag]
        if _not_tasks(setups if isinstance(setups, list | tuple) else [setups]):
            self.problem(
                "PGD315",
                f"`{self.src(node)[:80]}`: setups= is not a task of the file; not translated",
                node,
            )
            return Unknown(self.src(node))
        fail = kwargs.get("on_failure_fail_dagrun", False)
        setup_teardown.mark_teardown(ref.dag, task, ids, fail, self.edge)
        return ref

    def edge(self, dag: Dag, up: str, down: str, label: str | None = None) -> None:
        if (up, down) not in dag.edges:
            dag.edges.append((up, down))
        if label:
            dag.labels[(up, down)] = label

    def endpoints(self, value: Any, downstream: bool) -> list[tuple[Dag, str]]:
        """Task ids a dependency operand stands for (a group: its roots when it is
        downstream, its leaves when it is upstream)."""
        found: list[tuple[Dag, str]] = []
        if isinstance(value, TaskRef):
            found.append((value.dag, value.task_id))
        elif isinstance(value, Group):
            ids = value.roots() if downstream else value.leaves()
            found.extend((value.dag, t) for t in ids)
        elif isinstance(value, list | tuple):
            for v in value:
                found.extend(self.endpoints(v, downstream))
        return found

    def depend(self, left: Any, right: Any, node, label: str | None = None) -> None:
        ups = self.endpoints(left, downstream=False)
        downs = self.endpoints(right, downstream=True)
        if (not ups and not isinstance(left, list | tuple)) or (
            not downs and not isinstance(right, list | tuple)
        ):
            operands = [
                *(_not_tasks(left) if not ups else []),
                *(_not_tasks(right) if not downs else []),
            ]
            named = " and ".join(f"`{o[:60]}`" for o in operands) or "a value"
            self.problem(
                "PGD315",
                f"dependency `{self.src(node)[:80]}`: {named} is not a task of the file "
                "(a value only known when the file runs); the dependency is not translated",
                node,
            )
            return
        for dag, up in ups:
            for dag2, down in downs:
                if dag is dag2:
                    self.edge(dag, up, down, label)

    # -- expressions ---------------------------------------------------------------

    def eval(self, node: cst.CSTNode, env: dict[str, Any]) -> Any:
        try:
            return self._eval(node, env)
        except _Return:
            raise
        except RecursionError:
            return Unknown(self.src(node))
        except Exception:  # a static-evaluation gap must never stop the file
            return Unknown(self.src(node))

    def _eval(self, node: cst.CSTNode, env: dict[str, Any]) -> Any:
        if isinstance(node, cst.SimpleString):
            return node.evaluated_value
        if isinstance(node, cst.ConcatenatedString):
            left, right = self.eval(node.left, env), self.eval(node.right, env)
            return _add(left, right, self.src(node))
        if isinstance(node, cst.FormattedString):
            return self.fstring(node, env)
        if isinstance(node, cst.Integer):
            return node.evaluated_value
        if isinstance(node, cst.Float):
            return node.evaluated_value
        if isinstance(node, cst.Name):
            if node.value in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[node.value]
            if node.value in env:
                return env[node.value]
            if self.qualified(node) in _TYPE_CHECKING:
                return False
            return Unknown(node.value)
        if isinstance(node, cst.List | cst.Tuple | cst.Set):
            out: list[Any] = []
            for element in node.elements:
                if isinstance(element, cst.StarredElement):
                    value = self.eval(element.value, env)
                    out.extend(value if isinstance(value, list | tuple) else [value])
                else:
                    out.append(self.eval(element.value, env))
            return out
        if isinstance(node, cst.Dict):
            result: dict[Any, Any] = {}
            for element in node.elements:
                if isinstance(element, cst.DictElement):
                    key = self.eval(element.key, env)
                    result[key if not isinstance(key, list) else str(key)] = self.eval(
                        element.value, env
                    )
                elif isinstance(element, cst.StarredDictElement):
                    value = self.eval(element.value, env)
                    if isinstance(value, dict):
                        result.update(value)
            return result
        if isinstance(node, cst.ListComp | cst.GeneratorExp | cst.SetComp):
            return self.comprehension(node, env, lambda e: self.eval(node.elt, e))
        if isinstance(node, cst.DictComp):
            pairs = self.comprehension(
                node, env, lambda e: (self.eval(node.key, e), self.eval(node.value, e))
            )
            return dict(pairs) if isinstance(pairs, list) else pairs
        if isinstance(node, cst.BinaryOperation):
            return self.binary(node, env)
        if isinstance(node, cst.UnaryOperation):
            value = self.eval(node.expression, env)
            if isinstance(value, Unknown):
                return value
            if isinstance(node.operator, cst.Minus):
                return -value
            if isinstance(node.operator, cst.Not):
                return not value
            return value
        if isinstance(node, cst.Comparison):
            return self.comparison(node, env)
        if isinstance(node, cst.BooleanOperation):
            left = self.eval(node.left, env)
            if isinstance(left, Unknown):
                return left
            if isinstance(node.operator, cst.And):
                return self.eval(node.right, env) if left else left
            return left if left else self.eval(node.right, env)
        if isinstance(node, cst.IfExp):
            test = self.eval(node.test, env)
            if isinstance(test, Unknown):
                return test
            return self.eval(node.body if test else node.orelse, env)
        if isinstance(node, cst.Attribute):
            return self.attribute(node, env)
        if isinstance(node, cst.Subscript):
            value = self.eval(node.value, env)
            if isinstance(value, TaskRef):
                return value  # XComArg["key"]: still that task's output
            if len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Index):
                key = self.eval(node.slice[0].slice.value, env)
                if isinstance(value, list | tuple | dict | str) and not isinstance(key, Unknown):
                    return value[key]
            return Unknown(self.src(node))
        if isinstance(node, cst.Call):
            return self.call(node, env)
        if isinstance(node, cst.Lambda):
            fn = Function("<lambda>", node, ref=self.ref(node))
            fn.closure = env  # type: ignore[attr-defined]
            fn.reader = self  # type: ignore[attr-defined]  # extracted as a named function
            return fn
        return Unknown(self.src(node))

    def fstring(self, node: cst.FormattedString, env: dict[str, Any]) -> Any:
        parts: list[str] = []
        for part in node.parts:
            if isinstance(part, cst.FormattedStringText):
                parts.append(part.value.replace("{{", "{").replace("}}", "}"))
            else:
                value = self.eval(part.expression, env)
                if isinstance(value, Unknown | TaskRef):
                    return Unknown(self.src(node))
                spec = ""
                if part.format_spec:
                    spec = "".join(
                        p.value for p in part.format_spec if isinstance(p, cst.FormattedStringText)
                    )
                parts.append(format(value, spec))
        return "".join(parts)

    def comprehension(self, node, env: dict[str, Any], element) -> Any:
        results: list[Any] = []

        def walk(clause: cst.CompFor | None, scope: dict[str, Any]) -> bool:
            if clause is None:
                results.append(element(scope))
                return len(results) < _MAX_UNROLL
            items = self.eval(clause.iter, scope)
            if not isinstance(items, list | tuple | dict | range | str):
                raise _Unknowable(self.src(clause.iter))
            for item in items:
                inner = dict(scope)
                self.bind(clause.target, item, inner)
                if all(self.eval(i.test, inner) for i in clause.ifs):
                    if not walk(clause.inner_for_in, inner):
                        return False
            return True

        try:
            walk(node.for_in, dict(env))
        except _Unknowable as exc:
            if not self._may_create_tasks(node, env):
                # a value only (emails, names): whoever uses it reports the Unknown
                return Unknown(self.src(node))
            self.problem(
                "PGD315",
                f"a comprehension over `{exc}` cannot be unrolled statically; "
                "its tasks are not translated",
                node,
            )
            return Unknown(self.src(node))
        return results

    def _may_create_tasks(self, node: cst.CSTNode, env: dict[str, Any]) -> bool:
        """Whether the comprehension calls something that can make a task: a def of the
        file, an Airflow name or a class (a method call such as ``x.strip()`` cannot)."""
        parts = [getattr(node, name, None) for name in ("elt", "key", "value")]
        for call in [c for part in parts if part is not None for c in _calls(part)]:
            func = call.func
            if isinstance(func, cst.Attribute) and not (self.qualified(func) or "").startswith(
                "airflow"
            ):
                if not func.attr.value[:1].isupper():
                    continue  # a method of a value
            if isinstance(func, cst.Name) and func.value in ("str", "int", "len", "range"):
                continue
            return True
        return False

    def binary(self, node: cst.BinaryOperation, env: dict[str, Any]) -> Any:
        left = self.eval(node.left, env)
        right = self.eval(node.right, env)
        op = node.operator
        if isinstance(op, cst.RightShift | cst.LeftShift):
            up, down = (left, right) if isinstance(op, cst.RightShift) else (right, left)
            if isinstance(down, LabelValue):
                dag = up.dag if isinstance(up, TaskRef) else None
                ups = [t for _, t in self.endpoints(up, downstream=False)]
                return LabelEdge(ups, dag, down.text)
            if isinstance(up, LabelEdge):
                for _, d in self.endpoints(down, downstream=True):
                    for u in up.upstream:
                        if up.dag is not None:
                            self.edge(up.dag, u, d, up.text)
                return right
            self.depend(up, down, node)
            return right
        if isinstance(op, cst.BitOr | cst.BitAnd) and (
            isinstance(left, Asset) or isinstance(right, Asset)
        ):
            if isinstance(left, Asset) and isinstance(right, Asset):  # names resolved
                sign = "|" if isinstance(op, cst.BitOr) else "&"
                return Asset(f"({left.text} {sign} {right.text})")
            return Asset(self.src(node))
        if isinstance(left, Unknown) or isinstance(right, Unknown):
            return Unknown(self.src(node))
        if isinstance(op, cst.Add):
            return _add(left, right, self.src(node))
        if isinstance(op, cst.Subtract):
            return left - right
        if isinstance(op, cst.Multiply):
            if isinstance(left, Duration) or isinstance(right, Duration):
                duration, factor = (left, right) if isinstance(left, Duration) else (right, left)
                try:
                    return Duration((timedelta(seconds=duration.seconds) * factor).total_seconds())
                except (TypeError, ValueError, OverflowError):
                    return Unknown(self.src(node))
            return left * right
        if isinstance(op, cst.Modulo):
            return left % right
        if isinstance(op, cst.FloorDivide):
            return left // right
        if isinstance(op, cst.Divide):
            return left / right
        if isinstance(op, cst.Power):
            return left**right
        return Unknown(self.src(node))

    def comparison(self, node: cst.Comparison, env: dict[str, Any]) -> Any:
        left = self.eval(node.left, env)
        for target in node.comparisons:
            right = self.eval(target.comparator, env)
            if isinstance(left, Unknown) or isinstance(right, Unknown):
                return Unknown(self.src(node))
            op = target.operator
            if isinstance(op, cst.Equal):
                ok = left == right
            elif isinstance(op, cst.NotEqual):
                ok = left != right
            elif isinstance(op, cst.LessThan):
                ok = left < right
            elif isinstance(op, cst.GreaterThan):
                ok = left > right
            elif isinstance(op, cst.LessThanEqual):
                ok = left <= right
            elif isinstance(op, cst.GreaterThanEqual):
                ok = left >= right
            elif isinstance(op, cst.In):
                ok = left in right
            elif isinstance(op, cst.NotIn):
                ok = left not in right
            elif isinstance(op, cst.Is):
                ok = left is right
            elif isinstance(op, cst.IsNot):
                ok = left is not right
            else:
                return Unknown(self.src(node))
            if not ok:
                return False
            left = right
        return True

    def attribute(self, node: cst.Attribute, env: dict[str, Any]) -> Any:
        base = self.eval(node.value, env)
        name = node.attr.value
        if isinstance(base, TaskRef) and name == "output":
            return base
        if isinstance(base, TaskRef) and name == "task_id":
            return base.task_id  # `external_task_id=parent_task.task_id`
        if isinstance(base, Dag) and name == "dag_id":
            return base.dag_id
        if isinstance(base, TaskRef | Group | Function | Dag | str | dict | list | Partial):
            return BoundMethod(base, name)
        qname = self.qualified(node) or ""
        if ".TriggerRule." in qname or self.src(node.value) == "TriggerRule":
            return name.lower()
        if name == "__name__":
            return Unknown("__name__")
        if qname in _TYPE_CHECKING:
            return False
        return Unknown(self.src(node))

    def call(self, node: cst.Call, env: dict[str, Any]) -> Any:
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for a in node.args:
            value = self.eval(a.value, env)
            if a.keyword is not None:
                kwargs[a.keyword.value] = value
            elif a.star == "*":
                args.extend(value if isinstance(value, list | tuple) else [value])
            elif a.star == "**":
                if not isinstance(value, dict):
                    # keywords we cannot see (trigger_rule, retries...) must not vanish
                    if self.dag_stack:
                        self.problem(
                            "PGD315",
                            f"`**{self.src(a.value)}` cannot be read without running the "
                            f"file, so `{self.src(node.func)}(...)` is not translated; write "
                            "its keywords out or bind them to a literal dict",
                            node,
                        )
                    return Unknown(self.src(node))
                kwargs.update(value)
            else:
                args.append(value)
        func = self.eval(node.func, env)
        if isinstance(func, Function):
            if func.name == "<lambda>":
                return Unknown(self.src(node))
            return self.call_function(func, args, kwargs, node)
        if isinstance(func, BoundMethod):
            return self.method(func, args, kwargs, node)
        qname = self.qualified(node.func) or ""
        short = qname.rsplit(".", 1)[-1] if qname else self.src(node.func)
        if qname.startswith("airflow"):
            return self.airflow_call(qname, short, args, kwargs, node)
        if "task_id" in kwargs and short[:1].isupper() and self.current_dag(kwargs.get("dag")):
            # A class of a plugin or company package given a task_id inside a DAG: a task
            # Airflow runs, whose code we cannot see. It becomes a manual item naming the
            # class, never silently dropped.
            return self.operator_call(qname or short, short, kwargs, node)
        return self.builtin(qname, short, args, kwargs, node)

    def airflow_call(self, qname: str, short: str, args, kwargs, node) -> Any:
        if short == "partial":
            cls = qname[: -len(".partial")]
            name = cls.rsplit(".", 1)[-1]
            return Partial(lambda kw: self.operator_call(cls, name, kw, node), kwargs)
        if short in _DAG_CLASSES:
            dag_id = kwargs.pop("dag_id", args[0] if args else None)
            if not isinstance(dag_id, str):
                self.problem("PGD315", "a DAG whose dag_id is not a literal is ignored", node)
                return Unknown(self.src(node))
            return self.new_dag(dag_id, kwargs, node)
        if short in _GROUP_CLASSES:
            group_id = kwargs.pop("group_id", args[0] if args else None)
            if not isinstance(group_id, str):
                return Unknown(self.src(node))
            return self.new_group(group_id, kwargs, node) or Unknown(self.src(node))
        if short == "chain":
            self.chain(args, node)
            return None
        if short == "cross_downstream" and len(args) == 2:
            self.depend(args[0], args[1], node)
            return None
        if short == "Label":
            return LabelValue(str(args[0]) if args else "")
        if short in ("DatasetOrTimeSchedule", "AssetOrTimeSchedule"):
            condition = kwargs.get("assets", kwargs.get("datasets"))
            return OrTime(self.src(node), kwargs.get("timetable"), condition)
        if short in (
            "Dataset",
            "Asset",
            "AssetAlias",
            "DatasetAlias",
            "AssetAll",
            "AssetAny",
            "DatasetAll",
            "DatasetAny",
        ):
            return Asset(self.src(node))
        if short == "is_venv_installed":
            from pgdurable.translators.airflow import python_isolated

            return python_isolated.venv_installed(self, node)
        if short in ("days_ago",):
            return Timestamp(f"days_ago({args[0] if args else ''})")
        if short == "get" and ".Variable" in qname:
            return Unknown(self.src(node))
        return self.operator_call(qname, short, kwargs, node)

    def chain(self, items: list[Any], node) -> None:
        for left, right in itertools.pairwise(items):
            if (
                isinstance(left, list | tuple)
                and isinstance(right, list | tuple)
                and len(left) == len(right)
            ):
                for a, b in zip(left, right, strict=True):
                    self.depend(a, b, node)
            else:
                self.depend(left, right, node)

    def method(self, bound: BoundMethod, args, kwargs, node) -> Any:
        target, name = bound.target, bound.name
        if isinstance(target, TaskRef | Group):
            if name in ("set_downstream", "set_upstream"):
                other = args[0] if args else None
                if name == "set_downstream":
                    self.depend(target, other, node)
                else:
                    self.depend(other, target, node)
                return None
            if name in ("expand", "expand_kwargs") and isinstance(target, TaskRef):
                self.map_task(target, name, args, kwargs, {}, None)
                return target
            if name in ("as_setup", "as_teardown") and isinstance(target, TaskRef):
                return self.setup_teardown(target, name, kwargs, node)
            return Unknown(self.src(node))
        if isinstance(target, Function):
            if name == "override":
                clone = Function(
                    target.name,
                    target.node,
                    target.decorator,
                    dict(target.decorator_args),
                    target.ref,
                )
                clone.closure = getattr(target, "closure", {})  # type: ignore[attr-defined]
                clone.reader = getattr(target, "reader", None)  # type: ignore[attr-defined]
                for kept in ("setup_role", "fail_dagrun"):  # @setup/@teardown survive .override
                    if hasattr(target, kept):
                        setattr(clone, kept, getattr(target, kept))
                clone.decorator_args.update(kwargs)
                return clone
            if name == "partial":
                return Partial(target, kwargs)
            if name in ("expand", "expand_kwargs") and target.decorator is not None:
                ref = self.taskflow_call(target, [], {}, node)
                if isinstance(ref, TaskRef):
                    self.map_task(ref, name, args, kwargs, {}, target)
                return ref
            return Unknown(self.src(node))
        if isinstance(target, Partial):
            if name in ("expand", "expand_kwargs"):
                if isinstance(target.call, Function):
                    ref = self.taskflow_call(target.call, [], dict(target.kwargs), node)
                    fn = target.call
                else:
                    ref = target.call(target.kwargs)
                    fn = None
                if isinstance(ref, TaskRef):
                    self.map_task(ref, name, args, kwargs, dict(target.kwargs), fn)
                return ref
            return Unknown(self.src(node))
        if isinstance(target, Dag):
            return None  # dag.test(), dag.cli() ...
        if isinstance(target, dict):
            if name == "items":
                return [list(p) for p in target.items()]
            if name == "keys":
                return list(target)
            if name == "values":
                return list(target.values())
            if name == "get":
                return target.get(args[0], args[1] if len(args) > 1 else None)
            if name == "copy":
                return dict(target)
            if name == "update" and args and isinstance(args[0], dict):
                target.update(args[0])
                return None
        if isinstance(target, list):
            if name == "append" and args:
                target.append(args[0])
                return None
            if name == "extend" and args and isinstance(args[0], list | tuple):
                target.extend(args[0])
                return None
        if isinstance(target, str):
            if any(isinstance(a, Unknown) for a in [*args, *kwargs.values()]):
                return Unknown(self.src(node))
            return getattr(target, name)(*args, **kwargs)
        return Unknown(self.src(node))

    def builtin(self, qname: str, short: str, args, kwargs, node) -> Any:
        if any(isinstance(a, Unknown) for a in args):
            return Unknown(self.src(node))
        value = static_calls.evaluate(qname, args, kwargs)  # textwrap.dedent(...) ...
        if value is not static_calls.NOT_HANDLED:
            return value
        if qname in ("builtins.range", "range") or short == "range":
            return list(range(*args))
        if short == "enumerate":
            return [[i, v] for i, v in enumerate(args[0], *(args[1:]))]
        if short == "zip":
            return [list(t) for t in zip(*args, strict=False)]
        if short in ("list", "tuple", "sorted"):
            items = list(args[0]) if args else []
            return sorted(items) if short == "sorted" else items
        if short in ("str", "int", "float", "len", "bool", "abs", "min", "max"):
            return {"str": str, "int": int, "float": float, "len": len, "bool": bool}.get(
                short, {"abs": abs, "min": min, "max": max}.get(short)
            )(*args)
        if short == "dict":
            return dict(*args, **kwargs)
        if short in ("timedelta", "duration") or qname.endswith((".timedelta", ".duration")):
            values = dict(
                zip(
                    [
                        "days",
                        "seconds",
                        "microseconds",
                        "milliseconds",
                        "minutes",
                        "hours",
                        "weeks",
                    ],
                    args,
                    strict=False,
                )
            )
            values.update(kwargs)
            if any(isinstance(v, Unknown) for v in values.values()):
                return Unknown(self.src(node))
            # Python's own timedelta: it refuses what Airflow's import would refuse
            # (a string, infinity, more than 999999999 days).
            try:
                return Duration(timedelta(**values).total_seconds())
            except (TypeError, ValueError, OverflowError):
                return Unknown(self.src(node))
        if short in _ZONE_CALLS and len(args) == 1 and isinstance(args[0], str):
            return args[0]  # pendulum.timezone("X"), ZoneInfo("X"): the zone's name
        if short == "datetime" or qname.endswith((".datetime", ".DateTime")):
            tz = kwargs.get("tz") or kwargs.get("tzinfo")
            if isinstance(tz, Unknown) and tz.text.rsplit(".", 1)[-1] in ("utc", "UTC"):
                tz = "UTC"  # datetime.timezone.utc, pendulum.UTC
            parts = {k: kwargs[k] for k in _DATETIME_FIELDS if k in kwargs}
            if any(not isinstance(v, int) for v in parts.values()):
                return Unknown(self.src(node))
            try:
                stamp = datetime(*[a for a in args if isinstance(a, int)], **parts)
            except (TypeError, ValueError):
                return Unknown(self.src(node))
            if tz is None and qname.startswith("pendulum."):
                tz = "UTC"  # pendulum.datetime's default zone
            # an aware date whose zone is not named: the DAG's time zone is not known
            return Timestamp(
                stamp.isoformat(),
                tz if isinstance(tz, str) else None,
                zone_unknown=tz is not None and not isinstance(tz, str),
            )
        if qname in ("datetime.time", "pendulum.time"):
            parts = {k: kwargs[k] for k in _DATETIME_FIELDS[3:] if k in kwargs}
            if any(not isinstance(v, int) for v in [*args, *parts.values()]):
                return Unknown(self.src(node))
            try:
                clock = time(*args, **parts)
            except (TypeError, ValueError):
                return Unknown(self.src(node))
            return ClockTime(clock.isoformat(), zone_unknown="tzinfo" in kwargs or "tz" in kwargs)
        return Unknown(self.src(node))


# calls that name a time zone (the DAG's zone comes from start_date's tzinfo)
_ZONE_CALLS = ("timezone", "Timezone", "ZoneInfo", "gettz")


def _calls(node: cst.CSTNode) -> list[cst.Call]:
    found: list[cst.Call] = []

    class _Visitor(cst.CSTVisitor):
        def visit_Call(self, call: cst.Call) -> None:
            found.append(call)

    node.visit(_Visitor())
    return found


class _Unknowable(Exception):
    pass


# datetime(...)/time(...) keyword fields, in positional order
_DATETIME_FIELDS = ("year", "month", "day", "hour", "minute", "second", "microsecond")


def _add(left: Any, right: Any, text: str) -> Any:
    if isinstance(left, Unknown) or isinstance(right, Unknown):
        return Unknown(text)
    if isinstance(left, Duration) and isinstance(right, Duration):
        try:
            return Duration(
                (timedelta(seconds=left.seconds) + timedelta(seconds=right.seconds)).total_seconds()
            )
        except OverflowError:
            return Unknown(text)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return [*left, *right]
    try:
        return left + right
    except TypeError:
        return Unknown(text)


def _task_refs(value: Any) -> list[TaskRef]:
    if isinstance(value, TaskRef):
        return [value]
    if isinstance(value, list | tuple):
        return [r for v in value for r in _task_refs(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _task_refs(v)]
    return []


def _describe(value: Any) -> str:
    """A mapped value as the source shows it (an upstream's output, an expression)."""
    if isinstance(value, TaskRef):
        return f"the output of task {value.task_id!r}"
    if isinstance(value, Unknown):
        return value.text
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_describe(v) for v in value) + "]"
    return repr(value)


def _literal_list(value: Any) -> bool:
    """A list/tuple with no value that is only known at run time inside it."""
    return isinstance(value, list | tuple) and not _unknowns(value)


def _unknowns(value: Any) -> bool:
    if isinstance(value, Unknown | TaskRef | Function):
        return True
    if isinstance(value, list | tuple):
        return any(_unknowns(v) for v in value)
    if isinstance(value, dict):
        return any(_unknowns(v) for v in value.values())
    return False


def _not_tasks(value: Any) -> list[str]:
    """How an operand that is not a task reads in the source (its ``Unknown`` text),
    for a message that names what the reader could not resolve."""
    if isinstance(value, Unknown):
        return [value.text]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _not_tasks(v)]
    if isinstance(value, TaskRef | Group):
        return []
    return [repr(value)]


def _walk(node: cst.CSTNode):
    yield node
    for child in node.children:
        yield from _walk(child)


def read(path: str, code: str) -> DagFile:
    """Every DAG in ``code``; raises ReadError when the file does not parse."""
    return Reader(path, code).run()
