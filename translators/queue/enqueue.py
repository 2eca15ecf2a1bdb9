"""The generated enqueue function: "push a job" becomes one SQL call.

For every job the output file creates (idempotently, ``CREATE OR REPLACE``)::

    pgdurable_jobs.enqueue_<name>(args jsonb DEFAULT <the source's args>) RETURNS text

which starts ONE run of the job as its own workflow instance and returns its
id. Producers call it instead of pushing to the queue (or from a trigger),
and the job's schedule workflow calls it on each tick, so a scheduled run and
an enqueued one are the same thing, as in the source systems.

* The run's label is ``<format>/<name>#run``; ``args`` becomes the named
  result ``args`` of the run's first step, so task SQL can use ``$args``.
* The run's graph is embedded as its JSON (with its DSL as a comment), so
  the function uses no DSL operators and pins ``search_path`` to pg_catalog.
* Concurrency, serialised per job by a transaction-level advisory lock:
  ``allow`` starts every call; ``forbid`` (Kubernetes ``Forbid``, Sidekiq
  uniqueness) returns NULL while a run is pending or running; ``replace``
  cancels the running ones (``df.cancel``) first.
* Identity: when the job names its role, the function is SECURITY DEFINER and
  owned by that role, so the run belongs to it (df.start records
  current_user) whoever enqueues; EXECUTE is granted to that role only.
  Without a role it is SECURITY INVOKER: the run belongs to the caller.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from pgdurable import model as m
from pgdurable.render import render
from pgdurable.sqltext import comment, derived_identifier, dollar_quote, identifier, literal

SCHEMA = "pgdurable_jobs"


def function_name(job_name: str) -> str:
    """``enqueue_<name>`` as a lower-case SQL identifier (at most 63 bytes)."""
    return derived_identifier("enqueue_", job_name)


def run_label(format_name: str, job_name: str) -> str:
    return f"{format_name}/{job_name}#run"


def call(job_name: str) -> str:
    """The SQL a schedule tick runs: start one run with the default arguments."""
    return f"SELECT {SCHEMA}.{function_name(job_name)}()"


def function_sql(
    *,
    job_name: str,
    format_name: str,
    run: m.Node,
    uses_args: bool,
    default_args: Any,
    concurrency: str,
    run_as: str | None,
    database: str | None,
) -> str:
    fn = f"{SCHEMA}.{function_name(job_name)}"
    label = run_label(format_name, job_name)
    args_default = literal(json.dumps(default_args if default_args is not None else {}))
    # The graph goes in as its JSON (df.start and df.seq take a Durofut as text):
    # no DSL operators, so the function needs no search_path beyond pg_catalog.
    # The readable DSL of the same graph is kept above it as a comment.
    plain = replace(run, source=None)  # the header already names the source line
    readable = "\n".join("    -- " + comment(line) for line in render(plain).splitlines())
    graph_json = literal(m.encode(run))
    if uses_args:
        # The arguments become the named result 'args' of the run's first step.
        graph = (
            "df.seq(df.as(df.sql(pg_catalog.format('SELECT %L::jsonb AS args', args)), 'args'),\n"
            f"               {graph_json})"
        )
    else:
        graph = graph_json
    guard = ""
    if concurrency in ("forbid", "replace"):
        guard = (
            "    -- one caller at a time per job, so the check below cannot race\n"
            f"    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext({literal(SCHEMA)}),"
            f" pg_catalog.hashtext({literal(label)}));\n"
        )
    if concurrency == "forbid":
        guard += (
            "    -- forbid: skip this run while another one is pending or running\n"
            "    IF EXISTS (SELECT 1 FROM df.instances i\n"
            f"               WHERE i.label = {literal(label)}\n"
            "                 AND i.status IN ('pending', 'running')) THEN\n"
            "        RETURN NULL;\n"
            "    END IF;\n"
        )
    elif concurrency == "replace":
        guard += (
            "    -- replace: cancel the runs still going, then start the new one\n"
            "    PERFORM df.cancel(i.id, 'replaced by a newer run (concurrency policy Replace)')\n"
            "    FROM df.instances i\n"
            f"    WHERE i.label = {literal(label)} AND i.status IN ('pending', 'running');\n"
        )
    security = "SECURITY DEFINER" if run_as else "SECURITY INVOKER"
    # The graph is JSON, so nothing checks at apply time that the extension nodes
    # it uses can run: check it here, so the file fails then, not at the first run.
    needed = sorted(
        {type(n).__name__.lower() for n in m.walk(run) if isinstance(n, m.EXTENSION_NODES)}
    )
    checks = [
        "DO $check$ BEGIN\n"
        "    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p\n"
        "                   JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace\n"
        f"                   WHERE n.nspname = 'pgdurable' AND p.proname = '{name}') THEN\n"
        f"        RAISE EXCEPTION 'function pgdurable.{name} does not exist: this file needs "
        "the pgdurable extension nodes';\n"
        "    END IF;\n"
        "END $check$;"
        for name in needed
    ]
    if run_as and any(isinstance(n, m.Python | m.Command) for n in m.walk(run)):
        # Code steps: the run's role must be granted them (migration 0014);
        # refused now rather than at the first run.
        checks.append(f"SELECT pgdurable.check_code_grants({graph_json}, {literal(run_as)});")
    db = "NULL" if database is None else literal(database)
    body = [
        "",
        "BEGIN",
        guard.rstrip("\n") if guard else None,
        "    -- the run, as DSL:" + (" (after the 'args' step)" if uses_args else ""),
        readable,
        "    RETURN df.start(",
        f"        {graph},",
        f"        {literal(label)},",
        f"        {db}",
        "    );",
        "END;",
        "",
    ]
    # The body holds source text (the graph), so its quote is one the text cannot end.
    quoted_body = dollar_quote("\n".join(line for line in body if line is not None), "enqueue")
    # Two jobs (of any format) whose names give the same function name must not share it:
    # the second file would make the first job's schedule start the second job's runs.
    # The function's comment says whose it is; a file never replaces another job's.
    signature = literal(f"{fn}(jsonb)")
    owner = dollar_quote(
        "\nDECLARE\n"
        f"    other text := pg_catalog.obj_description(pg_catalog.to_regprocedure({signature}),"
        " 'pg_proc');\n"
        "BEGIN\n"
        f"    IF other IS NOT NULL AND other <> {literal(label)} THEN\n"
        "        RAISE EXCEPTION\n"
        "            '% already starts runs of %, not of %: rename one of the two jobs',\n"
        f"            {signature}, other, {literal(label)};\n"
        "    END IF;\n"
        "END\n",
        "owner",
    )
    lines = [
        *checks,
        f"CREATE SCHEMA IF NOT EXISTS {SCHEMA};",
        f"DO {owner};",
        "",
        f"-- Start one run of {format_name}/{comment(job_name)}; returns the instance id"
        + (" (NULL when skipped)." if concurrency == "forbid" else "."),
        f"CREATE OR REPLACE FUNCTION {fn}(args jsonb DEFAULT {args_default})",
        "RETURNS text",
        f"LANGUAGE plpgsql VOLATILE {security}",
        f"SET search_path = pg_catalog, pg_temp AS {quoted_body};",
        f"COMMENT ON FUNCTION {fn}(jsonb) IS {literal(label)};",
        f"REVOKE ALL ON FUNCTION {fn}(jsonb) FROM PUBLIC;",
    ]
    if run_as:
        role = identifier(run_as)
        lines += [
            f"ALTER FUNCTION {fn}(jsonb) OWNER TO {role};",
            f"GRANT USAGE ON SCHEMA {SCHEMA} TO {role};",
            f"GRANT EXECUTE ON FUNCTION {fn}(jsonb) TO {role};",
        ]
    return "\n".join(line for line in lines if line is not None)
