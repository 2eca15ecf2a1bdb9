"""The embedded PostgreSQL cluster used when no DSN is given.

One cluster per pgdurable home (``$PGDURABLE_HOME``; else a project-local
``.pgdurable/`` in the current folder; else ``/var/lib/pgdurable`` for root and
``$XDG_DATA_HOME/pgdurable`` for everyone else). It listens only on a Unix
socket inside its own data directory and trusts that socket alone: the data
directory is mode 0700, so only its owner (and root) can reach the socket.

PostgreSQL refuses to run as root. When pgdurable runs as root, initdb and the
server run as an existing unprivileged account (``$PGDURABLE_SERVER_USER``,
default ``postgres``) that owns the data directory. pgdurable never creates OS
users and never changes the permissions of folders it did not create.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import stat
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pgdurable.binaries import ServerBinaries, find_server_binaries, package_library_dir
from pgdurable.errors import EmbeddedClusterError

DATABASE = "pgdurable"
SUPERUSER = "postgres"
PORT = 5432
START_TIMEOUT_SECONDS = 60
# A Unix socket path longer than this does not fit in sockaddr_un.
MAX_SOCKET_PATH = 107


def default_home(cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """Where the embedded cluster lives when nothing says otherwise."""
    env = os.environ if env is None else env
    if env.get("PGDURABLE_HOME"):
        return Path(env["PGDURABLE_HOME"]).expanduser().absolute()
    local = (cwd or Path.cwd()) / ".pgdurable"
    if local.is_dir():
        return local.absolute()
    if os.geteuid() == 0:
        return Path("/var/lib/pgdurable")
    data_home = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "pgdurable"


@dataclass(frozen=True)
class ServerAccount:
    """The OS account the server runs as; None fields mean 'the current user'."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    @classmethod
    def for_current_process(cls) -> ServerAccount | None:
        """None when we are not root (the server runs as us), else the account to use."""
        if os.geteuid() != 0:
            return None
        name = os.environ.get("PGDURABLE_SERVER_USER", "postgres")
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise EmbeddedClusterError(
                f"pgdurable runs as root, and PostgreSQL refuses to run as root, so the embedded "
                f"server must run as an unprivileged account; account {name!r} does not exist. "
                f"Set PGDURABLE_SERVER_USER to an existing account, create one yourself (Debian's "
                f"postgresql package creates 'postgres'), run pgdurable as a normal user, "
                f"or pass --dsn to use a server you already run."
            ) from None
        groups = tuple(os.getgrouplist(name, entry.pw_gid))
        return cls(name, entry.pw_uid, entry.pw_gid, groups)

    def can_traverse(self, folder: Path) -> bool:
        st = folder.stat()
        if st.st_uid == self.uid:
            return bool(st.st_mode & stat.S_IXUSR)
        if st.st_gid in self.groups:
            return bool(st.st_mode & stat.S_IXGRP)
        return bool(st.st_mode & stat.S_IXOTH)


@dataclass(frozen=True)
class ClusterStatus:
    home: Path
    data_dir: Path
    initialized: bool
    running: bool
    pid: int | None
    major: int | None
    server_account: str

    def as_dict(self) -> dict[str, object]:
        return {
            "home": str(self.home),
            "data_dir": str(self.data_dir),
            "initialized": self.initialized,
            "running": self.running,
            "pid": self.pid,
            "major_version": self.major,
            "server_account": self.server_account,
        }


