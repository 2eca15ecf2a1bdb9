"""crontab files, ``/etc/cron.d`` files and the Graphile Worker crontab.

crontab (Vixie/cronie): a line is ``m h dom mon dow command`` or
``@macro command``; system files put the OS user before the command, which
is also psql's default role. They are told by path (``/etc/crontab``,
``/etc/cron.d/*``), a header comment naming a ``user`` column, content
(every line's sixth field a user name such as ``root`` or ``postgres``
followed by a command), or ``--crontab system``. Without ``CRON_TZ`` cron
used the host's time zone, which the file does not show (PGD206). ``NAME=value`` lines set the
environment of the lines below (``PGDATABASE``, ``PGUSER`` ... reach psql);
``CRON_TZ`` sets the schedule's time zone; ``MAILTO``, ``SHELL``, ``PATH``
are ignored. An unescaped ``%`` ends the command and feeds the rest to it on
standard input (``\\%`` is a literal percent sign), so ``psql %SELECT 1``
works. A line has no name, so the job is named after what it runs (the
``-f`` script, the SQL's first words, or the program) and made unique.

Graphile Worker (``crontab`` at a project root): ``m h dom mon dow
task_identifier ?id=..&fill=..&max=..&queue=..&priority=..&jobKey=..
{payload}``, evaluated in UTC; ``max`` (default 25) attempts with
``exp(min(attempts, 10))`` s between them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qsl

import yaml

from pgdurable.diagnostics import Diagnostic, SourceRef
from pgdurable.translators import yamlguard
from pgdurable.translators.queue import psql
from pgdurable.translators.queue.jobs import Cron, Item, QueueJob, RetryPolicy, Task, Unreadable

FORMAT = "crontab"
GRAPHILE = "graphile"
_ENV_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
_GRAPHILE_TASK = re.compile(
    r"^(?P<task>[A-Za-z_][A-Za-z0-9_:.-]*)(?:\s+\?(?P<opts>\S*))?(?:\s+(?P<payload>\{.*\}))?\s*$"
)
_GRAPHILE_OPTS = {"id", "fill", "max", "queue", "priority", "jobKey", "jobKeyMode"}
IGNORED_ENV = {"MAILTO", "SHELL", "PATH", "HOME", "LOGNAME", "MAILFROM", "RANDOM_DELAY"}


def _split_line(line: str) -> tuple[str, str] | None:
    """(schedule, rest) of a job line; None for a line that is not a job."""
    text = line.strip()
    if text.startswith("@"):
        parts = text.split(None, 1)
        return parts[0], parts[1] if len(parts) > 1 else ""
    parts = text.split(None, 5)
    if len(parts) < 6:
        return None
    return " ".join(parts[:5]), parts[5]


def _job_lines(text: str) -> list[tuple[int, str]]:
    return [
        (n, line)
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#") and not _ENV_LINE.match(line)
    ]


def is_graphile(text: str, path: Path) -> bool:
    """Every job line names a bare task (with ?options or a {payload} somewhere, or
    the file is called ``crontab``): Graphile's format rather than a shell command."""
    rests = [r[1] for _, line in _job_lines(text) if (r := _split_line(line))]
    if not rests or not all(_GRAPHILE_TASK.match(r) for r in rests):
        return False
    return (
        path.name == "crontab"
        and "etc" not in path.parts
        or any("?" in r or "{" in r for r in rests)
    )


def looks_like(text: str) -> bool:
    """Most non-comment lines are cron lines (a few broken ones are reported, not hidden)."""
    lines = _job_lines(text)
    good = [line for _, line in lines if _split_line(line) and re.match(r"[\d*@]", line.strip())]
    return bool(good) and len(good) * 2 >= len(lines)


# Accounts system crontabs commonly run jobs as; a job line's sixth field naming
# one of them (and a command after it) marks a system crontab read by content.
SYSTEM_USERS = {"root", "postgres", "pgsql", "_postgres", "www-data", "nobody", "daemon"}
_USER = re.compile(r"[a-z_][a-z0-9_.-]*\$?")


