"""The one record every queue-config reader produces: ``QueueJob``.

Celery beat entries, Sidekiq schedule entries, Kubernetes CronJobs and
crontab lines differ in syntax, but each names a schedule, something to run
and a few execution policies (retries, overlap, a time limit, on/off). The
readers fill this record with the source's meaning already resolved (e.g. a
Kubernetes default ``backoffLimit`` of 6 becomes an explicit retry policy),
so ``build`` translates every format the same way and never looks at syntax.

Readers attach what they noticed while reading (unknown keys, ignored
options) as ``notes``; problems that stop one entry become ``Unreadable``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgdurable.diagnostics import Diagnostic, SourceRef

# -- schedules ------------------------------------------------------------------


@dataclass(frozen=True)
class Cron:
    """A cron expression. ``grammar`` says whose rules apply:

    * ``vixie``: crontab, /etc/cron.d, Graphile (pg_cron's parser, SOURCES §1.2);
    * ``robfig``: Kubernetes (Vixie fields plus ``N/step``, ``?`` and ``@every``);
    * ``fugit``: Sidekiq (robfig's fields plus an optional leading seconds field);
    * ``celery``: built from ``crontab(...)``; day fields must BOTH match.
    """

    text: str  # five Vixie fields (or a macro)
    grammar: str
    timezone: str | None = None  # None: UTC
    seconds: str | None = None  # fugit's leading seconds field, when given
    original: str | None = None  # the source's own text, for the header


@dataclass(frozen=True)
class Every:
    """A fixed interval (Celery seconds/timedelta, Sidekiq every/interval, @every)."""

    seconds: int
    text: str
    first_in: int | None = None  # Sidekiq ``first_in``: delay before the first run


@dataclass(frozen=True)
class Once:
    """Run once, ``delay`` seconds after the schedule is deployed (Sidekiq ``in``)."""

    delay: int
    text: str


@dataclass(frozen=True)
class Unschedulable:
    """A schedule form with no workflow equivalent (Celery ``solar``, Sidekiq ``at``)."""

    text: str
    reason: str


Schedule = Cron | Every | Once | Unschedulable


# -- what runs ----------------------------------------------------------------


@dataclass(frozen=True)
class PsqlPart:
    """One ``-c`` command or ``-f`` script of a psql invocation, in order."""

    sql: str | None  # the -c text, or the script's text once read
    file: Path | None = None  # the -f file (resolved), None for -c
    missing: bool = False  # -f names a file that does not exist


@dataclass(frozen=True)
class Psql:
    """A psql (or vacuumdb/reindexdb) invocation: what it runs, where and as whom
    (libpq rules)."""

    parts: tuple[PsqlPart, ...]
    database: str | None = None
    user: str | None = None
    host: str | None = None
    single_transaction: bool = False  # -1
    on_error_stop: bool = False  # -v ON_ERROR_STOP=1
    stdin_script: bool = False  # the SQL came on stdin (crontab '%')
    program: str = "psql"  # or vacuumdb / reindexdb (``maintenance``), sending SQL too
    caveats: tuple[tuple[str, str], ...] = ()  # (code, message) of what the SQL loses
    # Server settings the connection makes (PGOPTIONS -c, PGTZ, ...): (name, value).
    settings: tuple[tuple[str, str], ...] = ()
    database_is_user: bool = False  # no -d / PGDATABASE: libpq's default, the user name


@dataclass(frozen=True)
class Task:
    """Code the queue runs: a Celery task, a Sidekiq class, a script, a Graphile task."""

    name: str
    kind: str  # "celery task", "sidekiq class", "command", "graphile task"
    shell: str | None = None  # a command's line as the shell gets it (crontab)
    env: tuple[tuple[str, str], ...] = ()  # the environment the source gives it
    argv: tuple[str, ...] = ()  # a container's command and args, word for word (k8s)
    image: str | None = None  # the container image the command ran in (k8s)


Action = Psql | Task


# -- policies ------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts in total (first run included) and the delay curve between them."""

    max_attempts: int
    delay_seconds: int
    backoff: float = 1.0
    max_delay_seconds: int | None = None
    origin: str = ""  # where the numbers come from, for the header
    approximate: str | None = None  # how the source's curve differs, if it does
    assumed: str | None = None  # set when the source's default was assumed


@dataclass(frozen=True)
class QueueJob:
    name: str
    format: str  # celery | sidekiq | k8s | crontab | graphile
    ref: SourceRef
    schedule: Schedule | None  # None: a queue job with no schedule (enqueue only)
    action: Action | None  # None: the entry names nothing to run
    args: Any = None  # the job's arguments, JSON-compatible, in the source's shape
    queue: str | None = None
    retry: RetryPolicy | None = None
    concurrency: str = "allow"  # allow | forbid | replace
    time_limit: int | None = None  # seconds for the whole job, retries included
    enabled: bool = True
    disabled_by: str = ""  # e.g. "suspend: true", for the note
    run_as: str | None = None
    database: str | None = None
    starting_deadline: int | None = None
    notes: tuple[Diagnostic, ...] = ()
    description: tuple[str, ...] = ()  # extra header lines ("key: value")
    # Where the entry lives at its source, so cutover can say exactly what to remove:
    # a Kubernetes namespace, or a crontab's own line.
    namespace: str | None = None
    source_line: str | None = None


@dataclass(frozen=True)
class Unreadable:
    """An entry a reader could not turn into a job."""

    name: str
    format: str
    ref: SourceRef
    message: str
    code: str = "PGD102"


Item = QueueJob | Unreadable
