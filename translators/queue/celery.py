"""Celery beat configuration modules, read with libcst and never imported.

Recognised assignments (module level, ``app.conf.<name> = ...``,
``app.conf.update(name=...)``, or the body of a config class loaded with
``app.config_from_object(Config)``, its bases in the module included; with no
such call the one class that defines a schedule, and PGD315 when several
do): ``beat_schedule`` / ``CELERYBEAT_SCHEDULE`` /
``CELERY_BEAT_SCHEDULE``, ``timezone`` / ``CELERY_TIMEZONE``, ``enable_utc``,
``task_routes`` / ``CELERY_ROUTES``, ``task_annotations`` /
``CELERY_ANNOTATIONS``. Values are evaluated statically: literals, names bound
earlier in the module, arithmetic on numbers, and the calls ``crontab(...)``,
``timedelta(...)``, ``schedule(...)`` and ``solar(...)``. Anything else (a
function call, an f-string) is reported, never executed.

Semantics carried over:

* ``crontab(minute, hour, day_of_week, day_of_month, month_of_year)``: Celery
  requires BOTH day fields to match (unlike Vixie), in the app's
  ``timezone`` (default UTC);
* a number or ``timedelta`` is a fixed interval; ``solar`` is manual;
* retries exist only when declared: ``task_annotations`` with
  ``autoretry_for`` (or ``max_retries`` for tasks that call ``self.retry``),
  ``max_retries`` (default 3), ``default_retry_delay`` (180 s),
  ``retry_backoff`` / ``retry_backoff_max`` (600 s);
* ``options.queue`` / ``task_routes`` name the queue (reported, no effect).
"""

from __future__ import annotations

import ast
import fnmatch
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from pgdurable.diagnostics import Diagnostic, SourceRef
from pgdurable.errors import SourceParseError
from pgdurable.translators import pyguard
from pgdurable.translators.base import BadValue, seconds, whole_number
from pgdurable.translators.queue.jobs import (
    Cron,
    Every,
    Item,
    QueueJob,
    RetryPolicy,
    Task,
    Unreadable,
    Unschedulable,
)

FORMAT = "celery"
SCHEDULE_NAMES = {"beat_schedule", "CELERYBEAT_SCHEDULE", "CELERY_BEAT_SCHEDULE"}
TIMEZONE_NAMES = {"timezone", "CELERY_TIMEZONE"}
ROUTES_NAMES = {"task_routes", "CELERY_ROUTES", "CELERY_TASK_ROUTES"}
ANNOTATION_NAMES = {"task_annotations", "CELERY_ANNOTATIONS", "CELERY_TASK_ANNOTATIONS"}
ENTRY_KEYS = {"task", "schedule", "args", "kwargs", "options", "relative", "name"}
OPTION_KEYS = {"queue", "expires", "priority", "routing_key", "exchange", "countdown"}
CRONTAB_ARGS = ["minute", "hour", "day_of_week", "day_of_month", "month_of_year"]


@dataclass(frozen=True)
class Unknown:
    """A value the reader cannot know without running the code."""

    code: str


@dataclass(frozen=True)
class CallValue:
    function: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    code: str


def looks_like(text: str) -> bool:
    return any(name in text for name in SCHEDULE_NAMES) and (
        "crontab(" in text or "timedelta(" in text or "'schedule'" in text or '"schedule"' in text
    )


