"""PYTHON and COMMAND steps (SPEC A.4 code steps): user code in a child process.

Order: raw substitution (SPEC B §5) of the string values in args, kwargs,
argv (after the program), env and cwd; the grant check, asked of the
database at every run (``pgdurable.code_step_refusal_v1``: the node as
stored, the instance's role, the grants as they are now), so a revoke after
the start fails the step; then the code is found under the worker's code
roots (``code_roots``) and run by ``code_runner`` in a new process group.

The worker's event loop never runs user code: a crash, a hang or a memory
blow-up (``--code-memory-limit``) ends only the child, and the node fails
with what happened. The child's group is killed (SIGKILL) when the step's
task is cancelled: by a ``pgdurable.timeout`` deadline, ``df.cancel``, a lost
lease, or a shutdown whose ``--grace`` ran out.

Results: a Python step's JSON return value; a command's
``{"exit_code","stdout","stderr"}`` with the tails of its output. A non-zero
exit fails the node. Delivery is at-least-once (no transaction spans the
child), journaled with ``"delivery":"at_least_once"``; ``status_details``
also keep the exit code and the last ``tail_bytes`` of stdout and stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgdurable import db
from pgdurable.worker.code_roots import CALLABLE, CodeNotFound, child_environment
from pgdurable.worker.journal import lease_error
from pgdurable.worker.outcomes import Failed
from pgdurable.worker.results import dumps
from pgdurable.worker.substitution import SubstitutionError, substitute

if TYPE_CHECKING:
    from pgdurable.worker.code_roots import CodeConfig
    from pgdurable.worker.graph import Node
    from pgdurable.worker.interpreter import Execution, Scope

RUNNER = "pgdurable.worker.code_runner"
READ_CHUNK = 65536
KILL_REAP_SECONDS = 2.0  # a SIGKILLed child is gone at once; this only bounds a stuck reap
LEFTOVER_OUTPUT_SECONDS = 2.0  # for output still buffered in the pipes after the exit


class Tail:
    """The last ``limit`` bytes of a stream, and whether anything was cut."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.cut = False

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]
            self.cut = True

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


@dataclass
class Outcome:
    exit_code: int
    answer: dict[str, Any] | None
    stdout: Tail
    stderr: Tail

    def details(self) -> dict[str, Any]:
        details: dict[str, Any] = {
            "delivery": "at_least_once",
            "exit_code": self.exit_code,
            "stdout_tail": self.stdout.text(),
            "stderr_tail": self.stderr.text(),
        }
        if self.stdout.cut or self.stderr.cut:
            details["output_truncated"] = True
        return details

    def ended(self) -> str:
        if self.exit_code < 0:
            try:
                name = signal.Signals(-self.exit_code).name
            except ValueError:
                name = f"signal {-self.exit_code}"
            return f"was killed by {name}"
        return f"exited with code {self.exit_code}"


# -- the child --------------------------------------------------------------


class _Child(asyncio.SubprocessProtocol):
    """The child's output into tails, and its exit as an event. asyncio's
    ``Process.wait`` would also wait for every descendant holding the pipes."""

    def __init__(self, tail_bytes: int) -> None:
        self.tails = {1: Tail(tail_bytes), 2: Tail(tail_bytes)}
        self.exited = asyncio.Event()
        self.open = {1, 2}
        self.closed = asyncio.Event()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.tails[fd].add(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.open.discard(fd)
        if not self.open:
            self.closed.set()

    def process_exited(self) -> None:
        self.exited.set()


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_child(
    code: CodeConfig, request: dict[str, Any], env: dict[str, str], cwd: str
) -> Outcome:
    """Run ``code_runner`` with ``request``; kill its process group if we are cancelled."""
    loop = asyncio.get_running_loop()
    read_end, write_end = os.pipe()
    answer = asyncio.StreamReader()
    try:
        answer_pipe, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(answer), os.fdopen(read_end, "rb")
        )
    except BaseException:
        os.close(read_end)
        os.close(write_end)
        raise
    try:
        try:
            transport, child = await loop.subprocess_exec(
                lambda: _Child(code.tail_bytes),
                sys.executable,
                "-I",
                "-m",
                RUNNER,
                str(write_end),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(write_end,),
                start_new_session=True,  # its own process group, killed as one
                env=env,
                cwd=cwd,
            )
        finally:
            os.close(write_end)
        try:
            stdin = transport.get_pipe_transport(0)
            stdin.write(json.dumps(request | {"memory_limit": code.memory_limit_bytes}).encode())
            stdin.close()
            await child.exited.wait()
            # Descendants it left behind (a backgrounded process) go with it,
            # and so do the pipe ends they hold. One that left the group
            # (setsid) may keep them open: its output is not waited for.
            _kill(transport.get_pid())
            try:
                async with asyncio.timeout(LEFTOVER_OUTPUT_SECONDS):
                    await child.closed.wait()
                    raw = await answer.read()
            except TimeoutError:
                raw = b""
        except BaseException:
            _kill(transport.get_pid())
            # Reap it before the transport goes (a cancel at shutdown closes the
            # loop next): an unreaped child is a zombie and a ResourceWarning.
            with contextlib.suppress(BaseException):
                async with asyncio.timeout(KILL_REAP_SECONDS):
                    await asyncio.shield(child.exited.wait())
            raise
        finally:
            transport.close()
    finally:
        answer_pipe.close()
    parsed = None
    if raw:
        with contextlib.suppress(ValueError):
            parsed = json.loads(raw)
    exit_code = transport.get_returncode()
    return Outcome(-1 if exit_code is None else exit_code, parsed, *child.tails.values())


