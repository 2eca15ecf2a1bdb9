"""Nothing from a source escapes a comment or a literal of a generated file
(issue 16 §2).

Job names, DAG and task ids, Sidekiq keys, Celery entry names, CronJob
names, role names and command texts go into headers, comments, literals,
function names, file names and ``cutover.sql``. Each test writes sources
whose texts try to end a comment or a literal (LF, CR, NEL, U+2028/U+2029,
``*/``, ``/*``, quotes, backslashes, dollar tags), imports them, applies
the result to a real database and checks that exactly the generated objects
exist afterwards:

- the fixed cases go through the real command line (``pgdurable apply``) and
  the real ``psql -f cutover.sql`` (for pg_cron against real pg_cron jobs);
- the property test generates names and texts with hypothesis for every
  translator and applies each batch inside one transaction that is rolled
  back, comparing the catalogs before and after, the registry rows, and the
  number of statements PostgreSQL ran with the generated ones.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgdurable import db, pipeline
from pgdurable.apply import files_to_apply
from pgdurable.binaries import find_server_binaries
from pgdurable.cli import cli
from pgdurable.output import CUTOVER
from pgdurable.sqltext import comment, literal, split_statements
from pgdurable.translators.queue import enqueue

# Texts that try to leave a comment or a literal of the generated SQL.
ESCAPES = [
    "job\nCREATE TABLE pwned AS SELECT current_user; --",
    "job\rCREATE TABLE pwned_cr AS SELECT current_user; --",
    "job\u2028CREATE TABLE pwned_ls AS SELECT 1; --",
    "job\u2029\x85\x0b\x0cCREATE TABLE pwned_ps AS SELECT 1; --",
    "*/ CREATE TABLE pwned_block AS SELECT 1; /*",
    "job$sql$, NULL); CREATE TABLE pwned_dollar AS SELECT 1; --",
    "job$enqueue$; CREATE TABLE pwned_body AS SELECT 1; --",
    "job'); CREATE TABLE pwned_quote AS SELECT 1; --",
    "job\\'); CREATE TABLE pwned_backslash AS SELECT 1; --",
    'job"(); CREATE TABLE pwned_ident AS SELECT 1; --',
]
ROLE = 'gen_owner"; CREATE TABLE pwned_role AS SELECT 1; --'

# Statements a generated workflow file may hold (first keywords, as the lexer sees them).
ALLOWED = (
    ("select",),  # pgdurable.deploy_workflow(...)
    ("create", "schema"),
    ("create", "or", "replace", "function"),
    ("revoke",),
    ("alter", "function"),
    ("grant",),
    ("do",),  # the checks before an enqueue function (extension nodes, owner)
    ("comment", "on", "function"),
)


def _quoted(name: str) -> str:
    """A quoted identifier, as a user writes one (any character but NUL)."""
    return '"' + name.replace('"', '""') + '"'


def _e_literal(text: str) -> str:
    """``text`` as a PostgreSQL E'' literal, as a user would write it in a script."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _crontab_word(text: str) -> str:
    # One crontab line holds one command: cron itself ends it at LF and reads % as one.
    flat = re.sub(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029%]", " ", text)
    return "'" + flat.replace("'", "'\\''") + "'"


@dataclass
class Batch:
    """One import: the source files of a format and what a correct import registers."""

    source: str  # the registry's source name
    files: dict[str, str]
    names: list[str]  # the item (workflow) names the source defines
    texts: list[str]  # the SQL each item runs
    role: str | None = None
    options: dict = field(default_factory=dict)


def pg_cron_batch(names: list[str], texts: list[str], role: str, database: str) -> Batch:
    calls = [
        f"SELECT cron.schedule_in_database({_e_literal(n)}, '0 3 1 1 *', {_e_literal(t)},"
        f" {_e_literal(database)}, {_e_literal(role)}, true);"
        for n, t in zip(names, texts, strict=True)
    ]
    return Batch("pg_cron", {"jobs.sql": "\n".join(calls) + "\n"}, names, texts, role)


def _task_map(classes: list[str], texts: list[str]) -> str:
    return yaml.safe_dump({"tasks": {c: {"sql": t} for c, t in zip(classes, texts, strict=True)}})


