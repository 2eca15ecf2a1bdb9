"""Airflow 3 partitioned schedules and custom timetable classes (what
``timetables.py`` does not read), from Airflow 3.3's ``timetables/trigger.py``
and ``timetables/simple.py``:

* ``CronPartitionTimetable(cron, timezone=…, run_offset=…, key_format=…)`` is a
  ``CronTriggerTimetable`` whose runs also carry a partition key: the run date
  (``run_offset`` cron ticks later or earlier) formatted with ``key_format``
  (default ``%Y-%m-%dT%H:%M:%S``). Translated as that cron trigger timetable,
  with the key as ``$dag_run.partition_key`` (``to_char`` of the tick) when the
  offset is 0 and the zone UTC; else manual.
* ``PartitionedAtRuntime()`` never schedules (a ``NullTimetable``): runs are
  triggered with a partition key (the REST API's ``partition_key``). Translated
  on demand (``airflow_dags."trigger_<dag>"()``), approximate: the trigger takes
  no partition key, so the run has none.
* ``PartitionedAssetTimetable(assets=…, default_partition_mapper=…)`` runs once
  per partition key when each asset of the condition has an event for that key
  (after the partition mappers); pgdurable's asset signals carry no key, so it
  stays manual, naming the mapper.
* a timetable class of the user's own (a plugin's ``AfterWorkdayTimetable()``):
  its ``next_dagrun_info`` decides, which the reader does not run: manual,
  saying how to write it as a timetable that is translated.
"""

from __future__ import annotations

import re

import libcst as cst

from pgdurable.translators.airflow import schedule as base
from pgdurable.translators.airflow import timetables

CRON_PARTITION = "CronPartitionTimetable"
AT_RUNTIME = "PartitionedAtRuntime"
PARTITIONED_ASSETS = "PartitionedAssetTimetable"
# Airflow's own timetable classes: arguments the reader cannot know stay PGD314
_AIRFLOW = {
    "NullTimetable",
    "OnceTimetable",
    "ContinuousTimetable",
    "AssetTriggeredTimetable",
    "DatasetTriggeredTimetable",
    "AssetOrTimeSchedule",
    "DatasetOrTimeSchedule",
    CRON_PARTITION,
    PARTITIONED_ASSETS,
}
_CALL = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*\(")
# strftime -> to_char; anything else in a key format is not translated
_FORMAT = {
    "Y": "YYYY",
    "m": "MM",
    "d": "DD",
    "H": "HH24",
    "M": "MI",
    "S": "SS",
    "j": "DDD",
    "y": "YY",
    "%": "%",
}


def _to_char(fmt: str) -> str | None:
    """A ``to_char`` pattern for a strftime format (literal text double-quoted)."""
    out: list[str] = []
    literal: list[str] = []

    def flush() -> None:
        if literal:
            text = "".join(literal).replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'"{text}"')
            literal.clear()

    i = 0
    while i < len(fmt):
        if fmt[i] == "%":
            code = fmt[i + 1 : i + 2]
            if code not in _FORMAT:
                return None
            if code == "%":
                literal.append("%")
            else:
                flush()
                out.append(_FORMAT[code])
            i += 2
        else:
            literal.append(fmt[i])
            i += 1
    flush()
    return "".join(out)


def _manual(text: str, code: str, why: str) -> base.Plan:
    return base.Plan("manual", text, notes=[(code, f"the schedule `{text[:200]}`: {why}")])


def _call(text: str) -> cst.Call | None:
    try:
        node = cst.parse_expression(text)
    except cst.ParserSyntaxError:
        return None
    return node if isinstance(node, cst.Call) else None


