"""Golden tests: fixtures/queue/<format>/<file> -> fixtures/expected/queue/<format>/<case>/.

Each case runs the whole ``import-queue`` pipeline (detection, reader,
translator, file generation) into a temporary folder and compares every
generated file (workflow files, cutover.sql, tasks.template.yaml) plus the
human summary with the expected folder. A source that cannot be parsed is a
failed item naming file and line (the summary lists it), and the other files
of the run are written; a run that stops (a malformed --tasks file) writes
nothing and its expected folder holds only ``error.txt``. ``pytest --update-goldens`` rewrites the expected folders;
review them with ``git diff`` before committing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pgdurable import pipeline
from pgdurable.errors import SourceParseError

ROLE = {"default_username": "app_owner"}
CASES: dict[str, tuple[str, dict]] = {
    # celery
    "celery/celeryconfig": ("celery/celeryconfig.py", ROLE),
    "celery/celeryconfig_tasks": (
        "celery/celeryconfig.py",
        {**ROLE, "tasks_file": "celery/tasks.yaml"},
    ),
    "celery/celeryconfig_tasks_portable": (
        "celery/celeryconfig.py",
        {**ROLE, "tasks_file": "celery/tasks.yaml", "portable": True},
    ),
    "celery/django_settings": ("celery/django_settings.py", ROLE),
    "celery/legacy_celerybeat": ("celery/legacy_celerybeat.py", {}),
    "celery/app_conf": ("celery/app_conf.py", ROLE),
    "celery/conf_update": ("celery/conf_update.py", ROLE),
    "celery/conf_update_portable": ("celery/conf_update.py", {**ROLE, "portable": True}),
    "celery/solar": ("celery/solar.py", ROLE),
    "celery/annotations": ("celery/annotations.py", ROLE),
    "celery/unknown_keys": ("celery/unknown_keys.py", ROLE),
    "celery/dynamic": ("celery/dynamic.py", ROLE),
    "celery/both_days": ("celery/both_days.py", ROLE),
    "celery/syntax_error": ("celery/syntax_error.py", ROLE),
    # sidekiq
    "sidekiq/schedule": ("sidekiq/schedule.yml", ROLE),
    "sidekiq/schedule_tasks": (
        "sidekiq/schedule.yml",
        {**ROLE, "tasks_file": "sidekiq/tasks.yaml"},
    ),
    "sidekiq/schedule_tz": ("sidekiq/schedule_tz.yml", ROLE),
    "sidekiq/six_field": ("sidekiq/six_field.yml", ROLE),
    "sidekiq/sidekiq": ("sidekiq/sidekiq.yml", ROLE),
    "sidekiq/legacy_scheduler": ("sidekiq/legacy_scheduler.yml", ROLE),
    "sidekiq/array_form": ("sidekiq/array_form.yml", ROLE),
    "sidekiq/env_grouped": ("sidekiq/env_grouped.yml", ROLE),
    "sidekiq/unknown_keys": ("sidekiq/unknown_keys.yml", ROLE),
    "sidekiq/unique_jobs": ("sidekiq/unique_jobs.yml", ROLE),
    "sidekiq/invalid": ("sidekiq/invalid.yml", ROLE),
    # kubernetes
    "k8s/vacuum-cronjob": ("k8s/vacuum-cronjob.yaml", {}),
    "k8s/multi-doc": ("k8s/multi-doc.yaml", {}),
    "k8s/multi-doc_portable": ("k8s/multi-doc.yaml", {"portable": True}),
    "k8s/psql-file": ("k8s/psql-file.yaml", {}),
    "k8s/sh-wrapper": ("k8s/sh-wrapper.yaml", {}),
    "k8s/suspended": ("k8s/suspended.yaml", {}),
    "k8s/timezone": ("k8s/timezone.yaml", {}),
    "k8s/every": ("k8s/every.yaml", {}),
    "k8s/not-psql": ("k8s/not-psql.yaml", {}),
    "k8s/unknown-keys": ("k8s/unknown-keys.yaml", {}),
    "k8s/list-kind": ("k8s/list-kind.yaml", {}),
    "k8s/secret-env": ("k8s/secret-env.yaml", {"default_database": "stats"}),
    "k8s/invalid": ("k8s/invalid.yaml", {}),
    # crontab and Graphile
    "crontab/app": ("crontab/app.crontab", {}),
    "crontab/cron.d": ("crontab/cron.d/pg-maintenance", {}),
    "crontab/cron.d_portable": ("crontab/cron.d/pg-maintenance", {"portable": True}),
    "crontab/etc_crontab": ("crontab/etc/crontab", {}),
    "crontab/percent": ("crontab/percent.crontab", {}),
    "crontab/macros": ("crontab/macros.crontab", {}),
    "crontab/on_error": ("crontab/on_error.crontab", {}),
    "crontab/on_error_portable": ("crontab/on_error.crontab", {"portable": True}),
    "crontab/scripts": (
        "crontab/scripts.crontab",
        {"tasks_file": "crontab/tasks.yaml", "default_username": "ops"},
    ),
    "crontab/bad_schedule": ("crontab/bad_schedule.crontab", {}),
    "crontab/missing_file": ("crontab/missing_file.crontab", {}),
    "crontab/graphile": ("crontab/graphile/crontab", {**ROLE, "tasks_file": "crontab/tasks.yaml"}),
    "crontab/graphile_fill": ("crontab/graphile_fill/crontab", ROLE),
    # issue 18: real-world-style files, one by one and as the folder of a repository
    "mixed/celery_config_class": ("mixed/app/celeryconfig.py", ROLE),
    "mixed/sidekiq_scheduler": ("mixed/config/sidekiq_scheduler.yml", ROLE),
    "mixed/system_crontab": ("mixed/deploy/cron/pg-maintenance", {}),
    "mixed/system_crontab_as_user": ("mixed/deploy/cron/pg-maintenance", {"crontab_kind": "user"}),
    "mixed/k8s_misplaced_zone": ("mixed/k8s/reports-cronjob.yaml", {}),
    "mixed/helm_template": ("mixed/charts/pg-maint/templates/vacuum-cronjob.yaml", {}),
    "mixed/repository": ("mixed", {**ROLE, "tasks_file": "mixed.tasks.yaml"}),
}
FIXTURES = Path("fixtures/queue")


def generate(fixture: str, options: dict, out: Path) -> dict[str, str]:
    options = dict(options)
    if "tasks_file" in options:
        options["tasks_file"] = FIXTURES / options["tasks_file"]
    try:
        reports = pipeline.import_queue([FIXTURES / fixture], out_dir=out, **options)
    except SourceParseError as exc:
        assert not out.exists(), "a run that stops must write nothing"
        return {"error.txt": exc.message + "\n"}
    # Several formats write one sub-folder each: flattened as "format~file".
    written = sorted(p for p in out.rglob("*") if p.is_file()) if out.exists() else []
    files = {"~".join(p.relative_to(out).parts): p.read_text() for p in written}
    files["summary.txt"] = "\n".join(r.text() for r in reports) + "\n"
    return files


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case, repo_root, tmp_path, monkeypatch, update_goldens):
    monkeypatch.chdir(repo_root)  # source references are relative to the repository
    fixture, options = CASES[case]
    got = generate(fixture, options, tmp_path / "out")
    expected_dir = repo_root / "fixtures" / "expected" / "queue" / case
    if update_goldens:
        shutil.rmtree(expected_dir, ignore_errors=True)
        expected_dir.mkdir(parents=True)
        for name, text in got.items():
            (expected_dir / name).write_text(text)
    expected = {p.name: p.read_text() for p in sorted(expected_dir.iterdir())}
    assert sorted(got) == sorted(expected), "generated file set differs"
    for name in expected:
        assert got[name] == expected[name], f"{case}/{name} differs (pytest --update-goldens)"


def test_every_format_has_ten_fixtures():
    for fmt in ("celery", "sidekiq", "k8s", "crontab"):
        sources = {CASES[c][0] for c in CASES if c.startswith(fmt + "/")}
        assert len(sources) >= 10, fmt