class _Reader:
    def __init__(self, module: cst.Module, positions) -> None:
        self.module = module
        self.positions = positions
        self.names: dict[str, Any] = {}
        self.settings: dict[str, tuple[Any, cst.CSTNode]] = {}
        # Config classes: name -> (base names, settings, line); config_from_object args.
        self.classes: dict[str, tuple[list[str], dict, int]] = {}
        self.loaded: list[str] = []
        self.config_class: str | None = None
        self.ambiguous: str | None = None

    def line(self, node: cst.CSTNode) -> int:
        return self.positions[node].start.line

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node).strip()

    def value(self, node: cst.BaseExpression) -> Any:
        match node:
            case cst.SimpleString() | cst.ConcatenatedString():
                v = node.evaluated_value
                return v.decode() if isinstance(v, bytes) else v
            case cst.Integer() | cst.Float():
                return node.evaluated_value
            case cst.Name(value="True"):
                return True
            case cst.Name(value="False"):
                return False
            case cst.Name(value="None"):
                return None
            case cst.Name(value=name) if name in self.names:
                return self.names[name]
            case cst.UnaryOperation(operator=cst.Minus(), expression=e):
                v = self.value(e)
                return -v if isinstance(v, int | float) else Unknown(self.code(node))
            case cst.BinaryOperation(left=a, operator=op, right=b):
                x, y = self.value(a), self.value(b)
                if isinstance(x, int | float) and isinstance(y, int | float):
                    try:  # 10**400 / 3 overflows a float, as it would in beat
                        if isinstance(op, cst.Multiply):
                            return x * y
                        if isinstance(op, cst.Add):
                            return x + y
                        if isinstance(op, cst.Subtract):
                            return x - y
                        if isinstance(op, cst.Divide) and y:
                            return x / y
                    except OverflowError:
                        pass
                return Unknown(self.code(node))
            case cst.Dict(elements=elements):
                out: dict[Any, Any] = _LineDict()
                for el in elements:
                    if not isinstance(el, cst.DictElement):
                        return Unknown(self.code(node))
                    key = self.value(el.key)
                    try:
                        hash(key)  # a call or a list as a key: Python refuses it too
                    except TypeError:
                        return Unknown(self.code(node))
                    if isinstance(key, Unknown):
                        return Unknown(self.code(node))
                    out[key] = self.value(el.value)
                    out.lines[key] = self.line(el.key)
                return out
            case cst.List(elements=els) | cst.Tuple(elements=els) | cst.Set(elements=els):
                return [self.value(el.value) for el in els]
            case cst.Call(func=func, args=args):
                name = self.code(func).rsplit(".", 1)[-1]
                positional = tuple(self.value(a.value) for a in args if a.keyword is None)
                keywords = {
                    a.keyword.value: self.value(a.value) for a in args if a.keyword is not None
                }
                if name == "range" and all(isinstance(p, int) for p in positional):
                    return list(range(*positional))
                if name in ("dict",) and not positional:
                    return _LineDict(keywords)
                return CallValue(name, positional, keywords, self.code(node))
        return Unknown(self.code(node))

    def collect(self) -> None:
        for statement in self.module.body:
            if isinstance(statement, cst.ClassDef):
                self._config_class(statement)
                continue
            if not isinstance(statement, cst.SimpleStatementLine):
                continue
            for small in statement.body:
                if isinstance(small, cst.Assign) and len(small.targets) == 1:
                    self._assign(small.targets[0].target, small.value)
                elif isinstance(small, cst.AnnAssign) and small.value is not None:
                    self._assign(small.target, small.value)
                elif isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
                    call = small.value
                    func = self.code(call.func)
                    if func.endswith("conf.update"):
                        for arg in call.args:
                            if arg.keyword is not None:
                                self._setting(arg.keyword.value, arg.value)
                    elif func.endswith("config_from_object") and call.args:
                        self.loaded.append(self.code(call.args[0].value))
        self._apply_config_class()

    def _config_class(self, node: cst.ClassDef) -> None:
        """A config class body (``class Config: beat_schedule = {...}``): its settings,
        kept apart until ``config_from_object`` says which class the app loads."""
        outer, self.settings = self.settings, {}
        names = dict(self.names)
        body = node.body.body if isinstance(node.body, cst.IndentedBlock) else ()
        for statement in body:
            if isinstance(statement, cst.SimpleStatementLine):
                for small in statement.body:
                    if isinstance(small, cst.Assign) and len(small.targets) == 1:
                        target = small.targets[0].target
                        if isinstance(target, cst.Name):
                            self.names[target.value] = self.value(small.value)
                            self._setting(target.value, small.value)
                    elif (
                        isinstance(small, cst.AnnAssign)
                        and small.value is not None
                        and isinstance(small.target, cst.Name)
                    ):
                        self.names[small.target.value] = self.value(small.value)
                        self._setting(small.target.value, small.value)
        bases = [self.code(b.value) for b in node.bases]
        self.classes[node.name.value] = (bases, self.settings, self.line(node))
        self.settings, self.names = outer, names

    def _class_settings(self, name: str, seen: frozenset[str] = frozenset()) -> dict:
        """A class's settings over those of its bases defined in the module (MRO order)."""
        if name not in self.classes or name in seen:
            return {}
        bases, own, _ = self.classes[name]
        merged: dict = {}
        for base in reversed(bases):
            merged.update(self._class_settings(base, seen | {name}))
        return {**merged, **own}

    def _apply_config_class(self) -> None:
        named = [n for n in self.loaded if n in self.classes]
        defining = [n for n in self.classes if "CELERYBEAT_SCHEDULE" in self._class_settings(n)]
        if named:
            chosen = named[-1]  # the last config_from_object wins, as in Celery
        elif len(defining) == 1:
            chosen = defining[0]
        elif defining:
            chosen = defining[0]
            self.ambiguous = (
                f"the config classes {', '.join(defining)} each define beat_schedule and the "
                "module does not say which one the app loads (app.config_from_object(...)); "
                f"{chosen} was read: check it is the one your deployment uses"
            )
        else:
            return
        found = self._class_settings(chosen)
        self.config_class = chosen
        self.settings = {**found, **self.settings}  # app.conf assignments come later

    def _assign(self, target: cst.BaseExpression, value: cst.BaseExpression) -> None:
        if isinstance(target, cst.Name):
            self.names[target.value] = self.value(value)
            self._setting(target.value, value)
        elif isinstance(target, cst.Attribute) and self.code(target.value).endswith("conf"):
            self._setting(target.attr.value, value)

    def _setting(self, name: str, value: cst.BaseExpression) -> None:
        for group in (SCHEDULE_NAMES, TIMEZONE_NAMES, ROUTES_NAMES, ANNOTATION_NAMES):
            if name in group:
                self.settings[next(iter(sorted(group)))] = (self.value(value), value)
        if name == "enable_utc" or name == "CELERY_ENABLE_UTC":
            self.settings["enable_utc"] = (self.value(value), value)


