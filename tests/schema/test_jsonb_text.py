"""``model.jsonb_text`` writes a code step's arguments exactly as PostgreSQL
prints them as jsonb, so a rendered file and the graph the server builds agree
byte for byte (floats included: jsonb keeps numbers as numeric)."""

from __future__ import annotations

import json

import pytest

from pgdurable.model import jsonb_text

VALUES = [
    0.0,
    1.5,
    -2.25,
    3.14159,
    1e20,
    1e-7,
    123456789.125,
    [1, 0.5, {"b": 2.0, "a": None}],
    {"ratio": 0.1, "n": 3, "s": "x"},
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_numbers_print_as_postgresql_prints_them(database, value):
    expected = database.value("SELECT (%s::jsonb)::text", [json.dumps(value)])
    assert jsonb_text(value) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), object()], ids=repr)
def test_what_json_cannot_hold_is_refused(value):
    with pytest.raises(TypeError, match="a code step argument must be"):
        jsonb_text(value)
