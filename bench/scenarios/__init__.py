"""The benchmark scenarios, in report order.

Each module has ``KEY`` (its name on the command line) and
``run(ctx: bench.context.Context) -> bench.report.Section``.
"""

from __future__ import annotations

from bench.scenarios import (
    fidelity,
    latency,
    peers,
    recovery,
    scale,
    scaleout,
    step_breakdown,
    step_overhead,
    throughput,
    translation,
)

ALL = [
    step_overhead,
    step_breakdown,
    throughput,
    latency,
    scale,
    recovery,
    peers,
    translation,
    scaleout,
    fidelity,
]
BY_KEY = {module.KEY: module for module in ALL}