def sidekiq_batch(names: list[str], texts: list[str], role: str) -> Batch:
    classes = [f"Job{i}" for i in range(len(names))]
    schedule = {
        n: {"cron": "0 3 1 1 *", "class": c, "description": t, "queue": t[:20]}
        for n, c, t in zip(names, classes, texts, strict=True)
    }
    files = {"schedule.yml": yaml.safe_dump(schedule), "tasks.yaml": _task_map(classes, texts)}
    return Batch("sidekiq", files, names, texts, role, {"fmt": "sidekiq"})


def celery_batch(names: list[str], texts: list[str], role: str) -> Batch:
    tasks = [f"app.tasks.job{i}" for i in range(len(names))]
    entries = ",\n".join(
        f"    {n!r}: {{'task': {t!r}, 'schedule': crontab(minute=0, hour=3, day_of_month=1,"
        f" month_of_year=1), 'options': {{'queue': {x[:20]!r}}}}}"
        for n, t, x in zip(names, tasks, texts, strict=True)
    )
    config = f"from celery.schedules import crontab\n\nbeat_schedule = {{\n{entries}\n}}\n"
    files = {"celeryconfig.py": config, "tasks.yaml": _task_map(tasks, texts)}
    return Batch("celery", files, names, texts, role, {"fmt": "celery"})


def k8s_batch(names: list[str], texts: list[str], role: str) -> Batch:
    docs = [
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": n, "namespace": t[:20]},
            "spec": {
                "schedule": "0 3 1 1 *",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [
                                    {
                                        "name": t[:20] or "c",
                                        "image": "postgres:16",
                                        "command": ["psql", "-U", role, "-c", t],
                                    }
                                ],
                            }
                        }
                    }
                },
            },
        }
        for n, t in zip(names, texts, strict=True)
    ]
    files = {"cronjobs.yaml": yaml.safe_dump_all(docs)}
    return Batch("k8s", files, names, texts, role, {"fmt": "k8s"})


def crontab_batch(texts: list[str], role: str) -> Batch:
    # crontab names its jobs after what they run; the role is an environment line
    role = re.sub(r"[\s#]+", "_", role)
    lines = [f"PGUSER={role}"] + [f"0 3 1 1 * psql -c {_crontab_word(t)}" for t in texts]
    return Batch("crontab", {"app.crontab": "\n".join(lines) + "\n"}, [], texts, role)


def graphile_batch(names: list[str], texts: list[str], role: str) -> Batch:
    lines = ["# Graphile Worker crontab"]
    tasks = [f"task_{i}" for i in range(len(names))]
    for n, t, x in zip(names, tasks, texts, strict=True):
        ident = re.sub(r"[\s&?{}]", "_", n) or "x"
        lines.append(f"0 3 1 1 * {t} ?id={ident} {json.dumps({'note': x})}")
    files = {"crontab": "\n".join(lines) + "\n", "tasks.yaml": _task_map(tasks, texts)}
    return Batch("graphile", files, [], texts, role, {"fmt": "crontab"})


def airflow_batch(names: list[str], texts: list[str], role: str) -> Batch:
    dags = "\n".join(
        f"with DAG(dag_id={n!r}, schedule='0 3 1 1 *', catchup=False):\n"
        f"    Q(task_id={n!r}, sql={t!r}) >> Q(task_id={(n + '2')!r}, sql='SELECT 1')\n"
        for n, t in zip(names, texts, strict=True)
    )
    text = (
        "from airflow import DAG\n"
        "from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator as Q\n\n"
        + dags
    )
    return Batch("airflow", {"dags.py": text}, names, texts, role)


