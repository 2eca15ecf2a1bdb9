"""Scenario 6: the workloads of scenarios 1 and 2 written for peers, side by side.

DBOS Transact, Procrastinate and PgQueuer are installed from PyPI into a
virtualenv of their own (``bench/peers/venv.py``); each peer's script in
``bench/peers/`` runs there as a subprocess against its own fresh database
on this run's server and prints its samples as JSON. Ratios are to the
floor of scenario 1 and to pgdurable's own figures of scenarios 1-2 (each
measured here, the same way, when its scenario did not run in this invocation). A peer that fails to
install or run gets a row with its error instead of failing the scenario.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.context import Context
from bench.harness import Stats, repeat
from bench.peers.venv import PeerVenvError, ensure_venv
from bench.report import Section, rate, spread
from bench.scenarios import step_overhead, throughput
from pgdurable import db

KEY = "peers"
PEERS_DIR = Path(__file__).resolve().parent.parent / "peers"
WORKERS = (1, 2)
TARGET_VS_PGQUEUER = 1.5
TIMEOUT = 900  # seconds for one script run; a hung peer must not hang the whole report


@dataclass(frozen=True)
class Peer:
    name: str
    script: str
    per_step: str | None  # why there is no per-step figure, or None when there is one
    system_db: bool = False  # DBOS creates a system database next to the application's


PEERS = [
    Peer("DBOS Transact", "dbos_workload.py", None, system_db=True),
    Peer("Procrastinate", "procrastinate_workload.py", None),
    Peer(
        "PgQueuer",
        "pgqueuer_workload.py",
        "not measured: completions are written in buffered batches (up to 0.1 s late), "
        "so consecutive jobs time the buffer",
    ),
]


class PeerFailed(Exception):
    """A peer's script exited with an error; the message is its last line."""


def run(ctx: Context) -> Section:
    instances = ctx.size(2000, 50)  # as many as the throughput scenario drains
    section = Section(
        KEY,
        "6. Peers side by side",
        "The workloads of scenarios 1 and 2 written for each peer the way its docs describe "
        "for production, run in this invocation against the same server, each peer in its own "
        "fresh database (as the superuser, since they install schemas; DBOS also creates its "
        "system database). Per step: a workflow of 10 one-row `UPDATE`s (Procrastinate: 10 "
        "jobs, one `UPDATE` each, on one worker), per step = span from the first to the last "
        "step's completion ÷ 9, start-up excluded. Throughput: "
        f"{instances} one-`UPDATE` instances enqueued up front, then 1 or 2 worker processes "
        "(concurrency 10 each) released together; rate = instances ÷ (last completion − first "
        "start) from the peer's own tables. DBOS queues poll every 10 ms (default 1 s). "
        f"{ctx.runs} runs after {ctx.warmup} warm-up; peers in a separate virtualenv "
        "(`bench/peers/requirements.txt`).",
        ["system", "measurement", "median (min–max)", "ratio"],
    )
    floor = _floor(ctx)
    ours_step, ours_rate = _ours(ctx, instances)
    section.rows.append(
        ["floor: autocommit UPDATE (psycopg)", "per statement", spread(floor), "1.0× floor"]
    )
    section.rows.append(
        [
            "pgdurable",
            "exactly-once SQL step",
            spread(ours_step),
            f"{ours_step.median / floor.median:.1f}× floor",
        ]
    )
    for workers, stats in ours_rate.items():
        section.rows.append(
            [
                "pgdurable",
                f"throughput, {workers} worker process(es)",
                spread(stats, rate),
                "1.0× pgdurable",
            ]
        )
    data: dict[str, object] = {
        "floor_s": floor.as_dict(),
        "instances": instances,
        "pgdurable": {
            "step_s": ours_step.as_dict(),
            **{f"throughput_{w}": stats.as_dict() for w, stats in ours_rate.items()},
        },
    }
    section.data = data
    best_ours = max(stats.median for stats in ours_rate.values())
    batching_queue: list[float] = []  # PgQueuer's throughput medians, the figure to beat

    try:
        python = ensure_venv(ctx.peer_venv, ctx.progress)
    except PeerVenvError as exc:
        for peer in PEERS:
            section.rows.append([peer.name, "not installed", _last_line(str(exc)), "—"])
        return section

    for peer in PEERS:
        figures: dict[str, object] = {}
        data[peer.name] = figures
        with ctx.server.database(schema=False) as database:
            system_db = f"{database.name}_dbos_sys" if peer.system_db else None
            try:
                _per_step_rows(
                    ctx, section, python, peer, database.admin_dsn, system_db, floor, figures
                )
                for workers in WORKERS:
                    ctx.progress(f"peers: {peer.name} throughput, {workers} worker(s)")
                    try:
                        result = _script(
                            python,
                            peer,
                            "throughput",
                            database.admin_dsn,
                            system_db,
                            ctx,
                            instances=instances,
                            workers=workers,
                        )
                    except PeerFailed as exc:
                        section.rows.append(
                            [
                                peer.name,
                                f"throughput, {workers} worker process(es)",
                                f"failed: {exc}",
                                "—",
                            ]
                        )
                        continue
                    version = result["version"]
                    for label, samples in result["samples"].items():
                        stats = Stats([float(s) for s in samples])
                        figures[f"throughput_{workers}"] = stats.as_dict()
                        if peer.name == "PgQueuer":
                            batching_queue.append(stats.median)
                        ratio = f"{stats.median / ours_rate[workers].median:.2f}× pgdurable"
                        section.rows.append(
                            [
                                f"{peer.name} {version}",
                                f"throughput, {label}",
                                spread(stats, rate),
                                ratio,
                            ]
                        )
            finally:
                if system_db:
                    _drop_database(ctx, system_db)
    if batching_queue:
        ratio = best_ours / max(batching_queue)
        section.target(
            f"one-step throughput ≥ {TARGET_VS_PGQUEUER}× PgQueuer's",
            f"{ratio:.2f}× ({rate(best_ours)} vs {rate(max(batching_queue))}, best of 1 and 2 "
            "workers each)",
            ratio >= TARGET_VS_PGQUEUER,
        )
    return section


