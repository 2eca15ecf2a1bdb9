"""psql invocations in shell commands: reading them and turning them into steps.

Kubernetes containers and crontab lines run shell commands; the ones this
translator can carry over run ``psql -c`` / ``psql -f``, or ``vacuumdb`` /
``reindexdb`` (``maintenance``: the SQL they send). ``parse_shell``
reads a command line (a chain of simple commands joined by ``&&`` or ``;``,
with ``VAR=value`` prefixes, ``export``, ``exec``, ``env`` and output
redirections, which are dropped) into ``Psql`` records, or says why it
cannot. ``parse_psql`` follows psql's own option rules: short options may be
grouped (``-Atc``), ``-d`` may be a conninfo string or a URI, the first two
positional arguments are the database and the user, and ``PGDATABASE`` /
``PGUSER`` / ``PGHOST`` apply when no option says otherwise.

``steps`` maps what psql does onto workflow steps:

* a ``-c`` string is one simple query (``sqlcommand.command_steps``, the
  same rules as pg_cron);
* a ``-f`` script runs statement by statement, each committing on its own
  unless inside ``BEGIN ... COMMIT`` (one atomic step then); psql variables
  given with ``-v`` are substituted (``:name``, ``:'name'``, ``:"name"``);
* ``-1`` makes everything one transaction;
* without ``ON_ERROR_STOP`` psql carries on after a failing statement and
  exits 0, so each such step is wrapped in ``pgdurable.try`` (PGD220 with
  ``--portable``, where that wrapper does not exist).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote, urlparse

from pgdurable import model as m
from pgdurable.diagnostics import Collector
from pgdurable.sqltext import SqlLexError, is_transaction_control, split_statements, tokenize
from pgdurable.translators import session
from pgdurable.translators.queue.jobs import Psql, PsqlPart
from pgdurable.translators.sqlcommand import Runner, command_steps, looks_invalid

PSQL_C = Runner("psql -c", "as psql commits them")
# psql's getopt string: these short options take a value.
_SHORT_WITH_VALUE = set("cdfFhLopPRTUv")
_LONG_WITH_VALUE = {
    "command": "c",
    "file": "f",
    "dbname": "d",
    "host": "h",
    "port": "p",
    "username": "U",
    "set": "v",
    "variable": "v",
    "output": "o",
    "log-file": "L",
    "field-separator": "F",
    "record-separator": "R",
    "pset": "P",
    "table-attr": "T",
}
_SHELLS = {"sh", "bash", "dash", "ash", "zsh"}
_TRUE = {"1", "on", "true", "yes", "t", "y"}
_LIBPQ_ENV = (("dbname", "PGDATABASE"), ("user", "PGUSER"), ("host", "PGHOST"))


class NotPsql(ValueError):
    """The command does something other than run psql (the reason says what)."""


def strip_redirections(text: str) -> str:
    """The command without ``> file``, ``2>&1``, ``< file`` outside quotes."""
    out, i, quote = [], 0, None
    pattern = re.compile(r"\d?(?:>>|>|<)&?\s*[^\s;&|]+")
    while i < len(text):
        c = text[i]
        if quote:
            if c == quote:
                quote = None
            elif c == "\\" and quote == '"':
                out.append(c)
                i += 1
                c = text[i] if i < len(text) else ""
            out.append(c)
            i += 1
            continue
        if c in "'\"":
            quote = c
        elif c == "\\":
            out.append(text[i : i + 2])
            i += 2
            continue
        match = pattern.match(text, i)
        if match and (i == 0 or text[i - 1].isspace() or c in "<>" or text[i - 1] in ";&|"):
            out.append(" ")
            i = match.end()
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _expand(value: str, env: dict[str, str]) -> str:
    """``$VAR``, ``${VAR}`` and Kubernetes' ``$(VAR)`` from known variables."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return env.get(name, match.group(0))

    return re.sub(r"\$\(([A-Za-z_]\w*)\)|\$\{([A-Za-z_]\w*)\}|\$([A-Za-z_]\w*)", sub, value)


