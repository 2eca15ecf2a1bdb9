"""Locating PostgreSQL server programs for the embedded cluster.

``$PGDURABLE_PG_BINDIR``, when set, names the one folder to use: nothing else
is searched, so a test run or a cluster gets exactly that server (CI points it
at each major version in turn). Otherwise candidates come from, in this order,
``pg_config --bindir``, folders on ``PATH``, then the usual distribution
folders; the highest major version wins, and among equal versions the earlier
source wins. A cluster that already exists pins the major version it was
created with.
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


def _probe(folder: Path) -> ServerBinaries | str:
    """The server programs in ``folder``, or why that folder cannot be used."""
    missing = [name for name in SERVER_PROGRAMS if not os.access(folder / name, os.X_OK)]
    if missing:
        return f"{folder} has no runnable {', '.join(missing)}"
    try:
        result = subprocess.run(
            [str(folder / "postgres"), "--version"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{folder / 'postgres'} --version could not run: {exc}"
    match = re.search(r"\(PostgreSQL\)\s+(\d+)(\.\d+)?", result.stdout)
    if result.returncode != 0 or not match:
        # e.g. a shared library the dynamic loader cannot find
        detail = (result.stderr or result.stdout).strip() or f"exit code {result.returncode}"
        return f"{folder / 'postgres'} --version failed: {detail}"
    return ServerBinaries(folder, int(match.group(1)), match.group(1) + (match.group(2) or ""))


def _explicit_binaries(folder: Path, major: int | None) -> ServerBinaries:
    """The server named by $PGDURABLE_PG_BINDIR, which must be usable (and of ``major``)."""
    probed = _probe(folder)
    if isinstance(probed, str):
        raise ServerBinariesNotFound(
            f"PGDURABLE_PG_BINDIR names a folder without a usable PostgreSQL server: {probed}. "
            f"Point it at the folder holding initdb, pg_ctl and postgres, or unset it to search "
            f"the usual places."
        )
    if major is not None and probed.major != major:
        raise ServerBinariesNotFound(
            f"the cluster was created by PostgreSQL {major}, but PGDURABLE_PG_BINDIR ({folder}) "
            f"holds PostgreSQL {probed.version}: point it at a PostgreSQL {major} server, or use "
            f"another PGDURABLE_HOME for a cluster of the other version."
        )
    return probed


def find_server_binaries(major: int | None = None) -> ServerBinaries:
    """The best server binaries found, optionally of one major version.

    Raises ServerBinariesNotFound with installation advice when none fit.
    """
    explicit = os.environ.get("PGDURABLE_PG_BINDIR")
    if explicit:
        return _explicit_binaries(Path(explicit), major)
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
        if isinstance(probed, ServerBinaries) and (major is None or probed.major == major):
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
        # Builds that ship only the server (no pg_config) keep the usual relative layout.
        relative = binaries.bindir.parent / "lib" / "postgresql"
        return relative if relative.is_dir() else None
    try:
        out = subprocess.run(
            [str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out)
