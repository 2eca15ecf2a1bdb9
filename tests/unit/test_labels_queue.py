"""Queue labels that used to claim more (or less) than the translation does (issue 18).

vacuumdb / reindexdb command lines become the SQL they send, exact only when
every option maps; system crontabs are told by content too; sidekiq-scheduler
files that name no class and Celery config classes are read; implicit time
zones are reported (PGD206) and a misplaced Kubernetes ``timeZone`` warned
about. The whole-folder behaviour is in the goldens (fixtures/queue/mixed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pgdurable.diagnostics import Fidelity
from pgdurable.translators import queue
from pgdurable.translators.base import TranslateContext
from pgdurable.translators.queue import celery, crontab, maintenance, psql, sidekiq

CTX = TranslateContext(default_username="app_owner")


def _translate(tmp_path: Path, name: str, text: str, **options):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    batch = queue.read_batch([path], **options)
    return [r for items in batch.items.values() for r in queue.translate(items, CTX)], batch


def _run_sql(argv: str, env: dict[str, str] | None = None) -> tuple[list[str], psql.Psql]:
    (found, _), *_ = psql.parse_shell(argv, env or {}, Path("."))
    return [p.sql or "" for p in found.parts], found


@pytest.mark.parametrize(
    ("command", "statements", "database"),
    [
        ("vacuumdb -z -d shop", ["VACUUM (ANALYZE)"], "shop"),
        ("vacuumdb --analyze-only --dbname=shop", ["ANALYZE"], "shop"),
        (
            "vacuumdb -fz -d shop -t orders -t 'public.line_items(sku, qty)'",
            ["VACUUM (FULL, ANALYZE) orders", "VACUUM (FULL, ANALYZE) public.line_items(sku, qty)"],
            "shop",
        ),
        (
            "vacuumdb --freeze --verbose --skip-locked shop",
            ["VACUUM (FREEZE, VERBOSE, SKIP_LOCKED)"],
            "shop",
        ),
        ("vacuumdb -U maint -q", ["VACUUM"], "maint"),  # libpq: the database is the user's name
        ("reindexdb shop", ['REINDEX DATABASE "shop"'], "shop"),
        (
            "reindexdb --concurrently -d shop -t orders -i orders_pkey",
            [
                "REINDEX INDEX CONCURRENTLY orders_pkey",
                "REINDEX TABLE CONCURRENTLY orders",
            ],
            "shop",
        ),
        ("reindexdb -v -S audit -d shop", ["REINDEX (VERBOSE) SCHEMA audit"], "shop"),
        ("reindexdb --system postgresql://ops@db1/shop", ['REINDEX SYSTEM "shop"'], "shop"),
    ],
)
def test_maintenance_programs_send_their_sql(command, statements, database):
    sql, found = _run_sql(command)
    assert sql == statements
    assert found.database == database and found.on_error_stop
    assert found.caveats == ()


def test_environment_and_connection_options_are_libpq_s():
    _, found = _run_sql("vacuumdb -h db1 -p 5433 -U ops -z", {"PGDATABASE": "shop"})
    assert (found.database, found.user, found.host) == ("shop", "ops", "db1")


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ("vacuumdb --all -z", maintenance.ALL_DATABASES),
        ("reindexdb -a -U postgres", maintenance.ALL_DATABASES),
        ("vacuumdb -j 4 -z -d shop", maintenance.APPROXIMATE),
        ("vacuumdb --analyze-in-stages -d shop", maintenance.APPROXIMATE),
    ],
)
def test_options_that_change_what_runs_are_labelled(command, code):
    _, found = _run_sql(command)
    assert [c for c, _ in found.caveats] == [code]


@pytest.mark.parametrize(
    "command",
    [
        "vacuumdb --min-xid-age=1000 -d shop",  # an option it does not map: not guessed
        "vacuumdb -d shop -t 'orders; DROP TABLE x'",  # not a table name
        "reindexdb",  # REINDEX DATABASE needs the name
        "vacuumdb -Z -f -d shop",  # vacuumdb refuses it too
    ],
)
def test_options_it_cannot_map_leave_a_task(command):
    with pytest.raises(psql.NotPsql):
        psql.parse_shell(command, {}, Path("."))


def test_a_maintenance_line_is_exact_only_when_its_flags_map(tmp_path):
    results, _ = _translate(
        tmp_path,
        "cron.d/maintenance",
        "0 1 * * * postgres vacuumdb -z -d shop -t orders\n"
        "0 2 * * * postgres vacuumdb -a -z\n"
        "0 3 * * * postgres vacuumdb -j 2 -z -d shop\n"
        "0 4 * * * postgres vacuumdb --min-xid-age=1000 -d shop\n",
    )
    assert [r.fidelity for r in results] == [
        Fidelity.EXACT,
        Fidelity.MANUAL,
        Fidelity.APPROXIMATE,
        Fidelity.APPROXIMATE,
    ]
    assert results[0].workflow.run_as == "postgres"
    assert not results[1].workflow.start  # manual: registered, not started
    # An option with no SQL equivalent: the line itself runs as a command step
    # on a worker host, which is approximate and says so.
    assert any(d.code == "PGD270" for d in results[3].diagnostics)


@pytest.mark.parametrize(
    ("name", "text", "user"),
    [
        ("deploy/crontab", "0 1 * * * root /usr/local/bin/rotate\n", "root"),
        ("ops/pg.cron", "MAILTO=x\n15 2 * * * postgres psql -c 'SELECT 1'\n", "postgres"),
        ("etc/cron.d/app", "0 1 * * * app_owner psql -c 'SELECT 1'\n", "app_owner"),
        ("plain.crontab", "0 1 * * * psql -d app -c 'SELECT 1'\n", None),
        ("plain2.crontab", "0 1 * * * date >> /tmp/log\n", None),
    ],
)
def test_system_crontabs_are_told_by_path_or_content(tmp_path, name, text, user):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    (job,) = crontab.read(path, text, str(path), {})
    assert job.run_as == user
    if user is not None:
        assert f"cron user: {user}" in job.description
        assert any(d.code == "PGD242" and f"'{user}'" in d.message for d in job.notes)


def test_crontab_without_cron_tz_reports_the_host_zone(tmp_path):
    results, _ = _translate(
        tmp_path,
        "jobs.crontab",
        "0 1 * * * psql -c 'SELECT 1'\nCRON_TZ=Europe/Berlin\n0 2 * * * psql -c 'SELECT 2'\n",
    )
    assert ["PGD206" in [d.code for d in r.diagnostics] for r in results] == [True, False]


def test_sidekiq_scheduler_file_without_class_keys(tmp_path):
    text = (
        "ExpireTrialsJob:\n  every: ['30m', first_in: '3m']\n"
        "HourlyJob:\n  every: '1h'\n"
        "StatementsJob:\n  cron: '0 6 1 * * Europe/Stockholm'\n"
        "DigestJob:\n  cron: '0 8 * * *'\n"
    )
    assert sidekiq.looks_like(text)
    results, batch = _translate(tmp_path, "config/sidekiq_scheduler.yml", text)
    jobs = {i.name: i for i in batch.items["sidekiq"]}
    assert [j.action.name for j in jobs.values()] == list(jobs)  # the class is the key
    assert (
        jobs["ExpireTrialsJob"].schedule.seconds,
        jobs["ExpireTrialsJob"].schedule.first_in,
    ) == (
        1800,
        180,
    )
    assert jobs["StatementsJob"].schedule.timezone == "Europe/Stockholm"
    zone_notes = {r.name: any(d.code == "PGD206" for d in r.diagnostics) for r in results}
    assert zone_notes == {
        "ExpireTrialsJob": False,
        "HourlyJob": False,
        "StatementsJob": False,
        "DigestJob": True,
    }


def test_a_github_actions_schedule_is_not_a_sidekiq_file():
    assert not sidekiq.looks_like("on:\n  schedule:\n    - cron: '0 0 * * *'\n")


CONFIG_CLASSES = """
from celery import Celery
from celery.schedules import crontab

