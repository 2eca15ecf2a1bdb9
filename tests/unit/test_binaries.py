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


def test_missing_version_says_what_to_install():
    with pytest.raises(ServerBinariesNotFound) as caught:
        find_server_binaries(major=99)
    message = caught.value.message
    assert "PostgreSQL 99 server programs" in message
    assert "apt-get install postgresql-15" in message
    assert "PGDURABLE_PG_BINDIR" in message
    # It is a "cannot reach a database" error: exit code 3.
    assert isinstance(caught.value, DatabaseUnavailable)
    assert caught.value.exit_code == 3


def test_explicit_bindir_without_programs_is_ignored(monkeypatch, tmp_path):
    monkeypatch.setenv("PGDURABLE_PG_BINDIR", str(tmp_path))
    assert find_server_binaries().bindir != tmp_path
