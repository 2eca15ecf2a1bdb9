"""Queue tasks whose body is code, as code steps (SPEC A.4): Celery, Sidekiq, Kubernetes.

A Celery beat entry names a task; its code is a Python function the app's
workers import. The run calls that function on a pgdurable worker instead
(``pgdurable.python``), by import path: ``app.tasks.cleanup`` is
``app.tasks:cleanup``, unless a task module among the inputs (or under a
``--code-root``) registers the name with ``@app.task(name=...)`` /
``@shared_task(name=...)``, which says where the function really is. That is
approximate (PGD275): the broker, acknowledgements, the task decorator's
retries and time limits are Celery's, not the workflow's.

Ruby and container code cannot run in a Python worker, so a Sidekiq class
stays manual unless the user gives a ``--command-template`` (``bin/rails
runner "{class}.new.perform({args})"``), and a Kubernetes container unless
``--run-container-command`` says to run its command and arguments on the
worker host. Both are approximate (PGD276, PGD277). A template is split into
words first and the placeholders filled in per word, so no source text ever
reaches a shell.

The result is None when the task keeps the stub (no option given, nothing
to call, arguments that are not JSON).
"""

from __future__ import annotations

import json
import re
import shlex
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libcst as cst

from pgdurable import model as m
from pgdurable.diagnostics import Collector
from pgdurable.sqltext import literal
from pgdurable.translators import pyguard
from pgdurable.translators.queue.jobs import QueueJob, Task
from pgdurable.translators.shell import deployment

TASK_DECORATORS = {"task", "shared_task"}
RUBY_CONSTANT = re.compile(r"[A-Z]\w*(::[A-Z]\w*)*\Z")
PLACEHOLDERS = {"class", "args", "args_json"}


@dataclass(frozen=True)
class CeleryTask:
    """Where a registered Celery task's function lives."""

    callable: str  # module:function
    file: str
    line: int
    bind: bool = False  # bind=True: Celery passes the task as the first argument


@dataclass(frozen=True)
class CodeOptions:
    """What the user said about running queue code on the worker."""

    celery_tasks: dict[str, CeleryTask] = field(default_factory=dict)
    command_template: str | None = None
    run_container_command: bool = False


NONE = CodeOptions()


# -- Celery task modules -------------------------------------------------------


def _module_name(path: Path, roots: tuple[Path, ...]) -> str | None:
    """The import name of ``path``: relative to the code root holding it, else the
    packages (folders with ``__init__.py``) above it."""
    resolved = path.resolve()
    for root in roots:
        try:
            parts = resolved.relative_to(root.resolve()).with_suffix("").parts
        except ValueError:
            continue
        break
    else:
        parts = (resolved.stem,)
        folder = resolved.parent
        while (folder / "__init__.py").is_file() and folder != folder.parent:
            parts = (folder.name, *parts)
            folder = folder.parent
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts)


def _decorator(node: cst.Decorator) -> tuple[bool, dict[str, Any]] | None:
    """(is a Celery task decorator, its literal keyword arguments)."""
    expr = node.decorator
    call = expr if isinstance(expr, cst.Call) else None
    func = call.func if call else expr
    name = func.attr.value if isinstance(func, cst.Attribute) else getattr(func, "value", None)
    if name not in TASK_DECORATORS:
        return None
    keywords: dict[str, Any] = {}
    for arg in call.args if call else ():
        if arg.keyword is None:
            continue
        value = arg.value
        if isinstance(value, cst.SimpleString):
            keywords[arg.keyword.value] = value.evaluated_value
        elif isinstance(value, cst.Name) and value.value in ("True", "False"):
            keywords[arg.keyword.value] = value.value == "True"
    return True, keywords


