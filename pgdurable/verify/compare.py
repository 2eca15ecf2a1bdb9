"""What "the same data" means: row multisets of user tables, minus volatile columns.

A snapshot reads every user table and materialized view of a database (or the
``--compare`` list, which may also name sequences: their ``last_value`` and
``is_called``) as a multiset of rows, each value as PostgreSQL's text output,
so types compare exactly as the server prints them (numeric scale, timestamp
zone). A materialized view that was never populated compares as such.

``targets`` reads what a job writes (INSERT/UPDATE/DELETE/TRUNCATE/COPY/MERGE
targets, refreshed materialized views, sequences advanced by ``nextval`` /
``setval``) from the generated file's SQL, so the report can name each target
that is not compared (not in ``--compare``, a sequence not asked for, or not in
the fixture at all) instead of implying it was checked.

Columns are left out of the comparison when
- the user names them (``--ignore-columns table.column``; ``*.column`` for every table);
- their default is volatile by nature: ``now()``, ``clock_timestamp()``,
  ``current_timestamp``, ``random()``, ``gen_random_uuid()`` and friends, because
  the two sides run at different instants;
- they are serial/identity columns and ``ignore_serials`` is set (a failed and
  retried insert consumes sequence values on one side only).

pgdurable's own schemas (``df``, ``pgdurable``, ``pgdurable_jobs``,
``airflow_dags``) and pg_cron's ``cron`` exist on one side only and are never
compared.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from pgdurable import db, sqltext
from pgdurable.errors import VerificationError

INTERNAL_SCHEMAS = ("df", "pgdurable", "pgdurable_jobs", "airflow_dags", "cron")
_VOLATILE_DEFAULT = re.compile(
    r"\b(now|clock_timestamp|statement_timestamp|transaction_timestamp|timeofday|random|"
    r"gen_random_uuid|uuid_generate_v[14]|uuid_generate_v1mc|txid_current|pg_backend_pid)\s*\(|"
    r"\bcurrent_(timestamp|time|date)\b|\blocaltimestamp\b|\blocaltime\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    default: str | None
    identity: bool

    @property
    def serial(self) -> bool:
        return self.identity or bool(self.default and "nextval(" in self.default)

    @property
    def volatile(self) -> bool:
        return bool(self.default and _VOLATILE_DEFAULT.search(self.default))


@dataclass
class Table:
    name: str  # schema.table
    columns: list[str]  # compared columns, in table order
    ignored: list[str]  # left out, each with why: "at (default now())"
    rows: Counter[tuple[str | None, ...]] = field(default_factory=Counter)


@dataclass
class Options:
    tables: list[str] | None = None  # --compare: schema.table or table (public)
    ignore: list[str] = field(default_factory=list)  # --ignore-columns
    ignore_serials: bool = False


def _qualified(name: str) -> str:
    return name if "." in name else f"public.{name}"


def _columns(conn: db.Connection, table: str) -> list[Column]:
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod),"
        " pg_get_expr(d.adbin, d.adrelid), a.attidentity <> ''"
        " FROM pg_attribute a LEFT JOIN pg_attrdef d"
        " ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY a.attnum",
        [table],
    ).fetchall()
    return [Column(r[0], r[1], r[2], bool(r[3])) for r in rows]


def relations(conn: db.Connection) -> dict[str, str]:
    """Quoted name -> relkind of every user table, materialized view and sequence."""
    rows = conn.execute(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind::text"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'm', 'S') AND NOT c.relispartition"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
        " AND n.nspname NOT LIKE 'pg_temp%%' AND n.nspname NOT LIKE 'pg_toast_temp%%'"
        " AND n.nspname <> ALL(%s) ORDER BY 1",
        [list(INTERNAL_SCHEMAS)],
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def user_tables(conn: db.Connection) -> list[str]:
    """What is compared by default: tables and materialized views (sequences only on request)."""
    return [name for name, kind in relations(conn).items() if kind != "S"]


_KIND = {"r": "table", "p": "table", "m": "materialized view", "S": "sequence"}


def _ignored_by_user(options: Options, table: str, column: str) -> bool:
    short = table.split(".", 1)[1]
    for spec in options.ignore:
        t, _, c = spec.rpartition(".")
        if c != column:
            continue
        if t in ("*", "", table, short) or _qualified(t) == table:
            return True
    return False


def snapshot(conninfo: str, options: Options) -> dict[str, Table]:
    """Every compared table of the database at ``conninfo``, as row multisets."""
    with db.connection(conninfo, autocommit=True) as conn:
        kinds = relations(conn)
        names = user_tables(conn)
        if options.tables is not None:
            wanted = []
            for t in options.tables:
                match = [n for n in kinds if n.replace('"', "") == _qualified(t)]
                if not match:
                    raise VerificationError(
                        f"--compare names {t!r}, which the fixture database does not have "
                        f"(tables, materialized views and sequences: {', '.join(kinds) or 'none'})"
                    )
                wanted += match
            names = wanted
        tables: dict[str, Table] = {}
        for name in names:
            if kinds[name] == "S":
                row = conn.execute(
                    db.sql.SQL("SELECT last_value::text, is_called::text FROM {}").format(
                        db.sql.SQL(name)
                    )
                ).fetchone()
                table = Table(name.replace('"', ""), ["last_value", "is_called"], [])
                table.rows = Counter({tuple(row): 1})
                tables[table.name] = table
                continue
            if (
                kinds[name] == "m"
                and not conn.execute(
                    "SELECT relispopulated FROM pg_class WHERE oid = %s::regclass", [name]
                ).fetchone()[0]
            ):
                table = Table(name.replace('"', ""), ["populated"], [])
                table.rows = Counter({("false",): 1})
                tables[table.name] = table
                continue
            kept, ignored = [], []
            for col in _columns(conn, name):
                if _ignored_by_user(options, name.replace('"', ""), col.name):
                    ignored.append(f"{col.name} (--ignore-columns)")
                elif col.volatile:
                    ignored.append(f"{col.name} (default {col.default})")
                elif options.ignore_serials and col.serial:
                    ignored.append(f"{col.name} (serial)")
                else:
                    kept.append(col.name)
            table = Table(name.replace('"', ""), kept, ignored)
            if kept:
                select = db.sql.SQL("SELECT {} FROM {}").format(
                    db.sql.SQL(", ").join(
                        db.sql.SQL("{}::text").format(db.sql.Identifier(c)) for c in kept
                    ),
                    db.sql.SQL(name),
                )
                table.rows = Counter(tuple(r) for r in conn.execute(select).fetchall())
            else:
                count = conn.execute(db.sql.SQL("SELECT count(*) FROM {}").format(db.sql.SQL(name)))
                table.rows = Counter({(): count.fetchone()[0]})
            tables[table.name] = table
    return tables


@dataclass
class TableDiff:
    table: str
    columns: list[str]
    ignored: list[str]
    old_rows: int
    new_rows: int
    only_old: list[tuple[tuple[str | None, ...], int]]  # (row, how many more times)
    only_new: list[tuple[tuple[str | None, ...], int]]

    @property
    def equal(self) -> bool:
        return not self.only_old and not self.only_new

    def as_dict(self, limit: int) -> dict[str, object]:
        def rows(items):
            return [
                {"row": dict(zip(self.columns, row, strict=False)), "count": n}
                for row, n in items[:limit]
            ]

        return {
            "table": self.table,
            "equal": self.equal,
            "old_rows": self.old_rows,
            "new_rows": self.new_rows,
            "ignored_columns": self.ignored,
            "only_old_count": sum(n for _, n in self.only_old),
            "only_new_count": sum(n for _, n in self.only_new),
            "only_old": rows(self.only_old),
            "only_new": rows(self.only_new),
        }


def _sorted(counter: Counter) -> list[tuple[tuple[str | None, ...], int]]:
    return sorted(counter.items(), key=lambda kv: tuple("" if v is None else v for v in kv[0]))


def diff(old: dict[str, Table], new: dict[str, Table]) -> list[TableDiff]:
    """Per table, the rows one side has more often than the other."""
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        ref = a or b
        assert ref is not None
        rows_a = a.rows if a else Counter()
        rows_b = b.rows if b else Counter()
        out.append(
            TableDiff(
                name,
                ref.columns,
                ref.ignored,
                sum(rows_a.values()),
                sum(rows_b.values()),
                _sorted(rows_a - rows_b),
                _sorted(rows_b - rows_a),
            )
        )
    return out


_WRITES = (
    ("insert", "into"),
    ("update",),
    ("delete", "from"),
    ("truncate",),
    ("merge", "into"),
    ("copy",),
    ("refresh", "materialized", "view"),
)
_SKIPPED = {"only", "table", "concurrently"}


def _words(text: str, depth: int = 0) -> list[tuple[str, str]]:
    """(kind, value) of the tokens of ``text`` and, recursively, of its string literals
    (generated files hold each step's SQL as a quoted string)."""
    try:
        tokens = sqltext.tokenize(text)
    except sqltext.SqlLexError:
        return []
    out: list[tuple[str, str]] = []
    for t in tokens:
        if t.kind in ("space", "comment"):
            continue
        value = t.value if t.value is not None else t.text
        out.append((t.kind, value.lower() if t.kind == "ident" else value))
        if t.kind == "string" and depth < 3 and t.value:
            out.extend(_words(t.value, depth + 1))
            out.append(("op", ";"))
    return out


def _name_at(words: list[tuple[str, str]], i: int) -> str | None:
    if i >= len(words) or words[i][0] not in ("ident", "qident"):
        return None
    name = words[i][1]
    if i + 2 < len(words) and words[i + 1][1] == "." and words[i + 2][0] in ("ident", "qident"):
        name += "." + words[i + 2][1]
    return name


def targets(text: str) -> list[str]:
    """``kind name`` of what the SQL in ``text`` writes, as written (unqualified: public)."""
    words = _words(text)
    found: dict[str, None] = {}
    for i, (kind, value) in enumerate(words):
        if kind == "ident" and value in ("nextval", "setval"):
            if i + 2 < len(words) and words[i + 1][1] == "(" and words[i + 2][0] == "string":
                found[f"sequence {_qualified(words[i + 2][1])}"] = None
            continue
        for phrase in _WRITES:
            if tuple(w for _, w in words[i : i + len(phrase)]) != phrase:
                continue
            j = i + len(phrase)
            while j < len(words) and words[j][1] in _SKIPPED:
                j += 1
            name = _name_at(words, j)
            if name and name not in ("select", "values", "set"):
                found[f"relation {_qualified(name)}"] = None
    return list(found)


def not_compared(conninfo: str, written: list[str], compared: set[str]) -> list[str]:
    """Each written target that no compared table stands for, with why and what to do."""
    with db.connection(conninfo, autocommit=True) as conn:
        kinds = {n.replace('"', ""): k for n, k in relations(conn).items()}
    out = []
    for target in written:
        _, name = target.split(" ", 1)
        if name in compared:
            continue
        kind = kinds.get(name)
        if kind is None:
            out.append(f"{name}: the job writes it, but the fixture has no such table")
        elif kind == "S":
            out.append(
                f"sequence {name}: its value is not compared; add it to --compare to compare it"
            )
        else:
            out.append(f"{_KIND[kind]} {name}: the job writes it; it is not in --compare")
    return out
