"""An installation without prometheus_client (a venv that drifted from pyproject):
the worker runs, only --metrics-address needs the package and says so in one line
with the fix; any missing dependency at the CLI boundary is one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

import click
from click.testing import CliRunner

from pgdurable.cli.options import EXIT_USAGE, PgDurableGroup


def without_prometheus(tmp_path) -> dict[str, str]:
    """An environment where importing prometheus_client fails as when it is not installed."""
    shadow = tmp_path / "shadow" / "prometheus_client"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'prometheus_client'\", "
        "name='prometheus_client')\n"
    )
    return {**os.environ, "PYTHONPATH": str(tmp_path / "shadow"), "PYTHONSAFEPATH": "1"}


def worker(database, env, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgdurable", "worker", "--dsn", database.conninfo(), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_the_worker_runs_without_prometheus_client(database, wf, tmp_path):
    instance = wf.start(wf.sql("SELECT 1"))
    done = worker(database, without_prometheus(tmp_path), "--until-idle")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert wf.status(instance) == "completed"


def test_metrics_address_without_prometheus_client_is_one_line_with_the_fix(database, wf, tmp_path):
    done = worker(
        database, without_prometheus(tmp_path), "--until-idle", "--metrics-address", "127.0.0.1:0"
    )
    assert done.returncode == EXIT_USAGE, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert "prometheus_client" in line and "pip install -e ." in line


def test_a_missing_module_at_the_cli_boundary_is_one_line():
    @click.group(cls=PgDurableGroup)
    def root() -> None:
        pass

    @root.command()
    def needs() -> None:
        import absent_test_package_xyz  # noqa: F401

    result = CliRunner().invoke(root, ["needs"])
    assert result.exit_code == EXIT_USAGE
    assert "'absent_test_package_xyz' is not installed" in result.output
    assert "pip install -e ." in result.output
