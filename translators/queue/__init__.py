"""Queue-worker configurations to durable workflows (``pgdurable import-queue``).

Four source formats, each read by its own module into the shared ``QueueJob``
record (``jobs``), then translated the same way (``build``):

* ``celery``: beat schedules in Python config modules (libcst, never imported);
* ``sidekiq``: sidekiq-cron / sidekiq-scheduler YAML and ``sidekiq.yml``;
* ``k8s``: Kubernetes CronJob manifests (multi-document YAML);
* ``crontab``: crontab and ``/etc/cron.d`` files, and the Graphile Worker
  crontab (told apart by content, registered as source ``graphile``).

``detect`` picks the format of a file from its content (``--format``
overrides it). ``read`` reads every file before anything is translated, so a
file that cannot be parsed stops the run with ``SourceParseError`` (file,
line, fix) and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

from pgdurable.errors import SourceParseError
from pgdurable.translators.queue import celery, crontab, k8s, sidekiq
from pgdurable.translators.queue.build import translate
from pgdurable.translators.queue.jobs import Item

FORMATS = ("celery", "sidekiq", "k8s", "crontab")
_SUFFIXES = {".py", ".yml", ".yaml", ".cron", ".crontab", ""}

__all__ = ["FORMATS", "detect", "expand", "read", "translate"]


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


def expand(paths: list[Path]) -> list[tuple[Path, bool]]:
    """Files to read: (path, named explicitly). Folders are searched recursively."""
    files: list[tuple[Path, bool]] = []
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in child.relative_to(path).parts)
                if child.is_file() and not hidden and child.suffix in _SUFFIXES:
                    files.append((child, False))
        elif path.is_file():
            files.append((path, True))
        else:
            raise SourceParseError(f"{path}: no such file or folder")
    return files


def read(paths: list[Path], fmt: str = "auto") -> dict[str, list[Item]]:
    """Items per source format, in file order; raises SourceParseError for a bad file."""
    by_format: dict[str, list[tuple[Path, str, str]]] = {}
    for path, explicit in expand(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            if explicit:
                raise SourceParseError(f"{path}: not a UTF-8 text file") from exc
            continue
        found = fmt if fmt != "auto" else detect(path, text)
        if found is None:
            if explicit:
                raise SourceParseError(
                    f"{path}: cannot tell which format this is (no beat_schedule, Sidekiq "
                    "schedule, CronJob or crontab line found); pass --format "
                    "celery|sidekiq|k8s|crontab"
                )
            continue
        by_format.setdefault(found, []).append((path, text, str(path)))
    items: dict[str, list[Item]] = {}
    for name, sources in by_format.items():
        if name == "celery":
            found_items = [i for p, t, f in sources for i in celery.read(p, t, f)]
        elif name == "sidekiq":
            found_items = sidekiq.read_all(sources)
        elif name == "k8s":
            found_items = [i for p, t, f in sources for i in k8s.read(p, t, f)]
        else:
            used: dict[str, int] = {}
            found_items = [i for p, t, f in sources for i in crontab.read(p, t, f, used)]
        for item in found_items:
            items.setdefault(item.format, []).append(item)
    return items
