"""Queue-worker configurations to durable workflows (``pgdurable import-queue``).

Four source formats, each read by its own module into the shared ``QueueJob``
record (``jobs``), then translated the same way (``build``):

* ``celery``: beat schedules in Python config modules (libcst, never imported);
* ``sidekiq``: sidekiq-cron / sidekiq-scheduler YAML and ``sidekiq.yml``;
* ``k8s``: Kubernetes CronJob manifests (multi-document YAML);
* ``crontab``: crontab and ``/etc/cron.d`` files, and the Graphile Worker
  crontab (told apart by content, registered as source ``graphile``).

``detect`` picks the format of a file from its content (``--format``
overrides it). ``read_batch`` reads each file on its own, like a LibCST
codemod run: every input file ends ``read``, ``failed`` (it cannot be
parsed, or is a Helm template: an ``Unreadable`` item of its format with the
file, line and fix, when the format is known) or ``skipped`` (with the
reason), and one bad file never stops the others. ``read`` is the strict
form for one known source (``verify``): a file that fails raises
``SourceParseError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pgdurable.diagnostics import SourceRef
from pgdurable.errors import SourceParseError
from pgdurable.translators.base import crash
from pgdurable.translators.queue import celery, celery_django, crontab, helm, k8s, sidekiq
from pgdurable.translators.queue.build import translate
from pgdurable.translators.queue.jobs import Item, Unreadable

FORMATS = ("celery", "sidekiq", "k8s", "crontab")
_SUFFIXES = {".py", ".yml", ".yaml", ".cron", ".crontab", ""}

__all__ = ["FORMATS", "Batch", "SourceFile", "detect", "read", "read_batch", "translate"]


@dataclass(frozen=True)
class SourceFile:
    """What became of one input file: ``read``, ``failed`` or ``skipped``."""

    path: Path
    status: str
    format: str | None = None
    reason: str = ""
    line: int | None = None
    col: int | None = None


@dataclass
class Batch:
    """Items per source format (in file order) and the fate of every input file."""

    items: dict[str, list[Item]] = field(default_factory=dict)
    files: list[SourceFile] = field(default_factory=list)


def detect(path: Path, text: str) -> str | None:
    """The format of one file from its content, or None when it is none of them."""
    if path.suffix == ".py" or celery.looks_like(text):
        return "celery" if celery.looks_like(text) or path.suffix == ".py" else None
    if k8s.looks_like(text):
        return "k8s"
    if path.suffix in (".yml", ".yaml"):
        return "sidekiq" if sidekiq.looks_like(text) else None
    if crontab.looks_like(text):
        return "crontab"
    return None


def _looks_like_crontab(path: Path) -> bool:
    """A small text file whose content reads as a crontab (a skipped file's hint only)."""
    try:
        if path.stat().st_size > 1_000_000:
            return False
        return crontab.looks_like(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return False


def _expand(paths: list[Path], exclude: set[Path]) -> tuple[list[tuple[Path, bool]], list]:
    """(files to read with "named explicitly", files skipped by name). Folders are
    searched recursively; hidden files and folders (``.git``) are not inputs."""
    files: list[tuple[Path, bool]] = []
    skipped: list[SourceFile] = []
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in child.relative_to(path).parts)
                if not child.is_file() or hidden:
                    continue
                if child.resolve() in exclude:
                    skipped.append(SourceFile(child, "skipped", reason="the --tasks file"))
                elif child.suffix in _SUFFIXES or helm.chart_file(child):
                    files.append((child, False))
                elif _looks_like_crontab(child):
                    # A cron.d file has no telling suffix: say so, rather than a bare skip.
                    skipped.append(
                        SourceFile(
                            child,
                            "skipped",
                            reason="possible crontab (its lines look like cron entries), but "
                            f"files ending {child.suffix or '(no suffix)'} are not read in "
                            "folder mode: name the file itself to read it (add "
                            "--crontab system for a cron.d file)",
                        )
                    )
                else:
                    skipped.append(
                        SourceFile(
                            child,
                            "skipped",
                            reason=f"not a queue configuration (files ending {child.suffix} "
                            "are not read; name the file itself to read it)",
                        )
                    )
        elif path.is_file():
            files.append((path, True))
        else:
            raise SourceParseError(f"{path}: no such file or folder")
    return files, skipped


_WHERE = re.compile(r"^(?P<file>.*?):(?P<line>\d+)(?::(?P<col>\d+))?: (?P<rest>.*)$", re.DOTALL)


def _failure(file: str, exc: SourceParseError) -> tuple[str, int | None, int | None]:
    """(reason, line, column) of a reader's parse error, without the file it names."""
    message = exc.message
    found = _WHERE.match(message)
    if found and found.group("file") == file:
        col = found.group("col")
        return found.group("rest"), int(found.group("line")), int(col) if col else None
    return message.removeprefix(f"{file}: "), None, None


def _read_one(path: Path, text: str, found: str, crontab_kind: str, used: dict) -> list[Item]:
    """The entries of one celery, k8s or crontab file (Sidekiq files are read together)."""
    file = str(path)
    if found == "celery":
        return celery.read(path, text, file)
    if found == "k8s":
        return k8s.read(path, text, file)
    return crontab.read(path, text, file, used, kind=crontab_kind)


def read_batch(
    paths: list[Path],
    fmt: str = "auto",
    *,
    crontab_kind: str = "auto",
    exclude: tuple[Path, ...] = (),
) -> Batch:
    """Every file on its own; never raises for a bad file (only for a missing path).

    Sidekiq files are read together (``sidekiq.yml`` options such as
    ``:max_retries:`` apply to the schedules of the other files), each after
    it parsed on its own."""
    batch = Batch()
    files, batch.files = _expand(paths, {p.resolve() for p in exclude})
    sidekiq_sources: list[tuple[Path, str, str]] = []
    used: dict[str, int] = {}
    outcomes: dict[Path, SourceFile] = {}

    def failed(
        path: Path,
        found: str | None,
        reason: str,
        line: int | None,
        code: str,
        col: int | None = None,
    ) -> None:
        """The file failed; with a known format, also a failed item of that format."""
        outcomes[path] = SourceFile(path, "failed", found, reason, line, col)
        if found is not None:
            item = Unreadable(path.name, found, SourceRef(str(path), line, col), reason, code)
            batch.items.setdefault(found, []).append(item)

    for path, explicit in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            reason = "not a UTF-8 text file"
            if explicit:
                failed(path, None if fmt == "auto" else fmt, reason, None, "PGD107")
            else:
                outcomes[path] = SourceFile(path, "skipped", reason=reason)
            continue
        chart = helm.recognise(path, text)
        if chart is not None and fmt in ("auto", "k8s"):
            if chart.cronjob:
                failed(path, "k8s", chart.reason, chart.line, "PGD102")
            else:
                outcomes[path] = SourceFile(path, "skipped", reason=chart.reason)
            continue
        found = fmt if fmt != "auto" else detect(path, text)
        if found is None:
            reason = (
                "cannot tell which format this is (no beat_schedule, Sidekiq schedule, "
                "CronJob or crontab line found)"
            )
            if explicit:
                reason += "; pass --format celery|sidekiq|k8s|crontab"
                failed(path, None, reason, None, "PGD102")
            else:
                outcomes[path] = SourceFile(path, "skipped", reason=reason)
            continue
        try:
            if found == "sidekiq":
                sidekiq.check(text, str(path))  # parse alone first: a bad file stays alone
                sidekiq_sources.append((path, text, str(path)))
                outcomes[path] = SourceFile(path, "read", found)
                continue
            items = _read_one(path, text, found, crontab_kind, used)
        except SourceParseError as exc:
            reason, line, col = _failure(str(path), exc)
            failed(path, found, reason, line, "PGD102", col)
            continue
        except Exception as exc:  # a reader's bug must not lose the other files
            problem = crash("PGD102", exc)
            failed(path, found, problem.message, None, problem.code)
            continue
        outcomes[path] = SourceFile(path, "read", found)
        for item in items:
            batch.items.setdefault(item.format, []).append(item)
    if sidekiq_sources:
        try:
            found_items = sidekiq.read_all(sidekiq_sources)
        except Exception as exc:  # as above: report it on every Sidekiq file
            problem = crash("PGD102", exc)
            for path, _, _ in sidekiq_sources:
                failed(path, "sidekiq", problem.message, None, problem.code)
            found_items = []
        for item in found_items:
            batch.items.setdefault(item.format, []).append(item)
    if batch.items.get("celery"):  # apps configured from Django settings among the inputs
        texts = celery_django.sources([path for path, _ in files])
        batch.items["celery"] = celery_django.link(batch.items["celery"], texts)
    # A file read without a single entry (a .py module with no beat schedule) is skipped.
    found_in = {i.ref.file for items in batch.items.values() for i in items}
    for path, outcome in outcomes.items():
        if outcome.status == "read" and str(path) not in found_in:
            reason = f"read as {outcome.format}, but it holds no schedule or job entry"
            outcomes[path] = SourceFile(path, "skipped", outcome.format, reason)
    batch.files += [outcomes[path] for path, _ in files]
    batch.files.sort(key=lambda f: str(f.path))
    return batch


def read(paths: list[Path], fmt: str = "auto") -> dict[str, list[Item]]:
    """Items per source format of known sources; raises SourceParseError for a file
    that cannot be read (``verify`` replays one source it was pointed at)."""
    batch = read_batch(paths, fmt)
    for source in batch.files:
        if source.status == "failed":
            where = str(SourceRef(str(source.path), source.line, source.col))
            raise SourceParseError(f"{where}: {source.reason}")
    return batch.items
