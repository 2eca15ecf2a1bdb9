"""Scenario (to be written)."""

from __future__ import annotations

KEY = "scale"


def run(ctx):
    raise NotImplementedError("scale")
