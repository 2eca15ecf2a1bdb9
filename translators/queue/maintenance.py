"""``vacuumdb`` and ``reindexdb`` command lines as the SQL they send.

Both client programs connect like psql (``-d`` / ``-h`` / ``-p`` / ``-U``, a
conninfo string or URI, ``PGDATABASE`` / ``PGUSER``, the user name as the
default database) and send one maintenance statement per object, stopping
at the first that fails. The result is a ``Psql`` record with one ``-c`` part
per statement (``on_error_stop``), so crontab lines and Kubernetes
containers that run them translate like ``psql -c``.

Mapped exactly: ``vacuumdb`` ``-t`` (repeatable, with a column list),
``-z``, ``-Z``, ``-f``, ``-F``, ``-v``, ``--skip-locked``,
``--disable-page-skipping``, ``-P``; ``reindexdb`` ``-t``, ``-i``, ``-S``,
``-s``, ``--concurrently``, ``-v``, and the whole database when no object is
named. ``-q``, ``-e``, ``-w``, ``-W`` only change output or prompting.
Approximated (``PGD241``): ``-j`` (parallel connections: the statements run
one after another) and ``--analyze-in-stages`` (one ANALYZE at the normal
statistics target instead of three passes). ``-a`` / ``--all`` processes
every database of the cluster, where a workflow runs in one (``PGD320``,
manual). Any other option is not translated: the command stays a task.
"""

from __future__ import annotations

import re

from pgdurable.sqltext import UnsafeText, identifier
from pgdurable.translators.queue.jobs import Psql, PsqlPart

PROGRAMS = ("vacuumdb", "reindexdb")
# getopt letters that take a value, and long names mapped to their letter.
_WITH_VALUE = {"vacuumdb": set("dhpUtjPnN"), "reindexdb": set("dhpUtiSj")}
_LONG = {
    "dbname": "d",
    "host": "h",
    "port": "p",
    "username": "U",
    "table": "t",
    "jobs": "j",
    "parallel": "P",
    "index": "i",
    "schema": "S",
    "all": "a",
    "analyze": "z",
    "analyze-only": "Z",
    "full": "f",
    "freeze": "F",
    "verbose": "v",
    "quiet": "q",
    "echo": "e",
    "no-password": "w",
    "password": "W",
    "system": "s",
}
_FLAGS = {"vacuumdb": set("azZfFvqewW"), "reindexdb": set("asvqewW")}
_LONG_ONLY = {
    "vacuumdb": {"analyze-in-stages", "skip-locked", "disable-page-skipping"},
    "reindexdb": {"concurrently"},
}
# A table or index as vacuumdb/reindexdb pass it on: a (schema-)qualified name,
# plain or double-quoted, with an optional column list for vacuumdb -t.
_NAME = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_OBJECT = re.compile(rf"{_NAME}(?:\.{_NAME})?")
_TABLE = re.compile(rf"{_OBJECT.pattern}(?:\s*\(\s*{_NAME}(?:\s*,\s*{_NAME})*\s*\))?")
APPROXIMATE = "PGD241"
ALL_DATABASES = "PGD320"


class NotTranslated(ValueError):
    """An option or value this module does not turn into SQL (the message says which)."""


