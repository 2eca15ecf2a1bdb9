"""The ``--tasks`` file: what a task whose body is code does, as SQL, HTTP or manual.

A Celery task, a Sidekiq class, a Graphile task or a script path names code
the translator cannot read. A person maps each one in a YAML file::

    tasks:
      reports.tasks.nightly_summary:
        sql: SELECT reports.nightly_summary($args::jsonb)
      NotifyWorker:
        http: {url: "https://hooks.example.com/notify", method: POST, body: "$args"}
      /opt/app/bin/rotate.sh:
        manual: true

``$args`` is the job's arguments as jsonb (a named result the run computes
first, SPEC B §5). A bare string value is SQL; ``manual`` (or no entry)
gives a stub step that fails with a message, in a workflow registered
without starting. ``template`` writes the file a person fills in, listing
every task the run found that is not mapped yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgdurable.errors import SourceParseError
from pgdurable.sqltext import comment
from pgdurable.translators.queue import yamlsource
from pgdurable.translators.queue.jobs import QueueJob, Task

TEMPLATE_NAME = "tasks.template.yaml"


@dataclass(frozen=True)
class Mapping:
    kind: str  # sql | http | manual
    sql: str | None = None
    url: str | None = None
    method: str = "POST"
    body: str | None = None
    headers: tuple[tuple[str, str], ...] | None = None
    timeout_seconds: int = 30
    line: int | None = None


@dataclass(frozen=True)
class TaskMap:
    file: str | None
    entries: dict[str, Mapping]

    def lookup(self, task: Task) -> Mapping | None:
        """The mapping for a task; a command also matches by its program path."""
        if task.name in self.entries:
            return self.entries[task.name]
        if task.kind == "command":
            program = task.name.split()[0] if task.name.split() else ""
            return self.entries.get(program)
        return None


EMPTY = TaskMap(None, {})


def _entry(name: str, value: Any, file: str, line: int) -> Mapping:
    where = f"{file}:{line}"
    if isinstance(value, str):
        if value.strip().lower() == "manual":
            return Mapping("manual", line=line)
        return Mapping("sql", sql=value, line=line)
    if not isinstance(value, dict):
        raise SourceParseError(
            f"{where}: task '{name}' must map to SQL text or to sql:/http:/manual:; got {value!r}"
        )
    keys = set(value) - {"description", "comment"}
    if keys == {"sql"} and isinstance(value["sql"], str):
        return Mapping("sql", sql=value["sql"], line=line)
    if keys == {"manual"}:
        return Mapping("manual", line=line)
    if keys == {"http"} and isinstance(value["http"], dict) and "url" in value["http"]:
        h = value["http"]
        unknown = set(h) - {"url", "method", "body", "headers", "timeout_seconds"}
        if unknown:
            raise SourceParseError(
                f"{where}: http of task '{name}' has unknown keys {sorted(unknown)}"
            )
        headers = h.get("headers")
        return Mapping(
            "http",
            url=str(h["url"]),
            method=str(h.get("method", "POST")).upper(),
            body=None if h.get("body") is None else str(h["body"]),
            headers=None
            if headers is None
            else tuple((str(k), str(v)) for k, v in headers.items()),
            timeout_seconds=int(h.get("timeout_seconds", 30)),
            line=line,
        )
    raise SourceParseError(
        f"{where}: task '{name}' needs exactly one of sql: TEXT, http: {{url: ...}} or manual: true"
    )


def load(path: Path) -> TaskMap:
    """Read a --tasks file; raises SourceParseError (file and line) when it is malformed."""
    file = str(path)
    if not path.is_file():
        raise SourceParseError(f"{file}: the --tasks file does not exist")
    try:
        documents = yamlsource.load_all(path.read_text(encoding="utf-8"), file)
    except SourceParseError as exc:  # the mapping applies to every file: stop the run
        raise SourceParseError(f"{exc.message}. Nothing was written") from exc
    if not documents or documents[0][0] is None:
        return TaskMap(file, {})
    root, line = documents[0]
    if not isinstance(root, yamlsource.YMap) or not isinstance(root.get("tasks"), dict):
        raise SourceParseError(f"{file}:{line}: a --tasks file is a mapping with a 'tasks:' key")
    tasks = root["tasks"]
    entries = {
        str(name): _entry(str(name), value, file, tasks.line_of(name))
        for name, value in (tasks or {}).items()
    }
    return TaskMap(file, entries)


def _yaml_key(name: str) -> str:
    """A plain YAML key, or a double-quoted one (JSON's escapes are YAML's too)."""
    plain = name.replace(".", "").replace("_", "").replace(":", "")
    return name if plain.isascii() and plain.isalnum() else json.dumps(name)


def template(jobs: list[QueueJob], mapped: TaskMap) -> str | None:
    """The --tasks file listing every task not mapped yet, or None when all are."""
    pending: dict[str, tuple[Task, list[QueueJob]]] = {}
    for job in jobs:
        if isinstance(job.action, Task) and mapped.lookup(job.action) is None:
            pending.setdefault(job.action.name, (job.action, []))[1].append(job)
    if not pending:
        return None
    lines = [
        "# pgdurable --tasks file: say what each task's code does, then run the import",
        "# again with --tasks THIS_FILE. Per task, exactly one of:",
        "#   sql: SELECT app.do_it($args::jsonb)   ($args = the job's arguments as jsonb)",
        '#   http: {url: "https://...", method: POST, body: "$args"}',
        "#   manual: true                          (a person writes the workflow)",
        "tasks:",
    ]
    for name in sorted(pending):
        task, users = pending[name]
        # names are source text: as a comment they must not start a line of their own
        where = comment(", ".join(f"{j.name} ({j.ref})" for j in users))
        lines.append(f"  {_yaml_key(name)}:  # {task.kind}; used by {where}")
        lines.append("    manual: true")
    return "\n".join(lines) + "\n"
