"""Structured worker logs: one record per step transition and per claim outcome.

Events are logged on the ``pgdurable.worker`` logger with their fields in
``extra={"fields": {...}}``, so the same call renders as a readable line
(``TextFormatter``) or as one JSON object per line (``JsonFormatter``,
``pgdurable worker --log-format json``), ready for a log shipper.

Step events: ``step_started``, then ``step_completed``, ``step_failed`` or
``step_waiting`` (fields ``instance``, ``node``, ``type``, ``execution``;
``duration_ms`` when finished, ``error`` on failure, ``wake_at``/``signals``
when waiting). Replayed steps log nothing: they do not run again. Claim outcomes:
``instance_completed``, ``instance_failed``, ``instance_suspended``,
``instance_released``. Runs of registered workflows (``runs``): ``run_started``,
``run_succeeded``, ``run_cancelled``, and ``run_failed`` at WARNING. Worker:
``worker_started``, ``worker_stopping``, ``worker_stopped``, ``metrics_serving``,
``database_unavailable``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

log = logging.getLogger("pgdurable.worker")


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event; cheap when the level is disabled."""
    if log.isEnabledFor(level):
        log.log(level, name, extra={"fields": fields})


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, event, then the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
        }
        fields = getattr(record, "fields", None)
        if fields is not None:
            entry["event"] = record.getMessage()
            entry.update(fields)
        else:  # a plain log call (warnings, library messages)
            entry["event"] = "message"
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time LEVEL event key=value…`` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging API)
        line = super().formatMessage(record)
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return line


def configure(log_format: str = "text", level: int = logging.INFO) -> None:
    """Route worker (and library) logs to stderr in the chosen format."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
