"""Truthiness of a condition result (IF, while-conditions), SPEC B §4.2.

A row set is tested by the first column of its first row (no rows: false);
any other JSON is tested whole, so HTTP and signal objects are always true;
text that is not JSON is tested as a string.
"""

from __future__ import annotations

import json
from typing import Any


def is_truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return False
        if text in ("true", "t", "yes"):
            return True
        if text in ("false", "f", "no"):
            return False
        try:
            return float(text) != 0.0
        except ValueError:
            return True
    if isinstance(value, list | dict):
        return bool(value)
    return False  # null


def condition_holds(result: str) -> bool:
    try:
        value = json.loads(result)
    except ValueError:
        return is_truthy(result)
    if isinstance(value, dict) and isinstance(value.get("rows"), list):
        rows = value["rows"]
        if not rows:
            return False
        first = rows[0]
        if isinstance(first, dict) and first:
            return is_truthy(next(iter(first.values())))
    return is_truthy(value)