# -- the step ---------------------------------------------------------------


def _substituted(ex: Execution, scope: Scope, value: Any) -> Any:
    """``value`` with every string in it substituted (raw mode)."""
    if isinstance(value, str):
        instance = ex.instance
        return substitute(
            value, scope.results, instance.vars, instance.id, instance.label, for_sql=False
        )
    if isinstance(value, list):
        return [_substituted(ex, scope, item) for item in value]
    if isinstance(value, dict):
        return {key: _substituted(ex, scope, item) for key, item in value.items()}
    return value


async def _refusal(ex: Execution, node: Node) -> str | None:
    try:
        async with ex.journal.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT pgdurable.code_step_refusal_v1(%s, %s, %s, %s)",
                [*ex.journal.lease, node.id],
            )
            row = await cursor.fetchone()
    except db.DatabaseError as exc:
        mapped = lease_error(exc)
        if mapped is not None:
            raise mapped from exc
        if db.is_connection_error(exc):
            raise
        raise Failed(db.error_text(exc)) from exc
    return None if row is None else row[0]


def _context(ex: Execution, node: Node, root: str) -> dict[str, str]:
    return {
        "PGDURABLE_INSTANCE_ID": ex.instance.id,
        "PGDURABLE_NODE_ID": node.id,
        "PGDURABLE_LABEL": ex.instance.label or "",
        "PGDURABLE_CODE_ROOT": root,
        **_login(ex),
    }


def _login(ex: Execution) -> dict[str, str]:
    """Where the step's own database connections go (``pgdurable.airflow_context``'s
    hooks): the worker's server, the instance's database and role, and never the
    worker's password or other credentials, so code logs in only as the role can
    by itself (its ~/.pgpass entry, a client certificate, peer or trust rules)."""
    params = db.conninfo_params(getattr(ex.journal.pool, "conninfo", "") or "")
    login = {
        "PGDURABLE_ROLE": ex.instance.role or "",
        "PGDURABLE_DATABASE": ex.instance.database or ex.instance.control_database or "",
    }
    if params.get("host"):
        login["PGDURABLE_PGHOST"] = params["host"]
    if params.get("port"):
        login["PGDURABLE_PGPORT"] = params["port"]
    return login


async def _python(ex: Execution, node: Node, scope: Scope, code: CodeConfig) -> tuple[str, Outcome]:
    config = node.config
    target = config.get("callable")
    if not isinstance(target, str) or not CALLABLE.fullmatch(target):
        raise Failed(f"PYTHON node {node.id}: callable {target!r} is not 'package.module:function'")
    args, kwargs = config.get("args", []), config.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise Failed(f"PYTHON node {node.id}: args must be an array and kwargs an object")
    if not code.roots:
        raise Failed(
            f"Python step {target}: this worker has no code roots; start it with --code-path DIR"
        )
    request = {
        "mode": "python",
        "callable": target,
        "args": _substituted(ex, scope, args),
        "kwargs": _substituted(ex, scope, kwargs),
        "roots": list(code.roots),
    }
    env = child_environment({}, _context(ex, node, code.roots[0]))
    outcome = await run_child(code, request, env, code.roots[0])
    answer = outcome.answer or {}
    if "result" in answer:
        return dumps(answer["result"]), outcome
    if "error" in answer:
        prefix = (
            ""
            if answer.get("kind") in ("not_found", "not_json")
            else f"Python step {target} raised "
        )
        raise _StepFailed(prefix + answer["error"], outcome)
    raise _StepFailed(f"Python step {target} {outcome.ended()} without a result", outcome)