def _per_step_rows(
    ctx: Context,
    section: Section,
    python: Path,
    peer: Peer,
    dsn: str,
    system_db: str | None,
    floor: Stats,
    figures: dict[str, object],
) -> None:
    if peer.per_step is not None:
        section.rows.append([peer.name, "per step", peer.per_step, "—"])
        return
    ctx.progress(f"peers: {peer.name} per step")
    try:
        result = _script(python, peer, "step", dsn, system_db, ctx)
    except PeerFailed as exc:
        section.rows.append([peer.name, "per step", f"failed: {exc}", "—"])
        return
    for label, samples in result["samples"].items():
        stats = Stats([float(s) for s in samples])
        figures[f"per_step: {label}"] = stats.as_dict()
        section.rows.append(
            [
                f"{peer.name} {result['version']}",
                f"per step: {label}",
                spread(stats),
                f"{stats.median / floor.median:.1f}× floor",
            ]
        )


def _ours(ctx: Context, instances: int) -> tuple[Stats, dict[int, Stats]]:
    """pgdurable's per-step and throughput figures: those of scenarios ``step`` and
    ``throughput`` when they ran in this invocation, else measured here the same way,
    so that the peers are never reported without pgdurable beside them."""
    step = ctx.shared.get("step")
    if not isinstance(step, Stats):
        ctx.progress("peers: pgdurable per step (scenario step did not run)")
        with ctx.server.database() as database:
            step_overhead.prepare_rows(database)
            step = repeat(lambda: step_overhead.workflow_per_step(database), ctx.runs, ctx.warmup)
        ctx.shared["step"] = step
    rates: dict[int, Stats] = {}
    for workers in WORKERS:
        shared = ctx.shared.get(f"throughput_{workers}")
        if isinstance(shared, Stats):
            rates[workers] = shared
            continue
        ctx.progress(
            f"peers: pgdurable throughput, {workers} worker(s) (scenario throughput did not run)"
        )
        rates[workers] = repeat(
            lambda workers=workers: throughput.drain_fresh(ctx, workers, instances),
            ctx.runs,
            ctx.warmup,
        )
        ctx.shared[f"throughput_{workers}"] = rates[workers]
    return step, rates


def _floor(ctx: Context) -> Stats:
    shared = ctx.shared.get("floor")
    if isinstance(shared, Stats):
        return shared
    ctx.progress("peers: floor (scenario step did not run)")
    with ctx.server.database(schema=False) as database:
        step_overhead.prepare_rows(database)
        floor = repeat(
            lambda: step_overhead.floor_per_statement(database.user_dsn), ctx.runs, ctx.warmup
        )
    ctx.shared["floor"] = floor
    return floor


def _script(
    python: Path, peer: Peer, role: str, dsn: str, system_db: str | None, ctx: Context, **sizes: int
) -> dict:
    command = [
        str(python),
        str(PEERS_DIR / peer.script),
        role,
        "--dsn",
        dsn,
        "--samples",
        str(ctx.runs),
        "--warmup",
        str(ctx.warmup),
    ]
    if system_db:
        command += ["--system-db", system_db]
    for name, value in sizes.items():
        command += [f"--{name}", str(value)]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT, cwd=PEERS_DIR
        )
    except subprocess.TimeoutExpired:
        raise PeerFailed(f"timed out after {TIMEOUT} s") from None
    if result.returncode != 0:
        raise PeerFailed(_last_line(result.stderr) or f"exit {result.returncode}")
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise PeerFailed(f"no JSON on stdout: {_last_line(result.stdout)!r}") from None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _drop_database(ctx: Context, name: str) -> None:
    assert ctx.server.cluster is not None
    with db.connection(ctx.server.cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
