"""Translated date and schedule controls run on the worker (translators/airflow/controls.py).

BranchDateTimeOperator, BranchDayOfWeekOperator and LatestOnlyOperator decide
from the clock or the run's dates. Each test pins those in the generated
graph (the clock ``now()`` of the branch step, the ``dag_run`` step's logical
date or tick), runs one DAG run on a real worker and checks which tasks ran.
The expected sides come from Airflow's rules (2.10.5 ``operators/datetime.py``,
``weekday.py``, ``latest_only.py``; 1.10's ``latest_only_operator.py``): an
inclusive window, a time combined with the UTC date of now, a naive target in
the DAG's timezone, the weekday of now in the DAG's zone but of the logical
date in UTC, latest = ``data_interval_end < now <= data_interval_end + period``.
"""

from __future__ import annotations

import json
import re

import pytest

from pgdurable.model import encode
from pgdurable.translators import airflow
from pgdurable.translators.airflow import schedule
from pgdurable.translators.base import TranslateContext

from .test_airflow_runs import DAGS, log

NOW = "(now()) AT TIME ZONE 'UTC'"  # the on-demand dag_run step's clock (twice)


@pytest.fixture
def tables(database, alice):
    database.execute("CREATE TABLE log (v text, at timestamptz DEFAULT clock_timestamp())")
    database.execute("GRANT ALL ON log TO alice")
    return database


def results(name: str) -> dict:
    batch = airflow.translate(airflow.read_paths([DAGS / f"{name}.py"]), TranslateContext())
    return {r.name: r for r in batch.results}


def mine(result) -> list[str]:
    """The diagnostics of the controls (the fixtures' SQL tasks name no conn_id: PGD251)."""
    return [d.code for d in result.diagnostics if d.code[:5] in ("PGD28", "PGD34", "PGD31")]


def pinned(graph: str, *, clock: str | None = None, logical: str | None = None) -> str:
    """The graph with the dag_run step's clock at ``logical`` and every other
    ``now()`` (the branch's clock) at ``clock``."""
    if logical is not None:
        assert graph.count(NOW) == 2
        graph = graph.replace(NOW, f"(timestamptz '{logical}') AT TIME ZONE 'UTC'")
    if clock is not None:
        assert "now()" in graph
        graph = graph.replace("now()", f"timestamptz '{clock}'")
    assert "now()" not in graph
    return graph


@pytest.mark.parametrize(
    ("clock", "expected"),
    [
        ("2024-06-01 14:30:00+00", ["day", "release"]),
        ("2024-06-01 15:00:00+00", ["day", "release"]),  # both edges are inclusive
        ("2024-06-01 15:00:01+00", ["day", "no release"]),
        ("2024-06-01 23:00:00+00", ["night", "no release"]),
        # 22:00-02:00 is combined with today's date: after midnight it is the window of
        # the coming night (06-02 22:00 .. 06-03 02:00), so Airflow takes "day"
        ("2024-06-02 01:00:00+00", ["day", "no release"]),
    ],
)
def test_branch_datetime_on_the_clock(wf, tables, clock, expected):
    result = results("c1_branch_datetime")["c1_branch_datetime"]
    assert mine(result) == []
    graph = pinned(encode(result.workflow.body), clock=clock)
    instance = wf.start(graph)
    wf.run()
    assert wf.status(instance) == "completed", wf.nodes(instance)
    assert sorted(log(tables)) == expected


@pytest.mark.parametrize(
    ("logical", "expected"),
    [
        ("2024-06-03 06:30:00+00", "closed"),  # 08:30 in Amsterdam (CEST)
        ("2024-06-03 07:00:00+00", "open"),  # 09:00 local: the lower edge
        ("2024-06-03 15:29:00+00", "open"),
        ("2024-06-03 16:00:00+00", "closed"),  # 18:00 local
        ("2024-01-15 08:30:00+00", "open"),  # 09:30 CET in winter
    ],
)
def test_branch_datetime_on_the_logical_date_in_the_dag_timezone(wf, tables, logical, expected):
    result = results("c1_branch_datetime")["c1_office_hours"]
    graph = pinned(encode(result.workflow.body), logical=logical)
    instance = wf.start(graph)
    wf.run()
    assert wf.status(instance) == "completed", wf.nodes(instance)
    assert log(tables) == [expected]


