"""The peers' virtualenv: created from ``requirements.txt``, reused while it is unchanged.

The peer libraries (DBOS Transact, Procrastinate, PgQueuer) pin their own
SQLAlchemy/psycopg/pydantic versions, so they live in a virtualenv of their
own rather than in pgdurable's. ``ensure_venv`` is idempotent: a stamp file
in the virtualenv records the hash of the requirements and the Python that
installed them, and pip runs only when either changed or the last install
did not finish.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REQUIREMENTS = Path(__file__).with_name("requirements.txt")
STAMP = "pgdurable-bench-requirements.sha256"


class PeerVenvError(Exception):
    """The peers' virtualenv could not be created or filled."""


def default_location() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "pgdurable" / "bench-peers"


def requirements_hash(requirements: Path = REQUIREMENTS) -> str:
    # The interpreter version is part of the hash: wheels built for another
    # Python must not be reused after the project's Python changes.
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(
    location: Path | None = None,
    progress: Callable[[str], None] = lambda message: None,
    requirements: Path = REQUIREMENTS,
) -> Path:
    """Create or refresh the virtualenv and return its python.

    Raises:
        PeerVenvError: venv or pip failed; the message ends with pip's last lines.
    """
    venv = location or default_location()
    stamp = venv / STAMP
    wanted = requirements_hash(requirements)
    python = python_of(venv)
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        progress(f"peers: virtualenv {venv} is up to date")
        return python
    if not python.exists():
        progress(f"peers: creating virtualenv {venv}")
        venv.parent.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "venv", str(venv)], "create the virtualenv")
    # Remove the stamp first so an interrupted install is retried next time.
    stamp.unlink(missing_ok=True)
    progress(f"peers: installing {requirements.name} into {venv} (pip, may take a minute)")
    _run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(requirements),
        ],
        "install the peer libraries",
    )
    stamp.write_text(wanted + "\n")
    progress("peers: virtualenv ready")
    return python


def _run(command: list[str], what: str) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerVenvError(f"could not {what}: {exc}") from exc
    if result.returncode != 0:
        # pip's warnings go to stderr too; the last lines hold the error itself.
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise PeerVenvError(f"could not {what} (exit {result.returncode}):\n{tail}")
