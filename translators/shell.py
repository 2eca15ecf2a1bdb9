"""Whether a shell command line needs the shell, and its argv when it does not.

A line with no shell syntax (no quoting, expansion, redirection, globbing,
chaining) means the same split on whitespace as ``sh -c`` makes of it, so a
command step can run the program directly and only that program needs
granting (SPEC A.4 code steps). Any other line runs through a shell.
"""

from __future__ import annotations

SHELL_SYNTAX = frozenset("|&;<>()$`\\*?[]#~=%!{}\n'\"")
# Commands only the shell has (no program of that name on PATH): `exit 0` or
# `cd /tmp` run as a program would fail with "not found".
SHELL_BUILTINS = frozenset(
    ". : alias bg break builtin cd command continue declare eval exec exit export fg "
    "getopts hash jobs let local read readonly return set shift source times trap type "
    "typeset ulimit umask unalias unset wait".split()
)


def argv(command: str, shell: str = "/bin/sh") -> tuple[str, ...]:
    """The program and its arguments, or ``(shell, "-c", command)`` when the shell is needed."""
    words = command.split()
    if words and words[0] not in SHELL_BUILTINS and not SHELL_SYNTAX & set(command):
        return tuple(words)
    return (shell, "-c", command)


def deployment(program: str) -> str:
    """What the worker's operator does so a command step can find ``program``."""
    if program.startswith("/"):
        return f"allow it on the worker with --allow-program {program}"
    if "/" in program:
        return f"deploy {program} under a --code-path root of the worker"
    return (
        f"deploy {program} under a --code-path root of the worker or allow its absolute "
        f"path with --allow-program (e.g. /usr/bin/{program})"
    )
