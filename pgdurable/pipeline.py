"""The import pipeline every translator shares: read -> translate -> write
(or diff) -> report.

``run_import`` is the one library function behind ``pgdurable import-*``. It
never stops at a bad item: each ends exact / approximate / manual / failed
with diagnostics. ``dry_run`` writes nothing and returns the diff against
disk and, when given a registry connection, the new / changed / removed
workflows compared with ``pgdurable.workflows``.

The report JSON shape is stable and documented in MIGRATING.md::

    {"source", "items": [{"name", "source_ref", "fidelity", "profile", "output",
                          "diagnostics": [{"code", "severity", "message", "line"}]}],
     "summary": {"exact", "approximate", "manual", "failed"}}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgdurable import output
from pgdurable.diagnostics import Diagnostic, Fidelity, Severity, SourceRef
from pgdurable.sqltext import UnsafeText
from pgdurable.translators.base import ItemResult


@dataclass
class ImportReport:
    source: str
    results: list[ItemResult]
    plan: output.Plan
    written: list[Path] = field(default_factory=list)
    diff: str = ""
    registry_changes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # sources without an item (no DAG)
    # Every input file and what became of it (import-queue): {"file", "format",
    # "status": translated | failed | skipped, "reason", "line"}.
    files: list[dict[str, Any]] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, int]:
        counts = {str(f): 0 for f in Fidelity}
        for r in self.results:
            counts[str(r.fidelity)] += 1
        return counts

    @property
    def failed_files(self) -> bool:
        return any(f["status"] == "failed" for f in self.files)

    @property
    def has_difference(self) -> bool:
        return bool(self.diff or self.registry_changes)

    def as_dict(self) -> dict[str, Any]:
        items = []
        for r in self.results:
            out = self.plan.outputs.get(r.name)
            items.append(
                {
                    "name": r.name,
                    "source_ref": str(r.source_ref),
                    "fidelity": str(r.fidelity),
                    "profile": r.profile,
                    "output": str(out) if out else None,
                    "diagnostics": [d.as_dict() for d in r.diagnostics],
                }
            )
        data = {"source": self.source, "items": items, "summary": self.summary}
        if self.files:
            data["files"] = self.files
        return data

    def _files_text(self) -> list[str]:
        counts = {s: sum(f["status"] == s for f in self.files) for s in _FILE_STATES}
        lines = ["files: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
        for f in self.files:
            if f["status"] != "translated":
                where = SourceRef(f["file"], f["line"], f["col"])
                lines.append(f"  {f['status']:<8} {where}: {f['reason']}")
        return lines

    def text(self) -> str:
        """The human summary: counts per fidelity, then the items needing attention."""
        s = self.summary
        lines = [
            f"{self.source}: {len(self.results)} item(s): "
            + ", ".join(f"{n} {k}" for k, n in s.items())
            + (f"; {len(self.skipped)} file(s) without a DAG skipped" if self.skipped else "")
        ]
        if not self.results and self.files:
            lines = []
        attention = [
            r
            for r in self.results
            if r.fidelity != Fidelity.EXACT
            or any(d.severity >= Severity.WARNING for d in r.diagnostics)
        ]
        if attention:
            lines.append("needs attention:")
            for r in sorted(attention, key=lambda r: -r.fidelity):
                lines.append(f"  {r.name} [{r.fidelity}] {r.source_ref}")
                for d in r.diagnostics:
                    if d.severity >= Severity.WARNING:
                        lines.append(f"    {d.code} {d.severity}: {d.message}")
        if self.files:
            lines += self._files_text()
        return "\n".join(lines)


_FILE_STATES = ("translated", "failed", "skipped")


def registry_changes(source: str, p: output.Plan, results: list[ItemResult], conn) -> list[str]:
    """new / changed / removed workflows compared with pgdurable.workflows."""
    rows = conn.execute(
        "SELECT name, definition_hash, run_as, target_database, started"
        " FROM pgdurable.workflows WHERE source = %s",
        [source],
    ).fetchall()
    registered = {r[0]: r[1:] for r in rows}
    changes = []
    for r in results:
        w = r.workflow
        if w is None:
            continue
        wanted = (output.definition_hash(w), w.run_as, w.database, w.start)
        if w.name not in registered:
            changes.append(f"new      {source}/{w.name}")
        elif tuple(registered[w.name]) != wanted:
            changes.append(f"changed  {source}/{w.name}")
    names = {r.workflow.name for r in results if r.workflow}
    changes += [f"removed  {source}/{n}" for n in sorted(registered) if n not in names]
    return changes


def _writable(result: ItemResult) -> ItemResult:
    """``result``, or the failed item it becomes when its file cannot be written:
    a name or text PostgreSQL cannot hold (NUL, a lone surrogate) is PGD107."""
    if result.workflow is None:
        return result
    try:
        output.workflow_file(result)
    except UnsafeText as exc:
        problem = Diagnostic("PGD107", str(exc), result.source_ref)
        return ItemResult(result.name, result.source_ref, (*result.diagnostics, problem))
    return result


def run_import(
    source: str,
    results: list[ItemResult],
    out_dir: Path,
    *,
    dry_run: bool = False,
    registry_connection: Callable[[], Any] | None = None,
    extra_files: dict[str, str] | None = None,
) -> ImportReport:
    """Write (or, with ``dry_run``, diff) the files of translated ``results``;
    ``extra_files`` (name -> text) are written beside them (e.g. a tasks template)."""
    results = [_writable(r) for r in results]
    p = output.plan(source, results, out_dir, extra_files)
    report = ImportReport(source, results, p)
    if dry_run:
        report.diff = output.diff(p, out_dir)
        if registry_connection is not None:
            with registry_connection() as conn:
                report.registry_changes = registry_changes(source, p, results, conn)
    else:
        report.written = output.write(p)
    return report


def import_pgcron(
    *,
    from_db: str | None,
    from_file: Path | None,
    out_dir: Path,
    portable: bool = False,
    dry_run: bool = False,
    registry_connection: Callable[[], Any] | None = None,
    default_username: str | None = None,
    default_database: str | None = None,
    run_as: str | None = None,
    role_map: Sequence[tuple[str, str]] = (),
) -> ImportReport:
    """``pgdurable import-pgcron``: read cron.job (live or from a file), translate, write.
    ``run_as`` / ``role_map``: the roles superuser jobs / a role's jobs run as."""
    from dataclasses import replace

    from pgdurable.translators import pg_cron
    from pgdurable.translators.base import TranslateContext

    if from_db is not None:
        items, ctx = pg_cron.read_database(from_db)
    else:
        assert from_file is not None
        items, ctx = pg_cron.read_file(from_file), TranslateContext()
    ctx = replace(
        ctx,
        portable=portable,
        default_username=default_username,
        default_database=default_database,
    )
    results = pg_cron.translate(items, ctx, pg_cron.Roles(run_as, tuple(role_map)))
    return run_import(
        pg_cron.SOURCE, results, out_dir, dry_run=dry_run, registry_connection=registry_connection
    )


