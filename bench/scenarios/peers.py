"""Scenario (to be written)."""

from __future__ import annotations

KEY = "peers"


def run(ctx):
    raise NotImplementedError("peers")