def import_batch(batch: Batch, folder: Path) -> list[pipeline.ImportReport]:
    """Write the batch's sources and import them into ``folder/out``."""
    for name, text in batch.files.items():
        (folder / name).write_text(text, encoding="utf-8", errors="surrogateescape")
    out = folder / "out"
    if batch.source == "pg_cron":
        report = pipeline.import_pgcron(from_db=None, from_file=folder / "jobs.sql", out_dir=out)
        return [report]
    if batch.source == "airflow":
        return [
            pipeline.import_airflow(
                paths=[folder / "dags.py"], out_dir=out, default_username=batch.role
            )
        ]
    sources = [folder / n for n in batch.files if n != "tasks.yaml"]
    tasks = folder / "tasks.yaml" if "tasks.yaml" in batch.files else None
    return pipeline.import_queue(
        sources, tasks_file=tasks, out_dir=out, default_username=batch.role, **batch.options
    )


# -- what a database holds, before and after ---------------------------------------------

SNAPSHOT = {
    "schemas": "SELECT nspname FROM pg_namespace",
    "relations": "SELECT c.oid::regclass::text FROM pg_class c",
    "functions": "SELECT p.oid::regprocedure::text FROM pg_proc p",
    "roles": "SELECT rolname FROM pg_roles",
    "triggers": "SELECT tgname FROM pg_trigger UNION ALL SELECT evtname FROM pg_event_trigger",
    "settings": "SELECT coalesce(setdatabase::text, '') || ':' || setrole::text || ':'"
    " || array_to_string(setconfig, ',') FROM pg_db_role_setting",
    "extensions": "SELECT extname FROM pg_extension",
    "databases": "SELECT datname FROM pg_database",
}


def snapshot(conn) -> dict[str, set[str]]:
    return {k: {r[0] for r in conn.execute(q).fetchall()} for k, q in SNAPSHOT.items()}


def pwned(conn) -> list[str]:
    return [r[0] for r in conn.execute("SELECT relname FROM pg_class WHERE relname ~ 'pwned'")]


def statements_run(conn, text: str) -> int:
    """Run ``text`` as one simple query (as `pgdurable apply` does); how many statements ran."""
    cursor = conn.execute(text.encode())
    count = 1
    while cursor.nextset():
        count += 1
    return count


@dataclass
class Applied:
    new: dict[str, set[str]]
    workflows: set[tuple[str, str]]
    unscheduled: list[str]


def apply_in_transaction(database, outs: list[Path], roles: list[str]) -> Applied:
    """Apply every generated file (and cutover.sql, against a recording cron.unschedule)
    in one transaction that is rolled back; what changed, read inside it."""
    with database.connect(autocommit=False) as conn:
        try:
            before = snapshot(conn)
            for role in roles:
                conn.execute(f"CREATE ROLE {_quoted(role)} LOGIN".encode())
                conn.execute("SELECT df.grant_usage(%s)", [role])
            for out in outs:
                for path in files_to_apply(out):
                    text = path.read_text(encoding="utf-8")
                    statements = split_statements(text)
                    for s in statements:
                        assert any(s.starts_with(*a) for a in ALLOWED), (
                            f"{path.name}: unexpected statement {s.text[:200]!r}"
                        )
                    ran = statements_run(conn, text)
                    assert ran == len(statements), (path.name, ran, len(statements))
            after = snapshot(conn)
            workflows = set(conn.execute("SELECT source, name FROM pgdurable.workflows").fetchall())
            # cutover.sql: only cron.unschedule calls may run; record what they name.
            conn.execute(
                "CREATE SCHEMA cron; CREATE TEMP TABLE unscheduled (job text);"
                "CREATE FUNCTION cron.unschedule(job text) RETURNS boolean LANGUAGE sql"
                " AS $$ INSERT INTO unscheduled VALUES (job) RETURNING true $$;"
                "CREATE FUNCTION cron.unschedule(job bigint) RETURNS boolean LANGUAGE sql"
                " AS $$ INSERT INTO unscheduled VALUES (job::text) RETURNING true $$;"
            )
            for out in outs:
                text = (out / CUTOVER).read_text(encoding="utf-8")
                statements = split_statements(text)
                assert all(s.starts_with("select", "cron", "unschedule") for s in statements)
                if statements:
                    assert statements_run(conn, text) == len(statements)
            unscheduled = [r[0] for r in conn.execute("SELECT job FROM unscheduled").fetchall()]
            assert pwned(conn) == []
        finally:
            conn.rollback()
    new = {k: after[k] - before[k] for k in before}
    gone = {k: before[k] - after[k] for k in before if before[k] - after[k]}
    assert not gone, gone
    return Applied(new, workflows, unscheduled)