@pytest.mark.parametrize(
    ("clock", "logical", "expected"),
    [
        # Sunday 23:30 UTC is Monday 01:30 in Amsterdam: "today" is Monday there, while
        # the logical date's weekday is taken in UTC (Sunday)
        ("2024-06-02 23:30:00+00", "2024-06-02 23:30:00+00", ["monday_report", "weekend"]),
        ("2024-06-03 12:00:00+00", "2024-06-05 06:00:00+00", ["midweek", "monday_report"]),
        ("2024-06-01 21:00:00+00", "2024-06-01 06:00:00+00", ["other_day", "weekend"]),
    ],
)
def test_branch_day_of_week(wf, tables, clock, logical, expected):
    result = results("c2_weekday")["c2_weekday"]
    assert mine(result) == []
    graph = pinned(encode(result.workflow.body), logical=logical, clock=clock)
    instance = wf.start(graph)
    wf.run()
    assert wf.status(instance) == "completed", wf.nodes(instance)
    assert sorted(log(tables)) == expected


def one_run(result) -> dict:
    """The graph of one run (what the DAG's trigger function starts)."""
    # df.start(<graph>, ...) or, with a conf, df.start(replace(<graph>, ...), ...)
    found = re.search(
        r"df\.start\((?:replace\()?(\$\w*\$)(.*?)\1", result.workflow.epilogue, re.S
    )
    assert found
    return json.loads(found.group(2))


def with_tick(node, query: str) -> int:
    """Replace the dag_run step's query in place; returns how many were replaced."""
    if isinstance(node, dict):
        hits = 0
        if node.get("result_name") == "dag_run":
            node["query"] = query
            hits += 1
        return hits + sum(with_tick(v, query) for v in node.values())
    if isinstance(node, list):
        return sum(with_tick(v, query) for v in node)
    return 0


@pytest.mark.parametrize(
    ("name", "period", "ago", "expected"),
    [
        # Airflow 2: the run of the interval that ended 1 h ago is the latest (4 h period)
        ("c3_latest_only", 4, "1 hour", ["extract", "publish", "summary"]),
        # a run 5 h late is not: publish is skipped; summary (all_done) still runs
        ("c3_latest_only", 4, "5 hours", ["extract", "summary"]),
        ("c4_latest_only_110", 6, "2 hours", ["extract", "publish", "summary"]),
        # Airflow 1.10 skips every descendant, all_done or not
        ("c4_latest_only_110", 6, "7 hours", ["extract"]),
    ],
)
def test_latest_only(wf, tables, name, period, ago, expected):
    result = results(name)[name]
    assert [d.code for d in result.diagnostics if d.code == "PGD282"] == ["PGD282"]
    graph = one_run(result)
    tick = f"(now() - interval '{ago}')"
    query = schedule.run_dates(tick, f"interval '{period * 3600} seconds'", True, "scheduled")
    assert with_tick(graph, query) == 1
    instance = wf.start(json.dumps(graph))
    wf.run()
    assert wf.status(instance) == "completed", wf.nodes(instance)
    assert sorted(log(tables)) == expected


HOSTILE = """import pendulum
from datetime import time
from airflow import DAG
from airflow.operators.weekday import BranchDayOfWeekOperator
from airflow.operators.datetime import BranchDateTimeOperator
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator as Q

with DAG("it's\\n$$ */ a dag", schedule=None, start_date=pendulum.datetime(2024, 1, 1)):
    yes = Q(task_id="it's", sql="INSERT INTO log VALUES ('yes')")
    no = Q(task_id="no\\n*/ $$", sql="INSERT INTO log VALUES ('no')")
    branch = BranchDateTimeOperator(
        task_id="when'\\n--",
        follow_task_ids_if_true=["it's"],
        follow_task_ids_if_false="no\\n*/ $$",
        target_lower=time(12),
        target_upper=None,
    )
    day = BranchDayOfWeekOperator(
        task_id="day'$$",
        follow_task_ids_if_true="it's",
        follow_task_ids_if_false=["no\\n*/ $$"],
        week_day="Saturday",
    )
    branch >> [yes, no]
    day >> [yes, no]
"""


@pytest.mark.parametrize(
    ("clock", "expected"),
    [
        ("2024-06-01 13:00:00+00", ["yes"]),  # a Saturday afternoon: both follow "it's"
        ("2024-06-03 11:00:00+00", ["no"]),  # a Monday morning: both follow the other one
        ("2024-06-03 13:00:00+00", []),  # a Monday afternoon: each task is skipped by one
    ],
)
def test_hostile_ids_and_names(wf, tables, tmp_path, clock, expected):
    """Quotes, newlines, ``$$`` and ``*/`` in dag and task ids stay data. Two branches
    feed each task: a task runs only when both branches follow it (a branch that
    does not follow it skips it)."""
    path = tmp_path / "hostile.py"
    path.write_text(HOSTILE)
    batch = airflow.translate(airflow.read_paths([path]), TranslateContext())
    (result,) = batch.results
    assert result.workflow is not None, result.diagnostics
    assert mine(result) == []
    graph = pinned(encode(result.workflow.body), clock=clock)
    instance = wf.start(graph)
    wf.run()
    assert wf.status(instance) == "completed", wf.nodes(instance)
    assert log(tables) == expected
