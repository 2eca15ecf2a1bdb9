"""Parsing of the run-history and metrics options (issue 20), without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
import pytest
from click.testing import CliRunner

from pgdurable.cli import EXIT_USAGE, cli
from pgdurable.cli.history import label_pattern, parse_since, stamp, table
from pgdurable.errors import PgDurableError
from pgdurable.worker.metrics import is_loopback, parse_address


def test_since_takes_an_age_or_an_iso_time():
    before = datetime.now(UTC)
    two_hours = parse_since("2h")
    assert (
        before - timedelta(hours=2, seconds=5)
        < two_hours
        <= before - timedelta(hours=2) + timedelta(seconds=5)
    )
    assert parse_since("7d") < parse_since("1d") < parse_since("30m") < parse_since("90s")
    assert parse_since("2026-12-01T08:00") == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert parse_since("2026-12-01T08:00+02:00").utcoffset() == timedelta(hours=2)
    assert parse_since(None) is None
    for bad in ("yesterday", "2 fortnights", "-3h", ""):
        with pytest.raises(click.BadParameter):
            parse_since(bad)


def test_bad_options_are_usage_errors_before_connecting():
    for args in (
        ["runs", "--since", "soon"],
        ["runs", "--state", "sleeping"],
        ["runs", "--limit", "0"],
        ["status", "--state", "sleepy"],
        ["status", "--limit", "-1"],
        ["worker", "--metrics-address", "0.0.0.0:9464"],
        ["worker", "--metrics-address", "9464"],
    ):
        result = CliRunner().invoke(cli, [*args, "--dsn", "host=/nonexistent dbname=x"])
        assert result.exit_code == EXIT_USAGE, (args, result.output)


def test_label_globs_escape_like_wildcards():
    assert label_pattern("celery/*") == "celery/%"
    assert label_pattern("a_b%c") == "a\\_b\\%c"
    assert label_pattern(None) is None


def test_metrics_addresses():
    assert parse_address("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_address("[::1]:9464") == ("::1", 9464)
    assert parse_address("localhost:1") == ("localhost", 1)
    for bad in ("9464", "127.0.0.1:", ":9464", "127.0.0.1:0", "127.0.0.1:65536", "h:x"):
        with pytest.raises(PgDurableError, match="HOST:PORT"):
            parse_address(bad)
    assert is_loopback("127.0.0.1") and is_loopback("127.5.5.5") and is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")
    assert not is_loopback("example.com") and not is_loopback("::")


def test_tables_and_timestamps():
    assert stamp("2026-12-02T03:04:05.678+02:00") == "2026-12-02 01:04:05Z"
    assert stamp(None) == "-"
    assert table(["A", "LONGER"], [["xx", "1"], ["y", "22"]]).splitlines() == [
        "A   LONGER",
        "xx  1",
        "y   22",
    ]