def user_field(text: str, path: Path, kind: str = "auto") -> str | None:
    """Why the lines have a user field (system crontab), or None (a user's crontab).
    ``kind`` is ``--crontab``: ``system`` or ``user`` decide, ``auto`` looks."""
    if kind != "auto":
        return "--crontab system" if kind == "system" else None
    if "cron.d" in path.parts or (path.name == "crontab" and "etc" in path.parts):
        return "its path (/etc/crontab, /etc/cron.d)"
    if re.search(r"^#.*\bdow\s+user\b", text, re.MULTILINE):
        return "its header comment (m h dom mon dow user command)"
    rests = [r[1].split(None, 1) for _, line in _job_lines(text) if (r := _split_line(line))]
    if rests and all(
        len(words) == 2 and _USER.fullmatch(words[0]) and not words[1].startswith("-")
        for words in rests
    ):
        users = {words[0] for words in rests} & SYSTEM_USERS
        if users:
            return f"its content (the sixth field names the user {sorted(users)[0]})"
    return None


def _unescape_percent(command: str) -> tuple[str, str | None]:
    """crontab's ``%``: (the command, the text fed on stdin or None)."""
    out, i = [], 0
    while i < len(command):
        if command.startswith("\\%", i):
            out.append("%")
            i += 2
        elif command[i] == "%":
            return "".join(out), command[i + 1 :].replace("\\%", "%").replace("%", "\n")
        else:
            out.append(command[i])
            i += 1
    return "".join(out), None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "job"


_NOISE = {"select", "perform", "call", "from", "where", "into", "values", "set", "the", "table"}


_SHELL_WORDS = {"then", "else", "do", "!", "{", "(", "exec", "nice", "time", "command"}
_TESTS = {"if", "elif", "while", "until", "[", "[[", "test", "fi", "done", "esac", "}", ")"}


def _name_for(action: psql.Psql | Task) -> str:
    """A readable, stable name: the -f script, the SQL's main words, or the program."""
    if isinstance(action, Task):
        # The last segment that runs a program: not a test ([ ... ], if ...), not 'fi'.
        segments = [seg.split() for seg in re.split(r"&&|\|\||;", action.name)]
        runs = []
        for seg in segments:
            while seg and seg[0] in _SHELL_WORDS:
                seg = seg[1:]
            if seg and seg[0] not in _TESTS:
                runs.append(seg)
        last = " ".join(runs[-1]) if runs else action.name
        words = [w for w in last.split() if not w.startswith("-") and w not in "()"]
        words = [Path(w).stem if "/" in w else w for w in words[:3]]
        return _slug("-".join(words))
    first = action.parts[0]
    if first.file is not None and first.file.name != "<stdin>":
        return _slug(first.file.stem)
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", first.sql or "")
    return _slug("-".join([w for w in words if w.lower() not in _NOISE][:3]))


def _unique(name: str, used: dict[str, int]) -> str:
    used[name] = used.get(name, 0) + 1
    return name if used[name] == 1 else f"{name}-{used[name]}"


