"""The worker's Prometheus metrics (``pgdurable worker --metrics-address``).

Each ``Worker`` owns a ``Metrics`` with its own registry, so several workers
in one process (tests, embedding) never share or double-register series.
Updating a series is cheap, so they are always kept; ``serve`` exposes them
over HTTP only when asked, on a loopback address unless the operator
explicitly allows another (metrics name workflows, which is information).

Series (Prometheus naming: counters end in ``_total``, times in ``_seconds``):
- ``pgdurable_runs_started_total{workflow,kind}``, ``pgdurable_runs_completed_total``,
  ``pgdurable_runs_failed_total``, ``pgdurable_runs_cancelled_total``: runs of
  registered workflows (kind ``tick``: an iteration of its schedule loop;
  ``run``: an instance started by its enqueue/trigger function);
- ``pgdurable_step_duration_seconds{type}``: leaf steps that ran (not replays);
- ``pgdurable_schedule_delay_seconds{workflow}``: a run's due time to its start;
- ``pgdurable_start_to_first_step_seconds{workflow}``: a run's start (for a
  started run: its ``df.start``) to its first step;
- ``pgdurable_claimed_instances`` (this worker), ``pgdurable_runnable_backlog`` and
  ``pgdurable_leased_instances`` (all workers, sampled every few seconds);
- ``pgdurable_leases_lost_total``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from pgdurable.errors import MissingDependency, PgDurableError

# prometheus_client is imported when a Metrics is made, not with this module
# (housekeeping imports it): an installation without it still runs workers and
# `verify`; the series are then no-ops and only --metrics-address needs it.
MISSING = (
    "--metrics-address needs the Python package prometheus_client, which this installation "
    "lacks: reinstall pgdurable with `pip install -e .` (or `pip install prometheus_client`)"
)

# Steps and delays from milliseconds to an hour.
TIME_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


def require_client() -> None:
    """Raise MissingDependency when prometheus_client cannot be imported."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise MissingDependency(MISSING) from None


class _Unkept:
    """A series when prometheus_client is missing: every update does nothing."""

    def labels(self, *_args: Any, **_kwargs: Any) -> _Unkept:
        return self

    def __getattr__(self, _name: str) -> Callable[..., None]:  # inc, observe, set, ...
        return lambda *_args, **_kwargs: None


class Metrics:
    def __init__(self) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        except ImportError:
            self.registry = None
            self.runs_started = self.runs_completed = self.runs_failed = _Unkept()
            self.runs_cancelled = self.step_duration = self.schedule_delay = _Unkept()
            self.first_step_latency = self.claimed = self.runnable = _Unkept()
            self.leased = self.leases_lost = _Unkept()
            return
        self.registry = CollectorRegistry(auto_describe=True)
        run = ["workflow", "kind"]
        r = self.registry
        self.runs_started = Counter(
            "pgdurable_runs_started", "Runs of registered workflows started", run, registry=r
        )
        self.runs_completed = Counter(
            "pgdurable_runs_completed", "Runs that ended successfully", run, registry=r
        )
        self.runs_failed = Counter(
            "pgdurable_runs_failed",
            "Runs that failed (also when pgdurable.try recovered)",
            run,
            registry=r,
        )
        self.runs_cancelled = Counter(
            "pgdurable_runs_cancelled", "Runs ended by df.cancel", run, registry=r
        )
        self.step_duration = Histogram(
            "pgdurable_step_duration_seconds",
            "Time a leaf step took to run",
            ["type"],
            buckets=TIME_BUCKETS,
            registry=r,
        )
        self.schedule_delay = Histogram(
            "pgdurable_schedule_delay_seconds",
            "A run's due time to its start",
            ["workflow"],
            buckets=TIME_BUCKETS,
            registry=r,
        )
        self.first_step_latency = Histogram(
            "pgdurable_start_to_first_step_seconds",
            "A run's start to its first step",
            ["workflow"],
            buckets=TIME_BUCKETS,
            registry=r,
        )
        self.claimed = Gauge(
            "pgdurable_claimed_instances", "Instances this worker holds", registry=r
        )
        self.runnable = Gauge(
            "pgdurable_runnable_backlog",
            "Instances runnable now that no worker holds",
            registry=r,
        )
        self.leased = Gauge("pgdurable_leased_instances", "Instances any worker holds", registry=r)
        self.leases_lost = Counter(
            "pgdurable_leases_lost", "Leases this worker lost to another", registry=r
        )

    def count_claimed(self, how_many: Callable[[], int]) -> None:
        self.claimed.set_function(lambda: float(how_many()))

    def serve(self, address: str, *, allow_remote: bool = False):
        """Serve /metrics on ``host:port``; returns the server (``shutdown()`` stops it)."""
        host, port = parse_address(address)
        if not allow_remote and not is_loopback(host):
            raise PgDurableError(
                f"--metrics-address {address}: {host} is not a loopback address; metrics name "
                "your workflows, so they are served on 127.0.0.1 or ::1 unless you add "
                "--metrics-allow-remote (then restrict access, e.g. with a firewall)"
            )
        if self.registry is None:
            raise MissingDependency(MISSING)
        from prometheus_client import start_http_server

        try:
            server, _thread = start_http_server(port, host, registry=self.registry)
        except OSError as exc:
            raise PgDurableError(f"--metrics-address {address}: {exc.strerror or exc}") from exc
        return server


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` as (host, port); a clear error otherwise."""
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PgDurableError(
            f"--metrics-address {address!r}: expected HOST:PORT, e.g. 127.0.0.1:9464"
        )
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
