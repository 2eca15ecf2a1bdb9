"""Locating PostgreSQL server programs for the embedded cluster.

Candidates come from, in this order: ``$PGDURABLE_PG_BINDIR``, ``pg_config
--bindir``, folders on ``PATH``, then the usual distribution folders. The
highest major version wins; among equal versions the earlier source wins. A
cluster that already exists pins the major version it was created with.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pgdurable.errors import ServerBinariesNotFound

SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")

DISTRIBUTION_GLOBS = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/usr/pgsql-*/bin",  # RHEL, Fedora (PGDG)
    "/usr/local/pgsql/bin",  # source builds
    "/opt/homebrew/opt/postgresql@*/bin",  # Homebrew, Apple silicon
    "/usr/local/opt/postgresql@*/bin",  # Homebrew, Intel
    "/Applications/Postgres.app/Contents/Versions/*/bin",
)

INSTALL_HINT = (
    "Install a PostgreSQL server (14 to 18): on Debian or Ubuntu `apt-get install postgresql-15`, "
    "on RHEL or Fedora `dnf install postgresql-server`, on macOS `brew install postgresql@15`. "
    "Or set PGDURABLE_PG_BINDIR to the folder holding initdb, pg_ctl and postgres, "
    "or pass --dsn to use a server you already run."
)


@dataclass(frozen=True)
class ServerBinaries:
    """One folder holding initdb, pg_ctl and postgres of a single major version."""

    bindir: Path
    major: int
    version: str

    def program(self, name: str) -> str:
        return str(self.bindir / name)


def _candidate_folders() -> list[Path]:
    folders: list[Path] = []
    explicit = os.environ.get("PGDURABLE_PG_BINDIR")
    if explicit:
        folders.append(Path(explicit))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            folders.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass
    folders.extend(Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p)
    for pattern in DISTRIBUTION_GLOBS:
        folders.extend(Path(p) for p in sorted(glob.glob(pattern)))
    return folders


def _probe(folder: Path) -> ServerBinaries | None:
    if not all(os.access(folder / name, os.X_OK) for name in SERVER_PROGRAMS):
        return None
    try:
        out = subprocess.run(
            [str(folder / "postgres"), "--version"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)(\.\d+)?", out)
    if not match:
        return None
    return ServerBinaries(folder, int(match.group(1)), match.group(1) + (match.group(2) or ""))


def find_server_binaries(major: int | None = None) -> ServerBinaries:
    """The best server binaries found, optionally of one major version.

    Raises ServerBinariesNotFound with installation advice when none fit.
    """
    found: list[ServerBinaries] = []
    seen: set[Path] = set()
    for folder in _candidate_folders():
        try:
            key = folder.resolve() if folder.is_dir() else None
        except OSError:  # e.g. a PATH entry this user may not enter
            key = None
        if key is None or key in seen:
            continue
        seen.add(key)
        probed = _probe(folder)
        if probed and (major is None or probed.major == major):
            found.append(probed)
    if not found:
        wanted = f"PostgreSQL {major} " if major else "PostgreSQL "
        raise ServerBinariesNotFound(
            f"{wanted}server programs (initdb, pg_ctl, postgres) were not found. {INSTALL_HINT}"
        )
    # sorted() is stable, so equal versions keep the order of their sources.
    return sorted(found, key=lambda b: b.major, reverse=True)[0]


def package_library_dir(binaries: ServerBinaries) -> Path | None:
    """The server's extension library folder, to see which extensions can be preloaded."""
    pg_config = binaries.bindir / "pg_config"
    if not os.access(pg_config, os.X_OK):
        return None
    try:
        out = subprocess.run(
            [str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out)
