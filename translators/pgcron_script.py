"""Reading a SQL script of pg_cron calls: replayed, never executed.

The script is lexed and its statements are replayed in order on an in-memory
``cron.job`` that starts empty (the ids are those of a fresh install):

* ``cron.schedule`` / ``schedule_in_database`` / ``alter_job`` / ``unschedule``
  calls with literal arguments, as pg_cron applies them (the named schedule is an
  upsert on (jobname, the calling role));
* direct edits of the table: ``UPDATE cron.job SET col = literal, ... [WHERE
  ...]``, ``DELETE FROM cron.job [WHERE ...]``, ``TRUNCATE cron.job``, with the
  simple conditions ``pgcron_where`` decides;
* ``DO`` blocks made of ``PERFORM cron.<fn>(literals)``, optionally guarded by
  ``IF [NOT] EXISTS (SELECT ... FROM cron.job WHERE ...)``;
* psql's ``\\c`` / ``\\connect``: ``cron.schedule`` records ``cron.database_name``
  and the calling role, and pg_cron can only be installed in that database, so a
  call after ``\\c db [user]`` records db (and user).

What cannot be replayed exactly never leaves a job ``exact``: each job the
statement might touch gets a manual diagnostic naming the line (PGD360, PGD362),
and a schedule call the reader cannot see into is its own item (PGD361).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace

from pgdurable.diagnostics import Diagnostic, SourceRef
from pgdurable.sqltext import SqlLexError, Token, tokenize
from pgdurable.translators import pgcron_where as where
from pgdurable.translators.pg_cron import _PARAMS, CronJob, Item, Unreadable, _job_id

_CRON_MENTION = re.compile(
    r"\bcron\s*\.\s*(schedule|schedule_in_database|alter_job|unschedule)\s*\(|"
    r"\b(update|delete\s+from|insert\s+into|truncate(\s+table)?)\s+cron\s*\.\s*job\b",
    re.IGNORECASE,
)
_CRON_WRITE = re.compile(
    r"\bcron\s*\.\s*(alter_job|unschedule)\s*\(|"
    r"\b(update|delete\s+from|insert\s+into|truncate(\s+table)?|merge\s+into|copy)\s+cron\s*\.\s*job\b",
    re.IGNORECASE,
)
# psql meta-commands that change what the script runs (included files, generated or
# conditional statements, shell commands): not followed, reported (PGD362).
_FOLLOWS_NOT = ("i", "ir", "include", "include_relative", "gexec", "if", "elif", "else")
_FOLLOWS_NOT += ("endif", "g", "gset", "copy", "!")


@dataclass(frozen=True)
class _Expr:
    """An argument that is not a literal."""

    text: str


@dataclass(frozen=True)
class _Subquery:
    """``(SELECT jobid FROM cron.job [WHERE cond])`` as an argument."""

    cond: object  # a pgcron_where condition, or None for no WHERE
    text: str


@dataclass
class _Call:
    function: str
    line: int
    col: int
    args: list[tuple[str | None, object]]  # value: str, None (NULL), _Expr, _Subquery


def _tokens(text: str) -> list[Token]:
    return [t for t in tokenize(text) if t.kind not in ("space", "comment")]


def _shift(tokens: list[Token], line: int, col: int) -> list[Token]:
    """Tokens of a body string placed where the body starts in the script."""
    return [
        replace(t, line=line + t.line - 1, col=col + t.col - 1 if t.line == 1 else t.col)
        for t in tokens
    ]


def _span(tokens: list[Token], i: int, j: int) -> str:
    return " ".join(t.text for t in tokens[i:j])


# -- psql meta-commands -----------------------------------------------------------


@dataclass(frozen=True)
class _Meta:
    command: str  # without the backslash, lower case
    args: str
    line: int
    offset: int


def _blank_meta(text: str) -> tuple[str, list[_Meta]]:
    """psql meta-commands (a line starting with a backslash) blanked out of the text
    (their positions kept), and the list of them. A backslash line inside a string
    or comment is left alone."""
    candidates = [m for m in re.finditer(r"(?m)^[ \t]*\\([A-Za-z?!]+)([^\n]*)$", text)]
    if not candidates:
        return text, []
    metas: list[_Meta] = []
    out = list(text)
    for mo in candidates:
        # inside a string or comment exactly when the text before it does not lex
        try:
            tokenize("".join(out[: mo.start()]))
        except SqlLexError:
            continue  # part of a literal or comment: psql does not see it
        for k in range(mo.start(), mo.end()):
            out[k] = " "
        line = text.count("\n", 0, mo.start()) + 1
        metas.append(_Meta(mo.group(1).lower(), mo.group(2).strip(), line, mo.start()))
    return "".join(out), metas


def _connect_target(args: str) -> tuple[str | None, str | None, str | None]:
    """(database, user, problem) of ``\\c`` arguments; None for "unchanged"."""
    try:
        words = shlex.split(args, posix=True)
    except ValueError:
        return None, None, f"cannot read the arguments {args!r}"
    words = [w for w in words if w != ""]
    if words and words[-1].endswith(";"):  # psql drops trailing semicolons here
        words[-1] = words[-1].rstrip(";")
        if not words[-1]:
            words.pop()
    if not words:
        return None, None, None
    first = words[0]
    if first.startswith(("postgres://", "postgresql://")) or "=" in first:
        return None, None, f"a connection string ({first!r}) is not read"
    if first.startswith(":") or "`" in args:
        return None, None, "the target is a psql variable or a shell command"
    if first == "-reuse-previous" or first.startswith("-reuse-previous="):
        return None, None, "-reuse-previous is not read"
    database = None if first == "-" else first
    user = None
    if len(words) > 1 and words[1] != "-":
        if words[1].startswith(":"):
            return database, None, "the user is a psql variable"
        user = words[1]
    return database, user, None


# -- the replay ---------------------------------------------------------------------


@dataclass
class _Replay:
    file: str
    jobs: dict[int, CronJob] = field(default_factory=dict)
    items: list[Unreadable] = field(default_factory=list)
    next_id: int = 1
    database: str | None = None  # from \c; None: the database the file is applied to
    user: str | None = None  # from \c; None: the role that runs the script
    role: str | None = None  # SET ROLE / SET SESSION AUTHORIZATION; None: the session's
    local_role: str | None = None  # SET LOCAL ROLE, until the transaction ends
    saved: tuple | None = None  # the replay at BEGIN, restored by ROLLBACK
    connect: Diagnostic | None = None  # the \c note (or its problem) for later schedules
    ignored_meta: list[str] = field(default_factory=list)

    def ref(self, line: int, col: int | None = None) -> SourceRef:
        return SourceRef(self.file, line, col)

    def note(self, keys, code: str, message: str, ref: SourceRef) -> None:
        for key in list(keys):
            job = self.jobs[key]
            diag = Diagnostic(code, message, ref)
            if diag not in job.notes:
                self.jobs[key] = replace(job, notes=(*job.notes, diag))

    def unknown_write(self, keys, ref: SourceRef, what: str) -> None:
        """Every job in ``keys`` may have been changed by what cannot be replayed."""
        self.note(
            keys,
            "PGD360",
            f"{what} (line {ref.line}) may change or remove this job, and a script is "
            "read, never executed, so the reader cannot tell how: check the job in the "
            "live cron.job (import it with --from-db), or rewrite the statement as "
            "cron.alter_job / cron.unschedule with literal arguments, or as UPDATE cron.job "
            "SET column = literal WHERE jobname = literal",
            ref,
        )

    def row(self, job: CronJob):
        def value(column: str) -> object:
            if column == "username":
                return job.username if job.username is not None else where.UNKNOWN
            if column == "database":
                return job.database if job.database is not None else where.UNKNOWN
            if column in ("nodename", "nodeport"):
                found = getattr(job, column)
                return found if found is not None else where.UNKNOWN
            return getattr(job, column)

        return value

    def matching(self, cond) -> tuple[list[int], list[int]]:
        """(keys that match, keys that may match) of the condition (None: all rows)."""
        sure, maybe = [], []
        for key, job in self.jobs.items():
            result = True if cond is None else cond(self.row(job))
            if result is True:
                sure.append(key)
            elif result is where.UNKNOWN:
                maybe.append(key)
        return sure, maybe

    def caller(self) -> str | None:
        """current_user: the role cron.schedule records (None: the script's role)."""
        return self.local_role or self.role or self.user

    def same_role(self, job: CronJob) -> object:
        """Is ``job`` the calling role's? (pg_cron keys named jobs on the role.)"""
        caller = self.caller()
        if job.username == caller:
            return True
        if job.username is None or caller is None:
            return where.UNKNOWN
        return False


def _arguments(tokens: list[Token], j: int) -> tuple[list[tuple[str | None, object]], int]:
    """The arguments of a call whose '(' is at ``j - 1``; returns them and the index
    after the closing ')' (len(tokens) + 1 when it is never closed)."""
    args: list[tuple[str | None, object]] = []
    while j < len(tokens) and tokens[j].text != ")":
        name = None
        if tokens[j].kind == "ident" and j + 1 < len(tokens) and tokens[j + 1].text in ("=>", ":="):
            name, j = tokens[j].value, j + 2
        start, depth = j, 0
        while j < len(tokens):
            t = tokens[j]
            if t.text == "(":
                depth += 1
            elif t.text == ")":
                if depth == 0:
                    break
                depth -= 1
            elif t.text == "," and depth == 0:
                break
            elif t.kind == "semicolon":
                return args, len(tokens) + 1
            j += 1
        if j >= len(tokens):
            return args, len(tokens) + 1
        args.append((name, _value(tokens[start:j])))
        if tokens[j].text == ",":
            j += 1
    if j >= len(tokens):
        return args, len(tokens) + 1
    return args, j + 1


def _value(toks: list[Token]) -> object:
    text = " ".join(t.text for t in toks)
    core = list(toks)
    while len(core) >= 3 and core[-2].text == "::" and core[-1].kind == "ident":
        core = core[:-2]  # 'x'::text: the literal as written (as the reader always did)
    if len(core) == 1:
        t = core[0]
        if t.kind == "string":
            return t.value
        if t.kind == "number":
            return t.text
        if t.kind == "ident" and t.value in ("true", "false"):
            return t.value
        if t.kind == "ident" and t.value == "null":
            return None
    sub = _subquery(toks)
    text = text if len(text) <= 80 else text[:77] + "..."
    return sub if sub is not None else _Expr(text or "(nothing)")


def _subquery(toks: list[Token]) -> _Subquery | None:
    """``( SELECT jobid FROM cron.job [WHERE cond] )``."""
    words = [t.value if t.kind == "ident" else t.text for t in toks[:7]]
    if words[:7] != ["(", "select", "jobid", "from", "cron", ".", "job"] or toks[-1].text != ")":
        return None
    inner = toks[7:-1]
    if not inner:
        return _Subquery(None, _span(toks, 0, len(toks)))
    if inner[0].value != "where":
        return None
    parser = where.Parser(inner, 1)
    try:
        cond = parser.condition()
    except where.Unsupported:
        return None
    if not parser.at_end():
        return None
    return _Subquery(cond, _span(toks, 0, len(toks)))


def _calls_in(tokens: list[Token]) -> list[tuple[int, int, _Call | str]]:
    """(first index, index after, call or problem) of every cron.<fn>( in ``tokens``."""
    found = []
    i = 0
    while i + 3 < len(tokens):
        t = tokens[i]
        if (
            t.kind == "ident"
            and t.value == "cron"
            and tokens[i + 1].text == "."
            and tokens[i + 2].kind == "ident"
            and tokens[i + 2].value in _PARAMS
            and tokens[i + 3].text == "("
        ):
            function = tokens[i + 2].value or ""
            args, end = _arguments(tokens, i + 4)
            if end > len(tokens):
                found.append(
                    (
                        i,
                        len(tokens),
                        f"the call of cron.{function} is never closed (no ')' "
                        "before the end of the statement)",
                    )
                )
                return found
            found.append((i, end, _Call(function, t.line, t.col, args)))
            i = end
            continue
        i += 1
    return found


def _bind(call: _Call) -> dict[str, object]:
    params = _PARAMS[call.function]
    positional = [v for n, v in call.args if n is None]
    if call.function == "schedule" and len(positional) == 2 and len(call.args) == 2:
        params = ["schedule", "command"]  # the unnamed form
    if call.function == "unschedule" and positional and isinstance(positional[0], str):
        if _job_id(positional[0]) is None:
            params = ["job_name"]
    bound = dict(zip(params, positional, strict=False))
    bound.update({n: v for n, v in call.args if n is not None})
    return bound


_LITERAL_HINT = "; scripts are read, never executed, so only literal arguments can be translated"


def _apply_call(state: _Replay, call: _Call, guard: Diagnostic | None = None) -> None:
    ref = state.ref(call.line, call.col)
    unknown = [n for n, _ in call.args if n is not None and n not in _PARAMS[call.function]]
    if unknown:
        state.items.append(
            Unreadable(
                f"line_{call.line}",
                ref,
                f"cron.{call.function} has no parameter {unknown[0]!r} (it takes "
                f"{', '.join(_PARAMS[call.function])}), so PostgreSQL refuses this call",
            )
        )
        return
    args = _bind(call)
    odd = [(k, v) for k, v in args.items() if isinstance(v, (_Expr, _Subquery))]
    if call.function in ("schedule", "schedule_in_database"):
        name = args.get("job_name")
        if odd:
            k, v = odd[0]
            state.items.append(
                Unreadable(
                    f"line_{call.line}",
                    ref,
                    f"argument {k} of cron.{call.function} is not a literal ({v.text!r})"
                    + _LITERAL_HINT,
                )
            )
            if "job_name" not in args:  # an unnamed job is a new row: it changes no other
                named = []
            elif isinstance(name, str):
                named = [key for key, j in state.jobs.items() if j.jobname == name]
            else:  # a computed name may upsert any named job
                named = [key for key, j in state.jobs.items() if j.jobname]
            state.unknown_write(named, ref, f"cron.{call.function} with a non-literal argument")
            return
        _schedule(state, call, args, ref, guard)
        return
    if call.function == "unschedule":
        target = args.get("job_id", args.get("job_name"))
        if isinstance(target, _Expr):
            state.unknown_write(state.jobs, ref, f"cron.unschedule({target.text})")
            return
        keys, maybe = _targets(state, target, by_name="job_name" in args)
        if maybe:
            state.unknown_write(maybe, ref, "cron.unschedule")
        for key in keys[:1]:
            state.jobs.pop(key)
        return
    # alter_job: a NULL argument leaves the field as it is
    target = args.get("job_id")
    if isinstance(target, _Expr):
        state.unknown_write(state.jobs, ref, f"cron.alter_job({target.text}, ...)")
        return
    keys, maybe = _targets(state, target, by_name=False)
    if maybe:
        state.unknown_write(maybe, ref, "cron.alter_job")
    other = [(k, v) for k, v in odd if k != "job_id"]
    if other:
        state.unknown_write(keys, ref, f"cron.alter_job with {other[0][0]} => {other[0][1].text}")
        return
    for key in keys[:1]:
        changes = {k: v for k, v in args.items() if k != "job_id" and v is not None}
        if "active" in changes:
            changes["active"] = str(changes["active"]).lower() in ("true", "t")
        state.jobs[key] = replace(state.jobs[key], **changes)  # type: ignore[arg-type]


def _targets(state: _Replay, target: object, *, by_name: bool) -> tuple[list[int], list[int]]:
    """(the job a jobid / name / subquery argument names, jobs it may name)."""
    if isinstance(target, _Subquery):
        sure, maybe = state.matching(target.cond)
        if maybe:
            return [], sure + maybe
        return (sure if len(sure) == 1 else []), []  # several rows: the call fails
    if not isinstance(target, str):
        return [], []
    if by_name:  # unschedule(name): the calling role's job of that name
        sure, maybe = [], []
        for key, job in state.jobs.items():
            if job.jobname == target:
                same = state.same_role(job)
                (sure if same is True else maybe if same is where.UNKNOWN else []).append(key)
        return sure, maybe
    key = _job_id(target)
    return ([key] if key in state.jobs else []), []


def _schedule(state: _Replay, call: _Call, args, ref: SourceRef, guard) -> None:
    name = args.get("job_name")
    if args.get("schedule") is None or args.get("command") is None:
        state.items.append(
            Unreadable(
                name or f"line_{call.line}",
                ref,
                f"cron.{call.function} without a schedule or command",
            )
        )
        return
    in_database = call.function == "schedule_in_database"
    database = args.get("database") if in_database else state.database
    username = args.get("username") if in_database and args.get("username") else state.caller()
    fields = {
        "schedule": args["schedule"] or "",
        "command": args["command"] or "",
        "database": database,
        "ref": ref,
    }
    existing, maybe = None, []
    if name:
        for key, job in state.jobs.items():
            if job.jobname != name:
                continue
            same = (
                True
                if job.username == username
                else (where.UNKNOWN if job.username is None or username is None else False)
            )
            if same is True and existing is None:
                existing = key
            elif same is where.UNKNOWN:
                maybe.append(key)
    notes: list[Diagnostic] = []
    if guard is not None:
        notes.append(guard)
    if state.connect is not None and not in_database:
        notes.append(state.connect)
    if existing is not None:  # the named form is an upsert that keeps jobid and active
        job = state.jobs[existing]
        if job.database != fields["database"]:
            # pg_cron up to 1.6.2 updates schedule and command only; 1.6.3 (commit a19c6b9)
            # also sets the database. A script does not say which version ran it.
            def shown(name: str | None) -> str:
                return repr(name) if name is not None else "cron.database_name"

            notes.append(
                Diagnostic(
                    "PGD360",
                    f"cron.{call.function} at line {call.line} re-schedules this job by name: "
                    f"pg_cron up to 1.6.2 keeps its database ({shown(job.database)}), 1.6.3 "
                    f"and later set it to {shown(fields['database'])}. The script does not "
                    "say which version ran it; it is read with the first. Check the job in "
                    "the live cron.job (--from-db), or name the database with "
                    "cron.schedule_in_database / cron.alter_job(database => ...)",
                    ref,
                )
            )
            fields["database"] = job.database
        state.jobs[existing] = replace(job, **fields, notes=(*job.notes, *notes))
        return
    state.jobs[state.next_id] = CronJob(
        jobid=state.next_id,
        jobname=name,
        username=username,
        active=str(args.get("active") or "true").lower() in ("true", "t"),
        jobid_known=False,
        notes=tuple(notes),
        **fields,
    )
    if maybe:
        state.unknown_write(
            [*maybe, state.next_id],
            ref,
            f"cron.{call.function}({name!r}, ...) is an upsert on (jobname, role); the script "
            "does not say which role runs it, so whether it replaced the earlier job of that name",
        )
    state.next_id += 1


# -- statements ---------------------------------------------------------------------


def _is_cron_job(tokens: list[Token], i: int) -> bool:
    words = [t.value for t in tokens[i : i + 3]]
    return words == ["cron", None, "job"] and tokens[i + 1].text == "."


def _alias(tokens: list[Token], i: int) -> tuple[str | None, int]:
    t = tokens[i] if i < len(tokens) else None
    if t is not None and t.value == "as":
        if i + 1 >= len(tokens):
            raise where.Unsupported("AS without an alias")
        return tokens[i + 1].value, i + 2
    if (
        t is not None
        and t.kind == "ident"
        and t.value not in ("set", "where", "returning", "using", "from")
    ):
        return t.value, i + 1
    return None, i


def _where(tokens: list[Token], i: int, alias: str | None):
    """The condition from ``tokens[i]`` (at WHERE, RETURNING or the end)."""
    if i >= len(tokens) or tokens[i].value == "returning":
        return None
    if tokens[i].value != "where":
        raise where.Unsupported(f"{tokens[i].text!r} after the table (FROM, USING, ...)")
    parser = where.Parser(tokens, i + 1, alias)
    cond = parser.condition()
    if not parser.at_end() and parser.word() != "returning":
        raise where.Unsupported(f"{parser.peek().text!r} in the WHERE clause")
    return cond


def _set_value(state: _Replay, column: str, parser: where.Parser) -> object:
    t = parser.peek()
    if t is not None and t.kind == "ident" and t.value in ("current_user", "session_user", "user"):
        if column != "username":
            raise where.Unsupported(f"{column} = {t.text}")
        parser.pos += 1
        return state.caller()  # None: the role that runs the script, as for its own jobs
    if t is not None and t.value == "current_database" and column == "database":
        if state.database is None:
            raise where.Unsupported("database = current_database() without \\c before it")
        parser.pos += 1
        parser.expect("(")
        parser.expect(")")
        return state.database
    lit = parser.literal()
    if lit.value is None and column != "jobname":
        raise where.Unsupported(f"{column} = NULL (the column is NOT NULL: the UPDATE fails)")
    if column == "jobid":
        raise where.Unsupported("SET jobid")
    return where._coerce(column, lit)


def _update(state: _Replay, tokens: list[Token], ref: SourceRef) -> None:
    try:
        alias, i = _alias(tokens, 4)
        if i >= len(tokens) or tokens[i].value != "set":
            raise where.Unsupported("no SET after the table")
        parser = where.Parser(tokens, i + 1, alias)
        changes: dict[str, object] = {}
        while True:
            column = parser.column()
            parser.expect("=")
            changes[column] = _set_value(state, column, parser)
            if (t := parser.peek()) is not None and t.text == ",":
                parser.pos += 1
                continue
            break
        cond = _where(tokens, parser.pos, alias)
    except where.Unsupported as exc:
        state.unknown_write(state.jobs, ref, f"UPDATE cron.job ({exc})")
        return
    sure, maybe = state.matching(cond)
    if maybe:
        state.unknown_write(
            maybe,
            ref,
            "UPDATE cron.job with a condition on a column the script does not set "
            "(username, database, nodename or nodeport)",
        )
    shown = ", ".join(
        f"{k} = {v!r}" if v is not None else f"{k} = (the script's role)"
        for k, v in changes.items()
    )
    for key in sure:
        state.jobs[key] = replace(state.jobs[key], **changes)  # type: ignore[arg-type]
        state.note(
            [key],
            "PGD258",
            f"the script changed this job in cron.job at line {ref.line}: {shown}; replayed",
            ref,
        )
        if "nodeport" in changes:
            state.note(
                [key],
                "PGD262",
                f"the script set nodeport = {changes['nodeport']} (line {ref.line}): pg_cron "
                "connects to that port, which is another cluster unless this one listens "
                "there; the workflow runs in the worker's cluster",
                ref,
            )


def _delete(state: _Replay, tokens: list[Token], ref: SourceRef) -> None:
    try:
        alias, i = _alias(tokens, 5)
        cond = _where(tokens, i, alias)
    except where.Unsupported as exc:
        state.unknown_write(state.jobs, ref, f"DELETE FROM cron.job ({exc})")
        return
    sure, maybe = state.matching(cond)
    if maybe:
        state.unknown_write(
            maybe,
            ref,
            "DELETE FROM cron.job with a condition on a column the script does "
            "not set (username, database, nodename or nodeport)",
        )
    for key in sure:  # pg_cron no longer has the job: nothing to migrate
        state.jobs.pop(key)


def _exists(state: _Replay, tokens: list[Token], i: int) -> tuple[object, int]:
    """``EXISTS ( SELECT ... FROM cron.job [alias] [WHERE cond] )`` at tokens[i]: its
    truth on the replay table and the index after it; Unsupported otherwise."""
    if tokens[i].value != "exists" or tokens[i + 1].text != "(" or tokens[i + 2].value != "select":
        raise where.Unsupported("not EXISTS (SELECT ...)")
    depth, j = 0, i + 1
    end = None
    for k in range(i + 1, len(tokens)):
        if tokens[k].text == "(":
            depth += 1
        elif tokens[k].text == ")":
            depth -= 1
            if depth == 0:
                end = k
                break
    if end is None:
        raise where.Unsupported("EXISTS ( is never closed")
    j = next((k for k in range(i + 3, end) if tokens[k].value == "from"), None)
    if j is None or not _is_cron_job(tokens, j + 1):
        raise where.Unsupported("EXISTS over something other than cron.job")
    inner = tokens[:end]
    alias, k = _alias(inner, j + 4)
    cond = _where(inner, k, alias)
    sure, maybe = state.matching(cond)
    return (True if sure else where.UNKNOWN if maybe else False), end + 1


def _statement(state: _Replay, tokens: list[Token]) -> None:
    first = tokens[0]
    ref = state.ref(first.line, first.col)
    w = [t.value for t in tokens[:6]]
    if w[0] == "do":
        _do_block(state, tokens, ref)
        return
    if w[0] == "update" and _is_cron_job(tokens, 1):
        _update(state, tokens, ref)
        return
    if w[:2] == ["delete", "from"] and _is_cron_job(tokens, 2):
        _delete(state, tokens, ref)
        return
    if _session(state, tokens, w):
        return
    if w[0] == "truncate":
        k = 2 if w[1] == "table" else 1
        if _is_cron_job(tokens, k):
            state.jobs.clear()
            return
    if w[:2] == ["insert", "into"] and _is_cron_job(tokens, 2):
        state.items.append(
            Unreadable(
                f"line_{first.line}",
                ref,
                "INSERT INTO cron.job adds a job the reader does not replay; schedule it "
                "with cron.schedule(...) and literal arguments, or import the live jobs "
                "with --from-db",
                code="PGD360",
            )
        )
        return
    calls = _calls_in(tokens)
    consumed: set[int] = set()
    for start, end, _call in calls:
        consumed.update(range(start, end))
    # a statement that writes cron.job in another shape (WITH ... UPDATE, MERGE, COPY)
    rest = " ".join(t.text for k, t in enumerate(tokens) if k not in consumed)
    if _CRON_WRITE.search(rest):
        state.unknown_write(state.jobs, ref, f"the statement {_short(tokens)}")
    for k, t in enumerate(tokens):
        if k not in consumed and t.kind == "string" and _CRON_MENTION.search(t.value or ""):
            state.items.append(_body_item(state, tokens, t, "a quoted body", _routine(w)))
    if any(t.text == "\\" for k, t in enumerate(tokens) if k not in consumed):
        state.items.append(
            Unreadable(
                f"line_{first.line}",
                ref,
                "a psql meta-command after SQL on the same line (e.g. \\gexec, \\gset) "
                "is not followed: what it runs is not read. Import the generated statements "
                "as their own script, or the live cron.job with --from-db",
                code="PGD362",
            )
        )
        state.unknown_write(state.jobs, ref, "a psql meta-command inside a statement")
    plain = w[0] == "select" and _only_calls(tokens, consumed)
    for start, end, call in calls:
        if isinstance(call, str):
            t = tokens[start]
            state.items.append(
                Unreadable(f"line_{t.line}", state.ref(t.line, t.col), call + _LITERAL_HINT)
            )
        elif plain:
            _apply_call(state, call)
        elif not (w[0] == "select" and len(calls) == 1 and _guarded(state, tokens, end, call)):
            _conditional(state, tokens, call)


def _only_calls(tokens: list[Token], consumed: set[int]) -> bool:
    """``SELECT call [AS x], call ...`` or ``SELECT * FROM call``: the calls run once."""
    words = [t.value or t.text for t in tokens]
    if words[1:3] == ["*", "from"] and all(k in consumed for k in range(3, len(tokens))):
        return True
    for k in range(1, len(tokens)):
        if k in consumed or tokens[k].text == ",":
            continue
        if words[k] == "as" or (
            k > 0 and words[k - 1] == "as" and tokens[k].kind in ("ident", "qident")
        ):
            continue
        return False
    return True


def _session(state: _Replay, tokens: list[Token], w: list[str | None]) -> bool:
    """Transactions and the current role, which cron.schedule records as the owner:
    ``SET [SESSION|LOCAL] ROLE``, ``SET SESSION AUTHORIZATION``, ``RESET ROLE``,
    ``BEGIN`` ... ``COMMIT`` / ``ROLLBACK`` (a rolled-back schedule never happened)."""
    if w[0] in ("begin", "start") and (len(w) == 1 or w[1] in ("transaction", "work", "isolation")):
        state.saved = (dict(state.jobs), list(state.items), state.next_id, state.role)
        return True
    if w[0] in ("commit", "end", "rollback", "abort") and len(tokens) <= 3:
        if w[0] in ("rollback", "abort") and state.saved is not None:
            state.jobs, state.items, state.next_id, state.role = state.saved
        state.saved, state.local_role = None, None
        return True
    if w[:2] == ["reset", "role"] or w[:3] == ["reset", "session", "authorization"]:
        state.role = None
        return True
    if w[0] != "set":
        return False
    k = 1
    local = w[1] == "local"
    if w[1] in ("local", "session") and w[2] in ("role", "session"):
        k = 2
    if w[k] == "role":
        k += 1
    elif w[k : k + 2] == ["session", "authorization"]:
        k += 2
    else:
        return False
    value = tokens[k] if k < len(tokens) else None
    if value is None or k + 1 != len(tokens) or value.kind not in ("ident", "qident", "string"):
        state.role = state.local_role = None
        first = tokens[0]
        state.connect = Diagnostic(  # later jobs cannot say their owner
            "PGD360",
            f"the statement {_short(tokens)} at line {first.line} sets the role the reader "
            "cannot read, and cron.schedule records that role as the job's owner: check the "
            "job in the live cron.job (--from-db), or write SET ROLE name",
            state.ref(first.line, first.col),
        )
        return True
    name = None if value.kind == "ident" and value.value in ("none", "default") else value.value
    if state.connect is not None and state.connect.code == "PGD360":
        state.connect = None  # the role is known again
    if local:
        if state.saved is not None:  # outside a transaction SET LOCAL does nothing
            state.local_role = name
    else:
        state.role = name
    return True


def _guarded(state: _Replay, tokens: list[Token], end: int, call: _Call) -> bool:
    """``SELECT cron.schedule(...) WHERE [NOT] EXISTS (SELECT ... FROM cron.job ...)``:
    replayed (True) when the guard can be decided."""
    if (
        len(tokens) <= end
        or tokens[end].value != "where"
        or call.function not in ("schedule", "schedule_in_database", "unschedule")
    ):
        return False
    try:
        negate = tokens[end + 1].value == "not"
        truth, after = _exists(state, tokens, end + 1 + negate)
    except (where.Unsupported, IndexError):
        return False
    if after != len(tokens):
        return False
    _run_guarded(state, call, truth, negate, tokens[end])
    return True


def _run_guarded(state: _Replay, call: _Call, truth: object, negate: bool, at: Token) -> None:
    ref = state.ref(at.line, at.col)
    if truth is where.UNKNOWN:
        # it may or may not run: the job exists in the replay with a manual note
        _apply_call(state, call)
        keys = [k for k, j in state.jobs.items() if j.ref == state.ref(call.line, call.col)]
        state.unknown_write(
            keys or state.jobs,
            ref,
            "a guard on cron.job that depends on the script's role or database",
        )
        return
    runs = (not truth) if negate else bool(truth)
    if not runs:
        return
    guard = None
    if negate and call.function in ("schedule", "schedule_in_database"):
        guard = Diagnostic(
            "PGD259",
            f"the script schedules this job only if cron.job has no matching job (line "
            f"{at.line}); it is read as if cron.job held only what the script created before. "
            "If the database already had such a job, pg_cron kept that one as it was: "
            "compare with the live cron.job (--from-db)",
            ref,
        )
    _apply_call(state, call, guard)


def _conditional(state: _Replay, tokens: list[Token], call: _Call) -> None:
    """A call inside a larger query (FROM, WHERE, CASE): whether and how often it runs
    depends on data the reader does not have."""
    ref = state.ref(call.line, call.col)
    what = f"cron.{call.function} inside the query {_short(tokens)}"
    if call.function in ("schedule", "schedule_in_database"):
        before = set(state.jobs)
        _apply_call(state, call)
        changed = [k for k in state.jobs if k not in before or state.jobs[k].ref == ref]
        state.unknown_write(changed, ref, what)
    else:
        state.unknown_write(state.jobs, ref, what)


def _short(tokens: list[Token]) -> str:
    text = " ".join(t.text for t in tokens[:8])
    return repr(text + (" ..." if len(tokens) > 8 else ""))


def _routine(words: list[str | None]) -> str | None:
    if "function" in words or "procedure" in words:
        return "function" if "function" in words else "procedure"
    return None


def _body_item(state: _Replay, tokens, body: Token, where_: str, routine: str | None) -> Unreadable:
    ref = state.ref(body.line, body.col)
    if routine:
        message = (
            f"a cron.* call or cron.job write inside a {routine} body (line {body.line}) runs "
            f"only when the {routine} is called, which a script reader cannot follow: the jobs "
            "it schedules are not read. Schedule them at top level with literal arguments, "
            "or import the live jobs with --from-db"
        )
    else:
        message = (
            f"a cron.* call or cron.job write inside {where_} (line {body.line}) is not read: "
            "the jobs it schedules are not migrated. Write the calls at top level (or as "
            "PERFORM cron.schedule('name', 'schedule', 'command') with literals in a DO block), "
            "or import the live jobs with --from-db"
        )
    if _CRON_WRITE.search(body.value or ""):
        state.unknown_write(state.jobs, ref, where_)
    return Unreadable(f"line_{body.line}", ref, message, code="PGD361")


# -- DO blocks ------------------------------------------------------------------------


class _NotSimple(Exception):
    pass


_PLPGSQL_CONTROL = {"exception", "loop", "for", "foreach", "while", "case", "begin", "declare"}
_PLPGSQL_CONTROL |= {"return", "exit", "continue", "when", "elsif", "get", "open", "fetch"}


def _do_block(state: _Replay, tokens: list[Token], ref: SourceRef) -> None:
    body = next((t for t in tokens[1:] if t.kind == "string"), None)
    if body is None or not _CRON_MENTION.search(body.value or ""):
        return
    language = [t.value for t in tokens[1:] if t.kind == "ident"]
    if language and language not in (["language", "plpgsql"],):
        state.items.append(_body_item(state, tokens, body, "a DO block", None))
        return
    tag = re.match(r"\$[^$]*\$|'|[eE]'", body.text)
    offset = len(tag.group(0)) if tag else 1
    try:
        inner = _shift(_tokens(body.value or ""), body.line, body.col + offset)
    except SqlLexError:
        state.items.append(_body_item(state, tokens, body, "a DO block", None))
        return
    # Dry run first: a block read halfway would replay part of it.
    trial = replace(state, jobs=dict(state.jobs), items=list(state.items))
    try:
        _plpgsql_block(trial, inner)
    except (_NotSimple, IndexError, where.Unsupported) as exc:
        item = _body_item(state, tokens, body, "a DO block", None)
        reason = f" ({exc})" if str(exc) else ""
        state.items.append(
            replace(item, message=item.message.replace("is not read:", f"is not read{reason}:", 1))
        )
        return
    state.jobs, state.items, state.next_id = trial.jobs, trial.items, trial.next_id


def _plpgsql_block(state: _Replay, tokens: list[Token]) -> None:
    if not tokens or tokens[0].value != "begin":
        raise _NotSimple("only BEGIN ... END without DECLARE is read")
    i = _plpgsql_statements(state, tokens, 1, ("end",))
    rest = tokens[i + 1 :]
    if rest and rest[0].kind == "semicolon":
        rest = rest[1:]
    if rest:
        raise _NotSimple(f"{rest[0].text!r} after END")


def _plpgsql_statements(state: _Replay, tokens: list[Token], i: int, stop) -> int:
    """Runs statements from tokens[i] until a word in ``stop``; returns its index."""
    while i < len(tokens) and tokens[i].value not in stop:
        t = tokens[i]
        end = next((k for k in range(i, len(tokens)) if tokens[k].kind == "semicolon"), None)
        if t.value == "if":
            i = _plpgsql_if(state, tokens, i)
            continue
        if end is None:
            raise _NotSimple("a statement without ';'")
        statement = tokens[i:end]
        if t.value in _PLPGSQL_CONTROL or t.text == "<<":
            # handlers, loops, nested blocks: what runs (and how often) depends on run time
            raise _NotSimple(f"{t.text.upper()} in the block")
        if t.value == "perform":
            calls = _calls_in(statement)
            if len(calls) != 1 or calls[0][0] != 1 or calls[0][1] != len(statement):
                raise _NotSimple("PERFORM of something other than one cron.* call")
            call = calls[0][2]
            if isinstance(call, str):
                raise _NotSimple(call)
            _apply_call(state, call)
        elif t.value in ("raise", "null"):
            pass  # a notice changes nothing in cron.job
        elif t.value in ("update", "delete", "truncate", "insert"):
            _statement(state, statement)
        elif _CRON_MENTION.search(
            " ".join(x.text if x.kind != "string" else (x.value or "") for x in statement)
        ):
            raise _NotSimple(f"{_short(statement)}")
        i = end + 1
    if i >= len(tokens):
        raise _NotSimple("the block is not closed by END")
    return i


def _plpgsql_if(state: _Replay, tokens: list[Token], i: int) -> int:
    """``IF [NOT] EXISTS (SELECT ... FROM cron.job ...) THEN ... [ELSE ...] END IF;``"""
    negate = tokens[i + 1].value == "not"
    truth, k = _exists(state, tokens, i + 1 + negate)
    if tokens[k].value != "then":
        raise _NotSimple("an IF condition other than [NOT] EXISTS (SELECT ... FROM cron.job ...)")
    if truth is where.UNKNOWN:
        raise _NotSimple("the IF depends on the script's role or database")
    runs = (not truth) if negate else bool(truth)
    scratch = replace(state, jobs=dict(state.jobs), items=list(state.items))
    then_state = state if runs else scratch
    before = dict(state.jobs)
    k = _plpgsql_statements(then_state, tokens, k + 1, ("else", "end", "elsif"))
    if tokens[k].value == "elsif":
        raise _NotSimple("ELSIF")
    if tokens[k].value == "else":
        else_state = scratch if runs else state
        k = _plpgsql_statements(else_state, tokens, k + 1, ("end",))
    if tokens[k + 1].value != "if" or tokens[k + 2].kind != "semicolon":
        raise _NotSimple("IF without END IF;")
    if runs and negate:  # IF NOT EXISTS ... THEN schedule: say what the guard means
        at = tokens[i]
        guard = Diagnostic(
            "PGD259",
            f"the script schedules this job only if cron.job has no matching job (IF NOT "
            f"EXISTS at line {at.line}); it is read as if cron.job held only what the script "
            "created before. If the database already had such a job, pg_cron kept that one "
            "as it was: compare with the live cron.job (--from-db)",
            state.ref(at.line, at.col),
        )
        # every job the branch created or changed: on a database that already had a
        # matching job, the branch did not run at all
        touched = [key for key, job in state.jobs.items() if before.get(key) != job]
        for key in touched:
            job = state.jobs[key]
            state.jobs[key] = replace(job, notes=(*job.notes, guard))
    return k + 3


# -- the script -----------------------------------------------------------------------


def _nested_dollar(text: str, exc: SqlLexError) -> tuple[str, int, int] | None:
    """For an unterminated ``$tag$``: the place where an inner ``$tag$`` closed an
    outer body (``DO $$ ... EXECUTE $$...$$ ... $$``), if that is what happened."""
    if not exc.reason.startswith("unterminated dollar-quoted string"):
        return None
    tag = exc.reason.split()[-1]
    lines = text.split("\n")
    offset = sum(len(line) + 1 for line in lines[: exc.line - 1]) + exc.col - 1
    try:
        tokens = _tokens(text[:offset])
    except SqlLexError:
        return None
    for k, t in enumerate(tokens):
        if t.kind != "string" or not t.text.startswith(tag) or k == 0:
            continue
        if tokens[k - 1].value not in ("do", "as", "plpgsql", "sql"):
            continue
        after = tokens[k + 1] if k + 1 < len(tokens) else None
        if after is None or after.kind == "semicolon" or after.value == "language":
            continue
        close = t.start + len(t.text) - len(tag)
        line = text.count("\n", 0, close) + 1
        col = close - (text.rfind("\n", 0, close) + 1) + 1
        return (
            f"nested {tag} inside a {tag} body: the body opened at line {t.line} is closed "
            f"at line {line}, column {col} by the {tag} meant to open an inner string, so "
            f"PostgreSQL reports a syntax error right after it and the last {tag} (line "
            f"{exc.line}) is left open. Give the inner string its own tag ($q$...$q$) or the "
            "outer body one ($do$...$do$)",
            line,
            col,
        )
    return None


def read(text: str, file: str) -> list[Item]:
    """Replay a script's statements on an empty job table, as pg_cron would."""
    sql, metas = _blank_meta(text)
    try:
        tokens = _tokens(sql)
    except SqlLexError as exc:
        nested = _nested_dollar(sql, exc)
        if nested:
            message, line, col = nested
            return [
                Unreadable(
                    "script", SourceRef(file, line, col), f"cannot lex the script: {message}"
                )
            ]
        ref = SourceRef(file, exc.line, exc.col)
        return [Unreadable("script", ref, f"cannot lex the script: {exc.reason}")]
    state = _Replay(file)
    # statements and meta-commands, in script order
    events: list[tuple[int, object]] = [(m.offset, m) for m in metas]
    current: list[Token] = []
    for t in tokens:
        if t.kind == "semicolon":
            if current:
                events.append((current[0].start, current))
            current = []
        else:
            current.append(t)
    if current:
        events.append((current[0].start, current))
    events.sort(key=lambda e: e[0])
    for _, event in events:
        if isinstance(event, _Meta):
            if _meta(state, event) == "quit":
                break
        else:
            try:
                _statement(state, event)  # type: ignore[arg-type]
            except (IndexError, where.Unsupported) as exc:
                # a statement cut short or shaped unlike the ones read: PostgreSQL may
                # refuse it, but the reader cannot be sure it changed nothing
                first = event[0]  # type: ignore[index]
                text = " ".join(t.text for t in event)  # type: ignore[union-attr]
                if _CRON_MENTION.search(text) or "cron" in text.lower():
                    reason = f" ({exc})" if isinstance(exc, where.Unsupported) else ""
                    state.unknown_write(
                        state.jobs,
                        state.ref(first.line, first.col),
                        f"the statement {_short(event)}{reason}",  # type: ignore[arg-type]
                    )
    if state.ignored_meta and state.jobs:
        state.note(
            state.jobs,
            "PGD261",
            "the script has psql meta-commands the reader does not follow ("
            + ", ".join(state.ignored_meta[:5])
            + (", ..." if len(state.ignored_meta) > 5 else "")
            + "); they do not change cron.job",
            SourceRef(file),
        )
    return [*state.jobs.values(), *state.items]


def _meta(state: _Replay, meta: _Meta) -> str | None:
    ref = state.ref(meta.line, 1)
    if meta.command in ("c", "connect"):
        database, user, problem = _connect_target(meta.args)
        if problem:
            state.connect = Diagnostic(
                "PGD362",
                f"the script reconnects with \\{meta.command} at line {meta.line} and {problem}, "
                "so the database and role pg_cron recorded for this job are unknown: check "
                "it in the live cron.job (--from-db) or write cron.schedule_in_database(...)",
                ref,
            )
            state.database = state.user = None
            return None
        if database is not None:
            state.database = database
        if user is not None:
            state.user = user
        state.role = state.local_role = None  # a new session
        who = f" as {state.user!r}" if user is not None else ""
        state.connect = Diagnostic(
            "PGD260",
            f"the script connects to database {state.database!r}{who} (\\{meta.command}, line "
            f"{meta.line}) before this call, so pg_cron recorded database {state.database!r} "
            "for the job: cron.schedule stores cron.database_name, the only database pg_cron "
            "can be installed in",
            ref,
        )
        return None
    if meta.command == "q" or meta.command == "quit":
        return "quit"
    if meta.command in _FOLLOWS_NOT:
        what = {
            "gexec": "runs the query's results as statements",
            "if": "runs what follows only under a condition",
            "copy": "may load rows into a table",
            "!": "runs a shell command",
        }.get(
            meta.command,
            "includes another file" if meta.command.startswith("i") else "changes what runs",
        )
        state.items.append(
            Unreadable(
                f"line_{meta.line}",
                ref,
                f"psql \\{meta.command} at line {meta.line} {what}, which the reader does not "
                "follow: jobs it schedules are not read and the jobs read may differ. Import "
                "the included or generated statements as their own script, or the live "
                "cron.job with --from-db",
                code="PGD362",
            )
        )
        state.unknown_write(state.jobs, ref, f"psql \\{meta.command}")
        return None
    state.ignored_meta.append(f"\\{meta.command} at line {meta.line}")
    return None