def _env_value(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw


def read(path: Path, text: str, file: str, used: dict[str, int], kind: str = "auto") -> list[Item]:
    """Every line of one crontab; ``kind`` is ``--crontab`` (auto, user, system)."""
    if kind == "auto" and is_graphile(text, path):
        return _read_graphile(text, file, used)
    system = user_field(text, path, kind)
    env: dict[str, str] = {}
    tz: str | None = None
    items: list[Item] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        ref = SourceRef(file, n)
        if match := _ENV_LINE.match(line):
            key, value = match.group(1), _env_value(match.group(2))
            if key == "CRON_TZ":
                tz = value
            elif key not in IGNORED_ENV:
                env[key] = value
            continue
        split = _split_line(line)
        if split is None:
            items.append(
                Unreadable(
                    f"line_{n}",
                    FORMAT,
                    ref,
                    "not a crontab line (five schedule fields or an @macro, then the command)",
                )
            )
            continue
        schedule_text, rest = split
        user = None
        notes: list[Diagnostic] = []
        if system:
            parts = rest.split(None, 1)
            if len(parts) < 2:
                items.append(Unreadable(f"line_{n}", FORMAT, ref, "the line has no command"))
                continue
            user, rest = parts
            notes.append(
                Diagnostic(
                    "PGD242",
                    f"system crontab (told by {system}): the sixth field '{user}' is the OS "
                    "user cron runs the command as, not part of the command; it is psql's "
                    "default role unless the line names one (pass --crontab user if the "
                    "file is a user's crontab)"
                    + (
                        f"; '{user}' is an OS account that rarely exists as a database role: "
                        "add -U ROLE to the psql command (or map the line in --tasks)"
                        if user == "root" and re.search(r"\b(psql|vacuumdb|reindexdb)\b", rest)
                        else ""
                    ),
                    ref,
                )
            )
        if tz is None and not schedule_text.startswith("@reboot"):
            notes.append(
                Diagnostic(
                    "PGD206",
                    "the schedule is evaluated in UTC; cron used the host's time zone "
                    "(/etc/localtime or TZ), which this file does not show: if it was not "
                    "UTC, shift the hours (or set CRON_TZ= above the line and regenerate)",
                    ref,
                )
            )
        command, stdin = _unescape_percent(rest)
        action: psql.Psql | Task
        line_env = dict(env)
        if user:  # cron runs the command as that OS user: psql's default role
            line_env.setdefault("PGUSER", user)
        try:
            found = psql.parse_shell(command, line_env, path.parent, stdin)
            if len(found) > 1:
                raise psql.NotPsql("the line chains several psql commands; map it in --tasks")
            action = found[0][0]
        except psql.NotPsql as exc:
            if stdin is not None:
                cut = command.rstrip()[-30:]
                notes.append(
                    Diagnostic(
                        "PGD308",
                        f"an unescaped % ends the cron command after {cut!r}; cron feeds the "
                        "rest on standard input. If the % belongs to the command (LIKE "
                        "'tmp%', date +%F), write \\% in the crontab and regenerate",
                        ref,
                    )
                )
            if isinstance(exc, psql.ShellExpands):
                notes.append(Diagnostic("PGD225", f"{exc}: it runs as a shell command", ref))
            action = Task(
                " ".join(psql.strip_redirections(command).split()),
                "command",
                shell=command.strip() if stdin is None else None,
                env=tuple(env.items()),
            )
        name = _unique(_name_for(action), used)
        items.append(
            QueueJob(
                name=name,
                format=FORMAT,
                ref=ref,
                schedule=Cron(schedule_text, "vixie", timezone=tz, original=schedule_text),
                action=action,
                run_as=user,
                notes=tuple(notes),
                description=(
                    *((f"cron user: {user}",) if user else ()),
                    f"command: {command.strip()[:80]}",
                ),
                source_line=line,
            )
        )
    return items


def _payload(text: str | None) -> object:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return yamlguard.safe_load(text)  # JSON5's unquoted keys read as a YAML flow mapping


def _read_graphile(text: str, file: str, used: dict[str, int]) -> list[Item]:
    items: list[Item] = []
    for n, line in _job_lines(text):
        ref = SourceRef(file, n)
        split = _split_line(line)
        match = _GRAPHILE_TASK.match(split[1]) if split else None
        if split is None or match is None:
            items.append(Unreadable(f"line_{n}", GRAPHILE, ref, "not a Graphile crontab line"))
            continue
        task = match.group("task")
        opts = dict(parse_qsl(match.group("opts") or "", keep_blank_values=True))
        notes: list[Diagnostic] = []
        for key in opts:
            if key not in _GRAPHILE_OPTS:
                notes.append(Diagnostic("PGD213", f"unknown option '{key}' is ignored", ref))
        try:
            payload = _payload(match.group("payload"))
        except yaml.YAMLError:
            items.append(Unreadable(task, GRAPHILE, ref, "the payload is not JSON5"))
            continue
        if "fill" in opts:
            notes.append(
                Diagnostic(
                    "PGD223",
                    f"fill={opts['fill']}: Graphile backfills runs missed within that "
                    "period; the workflow does not catch up",
                    ref,
                )
            )
        for key in ("queue", "priority", "jobKey"):
            if key in opts:
                notes.append(
                    Diagnostic("PGD225", f"{key}={opts[key]} has no effect on the workflow", ref)
                )
        attempts = int(opts.get("max", 25))
        retry = RetryPolicy(
            attempts,
            3,
            2.718281828459045,
            22026,
            origin=f"max={attempts}" if "max" in opts else "Graphile's default max=25",
            approximate=(
                "Graphile waits exp(min(attempts, 10)) s between attempts; the workflow "
                "starts at 3 s and multiplies by e, up to 22026 s"
            ),
        )
        items.append(
            QueueJob(
                name=_unique(_slug(opts.get("id") or task), used),
                format=GRAPHILE,
                ref=ref,
                schedule=Cron(split[0], "vixie", original=split[0]),
                action=Task(task, "graphile task"),
                args=payload if payload is not None else {},
                retry=retry,
                notes=tuple(notes),
                description=(f"task: {task}",),
            )
        )
    return items
