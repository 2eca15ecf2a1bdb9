"""What the reader finds in a DAG file: DAGs, tasks and dependency edges, as
plain data. Built by ``visitor.py`` (which never runs the file) and read by
the compiler (``compile.py``); nothing here knows about libcst or the DSL.

Static values the reader could not know (a ``Variable.get``, a loop over a
function's result) are ``Unknown`` objects carrying the source text, so the
compiler can say exactly what a person must look at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pgdurable.diagnostics import SourceRef


@dataclass(frozen=True)
class Unknown:
    """A value that cannot be known without running the file."""

    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Duration:
    """A ``timedelta``/``duration`` in seconds."""

    seconds: float


@dataclass(frozen=True)
class Asset:
    """A Dataset/Asset (or an expression of them) used as a schedule."""

    text: str


@dataclass(frozen=True)
class OrTime:
    """``DatasetOrTimeSchedule``/``AssetOrTimeSchedule``: a timetable and an asset
    condition, each as the reader evaluated it (``or_time.py``)."""

    text: str
    timetable: Any
    assets: Any


@dataclass(frozen=True)
class Timestamp:
    """A literal date such as ``datetime(2024, 1, 1)``, as ISO text."""

    iso: str
    timezone: str | None = None
    # tz/tzinfo was given but is not a zone name (``timezone.utc``, a variable): the
    # instant cannot be placed without running the file
    zone_unknown: bool = False


@dataclass(frozen=True)
class ClockTime:
    """A literal ``datetime.time``/``pendulum.time`` (a time of day, no date), as ISO text."""

    iso: str
    zone_unknown: bool = False  # it carries a tzinfo the reader cannot name


@dataclass
class Function:
    """A ``def`` in the file: the libcst node and how it is decorated."""

    name: str
    node: Any  # libcst.FunctionDef
    decorator: str | None = None  # "dag", "task_group", "task", "task.branch", ...
    decorator_args: dict[str, Any] = field(default_factory=dict)
    ref: SourceRef | None = None


@dataclass
class Mapped:
    """``.expand(k=[...])`` / ``.expand_kwargs([{...}])``: one task instance per
    combination. ``instances`` holds each instance's keyword arguments when every
    mapped value is a literal (``expand`` takes the cross product, as Airflow does),
    else None and ``unknown`` names what is only known at run time."""

    how: str  # "expand" or "expand_kwargs"
    instances: list[dict[str, Any]] | None
    unknown: str = ""
    callables: list[Any] = field(default_factory=list)  # TaskFlow: the callable per instance
    values: Any = None  # the mapped arguments as read: expand's kwargs / expand_kwargs' value


@dataclass
class Task:
    task_id: str
    operator: str  # class name, or "@task.<flavour>"
    kind: str  # operators.KINDS key
    args: dict[str, Any]  # keyword arguments as static values
    ref: SourceRef
    callable: Function | None = None  # python_callable / the decorated function
    call_args: list[Any] = field(default_factory=list)  # TaskFlow call arguments
    call_kwargs: dict[str, Any] = field(default_factory=dict)
    removed_in: int | None = None
    replacement: str | None = None
    mapped: Mapped | None = None  # .expand(...) / .expand_kwargs(...)
    qualified: str | None = None  # the operator's qualified class name, when imported
    setup_role: str | None = None  # "setup" / "teardown" (setup_teardown.py)
    fail_dagrun: bool = False  # a teardown's on_failure_fail_dagrun


@dataclass
class Dag:
    dag_id: str
    ref: SourceRef
    args: dict[str, Any]
    tasks: dict[str, Task] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    labels: dict[tuple[str, str], str] = field(default_factory=dict)
    problems: list[tuple[str, str, SourceRef]] = field(default_factory=list)  # (code, msg, ref)

    def default(self, key: str, default: Any = None) -> Any:
        args = self.args.get("default_args")
        if isinstance(args, dict) and key in args:
            return args[key]
        return default

    def task_arg(self, task: Task, key: str, default: Any = None) -> Any:
        """A task argument as Airflow resolves it: the task's own keyword,
        then the DAG's ``default_args``."""
        if key in task.args:
            return task.args[key]
        return self.default(key, default)


@dataclass
class DagFile:
    path: str
    generation: int  # 1, 2 or 3 (Airflow major version the spelling belongs to)
    dags: list[Dag]
    generation_evidence: str = ""