def check_only_generated(applied: Applied, reports, roles: list[str]) -> None:
    """Exactly the objects the imports generated exist after applying them."""
    files = [(r.source, item) for r in reports for item in r.as_dict()["items"] if item["output"]]
    results = {(r.source, x.name): x for r in reports for x in r.results}
    expected = {(source, results[(source, item["name"])].workflow.name) for source, item in files}
    assert applied.workflows == expected
    queue = [s for s, _ in files if s not in ("pg_cron", "airflow")]
    dags = [s for s, _ in files if s == "airflow"]
    schemas = {"pgdurable_jobs"} if queue else set()
    schemas |= {"airflow_dags"} if dags else set()
    assert applied.new["schemas"] == schemas
    functions = applied.new["functions"]
    assert all(f.startswith(("pgdurable_jobs.enqueue_", "airflow_dags.")) for f in functions)
    # a DAG has two trigger functions: (label, conf) and the older (label) form
    assert len(functions) == len(queue) + 2 * len(dags), functions
    assert applied.new["roles"] == set(roles)
    for kind in ("relations", "triggers", "settings", "extensions", "databases"):
        assert applied.new[kind] == set(), (kind, applied.new[kind])


# -- fixed cases through the command line ------------------------------------------------


def _psql(conninfo: str, path: Path) -> subprocess.CompletedProcess:
    # The server's own psql, else the client on PATH: the npm server builds CI uses for
    # PostgreSQL 14/16/17/18 ship no psql, and a newer client reads these files alike.
    psql = Path(find_server_binaries().program("psql"))
    if not psql.exists():
        found = shutil.which("psql")
        assert found, f"no psql in {psql.parent} nor on PATH: install postgresql-client"
        psql = Path(found)
    return subprocess.run(
        [psql, "-X", "-v", "ON_ERROR_STOP=1", "-1", "-f", str(path), conninfo],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hostile_pg_cron_jobs_apply_and_cut_over_without_running_anything(
    pg_cron_cluster, database, tmp_path
):
    """Real pg_cron jobs with hostile names and owner, imported --from-db, applied with
    `pgdurable apply`, retired with `psql -f cutover.sql`: pwned never exists."""
    database.create_role(ROLE)
    database.execute("SELECT df.grant_usage(%s)", [ROLE])
    cron = pg_cron_cluster.conninfo("pgdurable")
    with db.connection(cron, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        ids = [
            conn.execute(
                "SELECT cron.schedule_in_database(%s, '0 3 1 1 *', 'SELECT 1', %s, %s, true)",
                [name, database.name, ROLE],
            ).fetchone()[0]
            for name in ESCAPES
        ]
        try:
            out = tmp_path / "out"
            runner = CliRunner()
            imported = runner.invoke(cli, ["import-pgcron", "--from-db", cron, "--out", str(out)])
            assert imported.exit_code == 0, imported.output
            applied = runner.invoke(cli, ["apply", str(out), "--dsn", database.conninfo()])
            assert applied.exit_code == 0, applied.output
            cutover = _psql(cron, out / CUTOVER)
            assert cutover.returncode == 0, cutover.stderr
            left = conn.execute("SELECT jobid FROM cron.job WHERE jobid = ANY(%s)", [ids])
            assert left.fetchall() == []  # every job was unscheduled, by its id
            assert pwned(conn) == []
        finally:
            conn.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobid = ANY(%s)", [ids])
    names = database.execute("SELECT name, run_as FROM pgdurable.workflows ORDER BY name")
    assert names == sorted((n, ROLE) for n in ESCAPES)
    assert database.execute("SELECT relname FROM pg_class WHERE relname ~ 'pwned'") == []
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == len(ESCAPES) + 2 and all("/" not in f and "\n" not in f for f in files)


# The commands carry the same texts, inside valid SQL (a lexically broken command is
# refused before it reaches a file).
COMMANDS = [f"SELECT {_e_literal(t)} AS {_quoted(t)}" for t in ESCAPES]

FIXED = {
    "sidekiq": lambda: sidekiq_batch(ESCAPES, COMMANDS, ROLE),
    "celery": lambda: celery_batch(ESCAPES, COMMANDS, ROLE),
    "k8s": lambda: k8s_batch(ESCAPES, COMMANDS, ROLE),
    "crontab": lambda: crontab_batch(COMMANDS, ROLE),
    "graphile": lambda: graphile_batch(ESCAPES, COMMANDS, ROLE),
    "airflow": lambda: airflow_batch(ESCAPES, COMMANDS, ROLE),
}


@pytest.mark.parametrize("source", sorted(FIXED))
def test_hostile_names_apply_with_the_command_line(source, database, tmp_path):
    """The same texts as Sidekiq keys, Celery entry names, CronJob names, DAG and task
    ids, commands and the role: `pgdurable apply` and `psql -f cutover.sql` create
    exactly the generated workflows and functions, and nothing else."""
    batch = FIXED[source]()
    for role in {ROLE, batch.role}:
        database.create_role(role)
        database.execute("SELECT df.grant_usage(%s)", [role])
    reports = import_batch(batch, tmp_path)
    outs = [tmp_path / "out"]
    with database.connect() as conn:
        before = snapshot(conn)
    runner = CliRunner()
    for out in outs:
        result = runner.invoke(cli, ["apply", str(out), "--dsn", database.conninfo()])
        assert result.exit_code == 0, result.output
        cutover = _psql(database.conninfo(), out / CUTOVER)
        assert cutover.returncode == 0, cutover.stderr
    with database.connect() as conn:
        after = snapshot(conn)
        assert pwned(conn) == []
        workflows = set(conn.execute("SELECT source, name FROM pgdurable.workflows").fetchall())
    translated = [r for report in reports for r in report.results if r.workflow]
    assert translated, [d for report in reports for r in report.results for d in r.diagnostics]
    assert workflows == {(r.workflow.source, r.workflow.name) for r in translated}
    if batch.names and source != "airflow":
        assert {r.workflow.name for r in translated} == set(batch.names)
    new = {k: after[k] - before[k] for k in before}
    assert new["relations"] == set() and new["triggers"] == set(), new


def test_jobs_sharing_a_function_name_never_share_the_function(database, tmp_path):
    """'nightly-report' and 'nightly_report' both give enqueue_nightly_report: the second
    file is refused on apply, so one job's schedule never starts the other's runs (as
    the other's role, the function being SECURITY DEFINER)."""
    for role in ("gen_alpha", "gen_beta"):
        database.create_role(role)
        database.execute("SELECT df.grant_usage(%s)", [role])
    outs = []
    for role, name in (("gen_alpha", "nightly-report"), ("gen_beta", "nightly_report")):
        folder = tmp_path / role
        folder.mkdir()
        import_batch(sidekiq_batch([name], [f"SELECT '{role}'"], role), folder)
        outs.append(folder / "out")
    runner = CliRunner()
    first = runner.invoke(cli, ["apply", str(outs[0]), "--dsn", database.conninfo()])
    assert first.exit_code == 0, first.output
    second = runner.invoke(cli, ["apply", str(outs[1]), "--dsn", database.conninfo()])
    assert second.exit_code == 1
    assert "already starts runs of sidekiq/nightly-report#run" in second.output
    assert "rename one of the two jobs" in second.output
    owner = database.value(
        "SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'enqueue_nightly_report'"
    )
    assert owner == "gen_alpha"
    assert database.execute("SELECT name FROM pgdurable.workflows") == [("nightly-report",)]


def test_the_tasks_template_holds_only_the_unmapped_tasks(tmp_path):
    """tasks.template.yaml lists each unmapped task with `manual: true`; a job or class
    name cannot add a mapping to it (a --tasks file's SQL runs as the job's role)."""
    evil = "x\n  Evil:\n    sql: DROP TABLE accounts\n#"
    schedule = {
        evil: {"cron": "0 3 * * *", "class": "Report\u2028Job"},
        "nightly\x85  Evil2: {sql: DROP TABLE t}": {"cron": "0 3 * * *", "class": "Plain"},
    }
    (tmp_path / "schedule.yml").write_text(yaml.safe_dump(schedule))
    pipeline.import_queue([tmp_path / "schedule.yml"], fmt="sidekiq", out_dir=tmp_path / "out")
    template = yaml.safe_load((tmp_path / "out" / "tasks.template.yaml").read_text())
    assert template == {"tasks": {"Report\u2028Job": {"manual": True}, "Plain": {"manual": True}}}


# -- property: any names and texts, every translator -------------------------------------

# Any character a source file can carry (surrogates aside: no UTF-8 file holds one),
# weighted towards the ones that end lines, comments and literals.
_SPECIAL = list("\n\r\x85\u2028\u2029\x0b\x0c\x1c\x00\t'\"\\$;-/*") + ["*/", "/*", "--", "$sql$"]
_CHARS = st.characters(blacklist_categories=("Cs",))
TEXT = st.lists(st.one_of(st.sampled_from(_SPECIAL), _CHARS), min_size=1, max_size=24).map("".join)
# Names that give one enqueue function are refused on apply (test_jobs_sharing_a_function_name)
NAMES = st.lists(
    TEXT, min_size=1, max_size=3, unique_by=(lambda s: s.casefold(), enqueue.function_name)
)
SQL = st.lists(TEXT.map(lambda t: f"SELECT {_e_literal(t)}"), min_size=3, max_size=3)

PROPERTY_SOURCES = ["pg_cron", "sidekiq", "celery", "k8s", "crontab", "graphile", "airflow"]


def _batch(source: str, names: list[str], texts: list[str], role: str, database: str) -> Batch:
    texts = texts[: len(names)]
    if source == "pg_cron":
        return pg_cron_batch(names, texts, role, database)
    if source == "crontab":
        return crontab_batch(texts, role)
    return globals()[f"{source}_batch"](names, texts, role)


def test_literals_and_comments_mean_the_same_whatever_the_settings(database):
    """A literal reads back as its text with standard_conforming_strings on and off (a
    backslash ends a single-quoted string when it is off), and a comment ends nowhere
    but at its own end."""
    texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))

    @settings(max_examples=200, deadline=None, database=None)
    @given(texts=st.lists(st.one_of(texts, st.sampled_from(ESCAPES)), min_size=1, max_size=4))
    def property_(texts):
        query = "SELECT " + ", ".join(f"{literal(t)} -- {comment(t)}\n" for t in texts)
        with database.connect() as conn:
            for setting in ("on", "off"):
                conn.execute(f"SET standard_conforming_strings = {setting}")
                conn.execute("SET escape_string_warning = off")
                assert list(conn.execute(query.encode()).fetchone()) == texts

    property_()


