"""`pgdurable import-queue` on the command line: exit codes, reports, dry run,
bad files reported with file, line and fix while the others are written, and
a --tasks file that stops the run before anything is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from pgdurable.cli import cli

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "queue"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_invalid_yaml_is_a_failed_item_and_the_other_files_are_written(tmp_path):
    good = tmp_path / "good.yaml"
    shutil.copy(FIXTURES / "k8s" / "vacuum-cronjob.yaml", good)
    out = tmp_path / "out"
    result = run(
        "import-queue", str(good), str(FIXTURES / "k8s" / "invalid.yaml"), "--out", str(out)
    )
    assert result.exit_code == 1
    assert "invalid.yaml:14:21: invalid YAML: mapping values are not allowed here" in result.output
    assert "check the indentation" in result.output
    assert (out / "vacuum-orders.sql").exists()
    cutover = (out / "cutover.sql").read_text()
    assert "invalid.yaml" in cutover and "was not translated (failed): keep it" in cutover


def _repository(tmp_path: Path) -> Path:
    """A repository as people keep one: a Helm chart, a cron.d file, notes, a script."""
    repo = tmp_path / "ops"
    shutil.copytree(FIXTURES / "mixed", repo)
    return repo


def test_a_helm_template_does_not_stop_the_folder(tmp_path):
    out = tmp_path / "out"
    report = tmp_path / "report.json"
    result = run(
        "import-queue",
        str(_repository(tmp_path)),
        "--out",
        str(out),
        "--default-username",
        "app",
        "--report",
        str(report),
    )
    assert result.exit_code == 1, result.output
    assert "render the chart first (`helm template" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["celery", "crontab", "k8s", "sidekiq"]
    assert (out / "k8s" / "purge-sessions.sql").exists()
    files = {Path(f["file"]).name: f for f in json.loads(report.read_text())["files"]}
    # every file of the folder is listed, with what became of it and why
    assert len(files) == len([p for p in (tmp_path / "ops").rglob("*") if p.is_file()])
    template = files["vacuum-cronjob.yaml"]
    assert (template["status"], template["format"], template["line"]) == ("failed", "k8s", 1)
    assert (
        files["values.yaml"]["status"] == "skipped"
        and "helm template" in (files["values.yaml"]["reason"])
    )
    assert files["backup.sh"]["status"] == "skipped" and ".sh" in files["backup.sh"]["reason"]
    assert files["database.yml"]["status"] == "skipped"
    assert files["pg-maintenance"]["status"] == "translated"
    assert files["sidekiq_scheduler.yml"] == {
        "file": str(tmp_path / "ops" / "config" / "sidekiq_scheduler.yml"),
        "format": "sidekiq",
        "status": "translated",
        "reason": "",
        "line": None,
        "col": None,
    }


def test_a_folder_of_skipped_files_says_why(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.md").write_text("# nothing scheduled here\n")
    (tmp_path / "docs" / "compose.yaml").write_text("services:\n  db:\n    image: postgres\n")
    (tmp_path / "docs" / "tasks.py").write_text("def add(x, y):\n    return x + y\n")
    result = run("import-queue", str(tmp_path / "docs"), "--out", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [(Path(f["file"]).name, f["status"]) for f in data["files"]] == [
        ("compose.yaml", "skipped"),
        ("notes.md", "skipped"),
        ("tasks.py", "skipped"),
    ]
    assert "holds no schedule" in data["files"][2]["reason"]
    assert not (tmp_path / "out").exists()


def test_crontab_option_says_whether_lines_have_a_user_field(tmp_path):
    source = tmp_path / "maintenance"
    source.write_text("0 2 * * * postgres vacuumdb -z -d shop\n")
    out = tmp_path / "out"
    system = run("import-queue", str(source), "--out", str(out / "a"), "--json")
    user = run("import-queue", str(source), "--crontab", "user", "--out", str(out / "b"), "--json")
    forced = run(
        "import-queue",
        str(FIXTURES / "crontab" / "app.crontab"),
        "--crontab",
        "system",
        "--out",
        str(out / "c"),
        "--json",
    )
    (item,) = json.loads(system.output)["items"]
    assert item["fidelity"] == "exact" and item["name"] == "vacuum-analyze"
    assert any(d["code"] == "PGD242" and "'postgres'" in d["message"] for d in item["diagnostics"])
    (as_user,) = json.loads(user.output)["items"]
    assert as_user["fidelity"] == "manual"  # "postgres vacuumdb ..." is not a program it knows
    assert forced.exit_code in (0, 1) and all(
        any(d["code"] == "PGD242" for d in i["diagnostics"])
        for i in json.loads(forced.output)["items"]
        if i["fidelity"] != "failed"
    )


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
