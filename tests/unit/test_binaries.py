"""Finding PostgreSQL server programs on this machine."""

from __future__ import annotations

import pytest

from pgdurable.binaries import find_server_binaries
from pgdurable.errors import DatabaseUnavailable, ServerBinariesNotFound


def test_finds_a_server_on_this_machine():
    found = find_server_binaries()
    assert found.major >= 14
    assert (found.bindir / "initdb").exists()


def test_pinned_major_version_is_honoured():
    found = find_server_binaries()
    assert find_server_binaries(found.major).major == found.major


def test_missing_version_says_what_to_install(monkeypatch):
    monkeypatch.delenv("PGDURABLE_PG_BINDIR", raising=False)  # the search, not a named folder
    with pytest.raises(ServerBinariesNotFound) as caught:
        find_server_binaries(major=99)
    message = caught.value.message
    assert "PostgreSQL 99 server programs" in message
    assert "apt-get install postgresql-15" in message
    assert "PGDURABLE_PG_BINDIR" in message
    # It is a "cannot reach a database" error: exit code 3.
    assert isinstance(caught.value, DatabaseUnavailable)
    assert caught.value.exit_code == 3


def test_explicit_bindir_is_the_only_folder_used(monkeypatch, tmp_path):
    """CI runs the suite once per major version: the named folder wins even over a higher
    version elsewhere, and a wrong folder is an error, not a silent fallback."""
    found = find_server_binaries()
    (tmp_path / "bin").symlink_to(found.bindir)
    monkeypatch.setenv("PGDURABLE_PG_BINDIR", str(tmp_path / "bin"))
    assert find_server_binaries() == found.__class__(tmp_path / "bin", found.major, found.version)

    monkeypatch.setenv("PGDURABLE_PG_BINDIR", str(tmp_path))
    with pytest.raises(ServerBinariesNotFound) as caught:
        find_server_binaries()
    assert f"{tmp_path} has no runnable initdb, pg_ctl, postgres" in caught.value.message
    assert "PGDURABLE_PG_BINDIR names a folder without a usable PostgreSQL" in caught.value.message


def test_explicit_bindir_of_another_major_than_the_cluster_is_refused(monkeypatch):
    found = find_server_binaries()
    monkeypatch.setenv("PGDURABLE_PG_BINDIR", str(found.bindir))
    with pytest.raises(ServerBinariesNotFound) as caught:
        find_server_binaries(major=found.major + 1)
    message = caught.value.message
    assert f"the cluster was created by PostgreSQL {found.major + 1}" in message
    assert f"holds PostgreSQL {found.version}" in message
