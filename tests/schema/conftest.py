"""Fixtures for the df schema tests: ordinary login roles with df usage granted."""

from __future__ import annotations

import pytest


@pytest.fixture
def alice(database):
    """A login role with df.grant_usage in this test's database."""
    database.create_role("alice")
    database.execute("SELECT df.grant_usage('alice')")
    return "alice"


@pytest.fixture
def bob(database):
    database.create_role("bob")
    database.execute("SELECT df.grant_usage('bob')")
    return "bob"
