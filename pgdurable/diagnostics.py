"""Diagnostics and per-item results of a translation batch.

A translator never raises for one bad item: it records diagnostics with a
stable code and moves on (like a LibCST codemod collecting warnings). Each
code has a fixed severity and a fixed effect on fidelity, listed in ``CODES``
and documented in MIGRATING.md:

* ``PGD1xx`` parse: the item could not be read  -> ``failed``
* ``PGD2xx`` approximation: it runs, but differs in a stated way -> ``approximate``
  (a few PGD2xx codes are notes: behaviour that only differs in edge cases,
  reported without lowering fidelity)
* ``PGD3xx`` unsupported: a person must finish it -> ``manual``

An item's fidelity is the worst effect among its diagnostics.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Fidelity(enum.IntEnum):
    """How faithful a translation is; higher is worse."""

    EXACT = 0
    APPROXIMATE = 1
    MANUAL = 2
    FAILED = 3

    def __str__(self) -> str:
        return self.name.lower()


class Severity(enum.IntEnum):
    INFO = 0
    WARNING = 1
    ERROR = 2

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class SourceRef:
    """Where an item or a construct came from (1-based line and column)."""

    file: str
    line: int | None = None
    col: int | None = None
    # What the source calls the item here (an Airflow task id, a job name), for
    # people reading a graph; not part of the location, never compared.
    what: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        text = self.file
        if self.line is not None:
            text += f":{self.line}"
            if self.col is not None:
                text += f":{self.col}"
        return text


@dataclass(frozen=True)
class Code:
    severity: Severity
    fidelity: Fidelity
    summary: str


# The stable codes. Never renumber; add new ones at the end of their range.
CODES: dict[str, Code] = {
    # parse
    "PGD101": Code(Severity.ERROR, Fidelity.FAILED, "pg_cron rejects this schedule"),
    "PGD102": Code(Severity.ERROR, Fidelity.FAILED, "the source row or statement is unreadable"),
    "PGD103": Code(Severity.ERROR, Fidelity.FAILED, "the command is empty or lexically broken"),
    "PGD104": Code(Severity.ERROR, Fidelity.FAILED, "the source scheduler rejects this schedule"),
    "PGD105": Code(Severity.ERROR, Fidelity.FAILED, "the DAG file does not parse"),
    "PGD106": Code(
        Severity.ERROR, Fidelity.FAILED, "Airflow refuses the DAG (cycle, duplicate id)"
    ),
    "PGD107": Code(Severity.ERROR, Fidelity.FAILED, "text PostgreSQL cannot hold (NUL, bad UTF-8)"),
    "PGD108": Code(Severity.ERROR, Fidelity.FAILED, "the source refuses this value (type, range)"),
    # approximation
    "PGD201": Code(Severity.WARNING, Fidelity.EXACT, "fields after the fifth are ignored"),
    "PGD202": Code(Severity.WARNING, Fidelity.APPROXIMATE, "'N seconds' becomes a sleep loop"),
    "PGD203": Code(Severity.WARNING, Fidelity.APPROXIMATE, "atomic multi-statement step split"),
    "PGD204": Code(Severity.WARNING, Fidelity.APPROXIMATE, "a failed run ends the schedule"),
    "PGD205": Code(Severity.INFO, Fidelity.EXACT, "overlapping runs are skipped, not queued"),
    "PGD206": Code(Severity.INFO, Fidelity.EXACT, "schedule evaluated in UTC"),
    "PGD207": Code(Severity.WARNING, Fidelity.APPROXIMATE, "pg_cron used a non-UTC cron.timezone"),
    "PGD208": Code(Severity.INFO, Fidelity.EXACT, "inactive job: registered, not started"),
    "PGD209": Code(Severity.WARNING, Fidelity.APPROXIMATE, "explicit COMMIT splits the command"),
    "PGD210": Code(Severity.INFO, Fidelity.EXACT, "day-of-month OR day-of-week as a race"),
    "PGD211": Code(Severity.INFO, Fidelity.EXACT, "'$' checked by a SQL condition"),
    "PGD212": Code(Severity.INFO, Fidelity.EXACT, "the job runs on another node"),
    "PGD213": Code(Severity.WARNING, Fidelity.EXACT, "unknown key ignored"),
    "PGD214": Code(Severity.INFO, Fidelity.EXACT, "time zone checked by a SQL condition"),
    "PGD215": Code(Severity.WARNING, Fidelity.APPROXIMATE, "interval or delay becomes a sleep"),
    "PGD216": Code(Severity.WARNING, Fidelity.APPROXIMATE, "retry delays approximate the source"),
    "PGD217": Code(Severity.WARNING, Fidelity.APPROXIMATE, "retries or time limit dropped"),
    "PGD218": Code(Severity.INFO, Fidelity.EXACT, "seconds field becomes a sleep after the tick"),
    "PGD219": Code(Severity.WARNING, Fidelity.APPROXIMATE, "several runs a minute reduced to one"),
    "PGD220": Code(Severity.WARNING, Fidelity.APPROXIMATE, "psql's carry-on-after-error lost"),
    "PGD221": Code(Severity.INFO, Fidelity.EXACT, "one run at a time (Forbid / uniqueness)"),
    "PGD222": Code(Severity.WARNING, Fidelity.APPROXIMATE, "Replace cancels the running run"),
    "PGD223": Code(Severity.INFO, Fidelity.EXACT, "missed ticks are not caught up"),
    "PGD224": Code(Severity.INFO, Fidelity.EXACT, "the source's default retry policy assumed"),
    "PGD225": Code(Severity.INFO, Fidelity.EXACT, "a source option has no effect here"),
    "PGD227": Code(Severity.WARNING, Fidelity.APPROXIMATE, "not series-parallel: parallelism lost"),
    "PGD228": Code(Severity.WARNING, Fidelity.EXACT, "spelling not valid in that Airflow version"),
    "PGD229": Code(Severity.INFO, Fidelity.EXACT, "one_* rule decided after all upstreams"),
    "PGD231": Code(
        Severity.WARNING, Fidelity.APPROXIMATE, "irregular cron: interval start approximated"
    ),
    "PGD232": Code(Severity.WARNING, Fidelity.APPROXIMATE, "timedelta schedule as a sleep loop"),
    "PGD233": Code(Severity.INFO, Fidelity.EXACT, "sensor result tested with DSL truthiness"),
    "PGD234": Code(Severity.INFO, Fidelity.EXACT, "psql -f stops at the first error"),
    "PGD235": Code(Severity.INFO, Fidelity.EXACT, "Python callable translated as its hook SQL"),
    "PGD236": Code(Severity.INFO, Fidelity.EXACT, "retry backoff without Airflow's jitter"),
    "PGD237": Code(Severity.WARNING, Fidelity.APPROXIMATE, "--portable: a failure ends the run"),
    "PGD238": Code(Severity.INFO, Fidelity.EXACT, "catchup runs are not created"),
    "PGD239": Code(Severity.WARNING, Fidelity.APPROXIMATE, "depends_on_past not enforced"),
    "PGD240": Code(Severity.WARNING, Fidelity.APPROXIMATE, "{name} may be replaced by a df var"),
    "PGD241": Code(
        Severity.WARNING, Fidelity.APPROXIMATE, "vacuumdb/reindexdb option approximated"
    ),
    "PGD242": Code(Severity.INFO, Fidelity.EXACT, "system crontab: the user field is read"),
    "PGD243": Code(Severity.INFO, Fidelity.EXACT, "Python callable runs as a code step"),
    "PGD244": Code(
        Severity.WARNING, Fidelity.APPROXIMATE, "Python step imports third-party packages"
    ),
    "PGD245": Code(Severity.WARNING, Fidelity.APPROXIMATE, "AirflowSkipException fails the step"),
    "PGD246": Code(
        Severity.WARNING,
        Fidelity.APPROXIMATE,
        "DAG zone: a DST-changed local time runs differently",
    ),
    "PGD247": Code(
        Severity.WARNING, Fidelity.APPROXIMATE, "DAG zone from start_date cannot be read"
    ),
    "PGD248": Code(
        Severity.WARNING, Fidelity.APPROXIMATE, "skipped intervals of an interval-reading DAG"
    ),
    "PGD249": Code(Severity.INFO, Fidelity.EXACT, "non-static default_args key without effect"),
    "PGD250": Code(Severity.INFO, Fidelity.EXACT, "no postgres_conn_id: postgres_default"),
    "PGD251": Code(
        Severity.WARNING, Fidelity.APPROXIMATE, "no conn_id: Airflow fails the task, not here"
    ),
    "PGD252": Code(Severity.WARNING, Fidelity.APPROXIMATE, "hook_params not carried"),
    "PGD253": Code(Severity.INFO, Fidelity.EXACT, "hook_params options set per transaction"),
    "PGD254": Code(Severity.WARNING, Fidelity.EXACT, "the same dag_id in several files"),
    "PGD255": Code(Severity.WARNING, Fidelity.APPROXIMATE, "start_date/end_date not enforced"),
    "PGD256": Code(Severity.INFO, Fidelity.EXACT, "start_date/end_date checked by SQL"),
    "PGD257": Code(Severity.WARNING, Fidelity.EXACT, "runs as another role: grant it access"),
    "PGD258": Code(Severity.INFO, Fidelity.EXACT, "the script's UPDATE cron.job is replayed"),
    "PGD259": Code(
        Severity.WARNING, Fidelity.APPROXIMATE, "scheduled only if cron.job lacks the job"
    ),
    "PGD260": Code(Severity.INFO, Fidelity.EXACT, "psql \\c before the call sets the database"),
    "PGD261": Code(Severity.INFO, Fidelity.EXACT, "psql meta-commands not followed"),
    "PGD262": Code(Severity.WARNING, Fidelity.APPROXIMATE, "the script set the job's nodeport"),
    "PGD263": Code(
        Severity.WARNING, Fidelity.APPROXIMATE, "psql session state not carried to later steps"
    ),
    "PGD264": Code(Severity.INFO, Fidelity.EXACT, "psql session settings set again per step"),
    "PGD265": Code(
        Severity.WARNING, Fidelity.APPROXIMATE, "libpq environment setting not carried"
    ),
    "PGD266": Code(Severity.INFO, Fidelity.EXACT, "entry replaced at run time: not translated"),
    "PGD267": Code(Severity.INFO, Fidelity.EXACT, "'L' / '#' checked by a SQL condition"),
    "PGD270": Code(Severity.WARNING, Fidelity.APPROXIMATE, "command runs on a worker host"),
    "PGD285": Code(
        Severity.WARNING, Fidelity.APPROXIMATE, "template rendered at run time differs from Airflow"
    ),
    "PGD271": Code(Severity.WARNING, Fidelity.APPROXIMATE, "bash command runs on a worker host"),
    "PGD275": Code(Severity.WARNING, Fidelity.APPROXIMATE, "Celery task runs as a Python step"),
    "PGD276": Code(
        Severity.WARNING, Fidelity.APPROXIMATE, "Sidekiq class runs by command template"
    ),
    "PGD277": Code(Severity.WARNING, Fidelity.APPROXIMATE, "container command runs on worker host"),
    "PGD278": Code(Severity.INFO, Fidelity.EXACT, "asset schedule waits for producer signals"),
    "PGD280": Code(Severity.WARNING, Fidelity.APPROXIMATE, "DAG timezone unknown: read in UTC"),
    "PGD281": Code(Severity.WARNING, Fidelity.APPROXIMATE, "local target time at a DST change"),
    "PGD282": Code(Severity.WARNING, Fidelity.APPROXIMATE, "LatestOnly: manual runs not known"),
    "PGD283": Code(Severity.WARNING, Fidelity.APPROXIMATE, "sensor backoff not carried"),
    "PGD284": Code(Severity.WARNING, Fidelity.APPROXIMATE, "time sensor wakes at a poke"),
    "PGD296": Code(
        Severity.WARNING, Fidelity.APPROXIMATE, "a setup's indirect failure/skip not applied"
    ),
    "PGD297": Code(
        Severity.WARNING, Fidelity.APPROXIMATE, "ExternalTaskMarker: clearing does not propagate"
    ),
    "PGD298": Code(Severity.INFO, Fidelity.EXACT, "partition key from the cron tick"),
    "PGD299": Code(
        Severity.WARNING, Fidelity.APPROXIMATE, "PartitionedAtRuntime: on demand, no key"
    ),
    "PGD295": Code(
        Severity.WARNING, Fidelity.APPROXIMATE, "asset events come from outside the import"
    ),
    # unsupported
    "PGD290": Code(
        Severity.WARNING,
        Fidelity.APPROXIMATE,
        "virtualenv / external Python task runs in the worker's environment",
    ),
    "PGD291": Code(Severity.WARNING, Fidelity.APPROXIMATE, "is_venv_installed() taken as true"),
    "PGD293": Code(
        Severity.WARNING, Fidelity.APPROXIMATE, "in-file operator runs on a stand-in BaseOperator"
    ),
    "PGD294": Code(
        Severity.WARNING, Fidelity.APPROXIMATE, "outlet extras kept in the step result only"
    ),
    "PGD292": Code(Severity.WARNING, Fidelity.APPROXIMATE, "mapped Python task loops in one step"),
    "PGD301": Code(Severity.WARNING, Fidelity.MANUAL, "@reboot has no workflow equivalent"),
    "PGD302": Code(Severity.WARNING, Fidelity.MANUAL, "the command fails in pg_cron too"),
    "PGD303": Code(Severity.WARNING, Fidelity.MANUAL, "the command may not be valid SQL"),
    "PGD304": Code(Severity.WARNING, Fidelity.MANUAL, "'$' combined with a weekday restriction"),
    "PGD305": Code(Severity.WARNING, Fidelity.MANUAL, "the schedule never fires"),
    "PGD306": Code(Severity.WARNING, Fidelity.MANUAL, "the source does not name the role"),
    "PGD307": Code(Severity.WARNING, Fidelity.MANUAL, "the task's code is not mapped (--tasks)"),
    "PGD308": Code(Severity.WARNING, Fidelity.MANUAL, "not psql, or psql-only features"),
    "PGD309": Code(Severity.WARNING, Fidelity.MANUAL, "the schedule has no workflow equivalent"),
    "PGD310": Code(Severity.WARNING, Fidelity.MANUAL, "a psql -f file is missing"),
    "PGD345": Code(
        Severity.WARNING, Fidelity.MANUAL, "template cannot be rendered at run time either"
    ),
    "PGD346": Code(Severity.WARNING, Fidelity.MANUAL, "TriggerDagRunOperator conf not passed"),
    "PGD311": Code(Severity.WARNING, Fidelity.MANUAL, "task needs a person (Python, shell, ...)"),
    "PGD312": Code(Severity.WARNING, Fidelity.MANUAL, "template expression not translated"),
    "PGD313": Code(Severity.WARNING, Fidelity.MANUAL, "connection id not mapped"),
    "PGD314": Code(
        Severity.WARNING, Fidelity.MANUAL, "schedule not translated (assets, timetable)"
    ),
    "PGD315": Code(Severity.WARNING, Fidelity.MANUAL, "not statically knowable"),
    "PGD366": Code(
        Severity.WARNING, Fidelity.MANUAL, "Airflow fails every run: not in a transaction block"
    ),
    "PGD316": Code(Severity.WARNING, Fidelity.MANUAL, "tasks use several databases"),
    "PGD317": Code(Severity.WARNING, Fidelity.MANUAL, "SQL template file not found"),
    "PGD318": Code(Severity.WARNING, Fidelity.MANUAL, "{sys_*} is replaced at run time"),
    "PGD319": Code(Severity.WARNING, Fidelity.MANUAL, "the job maintains pg_cron itself"),
    "PGD320": Code(Severity.WARNING, Fidelity.MANUAL, "vacuumdb/reindexdb --all: every database"),
    "PGD330": Code(Severity.WARNING, Fidelity.MANUAL, "triggers a DAG not translated here"),
    "PGD331": Code(Severity.WARNING, Fidelity.MANUAL, "the job runs as a superuser"),
    "PGD332": Code(Severity.WARNING, Fidelity.MANUAL, "the queue task cannot be called as is"),
    "PGD333": Code(Severity.WARNING, Fidelity.MANUAL, "no DAG translated here updates the asset"),
    "PGD340": Code(Severity.WARNING, Fidelity.MANUAL, "BranchDateTime target not literal"),
    "PGD341": Code(Severity.WARNING, Fidelity.MANUAL, "week_day not literal"),
    "PGD342": Code(Severity.WARNING, Fidelity.MANUAL, "LatestOnly: schedule has no fixed period"),
    "PGD343": Code(Severity.WARNING, Fidelity.MANUAL, "time sensor target not literal"),
    "PGD356": Code(Severity.WARNING, Fidelity.MANUAL, "partitioned schedule not translated"),
    "PGD357": Code(Severity.WARNING, Fidelity.MANUAL, "a custom timetable class"),
    "PGD358": Code(Severity.WARNING, Fidelity.MANUAL, "an asset alias schedule"),
    "PGD355": Code(Severity.WARNING, Fidelity.MANUAL, "asset updated by an AssetWatcher"),
    "PGD360": Code(Severity.WARNING, Fidelity.MANUAL, "a cron.job write the reader cannot replay"),
    "PGD361": Code(Severity.WARNING, Fidelity.MANUAL, "a cron.* call inside a body not read"),
    "PGD362": Code(Severity.WARNING, Fidelity.MANUAL, "a psql meta-command changes the script"),
    "PGD363": Code(Severity.WARNING, Fidelity.MANUAL, "psql session switches role"),
    "PGD365": Code(Severity.WARNING, Fidelity.MANUAL, "'L' / '#' form not translated"),
}


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    ref: SourceRef | None = None

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown diagnostic code {self.code}")

    @property
    def severity(self) -> Severity:
        return CODES[self.code].severity

    @property
    def fidelity(self) -> Fidelity:
        return CODES[self.code].fidelity

    def __str__(self) -> str:
        where = f" {self.ref}" if self.ref else ""
        return f"{self.code} {self.severity}{where}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": str(self.severity),
            "message": self.message,
            "line": self.ref.line if self.ref else None,
        }


@dataclass
class Collector:
    """Gathers the diagnostics of one item while it is translated."""

    ref: SourceRef | None = None
    items: list[Diagnostic] = field(default_factory=list)

    def add(self, code: str, message: str, ref: SourceRef | None = None) -> None:
        self.items.append(Diagnostic(code, message, ref or self.ref))

    @property
    def fidelity(self) -> Fidelity:
        return max((d.fidelity for d in self.items), default=Fidelity.EXACT)


def worst(diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]) -> Fidelity:
    return max((d.fidelity for d in diagnostics), default=Fidelity.EXACT)
