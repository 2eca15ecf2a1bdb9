"""Scenario (to be written)."""

from __future__ import annotations

KEY = "translation"


def run(ctx):
    raise NotImplementedError("translation")
