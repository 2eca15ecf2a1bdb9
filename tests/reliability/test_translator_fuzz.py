"""No traceback on any input (issue 16 §8): every value a source can hold in
every field a translator reads becomes a translation or a diagnostic with its
file and line, never an exception and never an "internal error".

``test_hostile_sources`` mutates real files byte by byte (mostly parse
errors); here hypothesis writes well-formed sources whose values are of any
type and size (strings where numbers belong, mappings, huge and negative
numbers, infinities, superscript digits, templates), which is where the
crashes were: int('two'), '¹'.isdigit(), round(inf), a negative delay given to
pgdurable.retry. The first test pins each input the review found; the fuzz
tests keep a small budget in CI; ``--long`` or PGDURABLE_FUZZ_EXAMPLES=N (e.g.
20000, run locally) sets a larger one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgdurable.cli import cli

CONNECTIONS = "api: {url: https://api.example.com}\nwarehouse: {database: dw}\n"


def run_import(kind: str, files: dict[str, str], folder: Path) -> dict:
    """Import ``files`` (the first is the source) through the command line; the report."""
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    source = folder / next(iter(files))
    out = folder / "out"
    if kind == "pg_cron":
        args = ["import-pgcron", "--from-file", str(source)]
    elif kind == "airflow":
        (folder / "connections.yaml").write_text(CONNECTIONS)
        args = ["import-airflow", str(source), "--connections", str(folder / "connections.yaml")]
    else:
        args = ["import-queue", "--format", kind, str(source)]
        if "tasks.yaml" in files:
            args += ["--tasks", str(folder / "tasks.yaml")]
    result = CliRunner().invoke(cli, [*args, "--out", str(out), "--json"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(
            f"{kind}: {type(result.exception).__name__}: {result.exception}\n"
            + "".join(files.values())[:3000]
        ) from result.exception
    assert result.exit_code in (0, 1), result.output[-2000:]
    assert "Traceback" not in result.output
    if result.output.startswith("error:") or not result.stdout.strip().startswith("{"):
        return {"items": [], "error": result.output}
    report = json.loads(result.stdout)
    for item in report["items"]:
        for d in item["diagnostics"]:
            assert "internal error" not in d["message"], (item["name"], d)
        if item["fidelity"] == "failed":
            assert any(d["severity"] == "error" for d in item["diagnostics"]), item
    return report


def _k8s(job_spec: dict) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "nightly"},
            "spec": {
                "schedule": "0 3 * * *",
                "jobTemplate": {
                    "spec": {
                        **job_spec,
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "c",
                                        "image": "pg",
                                        "command": ["psql", "-c", "SELECT 1"],
                                    }
                                ]
                            }
                        },
                    }
                },
            },
        }
    )


_AIRFLOW_HEAD = (
    "from datetime import timedelta\n"
    "from airflow import DAG\n"
    "from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator as Q\n"
    "from airflow.providers.http.operators.http import HttpOperator\n"
    "from airflow.sensors.time_delta import TimeDeltaSensor\n"
)

# (kind, files, the code the item gets, the line it names)
FOUND = [
    ("pg_cron", {"a.sql": "SELECT cron.unschedule('¹');\n"}, None, None),
    (
        "pg_cron",
        {
            "a.sql": "SELECT cron.schedule('j', '* * * * *', 'SELECT 1');\n"
            "SELECT cron.alter_job(1, foo => '* * * * *');\n"
        },  # fmt: skip
        "PGD102",
        2,
    ),
    ("pg_cron", {"a.sql": "SELECT cron.schedule('* * * * *', $q$.¹$q$);\n"}, "PGD303", 1),
    ("k8s", {"a.yaml": _k8s({"backoffLimit": "two"})}, "PGD108", None),
    ("k8s", {"a.yaml": _k8s({"activeDeadlineSeconds": "72x"})}, "PGD108", None),
    ("k8s", {"a.yaml": _k8s({"activeDeadlineSeconds": {"a": 1}})}, "PGD108", None),
    (
        "celery",
        {
            "a.py": "beat_schedule = {'x': {'task': 't.x', 'schedule': 10.0}}\n"
            "task_annotations = {'t.x': {'autoretry_for': (Exception,), 'max_retries': 'four'}}\n"
        },  # fmt: skip
        "PGD108",
        1,
    ),
    (
        "celery",
        {"a.py": "beat_schedule = {'x': {'task': 't.x', 'schedule': 1e400}}\n"},
        "PGD104",
        1,
    ),
    (
        "celery",
        {
            "a.py": "from datetime import timedelta\n"
            "beat_schedule = {'x': {'task': 't.x', 'schedule': timedelta(days=1e12)}}\n"
        },  # fmt: skip
        "PGD104",
        2,
    ),
    (
        "airflow",
        {
            "d.py": _AIRFLOW_HEAD + "with DAG('d', schedule='@daily', default_args={'retries': 2,"
            " 'retry_delay': timedelta(seconds=-1)}):\n    Q(task_id='a', sql='SELECT 1')\n"
        },  # fmt: skip
        "PGD216",
        7,  # the line that sets it (default_args)
    ),
    (
        "airflow",
        {
            "d.py": _AIRFLOW_HEAD + "with DAG('d', schedule='@daily'):\n"
            "    HttpOperator(task_id='h', http_conn_id='api', endpoint='/x', method='{{ ds }}')\n"
        },  # fmt: skip
        "PGD311",
        7,
    ),
    (
        "airflow",
        {
            "d.py": _AIRFLOW_HEAD + "with DAG('d', schedule='@daily'):\n"
            "    TimeDeltaSensor(task_id='s', delta=5, poke_interval=timedelta(days=-1))\n"
        },  # fmt: skip
        "PGD108",
        7,
    ),
]


@pytest.mark.parametrize(
    "kind, files, code, line", FOUND, ids=[f"{f[0]}-{i}" for i, f in enumerate(FOUND)]
)
def test_inputs_the_review_found_get_a_diagnostic(kind, files, code, line, tmp_path):
    report = run_import(kind, files, tmp_path)
    diagnostics = [d for item in report["items"] for d in item["diagnostics"]]
    if code is None:  # unscheduling a job the script never made: nothing to translate
        assert report["items"] == [], report
        return
    found = [d for d in diagnostics if d["code"] == code]
    assert found, diagnostics
    if line is not None:
        assert line in [d["line"] for d in found], found
    else:
        assert all(d["line"] for d in found), found


# -- fuzz: any value in any field ----------------------------------------------------------

SPECIAL_TEXT = ["* * * * *", "@every 1m", "5m", "-1", "1e400", "{{ ds }}", "¹", "٣", "", " ",
                "two", "72x", "0", "NaN", "@reboot", "$$", "'", "\\", "*/0 * * * *", "60 * * * *"]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=False),
    st.sampled_from([float("inf"), -float("inf"), 1e308, -0.0, 0.5]),
    st.sampled_from(SPECIAL_TEXT),
    st.text(max_size=8),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=5,
)


def _budget(long_run: bool, default: int) -> int:
    explicit = os.environ.get("PGDURABLE_FUZZ_EXAMPLES")
    return int(explicit) if explicit else (default * 20 if long_run else default)


def _fuzz(long_run: bool, default: int = 12):
    return settings(
        max_examples=_budget(long_run, default),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def _py(value) -> str:
    """A Python expression for ``value`` (inf and nan as the float() calls a user writes)."""
    if isinstance(value, float) and (value != value or value in (float("inf"), -float("inf"))):
        return f"float({str(value)!r})"
    if isinstance(value, list):
        return "[" + ", ".join(_py(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_py(v)}" for k, v in value.items()) + "}"
    return repr(value)


K8S_KEYS = ["backoffLimit", "activeDeadlineSeconds", "parallelism", "completions"]
CRONJOB_KEYS = ["schedule", "timeZone", "suspend", "concurrencyPolicy", "startingDeadlineSeconds",
                "successfulJobsHistoryLimit"]  # fmt: skip


def test_fuzz_kubernetes(tmp_path_factory, long_run):
    @_fuzz(long_run)
    @given(
        job=st.dictionaries(st.sampled_from(K8S_KEYS), VALUES, max_size=3),
        spec=st.dictionaries(st.sampled_from(CRONJOB_KEYS), VALUES, max_size=3),
        container=st.dictionaries(st.sampled_from(["command", "args", "env", "name"]), VALUES),
        metadata=st.dictionaries(st.sampled_from(["name", "namespace", "labels"]), VALUES),
    )
    def property_(job, spec, container, metadata):
        doc = yaml.safe_load(_k8s(job))
        doc["metadata"].update(metadata)
        doc["spec"].update(spec)
        pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        pod["containers"][0].update(container)
        run_import("k8s", {"a.yaml": yaml.safe_dump(doc)}, tmp_path_factory.mktemp("k8s"))

    property_()


CELERY_ENTRY = ["schedule", "args", "kwargs", "options", "relative", "task"]
CELERY_ANNOTATION = ["autoretry_for", "max_retries", "retry_backoff", "retry_backoff_max",
                     "default_retry_delay", "retry_jitter", "time_limit", "soft_time_limit"]  # fmt: skip
CELERY_CALLS = st.one_of(
    VALUES.map(_py),
    st.builds(
        lambda k, v: f"timedelta({k}={_py(v)})", st.sampled_from(["seconds", "days"]), SCALARS
    ),
    st.builds(
        lambda kw: "crontab(" + ", ".join(f"{k}={_py(v)}" for k, v in kw.items()) + ")",
        st.dictionaries(
            st.sampled_from(["minute", "hour", "day_of_week", "day_of_month", "month_of_year"]),
            SCALARS,
            max_size=3,
        ),  # fmt: skip
    ),
)


def test_fuzz_celery(tmp_path_factory, long_run):
    @_fuzz(long_run)
    @given(
        entry=st.dictionaries(st.sampled_from(CELERY_ENTRY), CELERY_CALLS, max_size=4),
        annotations=st.dictionaries(st.sampled_from(CELERY_ANNOTATION), CELERY_CALLS, max_size=4),
        timezone=VALUES.map(_py),
        name=st.one_of(st.just("'x'"), SCALARS.map(_py)),
    )
    def property_(entry, annotations, timezone, name):
        entry.setdefault("task", "'t.x'")
        entry.setdefault("schedule", "10.0")
        body = ", ".join(f"{k!r}: {v}" for k, v in entry.items())
        notes = ", ".join(f"{k!r}: {v}" for k, v in annotations.items())
        text = (
            "from datetime import timedelta\nfrom celery.schedules import crontab\n"
            f"timezone = {timezone}\nbeat_schedule = {{{name}: {{{body}}}}}\n"
            f"task_annotations = {{'t.x': {{{notes}}}}}\n"
        )
        run_import("celery", {"a.py": text}, tmp_path_factory.mktemp("celery"))

    property_()


SIDEKIQ_KEYS = ["cron", "every", "in", "at", "interval", "class", "args", "queue", "status",
                "description", "retry", "active_job", "date_as_argument", "unique"]  # fmt: skip


def test_fuzz_sidekiq(tmp_path_factory, long_run):
    @_fuzz(long_run)
    @given(
        entry=st.dictionaries(st.sampled_from(SIDEKIQ_KEYS), VALUES, max_size=4),
        name=st.one_of(st.just("nightly"), SCALARS),
    )
    def property_(entry, name):
        entry.setdefault("class", "NightlyJob")
        text = yaml.safe_dump({name: entry})
        tasks = yaml.safe_dump({"tasks": {"NightlyJob": "SELECT 1"}})
        files = {"schedule.yml": text, "tasks.yaml": tasks}
        run_import("sidekiq", files, tmp_path_factory.mktemp("sidekiq"))

    property_()


CRON_FIELDS = st.one_of(st.sampled_from(["*", "*/5", "1-5", "0", "60", "¹", "٣", "7", "L", "?",
                                         "1,2", "mon", "*/0", "5-1", "@daily"]), st.text(max_size=3))  # fmt: skip


def test_fuzz_crontab(tmp_path_factory, long_run):
    @_fuzz(long_run)
    @given(
        lines=st.lists(
            st.tuples(st.lists(CRON_FIELDS, min_size=1, max_size=6), st.text(max_size=20)),
            min_size=1,
            max_size=3,
        ),
        graphile=st.booleans(),
    )
    def property_(lines, graphile):
        if graphile:
            rows = [" ".join(f) + f" task_x ?{c.replace(chr(10), ' ')}" for f, c in lines]
            files = {"crontab": "# Graphile Worker crontab\n" + "\n".join(rows) + "\n"}
        else:
            rows = [" ".join(f) + " psql -c 'SELECT 1' " + c.replace("\n", " ") for f, c in lines]
            files = {"app.crontab": "\n".join(rows) + "\n"}
        run_import("crontab", files, tmp_path_factory.mktemp("crontab"))

    property_()


PGCRON_FUNCTIONS = ["schedule", "schedule_in_database", "alter_job", "unschedule"]
PGCRON_NAMES = [
    "job_name",
    "schedule",
    "command",
    "database",
    "username",
    "active",
    "job_id",
    "foo",
]
SQL_LITERALS = st.one_of(
    st.text(max_size=12).map(lambda t: "'" + t.replace("'", "''") + "'"),
    st.sampled_from(
        [
            "NULL",
            "true",
            "false",
            "1",
            "2",
            "'¹'",
            "$q$.¹$q$",
            "'* * * * *'",
            "'30 seconds'",
            "'@reboot'",
            "'0 3 * * *'",
            "E'\\n'",
            "1e400",
            ".5",
        ]
    ),  # fmt: skip
)


def test_fuzz_pg_cron_scripts(tmp_path_factory, long_run):
    call = st.tuples(
        st.sampled_from(PGCRON_FUNCTIONS),
        st.lists(
            st.tuples(st.one_of(st.none(), st.sampled_from(PGCRON_NAMES)), SQL_LITERALS),
            max_size=6,
        ),
    )

    @_fuzz(long_run)
    @given(calls=st.lists(call, min_size=1, max_size=4))
    def property_(calls):
        text = "".join(
            f"SELECT cron.{f}("
            + ", ".join(v if n is None else f"{n} => {v}" for n, v in args)
            + ");\n"
            for f, args in calls
        )
        run_import("pg_cron", {"jobs.sql": text}, tmp_path_factory.mktemp("pgcron"))

    property_()


AIRFLOW_OPERATORS = ["Q", "HttpOperator", "HttpSensor", "TimeDeltaSensor", "SqlSensor",
                     "SQLCheckOperator", "SQLValueCheckOperator", "SQLThresholdCheckOperator",
                     "BranchSQLOperator", "TriggerDagRunOperator", "BashOperator"]  # fmt: skip
AIRFLOW_ARGS = ["retries", "retry_delay", "retry_exponential_backoff", "max_retry_delay",
                "execution_timeout", "poke_interval", "timeout", "delta", "method", "endpoint",
                "data", "headers", "sql", "trigger_dag_id", "bash_command", "pass_value",
                "tolerance", "min_threshold", "max_threshold", "mode", "conn_id", "http_conn_id",
                "trigger_rule", "depends_on_past", "split_statements", "autocommit"]  # fmt: skip
AIRFLOW_VALUES = st.one_of(
    VALUES.map(_py),
    st.builds(
        lambda k, v: f"timedelta({k}={_py(v)})", st.sampled_from(["seconds", "days"]), SCALARS
    ),
    st.sampled_from(
        [
            "'SELECT 1'",
            "'{{ ds }}'",
            "'GET'",
            "'/x'",
            "'api'",
            "'warehouse'",
            "'all_done'",
            "'psql -c \"SELECT 1\"'",
            "'reschedule'",
        ]
    ),  # fmt: skip
)
DAG_SCHEDULES = st.one_of(
    st.sampled_from(
        [
            "None",
            "'@daily'",
            "'0 3 * * *'",
            "'@once'",
            "timedelta(hours=1)",
            "timedelta(seconds=-5)",
            "'* * * * * *'",
            "'@continuous'",
            "'61 * * * *'",
        ]
    ),  # fmt: skip
    AIRFLOW_VALUES,
)


def test_fuzz_airflow(tmp_path_factory, long_run):
    task = st.tuples(
        st.sampled_from(AIRFLOW_OPERATORS),
        st.dictionaries(st.sampled_from(AIRFLOW_ARGS), AIRFLOW_VALUES, max_size=4),
    )

    @_fuzz(long_run)
    @given(
        tasks=st.lists(task, min_size=1, max_size=3),
        schedule=DAG_SCHEDULES,
        default_args=st.dictionaries(st.sampled_from(AIRFLOW_ARGS[:5]), AIRFLOW_VALUES, max_size=3),
    )
    def property_(tasks, schedule, default_args):
        lines = [
            _AIRFLOW_HEAD
            + "from airflow.providers.http.sensors.http import HttpSensor\n"
            + "from airflow.providers.common.sql.sensors.sql import SqlSensor\n"
            + "from airflow.providers.common.sql.operators.sql import (SQLCheckOperator,"
            " SQLValueCheckOperator, SQLThresholdCheckOperator, BranchSQLOperator)\n"
            + "from airflow.operators.trigger_dagrun import TriggerDagRunOperator\n"
            + "from airflow.operators.bash import BashOperator\n",
            "defaults = {" + ", ".join(f"{k!r}: {v}" for k, v in default_args.items()) + "}",
            f"with DAG('fuzzed', schedule={schedule}, default_args=defaults):",
        ]
        for i, (operator, args) in enumerate(tasks):
            kwargs = ", ".join(f"{k}={v}" for k, v in args.items())
            lines.append(f"    t{i} = {operator}(task_id='t{i}'{', ' if kwargs else ''}{kwargs})")
        lines += [f"    t{i} >> t{i + 1}" for i in range(len(tasks) - 1)]
        run_import("airflow", {"d.py": "\n".join(lines) + "\n"}, tmp_path_factory.mktemp("af"))

    property_()