class _LineDict(dict):
    """A dict from the source, with the line of each key."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.lines: dict[Any, int] = {}


_FULL_NAMES = re.compile(
    r"(sun|mon|tue|wed|thu|fri|sat)(?:day|sday|nesday|rsday|urday)"
    r"|(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*",
    re.IGNORECASE,
)


def _field_text(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        # Celery also accepts full day and month names ('sunday', 'january')
        return _FULL_NAMES.sub(lambda mo: mo.group(1) or mo.group(2), value.replace(" ", ""))
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return ",".join(str(v) for v in sorted(set(value)))
    return None


def _schedule(value: Any, tz: str | None) -> Cron | Every | Unschedulable | str:
    """The schedule, or a message saying why it cannot be read."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return Every(max(1, seconds(value, "the schedule")), f"{value} seconds")
        except BadValue as exc:
            return str(exc)
    if isinstance(value, CallValue):
        if value.function == "timedelta":
            try:
                delta = timedelta(*value.args, **value.kwargs)
                return Every(max(1, seconds(delta.total_seconds(), value.code)), value.code)
            except (TypeError, ValueError, OverflowError) as exc:  # BadValue too
                return f"cannot evaluate {value.code}: {exc}"
        if value.function == "schedule":
            inner = value.kwargs.get("run_every", value.args[0] if value.args else None)
            return _schedule(inner, tz)
        if value.function == "crontab":
            fields = dict(zip(CRONTAB_ARGS, value.args, strict=False))
            fields.update({k: v for k, v in value.kwargs.items() if k in CRONTAB_ARGS})
            texts = {k: _field_text(fields.get(k, "*")) for k in CRONTAB_ARGS}
            bad = [k for k, t in texts.items() if t is None]
            if bad:
                return f"cannot evaluate {bad[0]} in {value.code}"
            text = " ".join(
                texts[k] or "*"
                for k in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
            )
            return Cron(text, "celery", timezone=tz, original=value.code)
        if value.function == "solar":
            return Unschedulable(
                value.code,
                "solar schedules follow sunrise/sunset at a place; the DSL's cron cannot "
                "express them",
            )
        return f"{value.code} is not a schedule the translator can read"
    if isinstance(value, Unknown):
        return f"{value.code} cannot be evaluated without running the code"
    return f"{value!r} is not a schedule"


