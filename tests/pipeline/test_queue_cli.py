"""`pgdurable import-queue` on the command line: exit codes, reports, dry run,
and bad input that stops the run with file, line and fix before anything is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from pgdurable.cli import cli

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "queue"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_invalid_yaml_names_file_and_line_and_writes_nothing(tmp_path):
    good = tmp_path / "good.yaml"
    shutil.copy(FIXTURES / "k8s" / "vacuum-cronjob.yaml", good)
    out = tmp_path / "out"
    result = run(
        "import-queue", str(good), str(FIXTURES / "k8s" / "invalid.yaml"), "--out", str(out)
    )
    assert result.exit_code == 1
    assert "invalid.yaml:14:21: invalid YAML: mapping values are not allowed here" in result.output
    assert "check the indentation" in result.output
    assert not out.exists()


def test_unknown_format_asks_for_format(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("just some notes\n")
    result = run("import-queue", str(text), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "cannot tell which format" in result.output and "--format" in result.output


def test_format_override_and_json_report(tmp_path):
    source = tmp_path / "jobs"  # no suffix and no hint: --format says what it is
    source.write_text("PGUSER=ops\n0 1 * * * psql -d ops -c 'SELECT ops.nightly()'\n")
    report = tmp_path / "report.json"
    result = run(
        "import-queue",
        str(source),
        "--format",
        "crontab",
        "--out",
        str(tmp_path / "out"),
        "--report",
        str(report),
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["source"] == "crontab"
    assert data["summary"] == {"exact": 1, "approximate": 0, "manual": 0, "failed": 0}
    assert data["items"][0]["name"] == "ops-nightly"
    assert json.loads(result.output)["items"] == data["items"]
    assert (tmp_path / "out" / "ops-nightly.sql").exists()


def test_dry_run_diffs_and_exits_1_until_written(tmp_path):
    out = tmp_path / "out"
    args = ["import-queue", str(FIXTURES / "k8s" / "vacuum-cronjob.yaml"), "--out", str(out)]
    first = run(*args, "--dry-run")
    assert first.exit_code == 1 and "+++ " in first.output and not out.exists()
    assert run(*args).exit_code == 0
    again = run(*args, "--dry-run")
    assert again.exit_code == 0 and "no difference" in again.output


def test_failed_item_exits_1_but_writes_the_others(tmp_path):
    out = tmp_path / "out"
    result = run(
        "import-queue", str(FIXTURES / "crontab" / "bad_schedule.crontab"), "--out", str(out)
    )
    assert result.exit_code == 1
    assert "PGD104" in result.output
    assert (out / "ops-ok.sql").exists()


def test_several_formats_go_to_one_folder_each(tmp_path):
    out = tmp_path / "out"
    result = run(
        "import-queue",
        str(FIXTURES / "k8s" / "vacuum-cronjob.yaml"),
        str(FIXTURES / "crontab" / "app.crontab"),
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["crontab", "k8s"]


def test_unmapped_tasks_template_round_trips(tmp_path):
    out = tmp_path / "out"
    source = FIXTURES / "sidekiq" / "schedule.yml"
    assert (
        run("import-queue", str(source), "--out", str(out), "--default-username", "app").exit_code
        == 0
    )
    template = (out / "tasks.template.yaml").read_text()
    assert "DailyReportWorker:" in template and "manual: true" in template
    filled = tmp_path / "tasks.yaml"
    filled.write_text(template.replace("manual: true", "sql: SELECT 1"))
    again = run(
        "import-queue",
        str(source),
        "--out",
        str(tmp_path / "out2"),
        "--default-username",
        "app",
        "--tasks",
        str(filled),
        "--json",
    )
    assert again.exit_code == 0
    assert not any(
        d["code"] == "PGD307" for i in json.loads(again.output)["items"] for d in i["diagnostics"]
    )
    assert not (tmp_path / "out2" / "tasks.template.yaml").exists()


def test_malformed_tasks_file_names_line(tmp_path):
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text("tasks:\n  Foo:\n    sql: SELECT 1\n    http: {url: x}\n")
    result = run(
        "import-queue",
        str(FIXTURES / "sidekiq" / "schedule.yml"),
        "--tasks",
        str(tasks),
        "--out",
        str(tmp_path / "out"),
    )
    assert result.exit_code == 1
    assert f"{tasks}:2: task 'Foo' needs exactly one of" in result.output
