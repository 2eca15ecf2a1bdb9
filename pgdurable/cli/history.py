"""What ran and how it went: ``pgdurable runs`` (the run history of registered
workflows, ``pgdurable.run_history``) and the tables ``pgdurable status``
prints (per workflow from ``pgdurable.workflow_health``, per instance).

Both read views only, so a role sees exactly its own runs and instances.
Timestamps print in UTC (``2026-12-02 01:02:03Z``); a listing cut by
``--limit`` says how many more there are.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from pgdurable.cli.options import connect_target, dsn_option, emit, json_option, one_value
from pgdurable.errors import PgDurableError, SchemaOutOfDate

RUN_STATES = ("running", "succeeded", "failed", "cancelled")
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str | None) -> datetime | None:
    """``--since``: an age (``90s``, ``15m``, ``2h``, ``7d``, ``1w``) or an ISO 8601
    date or time (UTC unless it carries an offset)."""
    if value is None:
        return None
    text = value.strip()
    if match := _DURATION.match(text):
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        return datetime.now(UTC) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: give an age like 30m, 2h, 7d or a time like 2026-12-01T08:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def stamp(value: str | None) -> str:
    """An ISO timestamp from JSON as ``YYYY-MM-DD HH:MM:SSZ`` (UTC), or ``-``."""
    if not value:
        return "-"
    moment = datetime.fromisoformat(value).astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = []
    for cells in [headers, *rows]:
        padded = [c.ljust(w) for c, w in zip(cells[:-1], widths, strict=False)]
        lines.append("  ".join([*padded, cells[-1]]).rstrip())
    return "\n".join(lines)


def first_line(text: str | None, width: int = 120) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def fetch(target, view: str, query: str, params: list[Any]) -> Any:
    """``one_value`` that names the upgrade when the view is newer than the schema."""
    try:
        return one_value(target, query, params)
    except PgDurableError as exc:
        if f'"{view}" does not exist' in exc.message:
            raise SchemaOutOfDate() from exc
        raise


def more_note(shown: int, more: bool, what: str) -> str:
    return f"{shown} {what} shown; there are more: raise --limit" if more else ""


@click.command("runs")
@dsn_option
@click.argument("workflow", required=False)
@click.option("--state", type=click.Choice(RUN_STATES), help="Only runs with this outcome.")
@click.option("--since", help="Only runs started since: an age (30m, 2h, 7d) or an ISO time.")
@click.option(
    "--limit", type=click.IntRange(1, 10000), default=20, show_default=True, help="Newest N."
)
@json_option
@click.pass_context
def runs_command(ctx, dsn, workflow, state, since, limit) -> None:
    """Runs of registered workflows, newest first (pgdurable.run_history).

    WORKFLOW is SOURCE/NAME (pg_cron/nightly) or just NAME. A run is one tick of
    the workflow's schedule loop or one instance its enqueue/trigger function
    started; it failed when a step failed, also when pgdurable.try recovered.
    """
    since_at = parse_since(since)
    target = connect_target(dsn)
    rows = fetch(
        target,
        "pgdurable.run_history",
        "SELECT coalesce(json_agg(h ORDER BY h.runid DESC), '[]') FROM ("
        " SELECT runid, jobid, workflow, run_number, kind, outcome, error, due_at, started_at,"
        " ended_at, extract(epoch FROM duration) AS duration_seconds,"
        " extract(epoch FROM delay) AS delay_seconds, instance_id, execution, iteration,"
        " username, database FROM pgdurable.run_history"
        " WHERE (%(wf)s::text IS NULL OR workflow = %(wf)s"
        "        OR substr(workflow, strpos(workflow, '/') + 1) = %(wf)s)"
        "   AND (%(state)s::text IS NULL OR outcome = %(state)s)"
        "   AND (%(since)s::timestamptz IS NULL OR started_at >= %(since)s)"
        " ORDER BY runid DESC LIMIT %(limit)s + 1) h",
        {"wf": workflow, "state": state, "since": since_at, "limit": limit},
    )
    more = len(rows) > limit
    rows = rows[:limit]
    filters = {"workflow": workflow, "state": state, "since": since_at, "limit": limit}
    emit(
        ctx,
        {"connection": target.as_dict(), "filters": filters, "runs": rows, "more": more},
        _runs_text(rows, more, filters),
    )


def _runs_text(rows: list[dict], more: bool, filters: dict) -> str:
    if not rows:
        filtered = any(filters[k] for k in ("workflow", "state", "since"))
        return "no runs match" if filtered else "no runs"
    body = table(
        ["RUNID", "WORKFLOW", "RUN", "OUTCOME", "DUE", "STARTED", "DURATION", "INSTANCE", "ERROR"],
        [
            [
                str(r["runid"]),
                r["workflow"],
                f"#{r['run_number']}" + (" tick" if r["kind"] == "tick" else ""),
                r["outcome"],
                stamp(r["due_at"]),
                stamp(r["started_at"]),
                "-" if r["duration_seconds"] is None else f"{float(r['duration_seconds']):.3f}s",
                r["execution"],
                first_line(r["error"]),
            ]
            for r in rows
        ],
    )
    note = more_note(len(rows), more, "runs")
    return body + ("\n" + note if note else "")


INSTANCE_STATES = ("pending", "running", "waiting", "queued", "completed", "failed", "cancelled")
WORKFLOW_STATES = ("waiting", "running", "overdue", "failing", "on demand", "gone")


def label_pattern(label: str | None) -> str | None:
    """``--label``: exact, or a glob where ``*`` matches anything (as SQL LIKE)."""
    if label is None:
        return None
    escaped = label.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def status_listing(ctx: click.Context, target, state: str | None, label: str | None, limit: int):
    """``pgdurable status`` without an id: registered workflows, then instances."""
    pattern = label_pattern(label)
    params = {"state": state, "label": pattern, "limit": limit}
    workflows = fetch(
        target,
        "pgdurable.workflow_health",
        "SELECT coalesce(json_agg(w ORDER BY w.workflow), '[]') FROM pgdurable.workflow_health w"
        " WHERE (%(state)s::text IS NULL OR w.state = %(state)s)"
        "   AND (%(label)s::text IS NULL OR w.workflow LIKE %(label)s)",
        params,
    )
    listing = _instances(target, params)
    rows, total = listing["rows"], listing["total"]
    more = total > len(rows)
    data = {
        "connection": target.as_dict(),
        "filters": {"state": state, "label": label, "limit": limit},
        "workflows": workflows,
        "instances": rows,
        "instances_total": total,
        "more": more,
    }
    emit(ctx, data, _status_text(workflows, rows, total))


def _instances(target, params: dict) -> dict:
    return fetch(
        target,
        "pgdurable.instance_states",
        "WITH matching AS (SELECT * FROM pgdurable.instance_states s"
        "  WHERE (%(state)s::text IS NULL OR s.state = %(state)s)"
        "    AND (%(label)s::text IS NULL OR s.label LIKE %(label)s))"
        " SELECT json_build_object('total', (SELECT count(*) FROM matching),"
        "  'rows', (SELECT coalesce(json_agg(m ORDER BY m.created_at DESC, m.id), '[]')"
        "           FROM (SELECT * FROM matching ORDER BY created_at DESC, id"
        "                 LIMIT %(limit)s) m))",
        params,
    )


def _workflow_state(w: dict) -> str:
    overdue = w["overdue"] and w["state"] != "overdue"
    return w["state"] + (" (overdue)" if overdue else "")


def _status_text(workflows: list[dict], rows: list[dict], total: int) -> str:
    parts = []
    if workflows:
        parts.append(f"workflows: {len(workflows)}")
        parts.append(
            table(
                ["WORKFLOW", "STATE", "LAST RUN", "OUTCOME", "ENDED", "NEXT DUE", "LAST ERROR"],
                [
                    [
                        w["workflow"],
                        _workflow_state(w),
                        "-" if w["last_run"] is None else f"#{w['last_run']}",
                        w["last_outcome"] or "-",
                        stamp(w["last_ended_at"]),
                        stamp(w["next_due_at"]),
                        first_line(w["last_error"])
                        + (f" (run #{w['last_failed_run']})" if w["last_error"] else ""),
                    ]
                    for w in workflows
                ],
            )
        )
        parts.append("")
    shown = len(rows)
    heading = f"instances: {shown} of {total}, newest first"
    if total > shown:
        heading += " (there are more: raise --limit or filter with --state/--label)"
    parts.append(heading if total else "instances: none")
    if rows:
        parts.append(
            table(
                ["ID", "STATE", "CREATED", "UPDATED", "WAKES", "LABEL"],
                [
                    [
                        r["id"],
                        r["state"],
                        stamp(r["created_at"]),
                        stamp(r["updated_at"]),
                        stamp(r["wakes_at"])
                        if r["wakes_at"]
                        else (",".join(r["waiting_signals"]) or "-"),
                        r["label"] or "",
                    ]
                    for r in rows
                ],
            )
        )
    return "\n".join(parts)
