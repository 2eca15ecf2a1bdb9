"""``DatasetOrTimeSchedule`` / ``AssetOrTimeSchedule(timetable=…, assets=…)``:
a DAG that runs on its timetable's ticks AND whenever its asset condition is
met. In Airflow (``timetables/assets.py``) the two are independent sources of
runs: the timetable's ticks come as they would alone, and the asset events
queue and create asset-triggered runs as a plain asset schedule does (a
timetable run does not consume queued events).

The workflow runs both loops side by side in one ``df.join``: the timetable's
loop (as the timetable alone translates) and the asset loop (``assets.plan``),
each with its own run dates (an asset-triggered run's dates are the time it
starts, as for a plain asset schedule). Each loop keeps its own runs from
overlapping; a time run and an asset run may overlap, as Airflow allows.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass, replace

from pgdurable import model as m
from pgdurable.translators.airflow import assets
from pgdurable.translators.airflow import schedule as base
from pgdurable.translators.airflow.dagfile import OrTime


def _swap_dates(node: m.Node, dates_sql: str) -> m.Node:
    """``node`` with its ``dag_run`` step computing the run's dates by ``dates_sql``."""
    if isinstance(node, m.Sql) and node.name == "dag_run":
        return replace(node, query=dates_sql)
    if not is_dataclass(node):
        return node
    changes = {}
    for f in fields(node):
        value = getattr(node, f.name)
        if isinstance(value, m.NodeBase):
            new = _swap_dates(value, dates_sql)
        elif isinstance(value, tuple) and any(isinstance(v, m.NodeBase) for v in value):
            new = tuple(
                _swap_dates(v, dates_sql) if isinstance(v, m.NodeBase) else v for v in value
            )
        else:
            continue
        if new is not value:
            changes[f.name] = new
    return replace(node, **changes) if changes else node


def _loop(plan: base.Plan, run: m.Node) -> m.Node | None:
    """The timetable's own loop around ``run`` (what ``compile.workflow`` builds)."""
    if plan.kind == "cron":
        waits = [m.WaitForSchedule(c) for c in plan.crons]
        wait: m.Node = waits[0] if len(waits) == 1 else m.Race(waits[0], waits[1])
        return m.Loop(m.Seq((wait, run)))
    if plan.kind == "sleep":
        return m.Loop(m.Seq((m.Sleep(plan.sleep_seconds), run)))
    if plan.kind == "timetable" and plan.build is not None and not plan.triggered:
        return plan.build(run)
    return None


def plan(value: OrTime, generation: int, start_date: object) -> base.Plan:
    timetable = base.plan(
        value.timetable, present=True, generation=generation, start_date=start_date
    )
    wired = assets.plan(value.assets)
    text = f"{value.text}"
    if wired is None or wired.kind == "manual":
        reason = (wired.notes[0][1] if wired is not None and wired.notes else "") or (
            f"its assets {value.assets} cannot be read without running the file"
        )
        return base.Plan(
            "manual", text, notes=[("PGD314", f"the schedule `{text[:160]}`: {reason}")]
        )
    if _loop(timetable, m.Sleep(0)) is None:
        why = "; ".join(msg for _, msg in timetable.notes) or f"kind {timetable.kind}"
        return base.Plan(
            "manual",
            text,
            notes=[("PGD314", f"the timetable of `{text[:160]}` is not translated: {why}")],
        )

    def build(run: m.Node) -> m.Node:
        by_time = _loop(timetable, run)
        assert by_time is not None
        by_assets = wired.build(_swap_dates(run, wired.dates_sql)) if wired.build else run
        return m.Join((by_time, by_assets))

    found = base.Plan("timetable", text, build=build)
    found.dates_sql = timetable.dates_sql
    found.rule = (
        f"{timetable.rule}; asset-triggered runs: {wired.rule}" if timetable.rule else wired.rule
    )
    found.summary = f"runs on the timetable ({timetable.text}) and, independently, {wired.summary}"
    found.notes = [*timetable.notes, *wired.notes]
    return found
