"""Tasks that look at another DAG: ``TriggerDagRunOperator(wait_for_completion=True)``
and ``ExternalTaskMarker``.

* ``wait_for_completion``: Airflow's operator (providers-standard
  ``trigger_dagrun.py``) sleeps ``poke_interval`` (60 s), reads the started run's
  state, fails the task when it is in ``failed_states`` (default ``failed``),
  succeeds when it is in ``allowed_states`` (default ``success``) and otherwise
  polls again - forever, if the run ended in neither. The workflow does the
  same over the started instance's status: ``completed`` is the run's
  ``success``, ``failed`` and ``cancelled`` (a person stopped it; Airflow has no
  cancel, marking a run failed is the nearest) its ``failed``; anything else is
  still ``running``/``queued``.
* ``ExternalTaskMarker`` does nothing when it runs: it only makes Airflow clear
  the other DAG's task when this one is cleared. pgdurable has no clearing, so
  it is a no-op step, approximate.
"""

from __future__ import annotations

from pgdurable import model as m
from pgdurable.sqltext import literal
from pgdurable.translators.airflow.dagfile import Task, Unknown

# Airflow DagRunState values and the instance statuses that give them
STATES = ("queued", "running", "success", "failed")
_STATE_SQL = (
    "SELECT CASE i.status WHEN 'completed' THEN 'success' WHEN 'failed' THEN 'failed' "
    "WHEN 'cancelled' THEN 'failed' ELSE 'running' END AS state "
    "FROM df.instances i WHERE i.id = {instance}"
)


def _states(value: object, default: list[str]) -> list[str] | None:
    """A literal list of DagRunState values (``"success"``, ``DagRunState.FAILED``)."""
    if value is None:
        return default
    if not isinstance(value, list | tuple):
        return None
    found: list[str] = []
    for v in value:
        text = v.text.rsplit(".", 1)[-1].lower() if isinstance(v, Unknown) else v
        if not isinstance(text, str) or text.lower() not in STATES:
            return None
        found.append(text.lower())
    return found


def wait_problem(task: Task) -> str | None:
    """Why the wait cannot be translated, if so."""
    allowed = task.args.get("allowed_states")
    failed = task.args.get("failed_states")
    if _states(allowed, ["success"]) is None or (
        failed is not None and _states(failed, []) is None
    ):
        return "allowed_states/failed_states are not literal lists of DagRunState values"
    passed = [k for k in ("logical_date", "execution_date", "trigger_run_id") if task.args.get(k)]
    if passed:
        # the wait would be exact, the started run would not: it gets its own dates
        return (
            f"{'/'.join(passed)} is not passed to the started workflow (its run has its own "
            "start time as logical date and run id); drop it or start the run yourself"
        )
    interval = task.args.get("poke_interval", 60)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 0:
        return "poke_interval is not a literal number of seconds"
    return None


def wait_for_run(task: Task, start: m.Sql, key: str) -> m.Node:
    """``start`` (the trigger step, a named result holding the instance id) followed by
    Airflow's wait loop. ``key``: a word for the result names."""
    allowed = _states(task.args.get("allowed_states"), ["success"]) or ["success"]
    failed_arg = task.args.get("failed_states")
    failed = _states(failed_arg, []) if failed_arg is not None else ["failed"]
    failed = failed or []
    interval = int(task.args.get("poke_interval", 60) or 0)
    started = f"trig_{key}"
    state = f"trig_state_{key}"
    named = m.Sql(start.query, name=started, source=start.source)
    check = m.Sql(_STATE_SQL.format(instance=f"${started}"), name=state)
    array = "ARRAY[" + ", ".join(literal(s) for s in [*allowed, *failed]) + "]::text[]"
    loop = m.Loop(
        m.Seq((m.Sleep(interval), check)),
        m.Sql(f"SELECT NOT (${state} = ANY({array}))"),
    )
    steps: list[m.Node] = [named, loop]
    if failed:
        bad = "ARRAY[" + ", ".join(literal(s) for s in failed) + "]::text[]"
        target = literal(str(task.args.get("trigger_dag_id")))
        steps.append(
            m.If(
                m.Sql(f"SELECT ${state} = ANY({bad})"),
                m.Sql(
                    "DO $fail$ BEGIN RAISE EXCEPTION '% failed with failed states %', "
                    f"{target}, ${state}; END $fail$"
                ),
                m.Sleep(0),
            )
        )
    return m.Seq(tuple(steps))


def marker_note(task: Task) -> str:
    other = task.args.get("external_dag_id")
    which = f" of DAG {other!r}" if isinstance(other, str) else ""
    return (
        f"task {task.task_id!r} (ExternalTaskMarker) only makes Airflow clear the task "
        f"{task.args.get('external_task_id')!r}{which} when this task is cleared; it does "
        "nothing when it runs, and neither does the workflow: clearing does not propagate "
        "(pgdurable has no clear; re-run the other workflow yourself)"
    )


def sensor_problem(task: Task) -> str:
    """Why an ``ExternalTaskSensor`` stays manual, and what to write instead. (It waits
    for the other DAG's run at the same logical date, shifted by ``execution_delta`` /
    ``execution_date_fn``, to have the task(s) in ``allowed_states``; the translated
    workflows do not record a task's state per logical date in a form another
    workflow can read, so it is not translated.)"""
    other = task.args.get("external_dag_id")
    ids = task.args.get("external_task_ids") or task.args.get("external_task_id")
    group = task.args.get("external_task_group_id")
    what = (
        f"task group {group!r}"
        if group is not None
        else f"task(s) {ids!r}"
        if ids is not None
        else "the whole DAG run"
    )
    shift = ""
    if task.args.get("execution_delta") is not None or task.args.get("execution_date_fn"):
        shift = " (shifted by execution_delta/execution_date_fn)"
    return (
        f"ExternalTaskSensor waits for {what} of DAG {other!r} at this run's logical date{shift}; "
        "pgdurable's run history does not record another workflow's task states per logical "
        "date. Replace the pair by an asset (outlets=[Asset(...)] on the awaited task, "
        "schedule=[Asset(...)] on this DAG: translated, with Airflow's rule) or by a "
        f"TriggerDagRunOperator in {other!r} that starts this DAG after that task"
    )
