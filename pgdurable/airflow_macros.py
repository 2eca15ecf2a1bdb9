"""``macros`` of Airflow's template context, for templates rendered on the worker.

The same functions as ``airflow.macros`` (2.x / 3.x; 1.10 has the same
``ds_add`` / ``ds_format`` results): ``ds_add``, ``ds_format`` and the modules
Airflow exposes there (``datetime``, ``timedelta``, ``json``, ``time``,
``uuid``, ``random``, ``dateutil`` when installed). Not provided:
``ds_format_locale`` and ``datetime_diff_for_humans`` (babel / pendulum): the
translation keeps templates that use them manual.
"""

from __future__ import annotations

import json  # noqa: F401 - exposed to templates as macros.json
import time  # noqa: F401
import uuid  # noqa: F401
from datetime import datetime, timedelta
from random import random  # noqa: F401

try:  # Airflow depends on python-dateutil; pgdurable does not
    import dateutil  # noqa: F401
except ImportError:  # pragma: no cover - depends on the worker's packages
    pass

PROVIDED = frozenset(
    {"ds_add", "ds_format", "datetime", "timedelta", "json", "time", "uuid", "random"}
)


def ds_add(ds: str, days: int) -> str:
    """``ds`` (YYYY-MM-DD) plus ``days`` days, as Airflow's ``macros.ds_add``."""
    if not days:
        return str(ds)
    return (datetime.strptime(str(ds), "%Y-%m-%d") + timedelta(days=days)).strftime("%Y-%m-%d")


def ds_format(ds: str, input_format: str, output_format: str) -> str:
    """``ds`` parsed with ``input_format`` and written with ``output_format``."""
    return datetime.strptime(str(ds), input_format).strftime(output_format)
