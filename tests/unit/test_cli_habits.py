"""CLI habits found by trying pgdurable as a new user (issue 20, item 6).

These run without a database: a bad argument must fail before anything
connects, with click's usage exit code 2 and a message naming the input.
"""

from __future__ import annotations

import email
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from click.testing import CliRunner

from pgdurable.cli import EXIT_USAGE, cli

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