def import_queue(
    paths: list[Path],
    *,
    fmt: str = "auto",
    tasks_file: Path | None = None,
    out_dir: Path | None = None,
    portable: bool = False,
    dry_run: bool = False,
    default_username: str | None = None,
    default_database: str | None = None,
    crontab_kind: str = "auto",
    code_roots: Sequence[Path] = (),
    command_template: str | None = None,
    run_container_command: bool = False,
) -> list[ImportReport]:
    """``pgdurable import-queue``: one report per source format found.

    Celery tasks become Python steps (the task modules among ``paths`` and under
    ``code_roots`` say where a named task's function is); Sidekiq classes become
    commands with ``command_template``, Kubernetes containers with
    ``run_container_command`` (``translators.queue.codetasks``).

    Each file stands alone: one that cannot be read is a failed item (file,
    line, reason) and the others are written. The last report lists every
    input file as translated, failed or skipped (with the reason). A
    malformed --tasks file, which applies to every job, raises
    SourceParseError before anything is written. One format goes to
    ``out_dir`` (default ``migrations/pgdurable/<format>``); several go to
    ``out_dir/<format>`` each.
    """
    from pgdurable.translators import queue
    from pgdurable.translators.base import TranslateContext
    from pgdurable.translators.queue import codetasks
    from pgdurable.translators.queue import tasks as task_files

    roots = tuple(code_roots)
    code = codetasks.CodeOptions(
        celery_tasks=codetasks.scan_tasks(codetasks.python_files([*paths, *roots]), roots),
        command_template=command_template,
        run_container_command=run_container_command,
    )
    mapping = task_files.load(tasks_file) if tasks_file else task_files.EMPTY
    batch = queue.read_batch(
        paths,
        fmt,
        crontab_kind=crontab_kind,
        exclude=(tasks_file,) if tasks_file else (),
    )
    items = batch.items
    ctx = TranslateContext(
        portable=portable, default_username=default_username, default_database=default_database
    )
    reports = []
    for source, source_items in items.items():
        if out_dir is None:
            folder = Path("migrations/pgdurable") / source
        else:
            folder = out_dir if len(items) == 1 else out_dir / source
        results = queue.translate(source_items, ctx, mapping, code)
        jobs = [
            i
            for i in source_items
            if not isinstance(i, queue.jobs.Unreadable)
            and (portable or not codetasks.handled(i, code))
        ]
        template = task_files.template(jobs, mapping)
        extra = {task_files.TEMPLATE_NAME: template} if template else {}
        reports.append(run_import(source, results, folder, dry_run=dry_run, extra_files=extra))
    files = [
        {
            "file": str(f.path),
            "format": f.format,
            "status": "translated" if f.status == "read" else f.status,
            "reason": f.reason,
            "line": f.line,
            "col": f.col,
        }
        for f in batch.files
    ]
    if not reports:  # nothing to translate: the file list still says why
        reports.append(ImportReport("queue", [], output.Plan({}, {})))
    reports[-1].files = files
    return reports


