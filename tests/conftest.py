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


def pytest_configure(config: pytest.Config) -> None:
    # Property tests run the same examples on every ordinary run, so CI cannot fail
    # on a new random find; --long explores at random (and finds new inputs).
    from hypothesis import settings

    settings.register_profile("pgdurable", derandomize=True)
    settings.register_profile("pgdurable-long", derandomize=False)
    settings.load_profile("pgdurable-long" if config.getoption("--long") else "pgdurable")


@pytest.fixture(scope="session")
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens"))


@pytest.fixture(scope="session")
def long_run(request: pytest.FixtureRequest) -> bool:
    """True with --long: reliability tests use their long budgets."""
    return bool(request.config.getoption("--long"))
