"""Check untrusted Python source with CPython's parser before LibCST reads it.

LibCST's native parser has no nesting limit of its own: a DAG or Celery
config holding ``x = ----…1``, ``1+1+…`` or ``f()()…`` a few ten thousand
times deep crashes the whole process with a segmentation fault (no
diagnostic, no report, and a batch loses every other file). CPython's
parser refuses such input cleanly (SyntaxError "too many nested
parentheses", RecursionError or MemoryError), so the translators parse with
it first, never executing anything, and report its refusal as the file's
parse error.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    """Why CPython's parser refused the source; ``line``/``column`` are 1-based."""

    message: str
    line: int | None = None
    column: int | None = None


def refusal(code: str, file: str = "<source>") -> Refusal | None:
    """None when CPython parses ``code``; else why not."""
    try:
        ast.parse(code, filename=file)
    except SyntaxError as exc:
        return Refusal(exc.msg, exc.lineno, exc.offset)
    except (RecursionError, MemoryError):
        return Refusal("the code is nested too deeply to read; simplify the expression")
    except ValueError as exc:  # e.g. NUL bytes in the source
        return Refusal(str(exc))
    return None
