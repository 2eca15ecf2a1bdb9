"""Airflow sensors -> durable poke loops (``tasks._sensor_loop``).

* date and time sensors (``DayOfWeekSensor``, ``TimeSensor(Async)``,
  ``DateTimeSensor(Async)`` with literal targets): the poke is one SQL test of
  the clock, with each version's rule (see each function);

* ``BashSensor`` (exit 0 = true) and ``FileSensor`` (Airflow's glob rule, run by
  the worker host's ``python3``): a command step whose failure is a false poke;
* ``PythonSensor`` and ``@task.sensor``: the callable is extracted like a
``PythonOperator``'s (``python_tasks.py``) and runs as a Python step in mode
``sensor``: the worker side (``pgdurable.airflow_context.run``) tests the
returned value's Python truth, as Airflow's ``poke`` does (a ``PokeReturnValue``
is true when ``is_done``, and only its ``xcom_value`` becomes the task's result).
The loop is ``tasks._sensor_loop``: poke, sleep ``poke_interval`` durably,
until true or ``timeout`` (from the first poke); ``soft_fail`` skips on
timeout; an exception in the callable fails the task, as in Airflow.
``mode="reschedule"`` changes nothing here: the wait is a durable sleep that
holds no worker slot, which is what reschedule is for.
"""

from __future__ import annotations

import re

from pgdurable import model as m
from pgdurable.translators.airflow import templates
from pgdurable.translators.airflow.dagfile import ClockTime, Task, Timestamp, Unknown
from pgdurable.translators.airflow.tasks import (
    Context,
    Work,
    _code_step,
    _sensor_loop,
    literal,
    sid,
    stub,
)


def python_sensor(task: Task, ctx: Context) -> Work:
    name = f"r_{sid(task.task_id)}"
    step = _code_step(task, ctx, "sensor", name)
    if isinstance(step, str):
        return stub(task, f"the sensor callable is Python: {step}", ctx)
    backoff = ctx.dag.task_arg(task, "exponential_backoff", False)
    if backoff is not False and backoff is not None:
        ctx.diag.add(
            "PGD283",
            f"task {task.task_id!r}: exponential_backoff is not carried: the sensor pokes "
            "every poke_interval (Airflow doubles the wait after each poke, with jitter)",
            task.ref,
        )
    for flag in ("silent_fail", "never_fail"):
        if ctx.dag.task_arg(task, flag, False) not in (False, None):
            return stub(
                task,
                f"{flag}=True (a failing poke counts as false / skips) is not translated; "
                "catch the exception in the callable and return False",
                ctx,
            )
    poke = m.Seq((step, m.Sql(f"SELECT ${name}.follow")))
    return _sensor_loop(task, ctx, poke, "poke")


# -- date and time sensors -----------------------------------------------------------
#
# The poke reads the clock as statement_timestamp(): the instant the poke's own
# statement starts (Airflow: utcnow() inside poke()).

POKE_CLOCK = "statement_timestamp()"


def _async(task: Task) -> bool:
    return task.operator.endswith("Async") or task.args.get("deferrable") is True


def _late_wake(task: Task, ctx: Context) -> None:
    ctx.diag.add(
        "PGD284",
        f"task {task.task_id!r}: {task.operator} defers to a trigger that fires at the target "
        "instant; the workflow pokes every poke_interval, so it goes on up to poke_interval "
        "after it (and its timeout applies as for the poking sensor)",
        task.ref,
    )


