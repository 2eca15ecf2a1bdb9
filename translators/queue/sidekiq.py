"""Sidekiq schedules: sidekiq-cron ``config/schedule.yml`` and sidekiq-scheduler.

Layouts read (all YAML, several files per run):

* sidekiq-cron: ``name: {cron, class, queue, args, description, status,
  active_job, date_as_argument, namespace, source, retry}`` at the top level
  (or a list of such hashes with ``name``), optionally grouped under a Rails
  environment key (``production:``);
* sidekiq-scheduler: ``:scheduler: :schedule:`` in ``sidekiq.yml`` (current),
  or ``:schedule:`` at the top level (older), entries ``{cron | every | at |
  in | interval, class (default: the key), queue, args, enabled, ...}``;
* ``sidekiq.yml`` options: ``:max_retries:`` is the default retry count,
  other known options (``:concurrency:``, ``:queues:``, ``:timeout:`` ...)
  do not affect a translation.

Semantics: ``cron`` is fugit's (5 or 6 fields, seconds first, optional time
zone suffix; without one, the process's zone, which the file does not show:
PGD206); an entry without ``class`` runs the class its key names;
``every``/``interval`` a fixed period (``['24h', first_in: '45m']``); ``in``
one delayed run; ``at`` manual. A job retries unless
``retry: false``: ``retry: N`` or ``:max_retries:``, else Sidekiq's default
of 25, with delays of about ``count**4 + 15`` s (approximated). Uniqueness
(``lock``/``unique``, sidekiq-unique-jobs) allows one run at a time, or
replaces the running one with ``on_conflict: replace``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pgdurable.diagnostics import Diagnostic, SourceRef
from pgdurable.translators.base import INT_MAX
from pgdurable.translators.queue import schedules, yamlsource
from pgdurable.translators.queue.jobs import (
    Cron,
    Every,
    Item,
    Once,
    QueueJob,
    RetryPolicy,
    Task,
    Unreadable,
    Unschedulable,
)

FORMAT = "sidekiq"
SCHEDULE_KEYS = {"cron", "every", "at", "in", "interval"}
ENTRY_KEYS = SCHEDULE_KEYS | {
    "class",
    "klass",
    "queue",
    "args",
    "description",
    "status",
    "enabled",
    "active_job",
    "date_as_argument",
    "namespace",
    "source",
    "retry",
    "name",
    "include_metadata",
    "metadata",
    "rufus_scheduler_options",
    "lock",
    "unique",
    "unique_for",
    "on_conflict",
}
OPTION_KEYS = {
    "concurrency",
    "queues",
    "max_retries",
    "timeout",
    "verbose",
    "pidfile",
    "logfile",
    "labels",
    "tag",
    "strict",
    "environment",
    "require",
    "dead_max_jobs",
    "dead_timeout_in_seconds",
    "lifecycle_events",
    "scheduler",
    "schedule",
    "dynamic",
    "enabled",
    "listened_queues_only",
    "capsules",
    "poll_interval_average",
    "average_scheduled_poll_interval",
}
DEFAULT_RETRIES = 25


# An entry's schedule key under a name: sidekiq-scheduler files loaded with
# ``Sidekiq.schedule = YAML.load_file(...)`` name no class (the key is the class).
_SCHEDULE_LINE = re.compile(r"^[ ]{2,}(cron|every|interval|in|at)[ ]*:[ ]*\S", re.MULTILINE)


def looks_like(text: str) -> bool:
    return (
        ":schedule:" in text
        or ":scheduler:" in text
        or ":concurrency:" in text
        or ("class:" in text and ("cron:" in text or "every:" in text))
        or bool(_SCHEDULE_LINE.search(text))
    )


def check(text: str, file: str) -> None:
    """Raise SourceParseError (file, line, fix) when ``text`` is not YAML."""
    yamlsource.load_all(text, file)


def _is_entry(value: Any) -> bool:
    return isinstance(value, dict) and bool(set(value) & (SCHEDULE_KEYS | {"class", "klass"}))


def _schedule(entry: dict, name: str) -> Cron | Every | Once | Unschedulable | str:
    given = [k for k in ("cron", "every", "interval", "in", "at") if k in entry]
    if len(given) != 1:
        return (
            f"entry '{name}' needs exactly one of cron, every, interval, in, at "
            f"(found {', '.join(given) or 'none'})"
        )
    key = given[0]
    value = entry[key]
    if key == "cron":
        text = str(value).strip()
        fields, seconds, tz = schedules.split_fugit(text)
        return Cron(fields, "fugit", timezone=tz, seconds=seconds, original=text)
    if key == "at":
        return Unschedulable(
            f"at: {value}", "a run at one point in time has no cron equivalent in the DSL"
        )
    first_in = None
    if isinstance(value, list) and value:
        options = value[1] if len(value) > 1 and isinstance(value[1], dict) else {}
        value = value[0]
        if "first_in" in options:
            first = schedules.duration_seconds(str(options["first_in"]))
            if first is None or not 0 <= first <= INT_MAX:
                return f"first_in '{options['first_in']}' is not a duration (e.g. 45m)"
            first_in = round(first)
    seconds = schedules.duration_seconds(str(value))
    if seconds is None or not 0 < seconds <= INT_MAX:
        return f"{key} '{value}' is not a duration (e.g. 30s, 5m, 1h30m, 2d)"
    if key == "in":
        return Once(max(0, round(seconds)), f"in: {value}")
    return Every(max(1, round(seconds)), f"{key}: {value}", first_in=first_in)


def _retry(entry: dict, default: Any) -> tuple[RetryPolicy | None, str]:
    value = entry.get("retry", default)
    if value is False or value == 0:
        return None, "retry: false"
    assumed = None
    if value is True or value is None:
        count = DEFAULT_RETRIES
        origin = "Sidekiq's default retry: true (25 retries)"
        if "retry" not in entry and default is None:
            assumed = (
                "the entry does not set retry, so Sidekiq's default (25 retries) is assumed; "
                "if the class sets sidekiq_options retry: ..., set retry: in the entry"
            )
    else:
        try:
            count = int(value)
        except (TypeError, ValueError):
            return None, f"retry: {value!r} is not a number"
        origin = f"retry: {count}" if "retry" in entry else f":max_retries: {count}"
    policy = RetryPolicy(
        count + 1,
        15,
        2.0,
        390625,
        origin=origin,
        approximate=(
            "Sidekiq waits about count**4 + 15 s (plus jitter) before retry number count; "
            "the workflow doubles a 15 s delay up to 390625 s (Sidekiq's 25th delay)"
        ),
        assumed=assumed,
    )
    return policy, ""


def _concurrency(entry: dict) -> str:
    if str(entry.get("on_conflict", "")).lower() == "replace":
        return "replace"
    if any(entry.get(k) for k in ("lock", "unique", "unique_for")):
        return "forbid"
    return "allow"


def _args(value: Any) -> Any:
    if value is None:
        return {"args": []}
    return {"args": value if isinstance(value, list) else [value]}


def _entries(doc: yamlsource.YMap, file: str) -> tuple[list[tuple[str, Any, int, str]], list]:
    """(name, entry, line, environment) of every schedule entry, and option notes."""
    found: list[tuple[str, Any, int, str]] = []
    notes: list[Diagnostic] = []
    options = {yamlsource.symbol(k): v for k, v in doc.items() if str(k).startswith(":")}
    schedule_map = None
    if isinstance(options.get("scheduler"), dict):
        inner = {yamlsource.symbol(k): v for k, v in options["scheduler"].items()}
        schedule_map = inner.get("schedule")
    if schedule_map is None and isinstance(options.get("schedule"), dict):
        schedule_map = options["schedule"]
    for key, value in doc.items():
        if str(key).startswith(":"):
            if yamlsource.symbol(key) not in OPTION_KEYS:
                notes.append(
                    Diagnostic(
                        "PGD213",
                        f"unknown Sidekiq option {key} is ignored",
                        SourceRef(file, doc.line_of(key)),
                    )
                )
            continue
        if _is_entry(value):
            found.append((str(key), value, doc.line_of(key), ""))
        elif isinstance(value, dict) and value and all(_is_entry(v) for v in value.values()):
            for name, entry in value.items():  # grouped under a Rails environment
                found.append((str(name), entry, value.line_of(name), str(key)))
        elif isinstance(value, dict) and value and any(str(k).startswith(":") for k in value):
            continue  # per-environment sidekiq.yml options
        else:
            notes.append(
                Diagnostic(
                    "PGD213",
                    f"top-level key '{key}' is neither a schedule entry nor a Sidekiq "
                    "option; ignored",
                    SourceRef(file, doc.line_of(key)),
                )
            )
    if isinstance(schedule_map, dict):
        for name, entry in schedule_map.items():
            line = schedule_map.line_of(name) if isinstance(schedule_map, yamlsource.YMap) else 0
            found.append((str(name), entry, line, ""))
    return found, notes


def read_all(sources: list[tuple[Path, str, str]]) -> list[Item]:
    """Every entry of every file; sidekiq.yml options apply to all of them."""
    documents = []
    max_retries = None
    for _path, text, file in sources:
        for doc, line in yamlsource.load_all(text, file):
            if isinstance(doc, list):  # sidekiq-cron's array form
                converted = yamlsource.YMap()
                converted.line, converted.key_lines = line, {}
                for entry in doc:
                    if isinstance(entry, dict) and "name" in entry:
                        converted[str(entry["name"])] = entry
                        converted.key_lines[str(entry["name"])] = getattr(entry, "line", line)
                doc = converted
            if not isinstance(doc, yamlsource.YMap):
                continue
            documents.append((doc, file))
            for key, value in doc.items():
                if yamlsource.symbol(key) == "max_retries" and str(key).startswith(":"):
                    max_retries = value
    items: list[Item] = []
    names: dict[str, int] = {}
    pending_notes: list[Diagnostic] = []
    for doc, file in documents:
        found, notes = _entries(doc, file)
        pending_notes += notes
        for name, entry, line, env in found:
            ref = SourceRef(file, line)
            if env:
                name = f"{name}__{env}" if name in names else name
            names[name] = names.get(name, 0) + 1
            if names[name] > 1:
                name = f"{name}__{names[name]}"
            if not isinstance(entry, dict):
                items.append(Unreadable(name, FORMAT, ref, f"entry '{name}' is not a mapping"))
                continue
            schedule = _schedule(entry, name)
            if isinstance(schedule, str):
                items.append(Unreadable(name, FORMAT, ref, schedule, code="PGD104"))
                continue
            entry_notes = list(pending_notes)
            pending_notes = []
            for key in entry:
                if key not in ENTRY_KEYS:
                    entry_notes.append(
                        Diagnostic(
                            "PGD213",
                            f"unknown key '{key}' in entry '{name}' is ignored",
                            SourceRef(file, entry.line_of(key)),
                        )
                    )
            if entry.get("date_as_argument"):
                entry_notes.append(
                    Diagnostic(
                        "PGD225",
                        "date_as_argument: the run's args do not get the enqueue time "
                        "appended; use now() in the task's SQL",
                        ref,
                    )
                )
            if isinstance(schedule, Cron) and schedule.timezone is None:
                entry_notes.append(
                    Diagnostic(
                        "PGD206",
                        f"the schedule is evaluated in UTC; Sidekiq evaluated '{schedule.original}'"
                        " in the Sidekiq process's time zone (Rails' config.time_zone, TZ or "
                        "the host's), which this file does not show: if it was not UTC, add "
                        "the zone to the cron string (e.g. '0 6 * * * Europe/Berlin') and "
                        "regenerate",
                        ref,
                    )
                )
            retry, retry_note = _retry(entry, max_retries)
            if retry_note and retry is None and retry_note != "retry: false":
                entry_notes.append(Diagnostic("PGD213", retry_note, ref))
            status = str(entry.get("status", "enabled")).lower()
            enabled = status != "disabled" and entry.get("enabled", True) is not False
            klass = entry.get("class") or entry.get("klass") or name
            description = [f"class: {klass}"]
            if entry.get("queue"):
                description.append(f"queue: {entry['queue']}")
            if env:
                description.append(f"environment: {env}")
            items.append(
                QueueJob(
                    name=name,
                    format=FORMAT,
                    ref=ref,
                    schedule=schedule,
                    action=Task(str(klass), "sidekiq class"),
                    args=_args(entry.get("args")),
                    queue=entry.get("queue"),
                    retry=retry,
                    concurrency=_concurrency(entry),
                    enabled=enabled,
                    disabled_by="status: disabled" if status == "disabled" else "enabled: false",
                    notes=tuple(entry_notes),
                    description=tuple(description),
                )
            )
    return items