def _conninfo(value: str) -> dict[str, str]:
    """dbname/user/host from a URI or a ``key=value`` conninfo string; {} for a plain name."""
    if re.match(r"postgres(ql)?://", value):
        url = urlparse(value)
        found = {"dbname": unquote(url.path.lstrip("/")), "user": unquote(url.username or "")}
        found["host"] = url.hostname or ""
        return {k: v for k, v in found.items() if v}
    if "=" in value:
        return {k: v for k, v in re.findall(r"(\w+)\s*=\s*'?([^'\s]*)'?", value)}
    return {}


def parse_psql(
    argv: list[str], env: dict[str, str], base_dir: Path, stdin: str | None = None
) -> Psql:
    """One psql command line (argv[0] is psql); raises NotPsql for what cannot be read.
    ``stdin`` is a script fed on standard input (crontab's ``%``), run like ``-f``."""
    options: list[tuple[str, str | None]] = []
    positional: list[str] = []
    args = [_expand(a, env) for a in argv[1:]]
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--") and len(a) > 2:
            name, eq, value = a[2:].partition("=")
            short = _LONG_WITH_VALUE.get(name)
            if short is not None:
                if not eq:
                    i += 1
                    if i >= len(args):
                        raise NotPsql(f"psql option --{name} needs a value")
                    value = args[i]
                options.append((short, value))
            elif name == "single-transaction":
                options.append(("1", None))
        elif a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                flag = a[j]
                if flag in _SHORT_WITH_VALUE:
                    value = a[j + 1 :]
                    if not value:
                        i += 1
                        if i >= len(args):
                            raise NotPsql(f"psql option -{flag} needs a value")
                        value = args[i]
                    options.append((flag, value))
                    break
                options.append((flag, None))
                j += 1
        else:
            positional.append(a)
        i += 1

    info = {key: env[name] for key, name in _LIBPQ_ENV if env.get(name)}
    for index, value in enumerate(positional[:2]):
        if index == 0:
            info.update(_conninfo(value) or {"dbname": value})
        else:
            info["user"] = value
    variables: dict[str, str] = {}
    parts: list[PsqlPart] = []
    single = False
    for flag, value in options:
        assert value is not None or flag not in _SHORT_WITH_VALUE
        if flag == "d" and value is not None:
            info.update(_conninfo(value) or {"dbname": value})
        elif flag == "U" and value is not None:
            info["user"] = value
        elif flag == "h" and value is not None:
            info["host"] = value
        elif flag == "v" and value is not None:
            name, _, var = value.partition("=")
            variables[name] = var
        elif flag == "1":
            single = True
        elif flag == "c" and value is not None:
            parts.append(PsqlPart(value))
        elif flag == "f" and value is not None:
            if value == "-":
                raise NotPsql("psql -f - reads the script from standard input")
            path = Path(value) if Path(value).is_absolute() else base_dir / value
            if path.is_file():
                script = _set_lines(path.read_text(encoding="utf-8"), variables)
                parts.append(PsqlPart(script, file=path))
            else:
                parts.append(PsqlPart(None, file=path, missing=True))
    if not parts and stdin is not None:
        script = _set_lines(stdin, variables)
        parts.append(PsqlPart(script, file=Path("<stdin>")))
    if not parts:
        raise NotPsql("psql without -c or -f (an interactive session or a script on stdin)")
    for unresolved in (info.get("dbname", ""), info.get("user", ""), info.get("host", "")):
        if unresolved.startswith("$"):
            raise NotPsql(
                f"the connection comes from {unresolved}, which is not set in the source; "
                "map the job in --tasks or set the variable in the file"
            )
    defaulted = "dbname" not in info and "user" in info
    if defaulted:
        info["dbname"] = info["user"]  # libpq's default database is the user name
    stop = variables.get("ON_ERROR_STOP", "").lower() in _TRUE
    settings, caveats = session.env_settings(env)
    return Psql(
        tuple(parts),
        database=info.get("dbname"),
        user=info.get("user"),
        host=info.get("host"),
        single_transaction=single,
        on_error_stop=stop,
        settings=tuple(settings),
        caveats=tuple(caveats),
        database_is_user=defaulted,
    )


