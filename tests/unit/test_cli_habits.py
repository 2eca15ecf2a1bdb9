"""CLI habits found by trying pgdurable as a new user (issue 20, item 6).

These run without a database: a bad argument must fail before anything
connects, with click's usage exit code 2 and a message naming the input; long
imports and a worker with no database are run as real processes.
"""

from __future__ import annotations

import email
import json
import os
import pty
import signal
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgdurable.cli import EXIT_USAGE, cli
from pgdurable.testing import wait_for

REPO = Path(__file__).resolve().parents[2]


def test_apply_on_a_missing_directory_exits_2(tmp_path):
    missing = tmp_path / "no-such-folder"
    for extra in ([], ["--sql"]):
        result = CliRunner().invoke(cli, ["apply", str(missing), *extra])
        assert result.exit_code == EXIT_USAGE, result.output
        assert "no-such-folder" in result.output
        assert "does not exist" in result.output


def test_license_is_an_spdx_string_in_the_built_metadata(tmp_path):
    # The `license = {text = ...}` table is deprecated by setuptools (builds stop after
    # 2027-02-18); the SPDX string form writes License-Expression into the metadata.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("pgdurable-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(archive.read(name))
    assert metadata["License-Expression"] == "Apache-2.0"


# -- long imports: progress on a terminal, interrupts, no processes left behind -----

DAG = """from airflow import DAG
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
with DAG('dag_{n}', schedule='@daily') as dag:
    a = SQLExecuteQueryOperator(task_id='a', conn_id='postgres_default', sql='SELECT {n}')
    b = SQLExecuteQueryOperator(task_id='b', conn_id='postgres_default', sql='SELECT 2', retries=2)
    a >> b
"""


def _dags(folder: Path, count: int) -> Path:
    folder.mkdir()
    for n in range(count):
        (folder / f"dag_{n:04d}.py").write_text(DAG.format(n=n))
    return folder


def _default_sigint() -> None:
    # As an interactive shell starts a foreground job: a suite started in the
    # background (`cmd &` in a script) hands its children SIGINT ignored, and a
    # process that inherits it ignored rightly ignores Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _pgdurable(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pgdurable", *args],
        env={**os.environ, "PYTHONSAFEPATH": "1"},
        preexec_fn=_default_sigint,
        **popen,
    )


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _pool_workers(pid: int) -> list[int]:
    """The children forked as the import's pool workers (same command line), not
    the short-lived programs an import runs first (croniter runs `file -b`)."""

    def command(p: int) -> bytes | None:
        try:
            return Path(f"/proc/{p}/cmdline").read_bytes()
        except FileNotFoundError:
            return None

    own = command(pid)
    return [c for c in _children(pid) if own is not None and command(c) == own]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.parametrize(
    ("signum", "whole_group", "code"),
    [
        (signal.SIGINT, True, 130),  # Ctrl-C: the shell signals the whole foreground group
        (signal.SIGTERM, False, -signal.SIGTERM),  # `kill PID`: the import alone, no cleanup
    ],
)
def test_an_interrupted_import_leaves_no_pool_process(tmp_path, signum, whole_group, code):
    dags = _dags(tmp_path / "dags", 400)
    process = _pgdurable(
        "import-airflow", str(dags), "--out", str(tmp_path / "out"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        children = wait_for(lambda: _pool_workers(process.pid), timeout=30, what="the process pool")
        if whole_group:
            os.killpg(process.pid, signum)
        else:
            os.kill(process.pid, signum)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == code, err.decode()
    assert b"Traceback" not in err
    # Stopped and reaped by the import, or (killed parent) by the kernel's death signal.
    wait_for(lambda: not [c for c in children if _alive(c)], timeout=10, what="the pool's workers")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_import_shows_progress_on_a_terminal_only(tmp_path):
    dags = _dags(tmp_path / "dags", 70)  # enough for the process pool
    controller, terminal = pty.openpty()
    try:
        process = _pgdurable(
            "import-airflow", str(dags), "--out", str(tmp_path / "tty"),
            stdout=subprocess.DEVNULL, stderr=terminal,
        )  # fmt: skip
        os.close(terminal)
        seen = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal's other side closed: the import ended
                break
            if not chunk:
                break
            seen += chunk
        assert process.wait(60) == 0
    finally:
        os.close(controller)
    assert b"\rpgdurable: translating DAG files 70/70\r\n" in seen
    piped = _pgdurable(
        "import-airflow", str(dags), "--out", str(tmp_path / "piped"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, err = piped.communicate(timeout=60)
    assert piped.returncode == 0 and b"translating DAG files" not in err


def test_worker_without_a_database_exits_3_with_one_line(tmp_path):
    for extra in ([], ["--until-idle"], ["--log-format", "json"]):
        process = _pgdurable(
            "worker", "--dsn", f"host={tmp_path} dbname=nowhere", *extra,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = process.communicate(timeout=30)
        lines = err.decode().splitlines()
        assert process.returncode == 3, err.decode()
        assert b"Traceback" not in err and out == b""
        # the connection line, then one line saying what failed and what to check
        assert len(lines) == 2, lines
        assert "could not connect to" in lines[1] and "Check --dsn" in lines[1]


def test_show_draws_a_generated_file_without_a_database(tmp_path, monkeypatch):
    for name in ("PGDURABLE_DSN", "DATABASE_URL", "PGHOST", "PGDATABASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGDURABLE_HOME", str(tmp_path / "no-cluster-here"))
    path = REPO / "fixtures/examples/airflow/expected/events_daily.sql"
    runner = CliRunner()
    dot = runner.invoke(cli, ["show", str(path), "--format", "dot"])
    assert dot.exit_code == 0, dot.output
    assert not (tmp_path / "no-cluster-here").exists()  # nothing was started
    # Steps carry their task ids; the wrappers are badges on the step they wrap.
    assert 'label="task transform [retry 4x, 300s, x2.0, max 86400s] [timeout 1800s]"' in dot.output
    assert "RETRY" not in dot.output and "SLEEP 0s" not in dot.output
    assert "u2026" not in dot.output and "…" in dot.output  # a cut label, not an escape
    data = json.loads(runner.invoke(cli, ["show", str(path), "--json"]).stdout)
    assert data["connection"] is None and data["title"] == "events_daily"
    labels = [n["label"] for n in data["nodes"]]
    assert "task ingest" in labels and "task publish" in labels
    cron = REPO / "fixtures/examples/pg_cron/expected/purge-sessions.sql"
    text = runner.invoke(cli, ["show", str(cron), "--format", "text"])
    assert text.exit_code == 0 and "job purge-sessions" in text.output


def test_show_names_the_line_of_a_definition_it_cannot_read(tmp_path):
    bad = tmp_path / "bad.sql"
    bad.write_text(
        "-- pgdurable workflow x/y\nSELECT pgdurable.deploy_workflow(\n    definition =>\n"
        "        @> (df.sleep(1) ~> public.evil())\n);\n"
    )
    result = CliRunner().invoke(cli, ["show", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:4: public.evil() is not a workflow constructor" in result.output


def test_every_data_command_takes_json():
    """Only the worker prints no data (its log is the output)."""

    def commands(group, path=()):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from commands(command, (*path, name))
            else:
                yield (*path, name), command

    missing = [
        " ".join(path)
        for path, command in commands(cli)
        if "--json" not in {o for p in command.params for o in getattr(p, "opts", [])}
    ]
    assert missing == ["worker"]
