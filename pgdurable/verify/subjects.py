"""What one verification is about: the source item and its generated file.

``load(kind, spec, ...)`` reads the source with the same readers and
translators as ``pgdurable import-*`` and picks one item:

- ``--pgcron FILE[:JOB]``: a cron.job export or a script of cron.schedule
  calls; JOB is the job name, its jobid or the generated workflow name
  (optional when the file holds one job);
- ``--airflow DAG_FILE[:DAG_ID]`` (optional when the file holds one DAG);
- ``--queue FILE[:ENTRY]``: a Celery/Sidekiq/CronJob/crontab file.

The new side uses the file the translator generates now, or ``--workflow
FILE`` (a file generated earlier, perhaps edited) instead. ``from_generated``
goes the other way for ``--all``: a generated file's header names its source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgdurable import output
from pgdurable.errors import VerificationError
from pgdurable.translators.base import ItemResult, TranslateContext

KINDS = ("pgcron", "airflow", "queue")
QUEUE_SOURCES = ("celery", "sidekiq", "k8s", "crontab", "graphile")


@dataclass
class Subject:
    kind: str  # pgcron | airflow | queue
    label: str  # for reports: "airflow/e05_branch_sql (dags/e05.py:7:6)"
    source_file: Path
    item: Any  # CronJob | Dag | QueueJob
    generated_path: Path
    generated_text: str
    run_as: str | None  # the role the new workflow runs as (from the generated file)
    extra: dict[str, Any] = field(default_factory=dict)


def split_spec(spec: str) -> tuple[Path, str | None]:
    """``FILE[:SELECTOR]``; a path that exists as given wins over splitting."""
    if Path(spec).exists() or ":" not in spec:
        return Path(spec), None
    path, _, selector = spec.rpartition(":")
    return Path(path), selector or None


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise VerificationError(f"{what} {path} does not exist or is not a file")


def _pick(results: list[ItemResult], selector: str | None, what: str, path: Path, extra=None):
    names = [r.name for r in results]
    if selector is None:
        if len(results) != 1:
            raise VerificationError(
                f"{path} holds {len(results)} {what}s ({', '.join(names)}): name one as {path}:NAME"
            )
        return 0
    for i, r in enumerate(results):
        if selector in (r.name, *(extra(i) if extra else ())):
            return i
    raise VerificationError(
        f"{path} has no {what} {selector!r}; it has: {', '.join(names) or 'none'}"
    )


_RUN_AS = re.compile(r"^\s*run_as => (NULL|'((?:[^']|'')*)'),?\s*$", re.MULTILINE)


def run_as_of(text: str) -> str | None:
    found = _RUN_AS.search(text)
    if found is None or found.group(1) == "NULL":
        return None
    return found.group(2).replace("''", "'")


def _generated(result: ItemResult, workflow: Path | None) -> tuple[Path, str]:
    if workflow is not None:
        _require_file(workflow, "--workflow")
        return workflow, workflow.read_text(encoding="utf-8")
    if result.workflow is None:
        problems = "; ".join(f"{d.code} {d.message}" for d in result.diagnostics)
        raise VerificationError(
            f"{result.name} ({result.source_ref}) was not translated, so there is nothing to "
            f"verify: {problems}"
        )
    return Path(output.file_name(result.workflow.name)), output.workflow_file(result)


def load(
    kind: str,
    spec: str,
    *,
    workflow: Path | None = None,
    tasks_file: Path | None = None,
    run_as: str | None = None,
) -> Subject:
    path, selector = split_spec(spec)
    if kind == "pgcron":
        return _pgcron(path, selector, workflow, run_as)
    if kind == "airflow":
        return _airflow(path, selector, workflow, run_as)
    if kind == "queue":
        return _queue(path, selector, workflow, tasks_file, run_as)
    raise VerificationError(f"unknown source kind {kind!r}")


def _pgcron(path: Path, selector: str | None, workflow: Path | None, run_as: str | None):
    from pgdurable.translators import pg_cron

    _require_file(path, "pg_cron source")
    items = pg_cron.read_file(path)
    results = pg_cron.translate(items, TranslateContext(default_username=run_as))

    def ids(i: int) -> tuple[str, ...]:
        item = items[i]
        return tuple(str(v) for v in (getattr(item, "jobid", None), getattr(item, "jobname", None)))

    i = _pick(results, selector, "job", path, ids)
    job = items[i]
    if not isinstance(job, pg_cron.CronJob):
        raise VerificationError(f"{results[i].source_ref}: the job cannot be read: {job.message}")
    generated_path, text = _generated(results[i], workflow)
    return Subject(
        "pgcron",
        f"pg_cron/{results[i].name} ({results[i].source_ref})",
        path,
        job,
        generated_path,
        text,
        run_as_of(text),
    )


def _airflow(path: Path, selector: str | None, workflow: Path | None, run_as: str | None):
    from pgdurable.translators import airflow
    from pgdurable.translators.airflow.visitor import ReadError, read

    _require_file(path, "DAG file")
    batch = airflow.translate(airflow.read_paths([path]), TranslateContext(default_username=run_as))
    if not batch.results:
        raise VerificationError(f"{path} defines no DAG")
    i = _pick(batch.results, selector, "DAG", path)
    result = batch.results[i]
    try:
        dag_file = read(str(path), path.read_text(encoding="utf-8"))
    except ReadError as exc:
        raise VerificationError(f"{path}:{exc.line}: {exc}") from exc
    dag = next((d for d in dag_file.dags if result.name in (d.dag_id,)), None)
    if dag is None:  # a duplicated dag_id was renamed name__stem
        dag = next(d for d in dag_file.dags if result.name.startswith(d.dag_id + "__"))
    generated_path, text = _generated(result, workflow)
    return Subject(
        "airflow",
        f"airflow/{result.name} ({result.source_ref})",
        path,
        dag,
        generated_path,
        text,
        run_as_of(text),
        {"generation": dag_file.generation},
    )


def _queue(path, selector, workflow, tasks_file, run_as):
    from pgdurable.translators import queue
    from pgdurable.translators.queue import tasks as task_files
    from pgdurable.translators.queue.jobs import QueueJob

    mapping = task_files.load(tasks_file) if tasks_file else task_files.EMPTY
    by_format = queue.read([path])
    if not by_format:
        raise VerificationError(f"{path} holds no queue job")
    ctx = TranslateContext(default_username=run_as)
    items = [i for found in by_format.values() for i in found]
    results = [r for found in by_format.values() for r in queue.translate(found, ctx, mapping)]
    i = _pick(results, selector, "job", path)
    job = items[i]
    if not isinstance(job, QueueJob):
        raise VerificationError(f"{results[i].source_ref}: the entry cannot be read: {job.message}")
    generated_path, text = _generated(results[i], workflow)
    return Subject(
        "queue",
        f"{job.format}/{results[i].name} ({results[i].source_ref})",
        path,
        job,
        generated_path,
        text,
        run_as_of(text),
        {"tasks": mapping},
    )


_HEADER = re.compile(r"^-- pgdurable workflow (\S+?)/(\S+) ", re.MULTILINE)
_SOURCE = re.compile(r"^-- source:\s+(\S+)", re.MULTILINE)


def from_generated(path: Path) -> tuple[str, str]:
    """(kind, spec) of the source a generated file was made from, read from its header."""
    text = path.read_text(encoding="utf-8")
    header, source = _HEADER.search(text), _SOURCE.search(text)
    if header is None or source is None:
        raise VerificationError(f"{path} is not a file generated by pgdurable import-*")
    origin, name = header.group(1), header.group(2)
    ref = source.group(1)
    file = re.sub(r"(:\d+)+$", "", ref)
    kind = {"pg_cron": "pgcron", "airflow": "airflow"}.get(origin)
    if kind is None and origin in QUEUE_SOURCES:
        kind = "queue"
    if kind is None:
        raise VerificationError(f"{path}: unknown source {origin!r} in its header")
    return kind, f"{file}:{name}"
