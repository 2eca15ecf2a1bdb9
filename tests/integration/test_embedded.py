"""The embedded cluster and the `pgdurable db` / `schema` commands, end to end."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pgdurable import db as database
from pgdurable.binaries import find_server_binaries
from pgdurable.embedded import EmbeddedCluster, ServerAccount
from pgdurable.errors import EmbeddedClusterError

# No connection settings reach the commands, but the server choice of the run does.
CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if (not k.startswith("PG") and k != "DATABASE_URL") or k == "PGDURABLE_PG_BINDIR"
}


@pytest.fixture
def home_base():
    """A folder under /tmp that an unprivileged server account can enter."""
    base = Path(tempfile.mkdtemp(prefix="pgdurable-home-"))
    base.chmod(0o755)
    yield base
    # Stop anything a failed test left running before removing its files.
    for data in base.glob("*/data"):
        if (data / "postmaster.pid").exists():
            EmbeddedCluster(data.parent).stop()
    subprocess.run(["rm", "-rf", str(base)], check=False)


def pgdurable(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**CLEAN_ENV, "PGDURABLE_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "pgdurable", *args],
        env=env,
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_db_and_schema_lifecycle_through_the_cli(home_base):
    home = home_base / "home"

    first = pgdurable("db", "start", "--json", home=home)
    assert first.returncode == 0, first.stderr
    started = json.loads(first.stdout)
    assert started["started"] is True and started["running"] is True
    # The server of this run ($PGDURABLE_PG_BINDIR when CI sets it), with its version.
    server = find_server_binaries()
    assert f"initialising PostgreSQL {server.version} cluster" in first.stderr

    second = pgdurable("db", "start", "--json", home=home)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["started"] is False and again["pid"] == started["pid"]

    status = pgdurable("db", "status", "--json", home=home)
    assert status.returncode == 0
    state = json.loads(status.stdout)
    data_dir = Path(state["data_dir"])
    assert state["major_version"] == server.major
    owner = pwd.getpwuid(data_dir.stat().st_uid).pw_name
    assert owner == state["server_account"]
    assert oct(data_dir.stat().st_mode & 0o777) == "0o700"
    if os.geteuid() == 0:
        assert state["server_account"] != "root"

    url = pgdurable("db", "url", home=home).stdout.strip()
    with database.connection(url) as conn:
        # Socket only: no TCP listener at all.
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        assert conn.execute("SELECT current_database()").fetchone() == ("pgdurable",)

    not_yet = pgdurable("schema", "status", home=home)
    assert not_yet.returncode == 1 and "schema not installed" in not_yet.stdout
    assert "using embedded" in not_yet.stderr

    install = pgdurable("schema", "install", home=home)
    assert install.returncode == 0, install.stderr
    assert "schema installed at version" in install.stdout
    reinstall = pgdurable("schema", "install", "--json", home=home)
    assert reinstall.returncode == 0
    assert json.loads(reinstall.stdout)["applied"] == []
    assert "already installed" in pgdurable("schema", "install", home=home).stdout
    assert pgdurable("schema", "status", home=home).returncode == 0

    stop = pgdurable("db", "stop", home=home)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    assert "was not running" in pgdurable("db", "stop", home=home).stdout
    stopped = pgdurable("db", "status", home=home)
    assert stopped.returncode == 3 and "stopped" in stopped.stdout


def test_schema_install_starts_the_embedded_cluster_on_demand(home_base):
    home = home_base / "ondemand"
    result = pgdurable("schema", "install", home=home)
    assert result.returncode == 0, result.stderr
    assert "starting PostgreSQL" in result.stderr
    assert pgdurable("db", "status", home=home).returncode == 0
    assert pgdurable("db", "stop", home=home).returncode == 0


def _run_unprivileged(function) -> str:
    """Run ``function`` in a child process as the unprivileged 'postgres' account
    when we are root (to test the normal-user path); as ourselves otherwise.
    Returns what the function returned, as text, or raises with the child's error."""
    if os.geteuid() != 0:
        return str(function())
    account = pwd.getpwnam("postgres")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop privileges for good, then run
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
            os.environ["HOME"] = "/tmp"
            message = str(function())
        except BaseException as exc:
            message, code = f"{type(exc).__name__}: {exc}", 1
        os.write(write_end, message.encode())
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read().decode()
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0, output
    return output


