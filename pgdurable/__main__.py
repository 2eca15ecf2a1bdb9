"""``python -m pgdurable`` runs the command-line interface."""

from __future__ import annotations

from pgdurable.cli import main

main()
