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
import types
import uuid  # noqa: F401
from datetime import datetime, timedelta
from random import random  # noqa: F401
from typing import Any

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


class _Namespace:
    """A module's public attributes, without the modules it imports: ``macros.uuid.uuid4()``
    works as in Airflow, ``macros.uuid.os`` (a way out of the template sandbox to
    ``os.system``) does not."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self._module, name)
        if isinstance(value, types.ModuleType):
            return _Namespace(value) if value.__name__ in _EXPOSED else _refused(name)
        return value

    def __repr__(self) -> str:
        return f"<module {self._module.__name__!r}>"


def _refused(name: str) -> Any:
    raise AttributeError(f"{name}: a module another module imports is not exposed to templates")


_EXPOSED = {"json", "time", "uuid", "dateutil", "pgdurable.airflow_macros"}


def namespace() -> Any:
    """``macros`` as templates see it."""
    import sys

    return _Namespace(sys.modules[__name__])
