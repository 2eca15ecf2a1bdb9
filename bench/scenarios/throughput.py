"""Scenario (to be written)."""

from __future__ import annotations

KEY = "throughput"


def run(ctx):
    raise NotImplementedError("throughput")