def test_normal_user_runs_the_server_as_itself(home_base):
    home = home_base / "normal"
    home.mkdir()
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(home, account.pw_uid, account.pw_gid)

    def lifecycle() -> str:
        cluster = EmbeddedCluster(home)
        assert cluster.account is None  # not root: no account switch
        assert cluster.start() is True
        assert cluster.start() is False
        with database.connection(cluster.conninfo()) as conn:
            owner = conn.execute("SELECT pg_catalog.current_setting('data_directory')").fetchone()[
                0
            ]
        assert cluster.stop() is True
        return owner

    assert _run_unprivileged(lifecycle) == str(home / "data")
    assert not (home / "data" / "postmaster.pid").exists()


def test_home_the_server_account_cannot_enter_is_refused(home_base):
    private = home_base / "private"
    private.mkdir(mode=0o700)
    if os.geteuid() != 0:
        private.chmod(0o000)  # even the owner cannot enter
    cluster = EmbeddedCluster(private / "home")
    # The check applies to whichever account will run the server.
    postgres = pwd.getpwnam("postgres")
    cluster.account = ServerAccount(
        "postgres", postgres.pw_uid, postgres.pw_gid, (postgres.pw_gid,)
    )
    try:
        with pytest.raises(
            EmbeddedClusterError, match="cannot enter .*private.*set PGDURABLE_HOME"
        ):
            cluster.start()
    finally:
        private.chmod(0o700)
    # Nothing was loosened: the folder keeps its mode.
    assert oct(private.stat().st_mode & 0o777) == "0o700"


def test_server_programs_the_server_account_cannot_reach_are_refused(home_base, monkeypatch):
    """As root the server runs as `postgres`: programs unpacked under a 0700 folder (root's
    home, say) cannot run, and the error says so instead of a bare 'permission denied'."""
    private = home_base / "private-bin"
    private.mkdir(mode=0o700)
    (private / "bin").symlink_to(find_server_binaries().bindir)
    monkeypatch.setenv("PGDURABLE_PG_BINDIR", str(private / "bin"))
    cluster = EmbeddedCluster(home_base / "home")
    postgres = pwd.getpwnam("postgres")
    cluster.account = ServerAccount(
        "postgres", postgres.pw_uid, postgres.pw_gid, (postgres.pw_gid,)
    )
    with pytest.raises(
        EmbeddedClusterError, match="cannot enter .*private-bin.*so it cannot run PostgreSQL"
    ):
        cluster.start()
    assert not (home_base / "home" / "data").exists()  # refused before initdb
    assert oct(private.stat().st_mode & 0o777) == "0o700"


def test_cli_exit_codes_and_json_errors(home_base):
    home = home_base / "unused"
    unreachable = pgdurable(
        "schema", "status", "--dsn", f"host={home_base}/nowhere dbname=x", home=home
    )
    assert unreachable.returncode == 3
    assert unreachable.stderr.splitlines()[-1].startswith("error: could not connect to")
    assert "Traceback" not in unreachable.stderr

    as_json = pgdurable(
        "schema", "status", "--json", "--dsn", f"host={home_base}/nowhere", home=home
    )
    assert as_json.returncode == 3
    error = json.loads(as_json.stdout)["error"]
    assert error["type"] == "DatabaseUnavailable" and error["exit_code"] == 3

    with_traceback = pgdurable(
        "--traceback", "schema", "status", "--dsn", f"host={home_base}/nowhere", home=home
    )
    assert "Traceback" in with_traceback.stderr

    usage = pgdurable("schema", "explode", home=home)
    assert usage.returncode == 2 and "No such command" in usage.stderr

    version = pgdurable("--version", home=home)
    assert version.returncode == 0 and version.stdout.startswith("pgdurable, version ")

    for command in (
        ["--help"],
        ["db", "--help"],
        ["db", "start", "--help"],
        ["schema", "install", "--help"],
    ):
        helped = pgdurable(*command, home=home)
        assert helped.returncode == 0 and "Usage:" in helped.stdout
