"""Celery apps configured from Django settings (audit F6): the zone comes from the
settings module among the inputs, or a note names the module to pass; an app's
own ``app.conf.beat_schedule`` replaces the settings' schedule, whose entries
are then registered but not started (PGD266)."""

from __future__ import annotations

from pathlib import Path

from pgdurable.translators import queue
from pgdurable.translators.base import TranslateContext
from pgdurable.translators.queue.jobs import QueueJob

APP = """import os
from celery import Celery
from celery.schedules import crontab
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_cfg.settings")
app = Celery("site_cfg")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.beat_schedule = {
    "close-day": {"task": "books.close_day", "schedule": crontab(hour=23, minute=55)},
}
"""
SETTINGS = """TIME_ZONE = "UTC"
CELERY_TIMEZONE = "America/Sao_Paulo"
CELERY_BEAT_SCHEDULE = {
    "old-close": {"task": "books.close_day_old", "schedule": 3600.0},
}
"""


def _jobs(paths: list[Path]) -> dict[str, QueueJob]:
    batch = queue.read_batch(paths)
    return {i.name: i for i in batch.items.get("celery", []) if isinstance(i, QueueJob)}


def _write(tmp_path: Path, settings: bool) -> Path:
    package = tmp_path / "site_cfg"
    package.mkdir()
    (package / "celery.py").write_text(APP)
    if settings:
        (package / "settings.py").write_text(SETTINGS)
    return package


def test_zone_from_the_settings_module_and_replaced_entries(tmp_path):
    jobs = _jobs([_write(tmp_path, settings=True)])
    assert jobs["close-day"].schedule.timezone == "America/Sao_Paulo"
    old = jobs["old-close"]
    assert not old.enabled and "PGD266" in {n.code for n in old.notes}
    results = {
        r.name: r
        for r in queue.translate(list(jobs.values()), TranslateContext(default_username="app"))
    }
    assert "PGD214" in {d.code for d in results["close-day"].diagnostics}


def test_settings_module_not_given_names_it(tmp_path):
    package = _write(tmp_path, settings=False)
    jobs = _jobs([package / "celery.py"])
    (note,) = [n for n in jobs["close-day"].notes if n.code == "PGD206"]
    assert "site_cfg.settings" in note.message and "pass that file" in note.message
    assert jobs["close-day"].schedule.timezone is None
