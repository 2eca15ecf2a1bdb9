"""The child process of a code step: ``python -I -m pgdurable.worker.code_runner FD``.

The worker writes one JSON request to our stdin and reads one JSON answer
from file descriptor FD (a pipe of its own), so whatever user code prints on
stdout or stderr can never be mistaken for the result. Two modes:

- ``python``: put the code roots first on ``sys.path``, import the module,
  check that its file lies under a code root (a module found elsewhere, such
  as the standard library's ``os``, is refused), call the function with the
  JSON args and kwargs (awaiting it if it is a coroutine), and answer
  ``{"result": value}``, or ``{"error": ...}`` with the exception (its
  traceback also goes to stderr, whose tail the node keeps);
- ``exec``: replace this process with the program (``os.execve``). The
  answer pipe is closed on exec, so the worker learns that the exec worked
  from an empty answer, and the exit code is the program's own.

Either way a memory limit (``RLIMIT_AS``) is set first when the worker has
one, and the process is the leader of its own process group, which the worker
kills as a whole on timeout, cancel and shutdown. Only the standard library
is imported here before user code runs.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import resource
import sys
import traceback
from typing import Any


def _answer(fd: int, answer: dict[str, Any]) -> None:
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(json.dumps(answer))


def _limit_memory(limit: int | None) -> None:
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _within(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _load(target: str, roots: list[str]) -> Any:
    module_name, _, attribute = target.partition(":")
    sys.path[:0] = roots
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            searched = ", ".join(roots) or "(none)"
            raise LookupError(
                f"module {module_name} not found under the code roots {searched}"
            ) from None
        raise
    location = getattr(module, "__file__", None)
    real = os.path.realpath(location) if location else None
    if real is None or not _within(real, roots):
        raise LookupError(
            f"module {module_name} resolves to {real or 'a namespace package'}, outside the"
            f" code roots {', '.join(roots) or '(none)'}"
        )
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise LookupError(f"{module_name} ({real}) has no attribute {attribute!r}")
        value = getattr(value, part)
    if not callable(value):
        raise LookupError(f"{target} ({real}) is not callable")
    return value


def _call(request: dict[str, Any]) -> dict[str, Any]:
    target = request["callable"]
    try:
        function = _load(target, request["roots"])
    except LookupError as exc:
        return {"error": str(exc), "kind": "not_found"}
    try:
        value = function(*request["args"], **request["kwargs"])
        if inspect.isawaitable(value):
            value = asyncio.run(_await(value))
    except BaseException as exc:  # SystemExit and KeyboardInterrupt fail the step too
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}", "kind": "raised"}
    try:
        return {"result": json.loads(json.dumps(value, allow_nan=False))}
    except (TypeError, ValueError) as exc:
        kind = type(value).__module__ + "." + type(value).__qualname__
        if kind.startswith("builtins."):
            kind = kind[len("builtins.") :]
        return {
            "error": f"{target} returned a value of type {kind}, which is not JSON: {exc}",
            "kind": "not_json",
        }


async def _await(value: Any) -> Any:
    return await value


def main() -> None:
    fd = int(sys.argv[1])
    request = json.loads(sys.stdin.read())
    # User code reads nothing from the worker.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    _limit_memory(request.get("memory_limit"))
    if request["mode"] == "exec":
        os.set_inheritable(fd, False)
        try:
            os.execve(request["program"], request["argv"], request["env"])
        except OSError as exc:
            _answer(fd, {"error": f"could not run {request['program']}: {exc.strerror}"})
            os._exit(127)
    answer = _call(request)
    sys.stdout.flush()
    sys.stderr.flush()
    _answer(fd, answer)
    os._exit(0)  # no interpreter teardown: user threads or atexit hooks cannot hang us


if __name__ == "__main__":
    main()
