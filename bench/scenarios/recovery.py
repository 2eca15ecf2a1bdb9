"""Scenario (to be written)."""

from __future__ import annotations

KEY = "recovery"


def run(ctx):
    raise NotImplementedError("recovery")
