"""``dag_run.conf``: the payload a TriggerDagRunOperator (or a manual trigger) passes
to the run it starts.

The run's first step (``dag_run``, see ``schedule.run_dates``) gets a ``conf``
column, ``'{}'`` unless the run was started by
``airflow_dags.trigger_<dag>(label, conf jsonb)``, which writes the conf into the
graph it starts. Templates and Python tasks read it as ``dag_run.conf`` (and, as
Airflow's ``dag_run_conf_overrides_params`` does by default from 2.0, over
``params``): ``pgdurable/airflow_context.py``.

The conf travels hex-encoded (``decode('<hex>', 'hex')``): hex text has no
``'``, ``$`` or ``{``, so neither SQL quoting nor the worker's ``$name`` /
``{var}`` substitution can change or break out of a hostile payload. Only DAGs
with code steps (the only readers of ``conf``) get the column, so other
workflows' text stays as it was.
"""

from __future__ import annotations

import json
from typing import Any

# The empty conf '{}' (hex 7b7d) with a marker the trigger function replaces.
_MARK = "/*pgdurable:dag_run.conf*/"
PLACEHOLDER = f"'7b7d' {_MARK}"


def with_conf(dates_sql: str) -> str:
    """The ``dag_run`` row's query with its ``conf`` column."""
    return (
        f"SELECT run.*, convert_from(decode({PLACEHOLDER}, 'hex'), 'UTF8')::jsonb AS conf\n"
        f"FROM ({dates_sql}) AS run"
    )


def started_graph(graph_literal: str) -> str:
    """SQL of the graph text ``graph_literal`` with the run's conf (the function's
    ``conf`` argument) in place of the placeholder; the JSON-encoded placeholder is
    the same text (no character of it is escaped in JSON)."""
    assert json.dumps(PLACEHOLDER) == f'"{PLACEHOLDER}"'
    return (
        f"replace({graph_literal}, {_sql(PLACEHOLDER)}, "
        f"'''' || encode(convert_to(coalesce(conf, '{{}}'::jsonb)::text, 'UTF8'), 'hex') "
        f"|| {_sql(chr(39) + ' ' + _MARK)})"
    )


def _sql(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def argument(conf: Any) -> str | None:
    """A TriggerDagRunOperator's static ``conf`` as a SQL jsonb expression; None when
    it is not static JSON or holds a template (Airflow renders ``conf``)."""
    if not isinstance(conf, dict):
        return None
    try:
        text = json.dumps(conf, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError):
        return None
    if "{{" in text or "{%" in text:
        return None
    return f"convert_from(decode('{text.encode().hex()}', 'hex'), 'UTF8')::jsonb"
