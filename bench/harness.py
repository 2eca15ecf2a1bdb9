"""The benchmark server and the repetition of measurements.

``BenchServer`` starts a throwaway embedded PostgreSQL with default settings
(fsync and synchronous_commit on; only the socket and pg_cron differ from
initdb's defaults), installs the pgdurable schema in a fresh database per
scenario and creates the unprivileged role workflows run as.

``repeat`` runs a measurement after warm-up runs and keeps every sample, so
reports can show the median with its min and max.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pgdurable import db, migrator
from pgdurable.embedded import EmbeddedCluster

BENCH_ROLE = "bench"


@dataclass
class Stats:
    """Samples of one measurement (seconds, or a rate: whatever the caller measured)."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)

    def as_dict(self) -> dict[str, object]:
        return {"median": self.median, "min": self.low, "max": self.high, "samples": self.samples}


def repeat(measure: Callable[[], float], runs: int, warmup: int = 1) -> Stats:
    """``measure()`` ``warmup`` times unrecorded, then ``runs`` times recorded."""
    for _ in range(warmup):
        measure()
    return Stats([measure() for _ in range(runs)])


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class BenchDatabase:
    """One database with the pgdurable schema and the ``bench`` role."""

    cluster: EmbeddedCluster
    name: str

    @property
    def admin_dsn(self) -> str:
        return self.cluster.conninfo(self.name)

    @property
    def user_dsn(self) -> str:
        return self.cluster.conninfo(self.name, user=BENCH_ROLE)

    def execute(self, query: str, params: list | None = None) -> list[tuple]:
        with db.connection(self.admin_dsn, autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def value(self, query: str, params: list | None = None):
        """The first column of the first row."""
        return self.execute(query, params)[0][0]


class BenchServer:
    """A throwaway PostgreSQL cluster for one benchmark run."""

    def __init__(self, base: Path | None = None, settings: dict[str, str] | None = None) -> None:
        self.base = base
        self.settings = settings or {}
        self.cluster: EmbeddedCluster | None = None
        self._owned_base = False

    def __enter__(self) -> BenchServer:
        if self.base is None:
            self.base = Path(tempfile.mkdtemp(prefix="pgdurable-bench-"))
            self.base.chmod(0o755)  # the server account must enter it when we run as root
            self._owned_base = True
        # Enough connections for two worker processes plus a peer's pool.
        settings = {"max_connections": "200", **self.settings}
        self.cluster = EmbeddedCluster(self.base / "cluster", settings=settings)
        self.cluster.start()
        with db.connection(self.cluster.conninfo("postgres"), autocommit=True) as conn:
            if not conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", [BENCH_ROLE]
            ).fetchone():
                conn.execute(f"CREATE ROLE {BENCH_ROLE} LOGIN")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.cluster is not None:
                self.cluster.stop()
        finally:
            if self._owned_base and self.base is not None:
                shutil.rmtree(self.base, ignore_errors=True)

    def setting(self, name: str) -> str:
        assert self.cluster is not None
        with db.connection(self.cluster.conninfo("postgres"), autocommit=True) as conn:
            return conn.execute("SELECT current_setting(%s)", [name]).fetchone()[0]

    @contextmanager
    def database(self, *, schema: bool = True) -> Iterator[BenchDatabase]:
        """A fresh database (with the pgdurable schema unless ``schema=False``), dropped after."""
        assert self.cluster is not None
        name = f"bench_{uuid.uuid4().hex[:10]}"
        db.create_database_if_missing(self.cluster.conninfo("postgres"), name)
        database = BenchDatabase(self.cluster, name)
        try:
            if schema:
                with db.connection(database.admin_dsn) as conn:
                    migrator.apply(conn)
                database.execute(f"SELECT df.grant_usage('{BENCH_ROLE}')")
            database.execute(f"GRANT CREATE ON SCHEMA public TO {BENCH_ROLE}")
            yield database
        finally:
            with db.connection(self.cluster.conninfo("postgres"), autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