async def _command(
    ex: Execution, node: Node, scope: Scope, code: CodeConfig
) -> tuple[str, Outcome]:
    config = node.config
    argv, env, cwd = config.get("argv"), config.get("env") or {}, config.get("cwd")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise Failed(f"COMMAND node {node.id}: argv must be a non-empty array of strings")
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise Failed(f"COMMAND node {node.id}: env must be an object of strings")
    if cwd is not None and not isinstance(cwd, str):
        raise Failed(f"COMMAND node {node.id}: cwd must be a string")
    try:
        program, root = code.resolve_program(argv[0])
        directory = code.working_directory(_substituted(ex, scope, cwd), root)
        variables = child_environment(_substituted(ex, scope, env), _context(ex, node, root or ""))
    except CodeNotFound as exc:
        raise Failed(str(exc)) from exc
    request = {
        "mode": "exec",
        "program": program,
        "argv": [argv[0], *_substituted(ex, scope, argv[1:])],
        "env": variables,
    }
    outcome = await run_child(code, request, variables, directory)
    if outcome.answer and "error" in outcome.answer:
        raise _StepFailed(outcome.answer["error"], outcome)
    if outcome.exit_code != 0:
        last = (
            outcome.stderr.text().strip().splitlines()[-1:]
            or outcome.stdout.text().strip().splitlines()[-1:]
        )
        raise _StepFailed(
            f"command {argv[0]} {outcome.ended()}" + (f": {last[0]}" if last else ""), outcome
        )
    result = {
        "exit_code": 0,
        "stdout": outcome.stdout.text(),
        "stderr": outcome.stderr.text(),
    }
    return dumps(result), outcome


class _StepFailed(Exception):
    def __init__(self, error: str, outcome: Outcome) -> None:
        super().__init__(error)
        self.error = error
        self.outcome = outcome


async def _record(
    ex: Execution, node: Node, scope: Scope, status: str, text: str, details: dict[str, Any]
) -> None:
    """Journal the outcome, then stamp the node with the output tails."""
    outcome = "completed" if status == "completed" else "failed"
    await ex.flush()
    await ex.journal.record(
        scope.name,
        scope.gen,
        node.id,
        outcome,
        result=text if outcome == "completed" else None,
        error=text if outcome == "failed" else None,
        delivery="at_least_once",
    )
    ex.stamp(node, scope, status, text if outcome == "completed" else dumps(text), details=details)
    await ex.flush()


async def run_code(ex: Execution, node: Node, scope: Scope) -> str:
    """Executor of PYTHON and COMMAND nodes (registered in ``steps``)."""
    code = ex.services.code
    details: dict[str, Any] = {"delivery": "at_least_once"}
    try:
        try:
            await ex.flush()  # our 'running' stamp, and a cancel check, first
            refusal = await _refusal(ex, node)
            if refusal is not None:
                raise Failed(f"code step refused: {refusal}")
            run = _python if node.type == "PYTHON" else _command
            limit = ex.services.step_timeout
            try:
                async with ex.services.step_slots.hold(ex.instance.role):
                    async with asyncio.timeout(limit):  # the wait for a slot does not count
                        result, outcome = await run(ex, node, scope, code)
            except TimeoutError as exc:  # the child's process group was killed with it
                raise Failed(
                    "code step exceeded the step time limit, pgdurable.step_timeout "
                    f"({limit:g} s), and was killed"
                ) from exc
        except SubstitutionError as exc:
            raise Failed(str(exc)) from exc
        except _StepFailed as exc:
            details = exc.outcome.details()
            raise Failed(exc.error) from exc
    except Failed as failure:
        await _record(ex, node, scope, "failed", failure.error, details)
        raise
    await _record(ex, node, scope, "completed", result, outcome.details())
    return result
