"""Celery apps configured from Django settings, across the files of one import.

``app.config_from_object("django.conf:settings", namespace="CELERY")`` makes
Celery read its configuration from the Django settings module at run time:
``CELERY_TIMEZONE`` (Celery falls back to ``CELERY_TIME_ZONE``; without a
namespace the keys are ``timezone`` / ``TIME_ZONE`` ...) decides the zone of
every ``crontab()`` entry of the app, including those the app module sets
itself with ``app.conf.beat_schedule = {...}``. That assignment also
replaces the settings' ``CELERY_BEAT_SCHEDULE`` when the app runs, so the
settings' own entries never run under Celery.

Each file is read on its own (``celery.read``); ``link`` runs once the whole
batch is read and fixes the app's entries up: the zone from the settings
module among the inputs (or a note naming the module to pass), and the
replaced entries registered but not started (PGD266).
"""

from __future__ import annotations

import ast
import re
from dataclasses import replace
from pathlib import Path

from pgdurable.diagnostics import Diagnostic
from pgdurable.translators.queue.jobs import Cron, Item, QueueJob

_LOAD = re.compile(
    r"config_from_object\(\s*['\"]django\.conf:settings['\"]"
    r"(?:\s*,\s*namespace\s*=\s*['\"](?P<ns>\w*)['\"])?\s*\)"
)
_MODULE = re.compile(r"DJANGO_SETTINGS_MODULE['\"]\s*,\s*['\"](?P<mod>[\w.]+)['\"]")
_OWN_SCHEDULE = re.compile(r"^\s*\w+\.conf\.beat_schedule\s*=", re.MULTILINE)


def _constants(text: str) -> dict[str, object]:
    """Top-level ``NAME = <str/bool literal>`` assignments of a settings module."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return {}
    found: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def _settings_file(module: str | None, texts: dict[Path, str], app: Path) -> Path | None:
    """The settings module among the inputs: by DJANGO_SETTINGS_MODULE, else the
    only ``settings.py`` next to or above the app module."""
    if module:
        tail = Path(*module.split("."))
        for path in texts:
            if path.with_suffix("").as_posix().endswith(tail.as_posix()) or (
                path.name == "__init__.py" and path.parent.as_posix().endswith(tail.as_posix())
            ):
                return path
        return None
    near = [p for p in texts if p.name == "settings.py" and app.parent in (p.parent, *p.parents)]
    near += [p for p in texts if p.name == "settings.py" and p.parent in app.parents]
    unique = list(dict.fromkeys(near))
    return unique[0] if len(unique) == 1 else None


def link(items: list[Item], texts: dict[Path, str]) -> list[Item]:
    """The Celery items with Django-settings configuration applied (see module doc)."""
    out = list(items)
    for app, text in texts.items():
        load = _LOAD.search(text)
        if load is None:
            continue
        prefix = f"{load.group('ns')}_" if load.group("ns") else ""
        module = _MODULE.search(text)
        settings_path = _settings_file(module.group("mod") if module else None, texts, app)
        shown = module.group("mod") if module else "the Django settings module"
        zone: str | None = None
        if settings_path is not None:
            values = _constants(texts[settings_path])
            names = [f"{prefix}TIMEZONE", f"{prefix}TIME_ZONE"]
            if not prefix:
                names = ["timezone", "TIMEZONE", "time_zone", "TIME_ZONE"]
            zone = next((v for n in names if isinstance(v := values.get(n), str)), None)
        replaced = settings_path is not None and _OWN_SCHEDULE.search(text) is not None
        for index, item in enumerate(out):
            if not isinstance(item, QueueJob):
                continue
            if item.ref.file == str(app) and isinstance(item.schedule, Cron):
                if item.schedule.timezone is not None:
                    continue
                if zone is not None:
                    out[index] = replace(
                        item,
                        schedule=replace(item.schedule, timezone=zone),
                        description=(*item.description, f"timezone: {zone} from {settings_path}"),
                    )
                else:
                    where = (
                        f"{settings_path}, which sets no {prefix}TIMEZONE (Celery's default is UTC)"
                        if settings_path is not None
                        else f"{shown}, which is not among the inputs: pass that file too"
                    )
                    note = Diagnostic(
                        "PGD206",
                        "the schedule is evaluated in UTC; the app reads its time zone from "
                        f"Django settings (config_from_object('django.conf:settings')): {where}",
                        item.ref,
                    )
                    out[index] = replace(item, notes=(*item.notes, note))
            elif replaced and item.ref.file == str(settings_path) and item.schedule is not None:
                note = Diagnostic(
                    "PGD266",
                    f"{app} assigns app.conf.beat_schedule, which replaces "
                    f"{prefix}BEAT_SCHEDULE of {settings_path} when the app runs: Celery never "
                    f"runs entry {item.name!r}; it is registered, not started",
                    item.ref,
                )
                out[index] = replace(
                    item,
                    enabled=False,
                    disabled_by=f"replaced by app.conf.beat_schedule in {app.name}",
                    notes=(*item.notes, note),
                )
    return out


def sources(paths: list[Path]) -> dict[Path, str]:
    """The Python files of the batch (for ``link``), unreadable ones left out."""
    texts: dict[Path, str] = {}
    for path in paths:
        if path.suffix == ".py":
            try:
                texts[path] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
    return texts