def scan_tasks(files: Iterable[Path], roots: tuple[Path, ...] = ()) -> dict[str, CeleryTask]:
    """Task name -> function of every module-level ``@app.task``/``@shared_task`` in
    ``files``. Modules that do not parse are passed over (they are read, not imported)."""
    found: dict[str, CeleryTask] = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if "task" not in text or pyguard.refusal(text, str(path)) is not None:
            continue
        module_name = _module_name(path, roots)
        if module_name is None:
            continue
        try:
            wrapper = cst.MetadataWrapper(cst.parse_module(text))
        except cst.ParserSyntaxError:
            continue
        positions = wrapper.resolve(cst.metadata.PositionProvider)
        for statement in wrapper.module.body:
            if not isinstance(statement, cst.FunctionDef):
                continue
            for decorator in statement.decorators:
                seen = _decorator(decorator)
                if seen is None:
                    continue
                function = statement.name.value
                keywords = seen[1]
                name = keywords.get("name")
                task = CeleryTask(
                    f"{module_name}:{function}",
                    str(path),
                    positions[statement].start.line,
                    bind=keywords.get("bind") is True,
                )
                # Celery's default name is the module path and the function's name.
                found[name if isinstance(name, str) else f"{module_name}.{function}"] = task
    return found


def python_files(paths: Iterable[Path]) -> list[Path]:
    """Every ``.py`` file named or under the folders named (hidden folders left out)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += [
                p
                for p in sorted(path.rglob("*.py"))
                if not any(part.startswith(".") for part in p.relative_to(path).parts)
            ]
        elif path.suffix == ".py":
            out.append(path)
    return out


def _celery(
    job: QueueJob, task: Task, code: CodeOptions, role: str | None, diag: Collector
) -> m.Node | None:
    if not isinstance(job.args, dict):  # the reader reported arguments that are not JSON
        return None
    args = job.args
    positional, named = args.get("args") or (), args.get("kwargs") or {}
    if not isinstance(positional, list | tuple) or not isinstance(named, dict):
        # Celery passes them on as *args / **kwargs: anything else fails when the entry fires
        diag.add(
            "PGD332",
            f"the Celery entry's args ({positional!r}) must be a list or tuple and its kwargs "
            f"({named!r}) a dict; Celery's apply_async cannot pass anything else. Fix the "
            "entry and regenerate",
        )
        return None
    registered = code.celery_tasks.get(task.name)
    if registered is not None:
        target = registered.callable
        where = f"registered at {registered.file}:{registered.line}"
        if registered.bind:
            diag.add(
                "PGD332",
                f"the Celery task '{task.name}' ({target}, {where}) is bound (bind=True): its "
                "function takes the Celery task as its first argument, which a Python step "
                "cannot pass. Move its body into a function without self and regenerate",
            )
            return None
    else:
        module, _, function = task.name.rpartition(".")
        if not module or not all(p.isidentifier() for p in task.name.split(".")):
            diag.add(
                "PGD332",
                f"the Celery task name '{task.name}' is not an import path and no task "
                "module among the inputs or under --code-root registers it; pass the "
                "folder of the app's tasks with --code-root and regenerate",
            )
            return None
        target = f"{module}:{function}"
        where = "from its name: Celery names a task after its module and function"
    module = target.split(":")[0]
    diag.add(
        "PGD275",
        f"the Celery task runs as a Python step calling {target} ({where}) in a child "
        "process of a pgdurable worker, with the entry's args/kwargs as JSON. Not reproduced: "
        "Celery's broker and acknowledgement (a step is at-least-once, like acks_late), the "
        "task decorator's own retries, rate and time limits (soft_time_limit/time_limit), "
        "the task's self/request. Carried: the schedule, args/kwargs, task_annotations "
        "retries; options.queue/expires/priority are reported only. Deploy the app's code "
        f"(the package of {module}) under a --code-path root of the worker and grant: SELECT "
        f"pgdurable.grant_code({literal(role or 'ROLE')}, "
        f"{literal('python:' + target)})",
    )
    kwargs = tuple(sorted((str(k), v) for k, v in named.items()))
    return m.Python(target, tuple(positional), kwargs)


# -- Sidekiq classes through a command template ------------------------------------


def check_template(template: str) -> str:
    """The template, or ValueError saying what is wrong with it."""
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise ValueError(f"--command-template cannot be split into words: {exc}") from exc
    if not words:
        raise ValueError("--command-template is empty")
    for word in words:
        for _, name, _, _ in _format_fields(word):
            if name is not None and name not in PLACEHOLDERS:
                raise ValueError(
                    f"--command-template names {{{name}}}; known: "
                    + ", ".join(f"{{{p}}}" for p in sorted(PLACEHOLDERS))
                )
    if not any("{class}" in w for w in words):
        raise ValueError("--command-template must use {class} (the Sidekiq worker class)")
    return template


def _format_fields(word: str) -> list[tuple[str, str | None, str | None, str | None]]:
    try:
        return list(string.Formatter().parse(word))
    except ValueError as exc:
        raise ValueError(f"--command-template word {word!r}: {exc}") from exc


def _ruby_json(value: Any) -> str:
    """JSON a Ruby double-quoted literal reads as the same text: ``#`` escaped, so a
    string from the source can never start an interpolation ``#{...}``."""
    return json.dumps(value, ensure_ascii=True).replace("#", "\\u0023")


