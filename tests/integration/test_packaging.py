"""A regular wheel installs only the pgdurable package, with its SQL files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

IGNORED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".pgdurable",
)


def test_wheel_in_a_fresh_venv(repo_root, tmp_path):
    # Build from a copy so a stale build/ or egg-info in the checkout cannot leak in.
    source = tmp_path / "src"
    shutil.copytree(repo_root, source, ignore=IGNORED)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = (tmp_path / "dist").glob("pgdurable-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top_level = {
        name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")
    }
    assert top_level == {"pgdurable"}
    assert "pgdurable/schema/migrations/0001_pgdurable_bookkeeping.sql" in names
    # the dashboard's templates and static files ship as package data
    assert {"pgdurable/ui/templates/base.html", "pgdurable/ui/static/style.css"} <= set(names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        text=True,
    )
    probe = (
        "import importlib.util, pgdurable.worker, pgdurable.translators, pgdurable.schema\n"
        "names = sorted(p.name for p in pgdurable.schema.migrations_folder().iterdir())\n"
        "assert '0001_pgdurable_bookkeeping.sql' in names, names\n"
        "for bare in ('worker', 'translators', 'schema'):\n"
        "    assert importlib.util.find_spec(bare) is None, bare\n"
        "print('ok')\n"
    )
    # Run outside the checkout so the repository folders cannot be imported by accident.
    result = subprocess.run(
        [str(python), "-I", "-c", probe], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    failing = subprocess.run(
        [str(python), "-I", "-c", "import worker"], cwd=tmp_path, capture_output=True, text=True
    )
    assert "No module named 'worker'" in failing.stderr
