"""Standard-library calls whose value the DAG reader computes without running the file.

A ``bash_command`` is often built at module level from literals:
``textwrap.dedent(\"\"\"...\"\"\")``, ``os.path.join("/opt", "run.sh")``,
``" && ".join([...])``. These functions are pure and their result depends only
on their (literal) arguments, so evaluating them here gives the value Airflow's
import gives. Anything else stays ``Unknown`` (the task names the expression).
"""

from __future__ import annotations

import posixpath
import shlex
import textwrap
from typing import Any

# qualified name -> the function (POSIX paths: Airflow workers run on POSIX hosts)
PURE = {
    "textwrap.dedent": textwrap.dedent,
    "textwrap.indent": textwrap.indent,
    "os.path.join": posixpath.join,
    "posixpath.join": posixpath.join,
    "os.path.basename": posixpath.basename,
    "os.path.dirname": posixpath.dirname,
    "shlex.quote": shlex.quote,
    "shlex.join": shlex.join,
}
_NOT_HANDLED = object()


def evaluate(qname: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """The call's value, or ``NOT_HANDLED`` when ``qname`` is not a pure function here
    or an argument is not a plain literal (str, int, list of str)."""
    function = PURE.get(qname)
    if function is None:
        return _NOT_HANDLED
    values = [*args, *kwargs.values()]
    if not all(_plain(v) for v in values):
        return _NOT_HANDLED
    try:
        return function(*args, **kwargs)
    except (TypeError, ValueError):
        return _NOT_HANDLED


def _plain(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(isinstance(v, str) for v in value)
    return isinstance(value, str | int) and not isinstance(value, bool)


NOT_HANDLED = _NOT_HANDLED