def _cron_partition(text: str, call: cst.Call, generation: int, start_date: object) -> base.Plan:
    positional = [a for a in call.args if a.keyword is None]
    named = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
    module = cst.Module([])
    cron = named.get("cron") or (positional[0].value if positional else None)
    tz = named.get("timezone")
    if cron is None or tz is None:
        return _manual(text, "PGD314", "its cron or timezone is missing")
    offset = named.get("run_offset")
    if offset is not None and module.code_for_node(offset) not in ("0", "None"):
        return _manual(
            text,
            "PGD356",
            "run_offset shifts the partition key by cron ticks, which is not translated; "
            "drop it (the key is then the tick) or compute the key in the tasks",
        )
    fmt_node = named.get("key_format")
    fmt = r"%Y-%m-%dT%H:%M:%S"
    if fmt_node is not None:
        if not isinstance(fmt_node, cst.SimpleString):
            return _manual(text, "PGD314", "key_format is not a literal string")
        fmt = str(fmt_node.evaluated_value)
    pattern = _to_char(fmt)
    if pattern is None:
        return _manual(
            text, "PGD356", f"key_format {fmt!r} uses a strftime code that is not translated"
        )
    trigger = (
        f"CronTriggerTimetable({module.code_for_node(cron)}, timezone={module.code_for_node(tz)})"
    )
    found = timetables.plan(trigger, generation, start_date)
    if found is None or found.kind == "manual":
        return found or _manual(text, "PGD314", "its cron is not read")
    if found.kind != "cron":  # a zone other than UTC: which zone the key is in is not known
        return _manual(
            text,
            "PGD356",
            "a partition key in a time zone other than UTC is not translated; use "
            "timezone='UTC' or CronTriggerTimetable and compute the key in the tasks",
        )
    from pgdurable.sqltext import literal

    found.text = text
    found.dates_sql = (
        f"SELECT r.*, to_char(r.ts::timestamptz AT TIME ZONE 'UTC', {literal(pattern)}) "
        f"AS partition_key\nFROM ({found.dates_sql}) AS r"
    )
    found.notes.append(
        (
            "PGD298",
            f"CronPartitionTimetable: runs as CronTriggerTimetable; each run's partition key is "
            f"its tick formatted with {fmt!r} ($dag_run.partition_key). Its tasks' asset events "
            "carry no partition key (a PartitionedAssetTimetable consumer is manual)",
        )
    )
    return found


def plan(text: str, generation: int, start_date: object) -> base.Plan | None:
    """A partitioned schedule or a custom timetable class, or None when ``text`` is neither."""
    match = _CALL.match(text)
    if match is None:
        return None
    name = match.group(1).rsplit(".", 1)[-1]
    if name == CRON_PARTITION:
        call = _call(text)
        if call is None:
            return None
        return _cron_partition(text, call, generation, start_date)
    if name == AT_RUNTIME:
        found = base.plan(None, present=True, generation=generation, start_date=start_date)
        found.text = text
        found.notes.append(
            (
                "PGD299",
                "PartitionedAtRuntime never schedules: the DAG runs when triggered "
                '(SELECT airflow_dags."trigger_<dag>"()), but the trigger takes no partition '
                "key, so the run has none (Airflow's comes with the trigger, e.g. the REST "
                "API's partition_key): a task that reads dag_run.partition_key gets None",
            )
        )
        return found
    if name == PARTITIONED_ASSETS:
        return _manual(
            text,
            "PGD356",
            "a PartitionedAssetTimetable runs once per partition key when every asset of the "
            "condition has an event for that key (after its partition mappers); pgdurable's "
            "asset signals carry no partition key. Schedule on the assets without partitions "
            "(schedule=<the assets>) if one run per update is what you need, or trigger the "
            "workflow per key yourself",
        )
    if name.endswith("Timetable") and name not in timetables.CLASSES | _AIRFLOW:
        return _manual(
            text,
            "PGD357",
            f"{name} is a timetable class of your own (a plugin or package, not Airflow's): "
            "its next_dagrun_info decides the runs, and the reader does not run it. Write its "
            "rule as a timetable that is translated (CronTriggerTimetable, "
            "MultipleCronTriggerTimetable with a time zone, EventsTimetable) or a cron, e.g. "
            "'0 0 * * 2-6' for after each workday",
        )
    return None
