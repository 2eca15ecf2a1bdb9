"""``python -m bench``: run the benchmark scenarios and regenerate BENCHMARKS.md.

Starts its own throwaway PostgreSQL (default settings, fsync on), runs each
selected scenario (warm-up, then ``--runs`` measured runs) and writes the
report. A full run rewrites BENCHMARKS.md; a run of some scenarios prints
its tables unless ``--output`` is given. ``--json`` prints every figure.

Exit codes: 0 all scenarios ran, 1 a scenario failed (the others still ran
and are reported), 2 bad usage, 3 the server could not be started.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench import calibration
from bench.context import Context
from bench.harness import BenchServer
from bench.report import Section, machine, render, run_context
from bench.scenarios import ALL, BY_KEY

REPO = Path(__file__).resolve().parent.parent


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure pgdurable against the physical floor and its peers "
        "(DBOS Transact, Procrastinate, PgQueuer) on a throwaway PostgreSQL.",
        epilog="Scenarios: " + ", ".join(m.KEY for m in ALL) + ". Exit codes: 0 ok, "
        "1 a scenario failed, 2 bad usage, 3 the server could not be started.",
    )
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help="scenarios to run (default: all)"
    )
    parser.add_argument("--runs", type=int, default=5, help="measured runs per figure (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="unrecorded runs first (default 1)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and 1 run: checks the runner, figures mean little",
    )
    parser.add_argument(
        "--output", type=Path, help="write the report here (default: BENCHMARKS.md on a full run)"
    )
    parser.add_argument("--json", action="store_true", help="print all figures as JSON on stdout")
    parser.add_argument(
        "--peer-venv",
        type=Path,
        help="virtualenv for the peer libraries (default: ~/.cache/pgdurable/"
        "bench-peers; created and filled from PyPI when missing)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = [key for key in args.scenarios if key not in BY_KEY]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(BY_KEY)}")
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")
    selected = [module for module in ALL if module.KEY in args.scenarios] or ALL
    if args.quick:
        args.runs, args.warmup = 1, 0
    output = args.output
    if output is None and len(selected) == len(ALL) and not args.quick:
        output = REPO / "BENCHMARKS.md"

    def progress(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    settings_shown = ["fsync", "synchronous_commit", "shared_buffers", "max_connections"]
    sections: list[Section] = []
    failed: list[str] = []
    info, started = machine(), datetime.now(UTC)  # load average before the run
    try:
        server = BenchServer().__enter__()
    except Exception as exc:  # the embedded cluster explains what is missing
        print(f"error: could not start the benchmark server: {exc}", file=sys.stderr)
        return 3
    try:
        assert server.cluster is not None and server.base is not None
        progress("calibration: CPU loop and pg_test_fsync")
        calibrated = calibration.describe(server.cluster.binaries().bindir, server.base)
        ctx = Context(
            server,
            runs=args.runs,
            warmup=args.warmup,
            quick=args.quick,
            progress=progress,
            peer_venv=args.peer_venv,
        )
        for module in selected:
            progress(f"scenario {module.KEY}")
            try:
                sections.append(module.run(ctx))
            except Exception:
                failed.append(module.KEY)
                progress(f"scenario {module.KEY} failed:\n{traceback.format_exc()}")
        context = run_context(
            argv,
            info,
            started,
            server.setting("server_version"),
            {name: server.setting(name) for name in settings_shown},
            calibrated,
        )
    finally:
        server.__exit__(None, None, None)
    if failed:
        context["failed scenarios"] = ", ".join(failed)
    text = render(sections, context)
    if output is not None:
        _write_atomically(output, text)
        progress(f"wrote {output}")
    if args.json:
        print(
            json.dumps(
                {"context": context, "sections": [s.__dict__ for s in sections]},
                indent=2,
                default=str,
            )
        )
    elif output is None:
        print(text)
    return 1 if failed else 0


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