def _retry(task: str, annotations: Any) -> tuple[RetryPolicy | None, str | None]:
    """The task's declared retry policy (task_annotations), if any."""
    if not isinstance(annotations, dict):
        return None, None
    options: dict[str, Any] = {}
    for pattern in ("*", task):
        found = annotations.get(pattern)
        if isinstance(found, dict):
            options.update(found)
    if "autoretry_for" not in options and "max_retries" not in options:
        return None, None
    retries = options.get("max_retries", 3)
    if retries is None:
        return None, "max_retries=None retries forever; the workflow needs a bound"
    where = f"task_annotations[{task!r}]"
    retries = whole_number(retries, f"{where} max_retries")
    backoff = options.get("retry_backoff", False)
    if backoff:
        factor = 1 if backoff is True else seconds(backoff, f"{where} retry_backoff")
        policy = RetryPolicy(
            retries + 1,
            factor,
            2.0,
            seconds(options.get("retry_backoff_max", 600), f"{where} retry_backoff_max"),
            origin=f"task_annotations max_retries={retries}, retry_backoff={backoff}",
        )
    else:
        policy = RetryPolicy(
            retries + 1,
            seconds(options.get("default_retry_delay", 180), f"{where} default_retry_delay"),
            origin=f"task_annotations max_retries={retries}",
        )
    why = []
    if "autoretry_for" in options:
        why.append("Celery retries only the exceptions in autoretry_for, the workflow any failure")
    else:
        why.append(
            "max_retries applies only where the task code calls self.retry(); the workflow "
            "retries any failure"
        )
    if backoff and options.get("retry_jitter", True):
        why.append("Celery adds random jitter to the backoff (retry_jitter), the workflow none")
    return (
        RetryPolicy(**{**policy.__dict__, "approximate": "; ".join(why)}),
        None,
    )


