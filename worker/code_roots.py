"""Where code steps' code comes from: the code roots and allowed programs the
worker's operator configured (``--code-path``, ``--allow-program``).

Code is never read from the database. A node names a callable or a program;
this module finds it on the worker's disk or says where it looked:

- a program given as a relative path (``bin/report.sh``) is looked up in each
  code root in order; its real path (symlinks resolved) must stay inside that
  root, be a file and be executable;
- an absolute program runs only when the operator allowed exactly that path
  with ``--allow-program``; a bare name (``psql``) also matches an allowed
  program of that name when no code root has it;
- ``..`` components are refused outright (the grant patterns match the
  program as written, so ``bin/../x`` must never reach them).

Python callables are resolved by the child process (``code_runner``), which
refuses a module whose file is not under a code root.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

CALLABLE = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
)
DEFAULT_TAIL_BYTES = 4096

# Variables that make a granted program load other code than its own.
# Refused in a node's env, so a grant of a program stays a grant of that program.
LOADER_VARIABLES = re.compile(
    r"(LD_|DYLD_|PYTHON|PERL5|PERLLIB|RUBY|NODE_|BASH_FUNC_).*|BASH_ENV|ENV|IFS"
)
# What a child inherits from the worker's environment (as cron gives a job a
# small environment); the worker's own settings, libpq's among them, are not passed.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME", "TMPDIR")


class CodeNotFound(Exception):
    """A program or callable is not where the code roots say it should be."""


def within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


@dataclass(frozen=True)
class CodeConfig:
    """The worker's code roots, allowed programs and limits for code steps."""

    roots: tuple[str, ...] = ()  # real paths of directories
    allowed_programs: tuple[str, ...] = ()  # absolute, normalised
    memory_limit_bytes: int | None = None  # RLIMIT_AS of each child
    tail_bytes: int = DEFAULT_TAIL_BYTES

    @classmethod
    def build(
        cls,
        code_paths: tuple[str, ...] | list[str] = (),
        allow_programs: tuple[str, ...] | list[str] = (),
        memory_limit_mb: int | None = None,
    ) -> CodeConfig:
        """Validated settings; ``ValueError`` says which one is wrong and why."""
        roots = []
        for path in code_paths:
            if not path:
                continue
            if not os.path.isdir(path):
                raise ValueError(f"code path {path} is not a directory")
            roots.append(os.path.realpath(path))
        programs = []
        for program in allow_programs:
            if not os.path.isabs(program):
                raise ValueError(f"allowed program {program} must be an absolute path")
            if not (os.path.isfile(program) and os.access(program, os.X_OK)):
                raise ValueError(f"allowed program {program} is not an executable file")
            programs.append(os.path.normpath(program))
        if memory_limit_mb is not None and memory_limit_mb <= 0:
            raise ValueError("the code memory limit must be a positive number of MiB")
        limit = None if memory_limit_mb is None else memory_limit_mb * 1024 * 1024
        return cls(tuple(roots), tuple(programs), limit)

    def describe_roots(self) -> str:
        return (
            ", ".join(self.roots) if self.roots else "none (start the worker with --code-path DIR)"
        )

    def resolve_program(self, program: str) -> tuple[str, str | None]:
        """(executable path, the code root it lies in or None for an allowed program)."""
        if not program or "\0" in program:
            raise CodeNotFound("the program (argv[0]) is empty")
        if ".." in Path(program).parts:
            raise CodeNotFound(
                f"program {program!r} contains a '..' component;"
                " name it by its path inside a code root"
            )
        if os.path.isabs(program):
            if os.path.normpath(program) in self.allowed_programs:
                return os.path.normpath(program), None
            raise CodeNotFound(
                f"program {program} is an absolute path the worker's operator did not allow"
                f" (--allow-program); allowed: {', '.join(self.allowed_programs) or 'none'};"
                f" code roots: {self.describe_roots()}"
            )
        searched = []
        for root in self.roots:
            candidate = os.path.join(root, program)
            searched.append(candidate)
            real = os.path.realpath(candidate)
            if not os.path.lexists(candidate):
                continue
            if not within(real, root):
                raise CodeNotFound(
                    f"program {program} in code root {root} resolves to {real},"
                    " outside the code root"
                )
            if os.path.isfile(real) and os.access(real, os.X_OK):
                return real, root
            raise CodeNotFound(f"program {candidate} is not an executable file")
        if "/" not in program:
            for allowed in self.allowed_programs:
                if os.path.basename(allowed) == program:
                    return allowed, None
        raise CodeNotFound(
            f"command not found: {program} (searched: {', '.join(searched) or 'no code roots'};"
            f" allowed programs: {', '.join(self.allowed_programs) or 'none'})"
        )

    def working_directory(self, cwd: str | None, root: str | None) -> str:
        """The child's directory: ``cwd`` (relative to the program's code root), or that root."""
        base = root or (self.roots[0] if self.roots else "/")
        if cwd is None or cwd == "":
            return base
        path = os.path.join(base, cwd)
        if not os.path.isdir(path):
            raise CodeNotFound(f"working directory {path} does not exist")
        return path


def child_environment(extra: dict[str, str], context: dict[str, str]) -> dict[str, str]:
    """The environment of a code step: a few inherited variables, the step's
    context (``PGDURABLE_*``), then the node's own ``env``."""
    for name in extra:
        if LOADER_VARIABLES.fullmatch(name) or "=" in name or not name:
            raise CodeNotFound(
                f"env variable {name!r} is not allowed in a code step: it would make the"
                " program load other code than what is deployed"
            )
    env = {name: os.environ[name] for name in INHERITED if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(context)
    env.update(extra)
    return env