def _quote_setting(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class EmbeddedCluster:
    """A throwaway-or-kept PostgreSQL cluster under one home folder."""

    def __init__(self, home: Path, *, settings: Mapping[str, str] | None = None) -> None:
        self.home = home
        self.data_dir = home / "data"
        self.log_file = self.data_dir / "server.log"
        self.extra_settings = dict(settings or {})
        self.account = ServerAccount.for_current_process()

    # -- public API ---------------------------------------------------------

    def status(self) -> ClusterStatus:
        initialized = (self.data_dir / "PG_VERSION").is_file()
        major = int((self.data_dir / "PG_VERSION").read_text().strip()) if initialized else None
        pid = self._running_pid() if initialized else None
        return ClusterStatus(
            home=self.home,
            data_dir=self.data_dir,
            initialized=initialized,
            running=pid is not None,
            pid=pid,
            major=major,
            server_account=self.account.name if self.account else pwd.getpwuid(os.geteuid())[0],
        )

    def start(self, progress=lambda message: None) -> bool:
        """Initialise if needed and start; False when it was already running."""
        with self._lock():
            if self.status().running:
                return False
            self._check_socket_path()
            binaries = self.binaries()
            self._check_runnable(binaries)
            if not (self.data_dir / "PG_VERSION").is_file():
                progress(f"initialising PostgreSQL {binaries.version} cluster in {self.data_dir}")
                self._initdb(binaries)
            self._write_settings(binaries)
            progress(f"starting PostgreSQL {binaries.version} (socket in {self.data_dir})")
            self._run(
                [
                    binaries.program("pg_ctl"),
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    str(START_TIMEOUT_SECONDS),
                ],
                what="start the server",
            )
            self._ensure_database(DATABASE)
            return True

    def stop(self, mode: str = "fast") -> bool:
        """Stop the server; False when it was not running.

        ``mode`` is pg_ctl's: ``fast`` (the default), ``smart``, or ``immediate``
        (no checkpoint: the next start runs crash recovery, which tests use to
        simulate a server crash)."""
        with self._lock():
            if not self.status().running:
                return False
            binaries = self.binaries()
            self._run(
                [binaries.program("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", mode, "-w"],
                what="stop the server",
            )
            return True

    def conninfo(self, dbname: str = DATABASE, user: str = SUPERUSER) -> str:
        from pgdurable.db import make_conninfo

        return make_conninfo(host=str(self.data_dir), port=PORT, user=user, dbname=dbname)

    def url(self, dbname: str = DATABASE, user: str = SUPERUSER) -> str:
        host = quote(str(self.data_dir), safe="")
        return (
            f"postgresql://{quote(user, safe='')}@/{quote(dbname, safe='')}?host={host}&port={PORT}"
        )

    # -- internals ----------------------------------------------------------

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise start/stop of one home across processes."""
        self._prepare_home()
        with open(self.home / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _prepare_home(self) -> None:
        if not self.home.exists():
            self.home.mkdir(parents=True, mode=0o755)
        self._require_reachable(
            self.home,
            f"use a cluster in {self.home}. pgdurable does not change the permissions of "
            f"folders it did not create: set PGDURABLE_HOME to a folder that account can "
            f"reach (for example /var/lib/pgdurable).",
        )

    def _check_runnable(self, binaries: ServerBinaries) -> None:
        """As root, the server account runs the programs: it must reach their folder
        (binaries unpacked under root's 0700 home, for example, cannot be used)."""
        self._require_reachable(
            binaries.bindir,
            f"run PostgreSQL from {binaries.bindir}: install the server programs in a folder "
            f"that account can reach (for example under /opt or /var/cache) and point "
            f"PGDURABLE_PG_BINDIR at it.",
        )

    def _require_reachable(self, path: Path, consequence: str) -> None:
        """Refuse when the server account cannot enter every folder on the way to ``path``
        (nothing to check when the server runs as us)."""
        if self.account is None:
            return
        for folder in [path, *path.parents]:
            if not self.account.can_traverse(folder):
                mode = stat.filemode(folder.stat().st_mode)
                raise EmbeddedClusterError(
                    f"the server account {self.account.name!r} cannot enter {folder} ({mode}), "
                    f"so it cannot {consequence}"
                )

    def _check_socket_path(self) -> None:
        socket_path = self.data_dir / f".s.PGSQL.{PORT}"
        if len(str(socket_path)) > MAX_SOCKET_PATH:
            raise EmbeddedClusterError(
                f"the socket path {socket_path} is longer than {MAX_SOCKET_PATH} bytes, which Unix "
                f"sockets do not allow: set PGDURABLE_HOME to a shorter path."
            )

    def binaries(self) -> ServerBinaries:
        """The server programs this cluster runs with (its own major once initialised)."""
        version_file = self.data_dir / "PG_VERSION"
        major = int(version_file.read_text().strip()) if version_file.is_file() else None
        return find_server_binaries(major)

    def _initdb(self, binaries: ServerBinaries) -> None:
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        if any(self.data_dir.iterdir()):
            raise EmbeddedClusterError(
                f"{self.data_dir} is not empty but holds no PostgreSQL cluster: move its contents "
                f"away or set PGDURABLE_HOME to another folder."
            )
        self._give_to_account(self.data_dir)
        self._run(
            [
                binaries.program("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=reject",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            ],
            what="initialise the cluster (initdb)",
        )
        # Trust the socket only; there is no TCP listener to trust or reject.
        self._write_owned(self.data_dir / "pg_hba.conf", "local all all trust\n")
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# Settings of the pgdurable embedded cluster, rewritten at every start\n")
            conf.write("include_if_exists = 'pgdurable.conf'\n")

    def _write_settings(self, binaries: ServerBinaries) -> None:
        settings = {
            "listen_addresses": "",
            "port": str(PORT),
            "unix_socket_directories": str(self.data_dir),
        }
        libdir = package_library_dir(binaries)
        if libdir is not None and (libdir / "pg_cron.so").exists():
            # pg_cron is preloaded when installed so pg_cron jobs can be imported and
            # replayed; its launcher connects back through our socket.
            settings["shared_preload_libraries"] = "pg_cron"
            settings["cron.database_name"] = DATABASE
            settings["cron.host"] = str(self.data_dir)
        settings.update(self.extra_settings)
        lines = [f"{name} = {_quote_setting(value)}" for name, value in settings.items()]
        self._write_owned(self.data_dir / "pgdurable.conf", "\n".join(lines) + "\n")

    def _write_owned(self, path: Path, text: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600)
        self._give_to_account(tmp)
        os.replace(tmp, path)

    def _give_to_account(self, path: Path) -> None:
        if self.account is not None:
            os.chown(path, self.account.uid, self.account.gid)

    def _running_pid(self) -> int | None:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # a stale pid file left by a crash
        except PermissionError:
            pass  # alive, owned by another account
        return pid

    def _run(self, args: list[str], *, what: str) -> None:
        account = {}
        if self.account is not None:
            account = {"user": self.account.uid, "group": self.account.gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        result = subprocess.run(
            args, cwd=self.home, env=env, capture_output=True, text=True, check=False, **account
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()
            log_tail = self._log_tail()
            raise EmbeddedClusterError(
                f"could not {what} in {self.data_dir}: {detail}"
                + (f"\nserver log ({self.log_file}):\n{log_tail}" if log_tail else "")
            )

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _ensure_database(self, name: str) -> None:
        from pgdurable.db import create_database_if_missing

        create_database_if_missing(self.conninfo("postgres"), name)