def _sidekiq(
    job: QueueJob, task: Task, code: CodeOptions, role: str | None, diag: Collector
) -> m.Node | None:
    template = code.command_template
    if template is None:
        return None
    if not RUBY_CONSTANT.match(task.name):
        diag.add(
            "PGD332",
            f"the Sidekiq class '{task.name}' is not a Ruby constant name, so it is not put "
            "into the command template; fix the entry and regenerate",
        )
        return None
    found = job.args.get("args") if isinstance(job.args, dict) else job.args
    args = found if isinstance(found, list) else [] if found is None else [found]
    values = {
        "class": task.name,
        "args": ", ".join(_ruby_json(a) for a in args),
        "args_json": _ruby_json(args),
    }
    argv = tuple(word.format(**values) for word in shlex.split(template))
    diag.add(
        "PGD276",
        f"the Sidekiq class {task.name} runs through --command-template as the command "
        f"{shlex.join(argv)} on a pgdurable worker's host, as the worker's OS user: one "
        "process per run (the app boots each time), no Redis, Sidekiq middleware or its "
        f"retry set. {deployment(argv[0]).capitalize()}, and grant: SELECT "
        f"pgdurable.grant_code({literal(role or 'ROLE')}, "
        f"{literal('command:' + argv[0])})",
    )
    return m.Command(argv)


# -- Kubernetes containers on the worker host ------------------------------------------


def _container(
    job: QueueJob, task: Task, code: CodeOptions, role: str | None, diag: Collector
) -> m.Node | None:
    if not code.run_container_command or not task.argv:
        return None
    # The reader's "not psql" note (PGD308) is answered by running the command itself.
    diag.items[:] = [d for d in diag.items if d.code != "PGD308"]
    diag.add(
        "PGD277",
        f"--run-container-command: the container's command and args ({shlex.join(task.argv)}) "
        f"run as a command step on a pgdurable worker's host, not in the image "
        f"{task.image or '(none named)'}: the image's files and programs, environment from "
        "secrets/config maps, volumes, resources and the pod's service account are not "
        f"reproduced (literal env values are). {deployment(task.argv[0]).capitalize()}, and "
        f"grant: SELECT pgdurable.grant_code({literal(role or 'ROLE')}, "
        f"{literal('command:' + task.argv[0])})",
    )
    env = tuple(sorted(task.env)) or None
    return m.Command(task.argv, env)


def unreadable_args(job: QueueJob, task: Task) -> bool:
    """A Celery entry whose arguments the reader could not read (reported with its line)."""
    return task.kind == "celery task" and not isinstance(job.args, dict)


def step(
    job: QueueJob, task: Task, code: CodeOptions, diag: Collector, role: str | None = None
) -> m.Node | None:
    """The code step running ``task`` as ``role`` (for the grant it names), with its
    note; None to keep the stub."""
    if task.kind == "celery task":
        return _celery(job, task, code, role, diag)
    if task.kind == "sidekiq class":
        return _sidekiq(job, task, code, role, diag)
    if task.kind == "command" and job.format == "k8s":
        return _container(job, task, code, role, diag)
    return None


def handled(job: QueueJob, code: CodeOptions) -> bool:
    """Whether ``job``'s task runs as a code step (so it needs no --tasks entry)."""
    task = job.action
    return isinstance(task, Task) and step(job, task, code, Collector()) is not None