def merged(reports: list[ImportReport]) -> dict[str, Any]:
    """Several reports as one report dict (same shape as a single one)."""
    if len(reports) == 1:
        return reports[0].as_dict()
    data = [r.as_dict() for r in reports]
    summary = {k: sum(d["summary"][k] for d in data) for k in data[0]["summary"]} if data else {}
    merged = {
        "source": "+".join(d["source"] for d in data),
        "items": [item for d in data for item in d["items"]],
        "summary": summary,
    }
    files = [f for d in data for f in d.get("files", [])]
    return {**merged, "files": files} if files else merged


def _code_files(results: list[ItemResult]) -> dict[str, str]:
    """The code files the workflows' code steps call (Airflow task modules), and
    the package's ``__init__.py`` when there are any."""
    files: dict[str, str] = {}
    for r in results:
        for path, text in r.workflow.code_files if r.workflow is not None else ():
            files[path] = text
    if files:
        from pgdurable.translators.airflow.python_tasks import PACKAGE, PACKAGE_INIT

        files[f"{PACKAGE}/__init__.py"] = PACKAGE_INIT
    return files


def import_airflow(
    *,
    paths: list[Path],
    out_dir: Path,
    connections_file: Path | None = None,
    portable: bool = False,
    dry_run: bool = False,
    registry_connection: Callable[[], Any] | None = None,
    default_username: str | None = None,
    search_path_map: Sequence[tuple[str, str]] = (),
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """``pgdurable import-airflow``: read DAG files statically, translate, write.
    ``search_path_map``: (old, new) folder prefixes for template_searchpath;
    ``progress(done, total)`` follows the files."""
    from pgdurable.translators import airflow
    from pgdurable.translators.airflow import connections
    from pgdurable.translators.base import TranslateContext

    try:
        conns = connections.load(connections_file)
    except connections.ConnectionsError as exc:
        from pgdurable.errors import TranslationError

        raise TranslationError(str(exc)) from exc
    ctx = TranslateContext(portable=portable, default_username=default_username)
    batch = airflow.translate(
        airflow.read_paths(paths), ctx, conns, search_path_map=search_path_map, progress=progress
    )
    report = run_import(
        airflow.SOURCE,
        batch.results,
        out_dir,
        dry_run=dry_run,
        registry_connection=registry_connection,
        extra_files=_code_files(batch.results),
    )
    report.skipped = batch.skipped
    return report