def day_of_week_sensor(task: Task, ctx: Context) -> Work:
    from pgdurable.translators.airflow import controls

    days = controls.week_days(task.args.get("week_day"))
    if isinstance(days, str):
        ctx.diag.add(
            "PGD341",
            f"task {task.task_id!r}: {days} is not a literal day name, set of names or "
            "WeekDay member; write the weekday test by hand",
            task.ref,
        )
        return stub(task, "week_day is not literal", ctx, reported=True)
    flag = task.args.get("use_task_logical_date", False)
    if not isinstance(flag, bool):
        return stub(task, f"use_task_logical_date is not a literal ({flag})", ctx)
    if flag:
        ctx.env.uses_dates = True
    # unlike the branch operator, the sensor takes the weekday in UTC either way
    clock = controls.LOGICAL if flag else POKE_CLOCK
    listed = ", ".join(str(d) for d in sorted(days))
    poke = m.Sql(f"SELECT extract(isodow FROM ({clock} AT TIME ZONE 'UTC'))::int IN ({listed})")
    return _sensor_loop(task, ctx, poke, "poke")


# ``datetime.now(tz=UTC)[ + timedelta(unit=n)].time()``: a target computed each time
# the file is parsed (the source text of the value the reader could not evaluate)
_PARSE_NOW = re.compile(
    r"^\(?\s*(?:datetime\.)?datetime\.now\(\s*(?:tz\s*=\s*)?"
    r"(?:datetime\.timezone\.utc|timezone\.utc|datetime\.UTC|UTC)\s*\)"
    r"(?:\s*\+\s*(?:datetime\.)?timedelta\(\s*(seconds|minutes|hours)\s*=\s*(\d{1,6})\s*\))?"
    r"\s*\)?\.time\(\)$"
)
_UNIT = {"seconds": 1, "minutes": 60, "hours": 3600}


def _parse_time_offset(target: object) -> int | None:
    """Seconds after "now at parse time" of a target written as ``datetime.now(tz=UTC)
    (+ timedelta(...)).time()``, or None when the value is not of that shape."""
    if not isinstance(target, Unknown):
        return None
    match = _PARSE_NOW.match(" ".join(target.text.split()))
    if match is None:
        return None
    unit, count = match.group(1), match.group(2)
    return int(count) * _UNIT[unit] if unit else 0


def time_sensor(task: Task, ctx: Context) -> Work:
    from pgdurable.translators.airflow import controls

    target = task.args.get("target_time")
    offset = _parse_time_offset(target)
    if offset is not None:
        return _parse_time_sensor(task, ctx, offset)
    if not isinstance(target, ClockTime) or target.zone_unknown:
        shown = target.text if isinstance(target, Unknown) else repr(target)
        ctx.diag.add(
            "PGD343",
            f"task {task.task_id!r}: target_time {shown} is not a literal time() without a "
            "tzinfo (a value computed when the file is parsed changes with every parse); "
            "write the time to wait for as a literal",
            task.ref,
        )
        return stub(task, "target_time is not a literal time", ctx, reported=True)
    zone = controls.dag_timezone(ctx)
    if zone is None:
        zone = "UTC"
        ctx.diag.add(
            "PGD280",
            f"task {task.task_id!r}: the DAG's timezone cannot be read (start_date is not a "
            "literal), so target_time is read in UTC; Airflow reads it in the DAG's timezone",
            task.ref,
        )
    clock_time = f"time {literal(target.iso)}"
    if ctx.generation < 3 and not _async(task):
        # 1.10/2.x poke: the time of day in the DAG's zone is past target_time (so a run
        # that starts after midnight waits for that day's target_time)
        poke = m.Sql(f"SELECT ({POKE_CLOCK} AT TIME ZONE {literal(zone)})::time > {clock_time}")
        return _sensor_loop(task, ctx, poke, "poke")
    # 2.x TimeSensorAsync and 3.x TimeSensor: target_time on the date (in the DAG's zone)
    # when the worker parsed the file for this try: here, when the task starts
    started = f"$poke_start_{sid(task.task_id)}::timestamptz"
    moment = (
        f"((({started} AT TIME ZONE {literal(zone)})::date + {clock_time}) "
        f"AT TIME ZONE {literal(zone)})"
    )
    ctx.diag.add(
        "PGD284",
        f"task {task.task_id!r}: {task.operator} waits for target_time on the date the task "
        f"starts (in {zone}); Airflow takes the date when the worker parses the DAG file for "
        "the try, and wakes at the instant (here: at the first poke after it, within "
        "poke_interval)",
        task.ref,
    )
    return _sensor_loop(task, ctx, m.Sql(f"SELECT {POKE_CLOCK} > {moment}"), "poke")


