"""The code base passes ruff, including the ban on bare `worker`/`translators`/`schema` imports."""

from __future__ import annotations

import subprocess
import sys


def test_ruff_check_passes(repo_root):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", str(repo_root)],
        capture_output=True,
        text=True,
        cwd=repo_root,
    )
    assert result.returncode == 0, result.stdout + result.stderr