@pytest.mark.parametrize("source", PROPERTY_SOURCES)
def test_generated_files_create_only_the_generated_objects(
    source, database, tmp_path_factory, long_run
):
    tried = []

    @settings(
        max_examples=60 if long_run else 6,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(names=NAMES, texts=SQL, role=TEXT.filter(lambda r: "\x00" not in r))
    def property_(names, texts, role):
        role = ("r_" + role).encode()[:60].decode("utf-8", "ignore")
        tried.append(names)
        folder = tmp_path_factory.mktemp(source)
        batch = _batch(source, names, texts, role, database.name)
        roles = [batch.role] if batch.role else []
        reports = import_batch(batch, folder)
        for report in reports:
            for result in report.results:
                assert not any("internal error" in d.message for d in result.diagnostics), (
                    result.diagnostics
                )
        outs = [folder / "out"] if (folder / "out").is_dir() else []
        applied = apply_in_transaction(database, outs, roles)
        check_only_generated(applied, reports, roles)
        if source == "pg_cron":  # the cutover names each scheduled job, exactly
            translated = [r.name for report in reports for r in report.results if r.workflow]
            assert sorted(applied.unscheduled) == sorted(translated)
            assert set(translated) <= set(names)
        else:
            assert applied.unscheduled == []

    property_()
    print(f"{source}: {len(tried)} generated sources applied")
