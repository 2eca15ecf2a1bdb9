"""Shared test configuration: the database fixtures come from ``pgdurable.testing``
(loaded with ``-p pgdurable.testing``); this file only adds repo-level paths."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        help="Rewrite fixtures/expected/* from the current translators (review with git diff).",
    )
    parser.addoption(
        "--long",
        action="store_true",
        help="Run the long variants of the reliability suite (chaos, load, fuzzing budgets).",
    )


@pytest.fixture(scope="session")
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens"))


@pytest.fixture(scope="session")
def long_run(request: pytest.FixtureRequest) -> bool:
    """True with --long: reliability tests use their long budgets."""
    return bool(request.config.getoption("--long"))
