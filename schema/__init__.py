"""The SQL that ``pgdurable schema install`` applies, as package data.

Migrations live in ``migrations/NNNN_description.sql`` and are applied in
version order by ``pgdurable.migrator``; this package only locates them, so
editable and wheel installs read the same files through importlib.resources.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable


def migrations_folder() -> Traversable:
    """The folder holding the numbered migration files."""
    return files(__name__) / "migrations"