class Base:
    timezone = "Europe/Berlin"

class Production(Base):
    beat_schedule = {"nightly": {"task": "app.nightly", "schedule": crontab(hour=2, minute=0)}}

class Staging(Base):
    beat_schedule = {"often": {"task": "app.often", "schedule": 60}}

app = Celery("app")
"""


def test_celery_config_class_named_by_config_from_object(tmp_path):
    text = CONFIG_CLASSES + "app.config_from_object(Production)\n"
    (job,) = celery.read(tmp_path / "c.py", text, "c.py")
    assert job.name == "nightly" and job.schedule.timezone == "Europe/Berlin"  # from the base
    assert "config: class Production" in job.description and not job.notes


def test_celery_config_classes_without_a_choice_are_manual(tmp_path):
    results, _ = _translate(tmp_path, "c.py", CONFIG_CLASSES)
    (result,) = results
    assert result.name == "nightly" and result.fidelity == Fidelity.MANUAL
    assert any(
        d.code == "PGD315" and "Production, Staging" in d.message for d in result.diagnostics
    )


def test_misplaced_kubernetes_time_zone_is_a_warning(tmp_path):
    manifest = """apiVersion: batch/v1
kind: CronJob
metadata: {name: report}
spec:
  schedule: "0 7 * * 1"
  jobTemplate:
    spec:
      timeZone: Europe/Paris
      template:
        spec:
          restartPolicy: Never
          containers:
            - {name: c, image: postgres, command: [psql, -d, app, -U, app, -c, SELECT 1]}
"""
    (result,), _ = _translate(tmp_path, "cronjob.yaml", manifest)
    codes = [(d.code, d.ref.line) for d in result.diagnostics if d.code in ("PGD206", "PGD213")]
    assert codes == [("PGD213", 8), ("PGD206", 1)]
    (warning,) = [d for d in result.diagnostics if d.code == "PGD213"]
    assert "spec.jobTemplate.spec" in warning.message and "spec.timeZone" in warning.message
    assert result.fidelity == Fidelity.EXACT  # the schedule ran in the controller's zone too


@pytest.mark.parametrize("entry", ['"args": 1', '"args": "a"', '"kwargs": [1]'])
def test_celery_args_that_apply_async_cannot_pass_are_manual(tmp_path, entry):
    # found by tests/reliability/test_translator_fuzz.py: `args: 1` crashed the import
    text = (
        "beat_schedule = {'x': {" + entry + ", 'task': 't.x', 'schedule': 10.0}}\n"
    )
    results, _ = _translate(tmp_path, "celeryconfig.py", text)
    (result,) = results
    assert result.fidelity == Fidelity.MANUAL
    assert any(d.code == "PGD332" and "must be a list" in d.message for d in result.diagnostics)
