"""import-queue: queue tasks whose body is code become code steps (SPEC A.4).

Celery beat entries call the task function by import path (a task module
among the inputs says where a named task lives); Sidekiq classes and
Kubernetes containers stay manual unless the user says how to run them
(``--command-template``, ``--run-container-command``). The worker side is in
tests/worker/test_code_steps.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from pgdurable import model as m
from pgdurable import pipeline
from pgdurable.cli import cli

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "queue"


def _items(report) -> dict[str, dict]:
    return {item["name"]: item for item in report.as_dict()["items"]}


def _codes(item: dict) -> set[str]:
    return {d["code"] for d in item["diagnostics"]}


def _starts(out: Path, name: str, run: m.Node) -> bool:
    """Whether the job's enqueue function starts exactly ``run`` (its df.start argument)."""
    return f"df.start(\n        $sql${m.encode(run)}$sql$," in (out / f"{name}.sql").read_text()


def test_celery_entries_call_their_task_functions(tmp_path):
    out = tmp_path / "out"
    (report,) = pipeline.import_queue(
        [FIXTURES / "celery_app"], out_dir=out, default_username="app"
    )
    items = _items(report)
    assert {n: i["fidelity"] for n, i in items.items()} == {
        "purge-sessions": "approximate",
        "send-report": "approximate",
        "bound": "manual",
        "dynamic-args": "manual",
    }
    # @app.task(name="cleanup-old") says where the function is; kwargs carried as JSON
    purge = m.Python("proj.tasks:purge_sessions", (), (("days", 30),))
    assert _starts(out, "purge-sessions", purge)
    assert _starts(out, "send-report", m.Python("proj.tasks:send_report", ("daily", 3)))
    note = next(d for d in items["purge-sessions"]["diagnostics"] if d["code"] == "PGD275")
    assert "registered at" in note["message"] and "proj/tasks.py:12" in note["message"]
    assert "Celery's broker" in note["message"] and "time limits" in note["message"]
    assert "grant_code('app', 'python:proj.tasks:purge_sessions')" in note["message"]
    assert "PGD225" in _codes(items["purge-sessions"])  # options.expires reported
    bound = next(d for d in items["bound"]["diagnostics"] if d["code"] == "PGD332")
    assert "bind=True" in bound["message"]
    dynamic = next(d for d in items["dynamic-args"]["diagnostics"] if d["code"] == "PGD332")
    assert "datetime.now().isoformat()" in dynamic["message"] and dynamic["line"] == 32
    assert "PGD307" not in _codes(items["dynamic-args"])
    # the manual ones are registered, not started; handled tasks need no --tasks entry
    assert "start => false" in (out / "bound.sql").read_text()
    template = (out / "tasks.template.yaml").read_text()
    assert "proj.tasks.retrying" in template and "cleanup-old" not in template


def test_a_celery_task_name_resolves_through_a_code_root(tmp_path):
    """Only the beat config is an input; --code-root holds the app's modules."""
    out = tmp_path / "out"
    (report,) = pipeline.import_queue(
        [FIXTURES / "celery_app" / "proj" / "celery.py"],
        out_dir=out,
        default_username="app",
        code_roots=[FIXTURES / "celery_app"],
    )
    assert _items(report)["purge-sessions"]["fidelity"] == "approximate"
    purge = m.Python("proj.tasks:purge_sessions", (), (("days", 30),))
    assert _starts(out, "purge-sessions", purge)
    # without the code root the name is not an import path: a person says where it is
    (alone,) = pipeline.import_queue(
        [FIXTURES / "celery_app" / "proj" / "celery.py"],
        out_dir=tmp_path / "alone",
        default_username="app",
    )
    item = _items(alone)["purge-sessions"]
    assert item["fidelity"] == "manual" and "--code-root" in json.dumps(item)


def test_portable_and_tasks_mappings_keep_their_forms(tmp_path):
    (report,) = pipeline.import_queue(
        [FIXTURES / "celery" / "celeryconfig.py"],
        out_dir=tmp_path / "p",
        default_username="app",
        portable=True,
    )
    assert {i["fidelity"] for i in _items(report).values()} == {"manual"}
    (mapped,) = pipeline.import_queue(
        [FIXTURES / "celery" / "celeryconfig.py"],
        out_dir=tmp_path / "t",
        default_username="app",
        tasks_file=FIXTURES / "celery" / "tasks.yaml",
    )
    assert not any("PGD275" in _codes(i) for i in _items(mapped).values() if "PGD307" in i)


def test_sidekiq_classes_run_through_a_command_template(tmp_path):
    source = tmp_path / "schedule.yml"
    source.write_text(
        "daily_report:\n"
        '  cron: "0 6 * * *"\n'
        '  class: "DailyReportWorker"\n'
        "  args:\n"
        "    - sales\n"
        '    - "#{`id`}"\n'
    )
    (manual,) = pipeline.import_queue([source], out_dir=tmp_path / "m", default_username="app")
    assert _items(manual)["daily_report"]["fidelity"] == "manual"
    out = tmp_path / "out"
    (report,) = pipeline.import_queue(
        [source],
        out_dir=out,
        default_username="app",
        command_template='bin/rails runner "{class}.new.perform({args})"',
    )
    item = _items(report)["daily_report"]
    assert item["fidelity"] == "approximate" and "PGD276" in _codes(item)
    # words split first: the arguments never reach a shell, and Ruby reads '#' as text
    ruby = 'DailyReportWorker.new.perform("sales", "\\u0023{`id`}")'
    command = m.Command(("bin/rails", "runner", ruby))
    assert _starts(out, "daily_report", m.Retry(command, 26, 15, 2.0, 390625))
    assert "grant_code('app', 'command:bin/rails')" in json.dumps(item)


def test_a_bad_command_template_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "import-queue",
            str(FIXTURES / "sidekiq" / "schedule.yml"),
            "--out",
            str(tmp_path / "out"),
            "--command-template",
            "bin/rails runner {klass}",
        ],
    )
    assert result.exit_code == 2
    assert "names {klass}; known: {args}, {args_json}, {class}" in result.output
    assert not (tmp_path / "out").exists()


def test_kubernetes_containers_run_their_command_on_the_worker_host(tmp_path):
    source = FIXTURES / "k8s" / "not-psql.yaml"
    (manual,) = pipeline.import_queue([source], out_dir=tmp_path / "m", default_username="app")
    assert {i["fidelity"] for i in _items(manual).values()} == {"manual"}
    out = tmp_path / "out"
    (report,) = pipeline.import_queue(
        [source], out_dir=out, default_username="app", run_container_command=True
    )
    items = _items(report)
    reminders = items["send-reminders"]
    assert reminders["fidelity"] == "approximate" and "PGD277" in _codes(reminders)
    assert "registry.example.com/app:2.3" in json.dumps(reminders)
    command = m.Command(("python", "manage.py", "send_reminders"))
    assert _starts(out, "send-reminders", m.Retry(command, 7, 10, 2.0, 360))  # backoffLimit 6
    # the image's entrypoint is not in the manifest: still manual
    assert items["image-entrypoint"]["fidelity"] == "manual"