def date_time_sensor(task: Task, ctx: Context) -> Work:
    from pgdurable.translators.airflow import controls

    target = task.args.get("target_time")
    if (
        not isinstance(target, Timestamp)
        or target.zone_unknown
        or target.iso.startswith("days_ago")
        or (target.timezone is not None and not controls.known_zone(target.timezone))
    ):
        shown = target.text if isinstance(target, Unknown) else repr(target)
        ctx.diag.add(
            "PGD343",
            f"task {task.task_id!r}: target_time {shown} is not a literal datetime (a template "
            "or a string is not read here); write the instant as a literal datetime",
            task.ref,
        )
        return stub(task, "target_time is not a literal datetime", ctx, reported=True)
    # timezone.parse(target.isoformat()): a naive instant is in default_timezone (UTC)
    moment = f"(timestamp {literal(target.iso)} AT TIME ZONE {literal(target.timezone or 'UTC')})"
    if _async(task):
        _late_wake(task, ctx)
    return _sensor_loop(task, ctx, m.Sql(f"SELECT {POKE_CLOCK} > {moment}"), "poke")


# -- command sensors -----------------------------------------------------------------

# FileSensor's poke, run by the worker host's python3 with Airflow's own rule: the
# first glob match that is a file, or a directory holding a file somewhere below.
_FILE_POKE = (
    "import glob, os, sys\n"
    "for path in glob.glob(sys.argv[1], recursive=sys.argv[2] == '1'):\n"
    "    if os.path.isfile(path) or any(files for _, _, files in os.walk(path)):\n"
    "        sys.exit(0)\n"
    "sys.exit(1)\n"
)


def _exit_zero_poke(command: m.Command, task: Task) -> m.Node:
    """True when the command exits 0; any other exit is a false poke (the command
    step fails, and the failure is the answer). The answer is a named result read
    by a last step: a TRY that recovered returns an error object, always true."""
    flag = f"ok_{sid(task.task_id)}"
    attempt = m.Try(
        m.Seq((command, m.Sql("SELECT true AS ok", name=flag))),
        m.Sql("SELECT false AS ok", name=flag),
    )
    return m.Seq((attempt, m.Sql(f"SELECT ${flag}::boolean")))


def _host_note(task: Task, ctx: Context, what: str, program: str) -> None:
    role = ctx.run_as or "ROLE"
    ctx.diag.add(
        "PGD271",
        f"task {task.task_id!r}: {what} on a pgdurable worker's host as the worker's OS user "
        "(not on the Airflow worker), with only AIRFLOW_CTX_* and the task's env; any failure "
        "of the step (also a refused grant) counts as a false poke, so the sensor times out "
        f"instead of failing; grant: SELECT pgdurable.grant_code({literal(role)}, "
        f"{literal('command:' + program)}) (it runs any {program} code)",
        task.ref,
    )


def bash_sensor(task: Task, ctx: Context) -> Work:
    from pgdurable.translators.airflow import bash, tasks

    command = task.args.get("bash_command")
    if not isinstance(command, str) or not command.strip():
        return stub(task, "bash_command is not a literal", ctx)
    if ctx.portable:
        return stub(task, "code steps are not portable (--portable)", ctx)
    if task.args.get("retry_exit_code") is not None:
        return stub(
            task,
            "retry_exit_code (only that exit code pokes again, others fail the task) is not "
            "translated; make the command exit 0 or non-zero only",
            ctx,
        )
    own_env = task.args.get("env")
    if own_env is not None and not isinstance(own_env, dict):
        return stub(task, "env is not a literal dict", ctx)
    env = tasks._env_for(task, ctx)
    rendered = templates.render_raw(command, env)
    variables = {str(k): templates.render_raw(str(v), env) for k, v in (own_env or {}).items()}
    variables.update(bash.context_env(ctx.dag.dag_id, task, env))
    # Airflow writes the command to a script and runs `bash script` (exit is a builtin)
    step = m.Command(
        (bash.SHELL, "-c", rendered), tuple(sorted(variables.items())), None, source=task.ref
    )
    _host_note(task, ctx, "the bash command runs", bash.SHELL)
    return _sensor_loop(task, ctx, _exit_zero_poke(step, task), "poke")


