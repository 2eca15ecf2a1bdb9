"""The benchmark runner (``python -m bench``) works end to end.

A smoke run at ``--quick`` sizes of the scenarios that need nothing beyond
this repository: the report is written atomically with a table per scenario
and the targets summary, ``--json`` carries the same figures, and bad usage
exits 2. The figures themselves are not asserted (they belong to
BENCHMARKS.md, from a full run on a quiet machine).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_quick_run_writes_every_selected_section(tmp_path):
    report = tmp_path / "BENCH.md"
    done = _bench(
        "step", "throughput", "latency", "scaleout", "--quick", "--json", "--output", str(report)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = report.read_text()
    for title in (
        "## 1. Per-step overhead",
        "## 2. Throughput",
        "## 3. Latency",
        "## 8. Scale-out across worker processes",
        "## Targets",
    ):
        assert title in text
    assert "fsync=on" in text  # the server runs with default durability
    # What makes figures comparable across machines is in the header.
    assert re.search(r"\*\*disk sync\*\*: fdatasync \d+\.\d\d ms per 8 kB write", text), text
    assert re.search(r"\*\*cpu calibration\*\*: \d+\.\d ms", text)
    assert re.search(r"\*\*load average\*\*: [\d. ]+ before the run, [\d. ]+ after it", text)
    figures = json.loads(done.stdout)
    sections = {section["key"]: section for section in figures["sections"]}
    assert set(sections) == {"step", "throughput", "latency", "scaleout"}
    scaleout = sections["scaleout"]["data"]
    assert all(scaleout[f"workers_{p}"]["median"] > 0 for p in (1, 2, 4))
    step = sections["step"]["data"]
    assert step["step_s"]["median"] > step["floor_s"]["median"] > 0
    assert sections["throughput"]["data"]["workers_1"]["median"] > 0
    assert len(sections["latency"]["data"]["samples_s"]) == 20
    assert not list(tmp_path.glob(".BENCH.md.*")), "no temporary file is left behind"


def test_unknown_scenarios_are_a_usage_error():
    done = _bench("nonsense")
    assert done.returncode == 2
    assert "unknown scenario nonsense" in done.stderr
