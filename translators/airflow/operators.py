"""The Airflow operator table: which class (or TaskFlow decorator) becomes
which kind of workflow step. Pure data, read by ``tasks.py``.

Classes are matched by the last part of their qualified name when that name
comes from an ``airflow`` module (``airflow.operators.bash.BashOperator``,
``airflow.providers.standard.operators.bash.BashOperator`` and the 1.10
``airflow.operators.bash_operator.BashOperator`` are the same operator), so
every generation's spelling is an alias of one entry. ``conn`` names the
keyword that carries the connection id, ``removed_in`` the Airflow major
version where the spelling no longer imports (reported, still translated).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OperatorSpec:
    kind: str  # see KINDS
    conn: tuple[str, ...] = ()  # keywords holding the connection id, first match wins
    removed_in: int | None = None  # Airflow major version that dropped this spelling
    replacement: str | None = None


# What each kind becomes (documented in MIGRATING.md's Airflow mapping table).
KINDS = {
    "sql": "SQL step(s) in one transaction",
    "sql_check": "SQL step that fails when a value of the first row is falsy",
    "sql_value_check": "SQL step that fails when the first row differs from pass_value",
    "sql_threshold_check": "SQL step that fails when the first cell is outside [min, max]",
    "sql_interval_check": "SQL step comparing metrics with days_back ago",
    "branch_sql": "SQL step whose first cell chooses the followed tasks",
    "sql_sensor": "durable poke loop",
    "time_delta_sensor": "durable sleep until data_interval_end + delta",
    "http": "df.http",
    "http_sensor": "durable poke loop of df.http",
    "trigger_dagrun": "starts the other DAG's workflow",
    "bash": "psql -c/-f commands as SQL steps",
    "empty": "elided",
    "external_marker": "elided: clearing does not propagate (external.py)",
    "external_sensor": "manual stub naming what to write instead (external.py)",
    "python": "SQL steps when the callable only runs PostgresHook SQL",
    "branch_python": "branch on the callable's literal result",
    "short_circuit": "skip downstream on the callable's falsy result",
    "python_venv": "virtualenv / external Python callable as a Python step (approximate)",
    "branch_python_venv": "its branch variant: the returned ids decide the downstream tasks",
    "sql_decorated": "@task.sql: the returned SQL",
    "bash_decorated": "@task.bash: the returned command",
    "branch_datetime": "branch on now / the logical date within [target_lower, target_upper]",
    "branch_day_of_week": "branch on the ISO weekday of now / the logical date",
    "latest_only": "skip downstream unless now is in the next schedule interval",
    "python_sensor": "durable poke loop of a Python step",
    "day_of_week_sensor": "durable poke loop of a weekday test",
    "time_sensor": "durable poke loop until a time of day",
    "date_time_sensor": "durable poke loop until an instant",
    "bash_sensor": "durable poke loop of a bash command step (exit 0 = done)",
    "file_sensor": "durable poke loop of a file check on the worker host",
    "wait_sensor": "durable sleep of time_to_wait",
    "unsupported": "manual stub",
}

_SQL_CONN = ("conn_id", "postgres_conn_id")

OPERATORS: dict[str, OperatorSpec] = {
    # SQL
    "PostgresOperator": OperatorSpec(
        "sql", ("postgres_conn_id", "conn_id"), 3, "SQLExecuteQueryOperator"
    ),
    "SQLExecuteQueryOperator": OperatorSpec("sql", _SQL_CONN),
    "SQLCheckOperator": OperatorSpec("sql_check", _SQL_CONN),
    "CheckOperator": OperatorSpec("sql_check", _SQL_CONN, 2, "SQLCheckOperator"),
    "SQLValueCheckOperator": OperatorSpec("sql_value_check", _SQL_CONN),
    "ValueCheckOperator": OperatorSpec("sql_value_check", _SQL_CONN, 2, "SQLValueCheckOperator"),
    "SQLThresholdCheckOperator": OperatorSpec("sql_threshold_check", _SQL_CONN),
    "SQLIntervalCheckOperator": OperatorSpec("sql_interval_check", _SQL_CONN),
    "IntervalCheckOperator": OperatorSpec(
        "sql_interval_check", _SQL_CONN, 2, "SQLIntervalCheckOperator"
    ),
    "BranchSQLOperator": OperatorSpec("branch_sql", _SQL_CONN),
    "BranchSqlOperator": OperatorSpec("branch_sql", _SQL_CONN, 3, "BranchSQLOperator"),
    "SqlSensor": OperatorSpec("sql_sensor", _SQL_CONN),
    # time
    "TimeDeltaSensor": OperatorSpec("time_delta_sensor"),
    "TimeDeltaSensorAsync": OperatorSpec("time_delta_sensor"),
    # HTTP
    "HttpOperator": OperatorSpec("http", ("http_conn_id",)),
    "SimpleHttpOperator": OperatorSpec("http", ("http_conn_id",), 3, "HttpOperator"),
    "HttpSensor": OperatorSpec("http_sensor", ("http_conn_id",)),
    # orchestration
    "TriggerDagRunOperator": OperatorSpec("trigger_dagrun"),
    "BashOperator": OperatorSpec("bash"),
    "EmptyOperator": OperatorSpec("empty"),
    "ExternalTaskMarker": OperatorSpec("external_marker"),
    "ExternalTaskSensor": OperatorSpec("external_sensor"),
    "ExternalTaskSensorAsync": OperatorSpec("external_sensor"),
    "DummyOperator": OperatorSpec("empty", (), 3, "EmptyOperator"),
    "PythonOperator": OperatorSpec("python"),
    "BranchPythonOperator": OperatorSpec("branch_python"),
    "ShortCircuitOperator": OperatorSpec("short_circuit"),
    # date and schedule controls (controls.py)
    "BranchDateTimeOperator": OperatorSpec("branch_datetime"),
    "BranchDayOfWeekOperator": OperatorSpec("branch_day_of_week"),
    "LatestOnlyOperator": OperatorSpec("latest_only"),
    "PythonSensor": OperatorSpec("python_sensor"),
    "DayOfWeekSensor": OperatorSpec("day_of_week_sensor"),
    "TimeSensor": OperatorSpec("time_sensor"),
    "TimeSensorAsync": OperatorSpec("time_sensor"),
    "DateTimeSensor": OperatorSpec("date_time_sensor"),
    "DateTimeSensorAsync": OperatorSpec("date_time_sensor"),
    "BashSensor": OperatorSpec("bash_sensor"),
    "FileSensor": OperatorSpec("file_sensor"),
    "WaitSensor": OperatorSpec("wait_sensor"),
    "PythonVirtualenvOperator": OperatorSpec("python_venv"),
    "ExternalPythonOperator": OperatorSpec("python_venv"),
    "BranchPythonVirtualenvOperator": OperatorSpec("branch_python_venv"),
    "BranchExternalPythonOperator": OperatorSpec("branch_python_venv"),
}

# TaskFlow decorators: ``@task``, ``@task.<flavour>`` (and the 2.x
# ``@task.python``); anything else is an unsupported flavour.
DECORATORS: dict[str, str] = {
    "task": "python",
    "task.python": "python",
    "task.branch": "branch_python",
    "task.short_circuit": "short_circuit",
    "task.sql": "sql_decorated",
    "task.bash": "bash_decorated",
    "task.sensor": "python_sensor",
    "task.virtualenv": "python_venv",
    "task.external_python": "python_venv",
    "task.branch_virtualenv": "branch_python_venv",
    "task.branch_external_python": "branch_python_venv",
}

# Python callables: the hook classes whose SQL calls we can translate.
SQL_HOOKS = {"PostgresHook", "DbApiHook"}
SQL_HOOK_CONN = ("postgres_conn_id", "conn_id")
SQL_HOOK_METHODS = {"run", "get_records", "get_first", "get_pandas_df"}


def lookup(qualified: str) -> OperatorSpec | None:
    """The spec of an Airflow class by qualified name, or None when unknown."""
    if not qualified.startswith("airflow."):
        return None
    return OPERATORS.get(qualified.rsplit(".", 1)[-1])
