"""Scenario (to be written)."""

from __future__ import annotations

KEY = "latency"


def run(ctx):
    raise NotImplementedError("latency")