def parse_maintenance(argv: list[str], env: dict[str, str]) -> Psql:
    """A vacuumdb or reindexdb command line as the SQL it sends; raises NotPsql."""
    # Imported here: maintenance builds on this module's connection rules.
    from pgdurable.translators.queue import maintenance

    info = {key: env[name] for key, name in _LIBPQ_ENV if env.get(name)}
    args = [_expand(a, env) for a in argv[1:]]
    try:
        found = maintenance.parse(Path(argv[0]).name, args, info, _conninfo)
    except maintenance.NotTranslated as exc:
        raise NotPsql(str(exc)) from exc
    for unresolved in (found.database or "", found.user or "", found.host or ""):
        if unresolved.startswith("$"):
            raise NotPsql(
                f"the connection comes from {unresolved}, which is not set in the source; "
                "map the job in --tasks or set the variable in the file"
            )
    settings, caveats = session.env_settings(env)
    return replace(found, settings=tuple(settings), caveats=found.caveats + tuple(caveats))


def _set_lines(script: str, variables: dict[str, str]) -> str:
    """The script with its ``\\set NAME VALUE`` lines applied to ``variables`` (in
    place: ``\\set ON_ERROR_STOP on`` counts like ``-v``) and removed, then substituted."""
    kept = []
    for line in script.splitlines():
        match = re.match(r"\s*\\set\s+(\w+)\s*(.*?)\s*$", line)
        if match:
            variables[match.group(1)] = match.group(2).strip("'")
        else:
            kept.append(line)
    return substitute_variables("\n".join(kept), variables)


def substitute_variables(script: str, variables: dict[str, str]) -> str:
    """psql's ``:name`` / ``:'name'`` / ``:"name"`` for the given variables,
    outside string literals and comments (undefined names stay, as in psql)."""
    if not variables:
        return script
    try:
        tokens = tokenize(script)
    except SqlLexError:
        return script
    out: list[str] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if t.text == ":" and nxt is not None:
            if nxt.kind == "ident" and nxt.text in variables:
                out.append(variables[nxt.text])
                i += 2
                continue
            if nxt.kind == "string" and nxt.text.startswith("'") and nxt.value in variables:
                out.append("'" + variables[nxt.value or ""].replace("'", "''") + "'")
                i += 2
                continue
            if nxt.kind == "qident" and nxt.value in variables:
                out.append('"' + variables[nxt.value or ""].replace('"', '""') + '"')
                i += 2
                continue
        out.append(t.text)
        i += 1
    return "".join(out)


class ShellExpands(NotPsql):
    """The shell replaces part of the command at run time ($VAR, $(...), backticks)."""


_ASSIGNED = re.compile(r"(?:^|[\s;&|])(?:export\s+)?([A-Za-z_]\w*)=")


def shell_expansion(command: str, env: dict[str, str]) -> str | None:
    """The first expansion /bin/sh performs in ``command`` that the source does not
    resolve (a variable neither in ``env`` nor assigned in the command itself, a
    command substitution, a backtick, a special parameter), or None. Single quotes
    and backslashes protect, as in sh."""
    known = set(env) | set(_ASSIGNED.findall(command))
    quote: str | None = None
    i = 0
    while i < len(command):
        c = command[i]
        if quote == "'":
            if c == "'":
                quote = None
            elif c == "$":
                # sh leaves it alone, but psql's argument reader would substitute it
                name = re.match(r"\{?([A-Za-z_]\w*)", command[i + 1 :])
                if name and name.group(1) in known:
                    return (
                        f"${name.group(1)} inside single quotes reaches psql as written, "
                        "which this reader cannot keep apart from the substituted ones"
                    )
            i += 1
            continue
        if c == "\\":
            i += 2
            continue
        if c == "'" and quote is None:
            quote = "'"
        elif c == '"':
            quote = None if quote == '"' else '"'
        elif c == "`":
            return "the shell expands a backtick command substitution at run time"
        elif c == "$" and i + 1 < len(command):
            rest = command[i + 1 :]
            if rest.startswith("("):
                found = command[i : i + 30]
                return f"the shell expands the command substitution {found!r} at run time"
            name = re.match(r"\{([A-Za-z_]\w*)\}|([A-Za-z_]\w*)", rest)
            if name:
                var = name.group(1) or name.group(2)
                if var not in known:
                    return (
                        f"the shell expands ${var} at run time, which the crontab does not set "
                        "(the shell or cron sets it)"
                    )
                i += 1 + name.end()
                continue
            if rest.startswith("{"):
                return (
                    f"the shell expands the parameter expansion {command[i : i + 30]!r} at run time"
                )
            if rest[0] in "$?!#*@-0123456789":
                return f"the shell expands the special parameter ${rest[0]} at run time"
        i += 1
    return None