def file_sensor(task: Task, ctx: Context) -> Work:
    filepath = task.args.get("filepath")
    if not isinstance(filepath, str) or "{{" in filepath or "{%" in filepath or not filepath:
        return stub(task, "filepath is not a literal path (templates are not read here)", ctx)
    if ctx.portable:
        return stub(task, "code steps are not portable (--portable)", ctx)
    conn = ctx.dag.task_arg(task, "fs_conn_id", "fs_default")
    recursive = task.args.get("recursive", False)
    if not isinstance(recursive, bool):
        return stub(task, f"recursive is not a literal ({recursive})", ctx)
    if not filepath.startswith("/"):
        if conn != "fs_default":
            return stub(
                task,
                f"a relative filepath under fs_conn_id {conn!r}, whose base path (its extra "
                "`path`) pgdurable cannot read: give the absolute path",
                ctx,
            )
        # Airflow's default fs_default connection has the base path "/"
        filepath = "/" + filepath
    step = m.Command(
        ("python3", "-c", _FILE_POKE, filepath, "1" if recursive else "0"),
        None,
        None,
        source=task.ref,
    )
    # deferrable: Airflow's FileTrigger polls every poke_interval too
    _host_note(task, ctx, f"the file {filepath!r} is looked for", "python3")
    return _sensor_loop(task, ctx, _exit_zero_poke(step, task), "poke")


def wait_sensor(task: Task, ctx: Context) -> Work:
    """3.x ``WaitSensor``: wait ``time_to_wait`` (a timedelta, or an int of minutes)
    from when the task starts: a durable sleep (Airflow sleeps int(seconds))."""
    from pgdurable.translators.airflow.tasks import _seconds

    wait = _seconds(
        task.args.get("time_to_wait"), None, minutes_if_int=True, task=task, name="time_to_wait"
    )
    if wait is None:
        return stub(task, "time_to_wait is not a literal timedelta or number of minutes", ctx)
    return Work(m.Sleep(int(wait), source=task.ref))


def _parse_time_sensor(task: Task, ctx: Context, offset: int) -> Work:
    """A TimeSensor whose target_time is the UTC time of day when the file is parsed
    (plus ``offset`` s). Airflow's worker parses the file when the try starts, so
    the target is taken from the task's start; each version's poke rule then
    applies as for a literal time (the 1.10/2.x time-of-day test wraps at midnight)."""
    from pgdurable.translators.airflow import controls

    zone = controls.dag_timezone(ctx) or "UTC"
    started = f"$poke_start_{sid(task.task_id)}::timestamptz"
    clock_time = f"((({started} + interval '{offset} seconds') AT TIME ZONE 'UTC')::time)"
    ctx.diag.add(
        "PGD284",
        f"task {task.task_id!r}: target_time is computed when the DAG file is parsed "
        "(datetime.now()); the workflow takes the task's start as that moment (Airflow: when "
        "the worker parses the file for the try, just before it)",
        task.ref,
    )
    if ctx.generation < 3 and not _async(task):
        poke = m.Sql(f"SELECT ({POKE_CLOCK} AT TIME ZONE {literal(zone)})::time > {clock_time}")
    else:
        moment = (
            f"((({started} AT TIME ZONE {literal(zone)})::date + {clock_time}) "
            f"AT TIME ZONE {literal(zone)})"
        )
        poke = m.Sql(f"SELECT {POKE_CLOCK} > {moment}")
    return _sensor_loop(task, ctx, poke, "poke")
