"""Node results as JSON text, and the SQL result shape of SPEC B §4.2.

Every result the worker handles is JSON *text* (as in the reference, whose
substitution reads result strings): compact, keys in column order, UTF-8 kept
as is. A SQL step gives ``{"rows":[{col:val,…}],"row_count":n}``; columns are
mapped by type OID exactly as the reference maps them, and any other type
fails the step with the reference's message.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Sequence
from datetime import UTC, date
from typing import Any

from pgdurable import db

# PostgreSQL type OIDs (stable across versions).
BOOL, INT2, INT4, INT8 = 16, 21, 23, 20
FLOAT4, FLOAT8 = 700, 701
TEXT, VARCHAR, BPCHAR, NAME = 25, 1043, 1042, 19
NUMERIC, UUID = 1700, 2950
TIMESTAMPTZ, TIMESTAMP, DATE = 1184, 1114, 1082
JSON, JSONB, VOID = 114, 3802, 2278

SUPPORTED = (
    "bool, int2, int4, int8, float4, float8, text, varchar, numeric, uuid, timestamptz, "
    "timestamp, date, jsonb, json, void"
)


class UnsupportedType(Exception):
    pass


def dumps(value: Any) -> str:
    """Compact JSON text, the form results are stored and substituted in."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def as_result_text(text: str) -> str:
    """Text that is valid JSON stays; anything else becomes a JSON string."""
    try:
        json.loads(text)
    except ValueError:
        return dumps(text)
    return text


def _fraction(micro: int) -> str:
    # chrono prints 0, 3 or 6 fractional digits, as few as represent the value.
    if micro == 0:
        return ""
    if micro % 1000 == 0:
        return f".{micro // 1000:03d}"
    return f".{micro:06d}"


def _float(value: float, *, single: bool) -> float | None:
    if math.isnan(value) or math.isinf(value):
        return None
    if single:  # float4 is widened to f64 by the reference: 0.1 -> 0.10000000149011612
        return struct.unpack("f", struct.pack("f", value))[0]
    return value


def column_value(oid: int, name: str, value: Any) -> Any:
    """One column value as the reference's JSON value."""
    if oid == VOID:
        return None
    if oid not in _KNOWN:
        raise UnsupportedType(
            f"Unsupported column type '{db.type_name(oid)}' for column '{name}'. "
            f"Supported types: {SUPPORTED}."
        )
    if value is None:
        return None
    if oid in (FLOAT4, FLOAT8):
        return _float(float(value), single=oid == FLOAT4)
    if oid == TIMESTAMPTZ:
        moment = value.astimezone(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + _fraction(moment.microsecond) + "+00:00"
    if oid == TIMESTAMP:
        return value.strftime("%Y-%m-%dT%H:%M:%S") + _fraction(value.microsecond)
    if oid == DATE:
        return value.isoformat() if isinstance(value, date) else str(value)
    if oid in (NUMERIC, UUID):
        return str(value)
    return value  # bool, ints, strings, json


_KNOWN = {
    BOOL,
    INT2,
    INT4,
    INT8,
    FLOAT4,
    FLOAT8,
    TEXT,
    VARCHAR,
    BPCHAR,
    NAME,
    NUMERIC,
    UUID,
    TIMESTAMPTZ,
    TIMESTAMP,
    DATE,
    JSON,
    JSONB,
    VOID,
}


def sql_result(columns: Sequence[tuple[str, int]], rows: Iterable[Sequence[Any]]) -> str:
    """The ``{"rows":…,"row_count":n}`` text; a duplicate column name keeps
    its first position and its last value (as a JSON map insert does)."""
    objects = []
    for row in rows:
        obj: dict[str, Any] = {}
        for (name, oid), value in zip(columns, row, strict=True):
            obj[name] = column_value(oid, name, value)
        objects.append(obj)
    return dumps({"rows": objects, "row_count": len(objects)})