def _kube_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' own ``$(VAR)`` in a container's command and args (before any shell)."""
    return re.sub(
        r"(?<!\$)\$\(([A-Za-z_]\w*)\)",
        lambda match: env.get(match.group(1), match.group(0)),
        text,
    )


def parse_shell(
    command: str | list[str], env: dict[str, str], base_dir: Path, stdin: str | None = None
) -> list[tuple[Psql, bool]]:
    """The psql invocations of a command, each with "continue after failure"
    (joined by ``;``). Raises NotPsql when the command does anything else, and
    ShellExpands when the shell changes the command at run time (so the SQL
    text is not known)."""
    env = dict(env)
    if isinstance(command, list):
        name = Path(command[0]).name if command else ""
        if name in _SHELLS and len(command) >= 3 and command[1] in ("-c", "-ec", "-ce"):
            return parse_shell(_kube_expand(command[2], env), env, base_dir)
        if name == "psql":
            return [(parse_psql(command, env, base_dir), False)]
        if name in ("vacuumdb", "reindexdb"):
            return [(parse_maintenance(command, env), False)]
        raise NotPsql(f"the container runs {command[0] if command else 'nothing'}, not psql")
    if (expansion := shell_expansion(command, env)) is not None:
        raise ShellExpands(f"{expansion}, so the SQL it sends is not known here")
    lexer = shlex.shlex(strip_redirections(command), posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError as exc:
        raise NotPsql(f"the shell command cannot be split ({exc})") from exc
    chains: list[tuple[list[str], str]] = [([], "")]
    for token in tokens:
        if token in ("&&", ";"):
            chains.append(([], token))
        elif set(token) <= set(";&|"):
            raise NotPsql(f"the shell command uses '{token}' (pipes or background jobs)")
        else:
            chains[-1][0].append(token)
    found: list[tuple[Psql, bool]] = []
    for index, (words, _sep) in enumerate(chains):
        while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
            key, _, value = words.pop(0).partition("=")
            env[key] = _expand(value, env)
        if not words:
            continue
        head = Path(words[0]).name
        if head in ("exec", "env", "nice", "time", "command"):
            words = words[1:]
            while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
                key, _, value = words.pop(0).partition("=")
                env[key] = _expand(value, env)
            head = Path(words[0]).name if words else ""
        if head == "export":
            for word in words[1:]:
                key, _, value = word.partition("=")
                env[key] = _expand(value, env)
            continue
        if head in ("cd", "true", ":", "set", "echo", "printf", "date"):
            continue  # no effect on the database
        if head in _SHELLS and len(words) >= 3 and words[1] == "-c":
            found += parse_shell(words[2], env, base_dir)
            continue
        next_sep = chains[index + 1][1] if index + 1 < len(chains) else ""
        if head in ("vacuumdb", "reindexdb"):
            found.append((parse_maintenance(words, env), next_sep == ";"))
            continue
        if head != "psql":
            raise NotPsql(f"'{' '.join(words)}' is not a psql command")
        found.append((parse_psql(words, env, base_dir, stdin), next_sep == ";"))
    if not found:
        raise NotPsql("the command runs no psql")
    return found


# -- steps -------------------------------------------------------------------------


def _script_steps(
    script: str, where: str, diag: Collector, portable: bool
) -> tuple[list[m.Node], bool] | None:
    """A -f script's steps: one per statement, BEGIN...COMMIT blocks atomic."""
    meta = [line for line in script.splitlines() if line.lstrip().startswith("\\")]
    if meta:
        diag.add(
            "PGD308",
            f"{where} uses psql meta-commands ({meta[0].strip()[:40]}), which only psql "
            "understands; they were left out: replace them with SQL, then set start => true",
        )
        script = "\n".join(
            line for line in script.splitlines() if not line.lstrip().startswith("\\")
        )
    try:
        statements = split_statements(script)
    except SqlLexError as exc:
        diag.add("PGD103", f"{where} cannot be lexed: {exc.reason} (line {exc.line})")
        return None
    if not statements:
        diag.add("PGD103", f"{where} holds no SQL statement")
        return None
    for st in statements:
        if problem := looks_invalid(st):
            diag.add(
                "PGD303",
                f"statement {st.text[:60]!r} in {where} may not be valid SQL ({problem}); "
                "check it, then set start => true",
            )
    groups: list[list] = []
    block: list | None = None
    for st in statements:
        if is_transaction_control(st):
            if st.words[:1] in (("begin",), ("start",)):
                block = []
            elif block is not None:
                groups.append(block)
                block = None
        elif block is not None:
            block.append(st)
        else:
            groups.append([st])
    if block:  # psql rolls back a transaction left open at the end of the script
        diag.add(
            "PGD303",
            f"{where} opens a transaction it never commits; psql rolls it back at exit. "
            "The workflow commits it: check the script, then set start => true",
        )
        groups.append(block)
    steps: list[m.Node] = []
    multi = False
    for group in [g for g in groups if g]:
        if len(group) == 1:
            steps.append(m.Sql(group[0].text))
        elif portable:
            diag.add(
                "PGD203",
                f"--portable: a BEGIN...COMMIT block of {len(group)} statements in {where} "
                "runs as separate steps; drop --portable to keep it atomic",
            )
            steps += [m.Sql(s.text) for s in group]
        else:
            steps.append(m.Sql(";\n".join(s.text for s in group)))
            multi = True
    return steps, multi