def _queue(task: str, entry_options: Any, routes: Any) -> str | None:
    if isinstance(entry_options, dict) and isinstance(entry_options.get("queue"), str):
        return entry_options["queue"]
    if isinstance(routes, dict):
        for pattern, route in routes.items():
            if isinstance(pattern, str) and fnmatch.fnmatchcase(task, pattern):
                if isinstance(route, dict) and isinstance(route.get("queue"), str):
                    return route["queue"]
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Unknown | CallValue):
        raise ValueError(value.code)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def read(path: Path, text: str, file: str) -> list[Item]:
    refused = pyguard.refusal(text, file)  # before LibCST, which may crash on it
    if refused is not None:
        where = file if refused.line is None else f"{file}:{refused.line}:{refused.column or 1}"
        raise SourceParseError(
            f"{where}: invalid Python: {refused.message}; "
            "fix the syntax (the module is read, never imported)"
        )
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError as exc:
        line, col, message = exc.raw_line, exc.raw_column + 1, exc.message
        try:  # CPython's parser places tokenizer errors better; it only parses, too
            ast.parse(text, filename=file)
        except SyntaxError as located:
            line, col, message = located.lineno or line, located.offset or col, located.msg
        raise SourceParseError(
            f"{file}:{line}:{col}: invalid Python: {message}; "
            "fix the syntax (the module is read, never imported)"
        ) from exc
    wrapper = MetadataWrapper(module)
    reader = _Reader(wrapper.module, wrapper.resolve(PositionProvider))
    reader.collect()
    settings = reader.settings
    schedule_value, schedule_node = settings.get("CELERYBEAT_SCHEDULE", (None, None))
    tz_value = settings.get("CELERY_TIMEZONE", (None, None))[0]
    utc = settings.get("enable_utc", (True, None))[0]
    routes = settings.get("CELERY_ROUTES", (None, None))[0]
    annotations = settings.get("CELERY_ANNOTATIONS", (None, None))[0]
    file_notes: list[Diagnostic] = []
    # Every entry read from a guessed config class may not be the deployed one.
    entry_notes = [Diagnostic("PGD315", reader.ambiguous, SourceRef(file))] * bool(reader.ambiguous)
    tz = tz_value if isinstance(tz_value, str) else None
    if tz is None and utc is False:
        file_notes.append(
            Diagnostic(
                "PGD225",
                "enable_utc = False without a timezone: beat used the host's local time, "
                "which the file does not show; the workflow uses UTC",
                SourceRef(file),
            )
        )
    items: list[Item] = []
    if schedule_node is not None and not isinstance(schedule_value, dict):
        items.append(
            Unreadable(
                "beat_schedule",
                FORMAT,
                SourceRef(file, reader.line(schedule_node)),
                f"beat_schedule is {reader.code(schedule_node)[:60]!r}, which cannot be "
                "evaluated without running the code; write it as a dict literal",
            )
        )
        schedule_value = {}
    scheduled_tasks = set()
    for name, entry in (schedule_value or {}).items():
        ref = SourceRef(file, schedule_value.lines.get(name))
        name = str(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("task"), str):
            items.append(
                Unreadable(name, FORMAT, ref, "the entry needs a dict with a 'task' name string")
            )
            continue
        task = entry["task"]
        scheduled_tasks.add(task)
        if "schedule" not in entry:
            items.append(
                Unreadable(name, FORMAT, ref, f"beat entry '{name}' has no 'schedule' key")
            )
            continue
        schedule = _schedule(entry.get("schedule"), tz)
        if isinstance(schedule, str):
            items.append(Unreadable(name, FORMAT, ref, schedule, code="PGD104"))
            continue
        notes = [*file_notes, *entry_notes]
        file_notes = []
        for key in entry:
            if key not in ENTRY_KEYS:
                notes.append(
                    Diagnostic(
                        "PGD213",
                        f"unknown key '{key}' in beat entry '{name}' is ignored "
                        f"(known: {', '.join(sorted(ENTRY_KEYS))})",
                        SourceRef(file, entry.lines.get(key)),
                    )
                )
        options = entry.get("options") or {}
        if isinstance(options, dict):
            for key in options:
                if key == "expires":
                    notes.append(
                        Diagnostic(
                            "PGD225",
                            f"options.expires={options[key]}: a run the workflow starts is "
                            "never dropped for being late",
                            ref,
                        )
                    )
                elif key not in OPTION_KEYS:
                    notes.append(
                        Diagnostic("PGD213", f"unknown key 'options.{key}' is ignored", ref)
                    )
        if entry.get("relative"):
            notes.append(
                Diagnostic("PGD225", "relative=True (round to the period) has no effect here", ref)
            )
        args: dict[str, Any] | None
        try:
            args = {
                "args": _jsonable(entry.get("args") or []),
                "kwargs": _jsonable(entry.get("kwargs") or {}),
            }
        except ValueError as exc:
            # The task still exists; only its arguments are unknown: a person decides.
            key = "args" if "args" in entry else "kwargs"
            notes.append(
                Diagnostic(
                    "PGD332",
                    f"the entry's args/kwargs hold {exc}, which is not a JSON literal the "
                    "translator can read without running the code: write the value out "
                    "(or compute it inside the task) and regenerate",
                    SourceRef(file, entry.lines.get(key, ref.line)),
                )
            )
            args = None
        try:
            retry, problem = _retry(task, annotations)
        except BadValue as exc:
            items.append(Unreadable(name, FORMAT, ref, str(exc), code="PGD108"))
            continue
        if problem:
            notes.append(Diagnostic("PGD216", problem, ref))
        queue = _queue(task, options, routes)
        items.append(
            QueueJob(
                name=name,
                format=FORMAT,
                ref=ref,
                schedule=schedule,
                action=Task(task, "celery task"),
                args=args,
                queue=queue,
                retry=retry,
                notes=tuple(notes),
                description=(
                    *((f"config: class {reader.config_class}",) if reader.config_class else ()),
                    *((f"queue: {queue}",) if queue else ()),
                ),
            )
        )
    # Tasks only routed or annotated: enqueue-only jobs (producers call the function).
    declared = []
    for setting, node_name in ((routes, "task_routes"), (annotations, "task_annotations")):
        if isinstance(setting, dict):
            for task, _ in setting.items():
                if (
                    isinstance(task, str)
                    and not any(c in task for c in "*?[")
                    and task not in declared
                ):
                    declared.append((task, setting.lines.get(task), node_name))
    seen = set(scheduled_tasks)
    for task, line, origin in declared:
        if task in seen:
            continue
        seen.add(task)
        try:
            retry, _ = _retry(task, annotations)
        except BadValue as exc:
            ref = SourceRef(file, line)
            items.append(Unreadable(task, FORMAT, ref, str(exc), code="PGD108"))
            continue
        queue = _queue(task, {}, routes)
        items.append(
            QueueJob(
                name=task,
                format=FORMAT,
                ref=SourceRef(file, line),
                schedule=None,
                action=Task(task, "celery task"),
                args={"args": [], "kwargs": {}},
                queue=queue,
                retry=retry,
                description=(f"declared in: {origin} (no beat entry)",)
                + ((f"queue: {queue}",) if queue else ()),
            )
        )
    return items
