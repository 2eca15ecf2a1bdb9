"""crontab commands as code steps (``pgdurable.command``, SPEC A.4).

cron runs a line's command with ``/bin/sh -c`` as the line's user (the
crontab's owner, or the user field of a system crontab) on its own host. The
translation runs it as a command step on a pgdurable worker instead, which
is approximate (PGD270): another host and the worker's OS user. A command
without shell syntax runs directly (``backup.sh --full`` is argv
``["backup.sh", "--full"]``, which needs only that program granted); one with
shell syntax (pipes, redirections, variables, globs) runs through
``/bin/sh -c``, which needs the shell granted. The note says what the
operator deploys and what the administrator grants.

Only crontab lines not mapped in ``--tasks`` come here; ``--portable``
output keeps the stub (code steps are not portable).
"""

from __future__ import annotations

from pgdurable import model as m
from pgdurable.diagnostics import Collector
from pgdurable.sqltext import literal
from pgdurable.translators.queue.jobs import QueueJob, Task
from pgdurable.translators.shell import argv, deployment

SHELL = "/bin/sh"


def step(job: QueueJob, task: Task, diag: Collector) -> m.Command | None:
    """The command step of a crontab line, with its PGD270 note; None when it has no command."""
    if task.shell is None or not task.shell.strip():
        return None
    args = argv(task.shell)
    program = args[0]
    deploy = deployment(program)
    role = job.run_as or "ROLE"
    who = f"'{job.run_as}'" if job.run_as else "the crontab's owner"
    shell_note = " (the shell runs the whole line: granting it grants any command)"
    diag.add(
        "PGD270",
        "the command runs as a code step on a pgdurable worker's host, not the crontab's, "
        f"as the worker's OS user, not as {who}; {deploy}, and grant the role the workflow "
        f"runs as: SELECT pgdurable.grant_code({literal(role)}, {literal('command:' + program)})"
        + (shell_note if program == SHELL else ""),
    )
    env = tuple(sorted(task.env)) or None
    return m.Command(args, env)