def _options(program: str, args: list[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    options: list[tuple[str, str | None]] = []
    positional: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--") and len(a) > 2:
            name, eq, value = a[2:].partition("=")
            if name in _LONG_ONLY[program]:
                options.append((name, None))
            elif name in _LONG and (
                _LONG[name] in _WITH_VALUE[program] or _LONG[name] in _FLAGS[program]
            ):
                letter = _LONG[name]
                if letter in _WITH_VALUE[program] and not eq:
                    i += 1
                    if i >= len(args):
                        raise NotTranslated(f"{program} option --{name} needs a value")
                    value = args[i]
                options.append((letter, value if letter in _WITH_VALUE[program] else None))
            else:
                raise NotTranslated(f"{program} option --{name} is not translated")
        elif a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                flag = a[j]
                if flag in _WITH_VALUE[program]:
                    value = a[j + 1 :]
                    if not value:
                        i += 1
                        if i >= len(args):
                            raise NotTranslated(f"{program} option -{flag} needs a value")
                        value = args[i]
                    options.append((flag, value))
                    break
                if flag not in _FLAGS[program]:
                    raise NotTranslated(f"{program} option -{flag} is not translated")
                options.append((flag, None))
                j += 1
        else:
            positional.append(a)
        i += 1
    return options, positional


def _object(value: str, pattern: re.Pattern[str], program: str) -> str:
    if not pattern.fullmatch(value.strip()):
        raise NotTranslated(f"{program}: {value!r} is not a table or index name")
    return value.strip()


def _vacuum(flags: set[str], tables: list[str], parallel: str | None) -> list[str]:
    if "Z" in flags:
        words = ["VERBOSE"] * ("v" in flags) + ["SKIP_LOCKED"] * ("skip-locked" in flags)
        head = "ANALYZE" + (f" ({', '.join(words)})" if words else "")
    else:
        words = [
            word
            for flag, word in (
                ("f", "FULL"),
                ("F", "FREEZE"),
                ("v", "VERBOSE"),
                ("z", "ANALYZE"),
                ("skip-locked", "SKIP_LOCKED"),
                ("disable-page-skipping", "DISABLE_PAGE_SKIPPING"),
            )
            if flag in flags
        ]
        if parallel is not None:
            if not parallel.isdigit():
                raise NotTranslated(f"vacuumdb -P {parallel!r} is not a number of workers")
            words.append(f"PARALLEL {int(parallel)}")
        head = "VACUUM" + (f" ({', '.join(words)})" if words else "")
    return [f"{head} {t}" for t in tables] or [head]


def _reindex(flags: set[str], options: list[tuple[str, str | None]], database: str | None):
    verbose = " (VERBOSE)" if "v" in flags else ""
    how = " CONCURRENTLY" if "concurrently" in flags else ""
    schemas = [_object(v or "", re.compile(_NAME), "reindexdb") for f, v in options if f == "S"]
    indexes = [_object(v or "", _OBJECT, "reindexdb") for f, v in options if f == "i"]
    tables = [_object(v or "", _OBJECT, "reindexdb") for f, v in options if f == "t"]
    statements = [f"REINDEX{verbose} SCHEMA{how} {s}" for s in schemas]
    statements += [f"REINDEX{verbose} INDEX{how} {i}" for i in indexes]
    statements += [f"REINDEX{verbose} TABLE{how} {t}" for t in tables]
    if "s" in flags:
        if how or statements:
            raise NotTranslated("reindexdb -s cannot be combined with other objects")
        if database is None:
            raise NotTranslated("reindexdb -s without a database name (-d)")
        return [f"REINDEX{verbose} SYSTEM {identifier(database)}"]
    if not statements:
        if database is None:
            raise NotTranslated("reindexdb without -d: REINDEX DATABASE needs the database's name")
        statements = [f"REINDEX{verbose} DATABASE{how} {identifier(database)}"]
    return statements


def parse(program: str, args: list[str], info: dict[str, str], conninfo) -> Psql:
    """``program`` (vacuumdb or reindexdb) with ``args`` as a ``Psql`` record;
    ``info`` holds dbname/user/host from the environment, ``conninfo`` reads
    a ``-d`` value. Raises NotTranslated."""
    options, positional = _options(program, args)
    flags = {flag for flag, value in options if value is None}
    info = dict(info)
    if positional:
        info.update(conninfo(positional[0]) or {"dbname": positional[0]})
    for flag, value in options:
        if flag == "d" and value is not None:
            info.update(conninfo(value) or {"dbname": value})
        elif flag == "U" and value is not None:
            info["user"] = value
        elif flag == "h" and value is not None:
            info["host"] = value
    if "dbname" not in info and "user" in info:
        info["dbname"] = info["user"]  # libpq's default database is the user name
    caveats: list[tuple[str, str]] = []
    if "a" in flags:
        caveats.append(
            (
                ALL_DATABASES,
                f"{program} --all processes every database of the cluster; the workflow "
                f"runs in database {info.get('dbname') or '(the default one)'} only. Make "
                "one job per database (the same line with -d NAME), then set start => true",
            )
        )
    if any(flag == "j" for flag, _ in options):
        caveats.append(
            (
                APPROXIMATE,
                f"{program} -j runs several connections at once; the workflow "
                "runs the statements one after another (same result, longer run)",
            )
        )
    if "analyze-in-stages" in flags:
        caveats.append(
            (
                APPROXIMATE,
                "vacuumdb --analyze-in-stages analyzes three times with growing "
                "statistics targets (usable statistics sooner); the workflow runs one ANALYZE",
            )
        )
        flags = (flags - {"z"}) | {"Z"}
    if program == "vacuumdb":
        if any(f in flags for f in ("f", "F", "disable-page-skipping")) and "Z" in flags:
            raise NotTranslated("vacuumdb -Z cannot be combined with -f, -F or page options")
        tables = [_object(v or "", _TABLE, program) for f, v in options if f == "t"]
        parallel = next((v for f, v in options if f == "P"), None)
        statements = _vacuum(flags, tables, parallel)
    else:
        try:
            statements = _reindex(flags, options, info.get("dbname"))
        except UnsafeText as exc:
            raise NotTranslated(f"reindexdb: {exc}") from exc
    return Psql(
        tuple(PsqlPart(sql) for sql in statements),
        database=info.get("dbname"),
        user=info.get("user"),
        host=info.get("host"),
        on_error_stop=True,
        program=program,
        caveats=tuple(caveats),
    )
