"""Shared test configuration: the database fixtures come from ``pgdurable.testing``
(loaded with ``-p pgdurable.testing``); this file only adds repo-level paths."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