def _continue_on_error(steps: list[m.Node], what: str, diag: Collector, portable: bool):
    """psql without ON_ERROR_STOP runs on after a failing statement: try-wrap each step."""
    if len(steps) < 2:
        return steps
    if portable:
        diag.add(
            "PGD220",
            f"--portable: psql (no ON_ERROR_STOP) carries on after a failing {what}; the "
            "workflow stops at the first failure. Add -v ON_ERROR_STOP=1 to the source "
            "command, or drop --portable",
        )
        return steps
    return [m.Try(s, m.Sleep(0)) for s in steps[:-1]] + [steps[-1]]


def steps(psql: Psql, diag: Collector, portable: bool) -> tuple[m.Node, bool] | None:
    """The invocation as one node, and whether it needs the pgdurable profile."""
    missing = [p for p in psql.parts if p.missing]
    if missing:
        diag.add(
            "PGD310",
            f"psql -f {missing[0].file}: the file does not exist (paths are resolved "
            "relative to the source file); add it and regenerate",
        )
        return None
    result = _session_steps(psql, diag, portable)
    if result is None:
        return None
    node, multi = result
    # One psql session: its settings (SET, PGOPTIONS, PGTZ) hold in every later step.
    base = {name.lower(): session.local_setting(name, value) for name, value in psql.settings}
    node, prefixed = session.carry(node, diag, psql.program, portable=portable, base=base)
    return node, multi or prefixed or m.uses_extensions(node)


def _session_steps(psql: Psql, diag: Collector, portable: bool) -> tuple[m.Node, bool] | None:
    if psql.single_transaction:
        text = ";\n".join((p.sql or "").strip().rstrip(";") for p in psql.parts)
        return command_steps(
            text, Runner("psql -1", "as psql commits them"), diag, portable=portable
        )
    nodes: list[m.Node] = []
    multi = False
    for part in psql.parts:
        if part.file is None:
            result = command_steps(part.sql or "", PSQL_C, diag, portable=portable)
            if result is None:
                return None
            nodes.append(result[0])
            multi = multi or result[1]
        else:
            where = f"psql -f {part.file.name}"
            script = _script_steps(part.sql or "", where, diag, portable)
            if script is None:
                return None
            part_steps, part_multi = script
            if not psql.on_error_stop:
                part_steps = _continue_on_error(part_steps, "statement", diag, portable)
            nodes += part_steps
            multi = multi or part_multi
    if len(psql.parts) > 1 and not psql.on_error_stop and all(p.file is None for p in psql.parts):
        nodes = _continue_on_error(nodes, "-c command", diag, portable)
    node = nodes[0] if len(nodes) == 1 else m.Seq(tuple(nodes))
    return node, multi
