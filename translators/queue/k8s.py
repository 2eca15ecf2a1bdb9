"""Kubernetes ``CronJob`` manifests (``batch/v1`` and ``batch/v1beta1``).

Every document of every file is read; documents of other kinds (a
``ConfigMap``, a ``Secret``...) are skipped, except that a ``List`` is
opened. Per CronJob:

* ``spec.schedule``: robfig cron (five fields, macros, ``@every``), in
  ``spec.timeZone`` (default: the controller's zone, taken as UTC and
  reported, PGD206; a ``timeZone`` under the job or pod template is ignored
  by Kubernetes and warned about);
* ``spec.suspend``: registered, not started; ``concurrencyPolicy``:
  Allow (default) / Forbid / Replace; ``startingDeadlineSeconds``;
* ``jobTemplate.spec.backoffLimit`` (default 6) retries a failed pod with
  10 s, 20 s, 40 s ... delays capped at six minutes, which is exactly a
  ``pgdurable.retry``; ``activeDeadlineSeconds`` limits the whole job,
  retries included (``pgdurable.timeout``);
* the container that runs psql: its ``command``/``args`` (also through
  ``sh -c``), with ``env`` values (``PGDATABASE``, ``PGUSER`` ...) and
  ``$(VAR)`` references. ``valueFrom`` values are unknown here.

Unknown keys in the CronJob, job and container specs are warned about, not
fatal (a typo such as ``concurencyPolicy`` silently means the default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pgdurable.diagnostics import Diagnostic, SourceRef
from pgdurable.translators.base import INT_MAX, BadValue, whole_number
from pgdurable.translators.queue import psql, schedules, yamlsource
from pgdurable.translators.queue.jobs import (
    Cron,
    Every,
    Item,
    QueueJob,
    RetryPolicy,
    Task,
    Unreadable,
)
from pgdurable.translators.queue.yamlsource import YMap

FORMAT = "k8s"
CRONJOB_SPEC_KEYS = {
    "schedule",
    "timeZone",
    "suspend",
    "concurrencyPolicy",
    "startingDeadlineSeconds",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "jobTemplate",
}
JOB_SPEC_KEYS = {
    "backoffLimit",
    "activeDeadlineSeconds",
    "template",
    "ttlSecondsAfterFinished",
    "completions",
    "parallelism",
    "completionMode",
    "backoffLimitPerIndex",
    "maxFailedIndexes",
    "podFailurePolicy",
    "podReplacementPolicy",
    "suspend",
    "manualSelector",
    "selector",
    "successPolicy",
    "managedBy",
}
CONTAINER_KEYS = {
    "name",
    "image",
    "command",
    "args",
    "env",
    "envFrom",
    "imagePullPolicy",
    "resources",
    "volumeMounts",
    "workingDir",
    "securityContext",
    "ports",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "stdin",
    "stdinOnce",
    "tty",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "volumeDevices",
    "resizePolicy",
    "restartPolicy",
}
POLICIES = {"Allow": "allow", "Forbid": "forbid", "Replace": "replace"}
DEFAULT_BACKOFF_LIMIT = 6
ZONE_KEYS = {"timezone", "time_zone", "tz"}


def looks_like(text: str) -> bool:
    return "kind: CronJob" in text or 'kind: "CronJob"' in text


def _unknown(mapping: Any, known: set[str], where: str, file: str) -> list[Diagnostic]:
    if not isinstance(mapping, yamlsource.YMap):
        return []
    return [
        Diagnostic(
            "PGD213",
            f"unknown key '{key}' in {where} is ignored",
            SourceRef(file, mapping.line_of(key)),
        )
        for key in mapping
        if key not in known and str(key).lower() not in ZONE_KEYS  # see _misplaced_zones
    ]


def _schedule(spec: dict) -> Cron | Every | str:
    text = str(spec.get("schedule", "")).strip()
    if not text:
        return "spec.schedule is missing"
    upper = text.upper()
    if upper.startswith("TZ=") or upper.startswith("CRON_TZ="):
        return (
            f"'{text}': Kubernetes rejects a time zone inside spec.schedule; move it to "
            "spec.timeZone"
        )
    if text.startswith("@every"):
        seconds = schedules.duration_seconds(text[len("@every") :].strip())
        if not seconds:
            return f"'{text}': @every needs a duration such as 5m or 1h30m"
        if seconds > INT_MAX:
            return f"'{text}': @every longer than {INT_MAX} s"
        return Every(max(1, round(seconds)), text)
    tz = spec.get("timeZone")
    return Cron(text, "robfig", timezone=str(tz) if tz else None, original=text)


def _env(container: dict, notes: list[Diagnostic], file: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for var in _sequence(container.get("env")):
        if not isinstance(var, dict) or "name" not in var:
            continue
        if "value" in var:
            env[str(var["name"])] = psql._expand(str(var["value"]), env)
        elif var["name"] in ("PGDATABASE", "PGUSER", "PGHOST"):
            notes.append(
                Diagnostic(
                    "PGD225",
                    f"{var['name']} comes from valueFrom (a Secret or ConfigMap) the "
                    "manifest does not show; pass --default-database/--default-username",
                    SourceRef(file, getattr(var, "line", None)),
                )
            )
    return env


def _job(doc: dict, line: int, path: Path, file: str) -> Item:
    meta = _mapping(doc.get("metadata"))
    name = str(meta.get("name") or f"cronjob_line_{line}")
    namespace = meta.get("namespace")
    ref = SourceRef(file, line)
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        return Unreadable(name, FORMAT, ref, "the CronJob has no spec")
    notes = _unknown(spec, CRONJOB_SPEC_KEYS, "spec", file)
    schedule = _schedule(spec)
    if isinstance(schedule, str):
        return Unreadable(name, FORMAT, ref, schedule, code="PGD104")
    misplaced = _misplaced_zones(spec, file)
    notes += misplaced
    if isinstance(schedule, Cron) and schedule.timezone is None:
        notes.append(
            Diagnostic(
                "PGD206",
                "the schedule is evaluated in UTC; without spec.timeZone Kubernetes used the "
                "time zone of the kube-controller-manager (UTC on most managed clusters), "
                "which the manifest does not show: if it was not UTC, set spec.timeZone "
                "and regenerate",
                ref,
            )
        )
    # Any level may hold a scalar or a list in a malformed manifest.
    job_spec = _mapping(_mapping(spec.get("jobTemplate")).get("spec"))
    notes += _unknown(job_spec, JOB_SPEC_KEYS, "spec.jobTemplate.spec", file)
    pod = _mapping(_mapping(job_spec.get("template")).get("spec"))
    containers = [c for c in _sequence(pod.get("containers")) if isinstance(c, dict)]
    if not containers:
        return Unreadable(name, FORMAT, ref, "the job template has no containers")
    action = None
    reasons = []
    chosen = containers[0]
    for container in containers:
        command = [
            str(c) for c in _sequence(container.get("command")) + _sequence(container.get("args"))
        ]
        if not command:
            reasons.append(
                f"container {container.get('name')} runs its image's entrypoint "
                f"({container.get('image')}), which the manifest does not show"
            )
            continue
        env = _env(container, notes, file)
        try:
            found = psql.parse_shell(command, env, path.parent)
        except psql.NotPsql as exc:
            reasons.append(str(exc))
            continue
        if len(found) > 1:
            reasons.append("the container chains several psql commands; map it in --tasks")
            continue
        action, chosen = found[0][0], container
        break
    for container in containers:
        notes += _unknown(container, CONTAINER_KEYS, f"container {container.get('name')}", file)
    description = []
    if namespace:
        description.append(f"namespace: {namespace}")
    description.append(f"container: {chosen.get('name')} ({chosen.get('image')})")
    if action is None:
        command = " ".join(
            str(c) for c in _sequence(chosen.get("command")) + _sequence(chosen.get("args"))
        )
        words = tuple(
            str(c) for c in _sequence(chosen.get("command")) + _sequence(chosen.get("args"))
        )
        task = Task(
            command or str(chosen.get("image")),
            "command",
            env=tuple(_env(chosen, [], file).items()),
            argv=words,
            image=None if chosen.get("image") is None else str(chosen.get("image")),
        )
        notes.append(Diagnostic("PGD308", "; ".join(reasons), ref))
    limit = job_spec.get("backoffLimit")
    assumed = None
    if limit is None:
        limit = DEFAULT_BACKOFF_LIMIT
        assumed = "backoffLimit is not set: Kubernetes' default of 6 retries applies"
    deadline = job_spec.get("activeDeadlineSeconds")
    try:  # Kubernetes refuses a manifest whose integer fields are not integers
        at = job_spec.line_of if isinstance(job_spec, YMap) else lambda key: line
        limit = whole_number(limit, "backoffLimit", line=at("backoffLimit"))
        if deadline is not None:
            deadline = whole_number(
                deadline, "activeDeadlineSeconds", line=at("activeDeadlineSeconds"), minimum=1
            )
    except BadValue as exc:
        return Unreadable(name, FORMAT, SourceRef(file, exc.line), str(exc), code="PGD108")
    retry = None
    if limit > 0:
        retry = RetryPolicy(
            limit + 1,
            10,
            2.0,
            360,
            origin=f"backoffLimit: {limit}",
            assumed=assumed,
        )
    policy = str(spec.get("concurrencyPolicy", "Allow"))
    if policy not in POLICIES:
        return Unreadable(
            name, FORMAT, ref, f"concurrencyPolicy '{policy}' is not Allow, Forbid or Replace"
        )
    return QueueJob(
        name=name,
        format=FORMAT,
        ref=ref,
        schedule=schedule,
        action=action if action is not None else task,
        retry=retry,
        concurrency=POLICIES[policy],
        time_limit=deadline,
        enabled=not spec.get("suspend", False),
        disabled_by="suspend: true",
        starting_deadline=spec.get("startingDeadlineSeconds"),
        notes=tuple(notes),
        description=tuple(description),
        namespace=str(namespace) if namespace else None,
    )


def _misplaced_zones(spec: dict, file: str) -> list[Diagnostic]:
    """A ``timeZone`` (any spelling) outside ``spec``: Kubernetes ignores it (or the
    API server refuses the field), so the schedule ran in the controller's zone."""
    template = _mapping(spec.get("jobTemplate"))
    job_spec = _mapping(template.get("spec"))
    pod = _mapping(job_spec.get("template"))
    places = [
        (template, "spec.jobTemplate"),
        (job_spec, "spec.jobTemplate.spec"),
        (pod, "spec.jobTemplate.spec.template"),
        (_mapping(pod.get("spec")), "spec.jobTemplate.spec.template.spec (the pod spec)"),
    ]
    found = []
    for mapping, where in places:
        for key in mapping:
            if str(key).lower() in ZONE_KEYS:
                line = mapping.line_of(key) if isinstance(mapping, YMap) else None
                found.append(
                    Diagnostic(
                        "PGD213",
                        f"{key}: {mapping[key]} under {where} is not the CronJob's time zone: "
                        "Kubernetes reads only spec.timeZone, so this schedule ran in the "
                        "controller's time zone. Move it to spec.timeZone if that was meant "
                        "(the translation follows what Kubernetes did)",
                        SourceRef(file, line),
                    )
                )
    zone_typo = [k for k in spec if str(k).lower() in ZONE_KEYS and k != "timeZone"]
    for key in zone_typo:
        line = spec.line_of(key) if isinstance(spec, YMap) else None
        found.append(
            Diagnostic(
                "PGD213",
                f"spec.{key} is not spec.timeZone (Kubernetes field names are case-sensitive): "
                "the schedule ran in the controller's time zone",
                SourceRef(file, line),
            )
        )
    return found


def _mapping(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _sequence(value: object) -> list:
    return value if isinstance(value, list) else []


def read(path: Path, text: str, file: str) -> list[Item]:
    items: list[Item] = []
    for doc, line in yamlsource.load_all(text, file):
        queue = [(doc, line)]
        while queue:
            current, at = queue.pop(0)
            if not isinstance(current, dict):
                continue
            if current.get("kind") == "List":
                queue += [(d, getattr(d, "line", at)) for d in _sequence(current.get("items"))]
            elif current.get("kind") == "CronJob":
                items.append(_job(current, getattr(current, "line", at), path, file))
    return items
