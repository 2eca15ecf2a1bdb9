"""Code steps in a verification: the code the replay's worker may run, and the grants.

A workflow with Python or command steps (SPEC A.4) needs, on the new side,
what a deployment needs: a worker with code roots (``verify --code-path``;
by default the folder of the generated file given with ``--workflow``, when
it holds Python modules: ``import-airflow``
writes its task modules there) and the programs the
command steps name (``verify --allow-program``; bare names such as ``echo``
are also allowed as the ``PATH`` resolves them, which is what the reference
side does when a real Airflow runs the same command on this host), and the
replay role's ``pgdurable.grant_code``. The grants are made for everything
(``python:*``, ``command:*``) inside the throwaway clone only; what can run is
still bounded by the roots and programs, and the report says which.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from pgdurable import db
from pgdurable.errors import VerificationError
from pgdurable.worker.code_roots import CodeConfig

# DSL text (``pgdurable.command(ARRAY['echo', ...``) and graph JSON at any escaping
_DSL_PROGRAM = re.compile(r"pgdurable\.command\(\s*ARRAY\[\s*'((?:[^']|'')+)'")
_JSON_PROGRAM = re.compile(r'argv\\*"\s*:\s*\[\s*\\*"((?:[^"\\]|\\\\)+)\\*"')
_CODE_STEP = re.compile(
    r"pgdurable\.(?:python|command)\(|node_type\\*\"\s*:\s*\\*\"(?:PYTHON|COMMAND)"
)


@dataclass(frozen=True)
class Setup:
    config: CodeConfig
    note: str

    def worker_args(self) -> tuple[str, ...]:
        """The same settings as ``pgdurable worker`` options (a chaos run's workers)."""
        args: list[str] = []
        for root in self.config.roots:
            args += ["--code-path", root]
        for program in self.config.allowed_programs:
            args += ["--allow-program", program]
        return tuple(args)


def has_code_steps(text: str) -> bool:
    return bool(_CODE_STEP.search(text))


def programs(text: str) -> list[str]:
    """The programs the generated file's command steps start (first argv word)."""
    found = [p.replace("''", "'") for p in _DSL_PROGRAM.findall(text)]
    found += [p.replace("\\\\", "\\") for p in _JSON_PROGRAM.findall(text)]
    return sorted(set(found))


def default_roots(generated: Path | None) -> list[Path]:
    """The folder of a generated file given with ``--workflow`` (an import's output
    folder) when it holds Python modules (task modules); none otherwise."""
    if generated is None:
        return []
    folder = generated.parent
    return [folder] if any(folder.rglob("*.py")) else []


def _allowed(names: list[str], given: list[str]) -> list[str]:
    """``given`` plus the absolute path of each bare program name the PATH finds."""
    allowed = list(given)
    for name in names:
        if "/" in name:
            if os.path.isabs(name) and os.path.isfile(name):
                allowed.append(name)
            continue  # a relative path runs from a code root
        found = shutil.which(name)
        if found:
            allowed.append(os.path.realpath(found))
    return sorted(set(allowed))


def prepare(
    text: str,
    generated: Path | None,
    code_paths: list[Path],
    allow_programs: list[str],
    conninfo_admin: str,
    role: str,
) -> Setup | None:
    """Grant ``role`` code steps in the clone and build the worker's code settings;
    None when the generated file has no code step. ``generated``: the ``--workflow``
    file, if one was given."""
    if not has_code_steps(text):
        return None
    roots = code_paths or default_roots(generated)
    try:
        config = CodeConfig.build([str(r) for r in roots], _allowed(programs(text), allow_programs))
    except ValueError as exc:
        raise VerificationError(f"--code-path/--allow-program: {exc}") from exc
    with db.connection(conninfo_admin, autocommit=True) as conn:
        for pattern in ("python:*", "command:*"):
            conn.execute("SELECT pgdurable.grant_code(%s::regrole, %s)", [role, pattern])
    note = (
        f"code steps ran on the verify worker with code roots {config.describe_roots()} and "
        f"programs {', '.join(config.allowed_programs) or 'none'}; the replay role {role} "
        "was granted python:* and command:* in the clone only"
    )
    return Setup(config, note)
