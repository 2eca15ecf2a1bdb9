"""Fixtures for worker tests: graph builders (node JSON as df.start takes it),
an ordinary login role, and ways to run a worker against the test database."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from pgdurable.testing import wait_for
from pgdurable.worker import Worker, WorkerOptions, run_worker


class Workflows:
    """Builds node JSON, starts instances as ``alice`` and inspects them."""

    def __init__(self, database, user: str) -> None:
        self.database = database
        self.user = user

    # -- builders (SPEC B §1.1 node JSON) --
    @staticmethod
    def node(node_type: str, **fields) -> dict:
        return {"node_type": node_type, **{k: v for k, v in fields.items() if v is not None}}

    def sql(self, query: str, name: str | None = None) -> dict:
        return self.node("SQL", query=query, result_name=name)

    def then(self, *nodes: dict, name: str | None = None) -> dict:
        result = nodes[0]
        for following in nodes[1:]:
            result = self.node("THEN", left_node=result, right_node=following)
        if name:
            result["result_name"] = name
        return result

    def join(self, a, b, *extra, name=None) -> dict:
        return self.node(
            "JOIN", left_node=a, right_node=b, extra_nodes=list(extra) or None, result_name=name
        )

    def race(self, a, b, name=None) -> dict:
        return self.node("RACE", left_node=a, right_node=b, result_name=name)

    def if_(self, cond, then, other, name=None) -> dict:
        return self.node(
            "IF", left_node=then, right_node=other, condition_node=cond, result_name=name
        )

    def if_rows(self, result_name, then, other) -> dict:
        config = json.dumps({"condition_type": "result_has_rows", "result_name": result_name})
        return self.node("IF", left_node=then, right_node=other, query=config)

    def loop(self, body, cond=None, name=None) -> dict:
        return self.node("LOOP", left_node=body, condition_node=cond, result_name=name)

    def brk(self, value: str | None = None) -> dict:
        return self.node("BREAK", query=json.dumps({"break_value": value}))

    def sleep(self, seconds: int) -> dict:
        return self.node("SLEEP", query=str(seconds))

    def signal(self, name: str, timeout: int | None = None) -> dict:
        return self.node(
            "SIGNAL", query=json.dumps({"signal_name": name, "timeout_seconds": timeout})
        )

    def schedule(self, cron: str) -> dict:
        return self.node("WAIT_SCHEDULE", query=json.dumps({"cron_expr": cron}))

    # -- instances --
    def start(self, graph: dict | str, label: str | None = None) -> str:
        text = graph if isinstance(graph, str) else json.dumps(graph)
        return self.database.value("SELECT df.start(%s, %s)", [text, label], user=self.user)

    def status(self, instance_id: str) -> str:
        return self.database.value("SELECT status FROM df.instances WHERE id = %s", [instance_id])

    def result(self, instance_id: str):
        """The completed root node's result (what df.result returns).

        Read directly: df.result in 0003 compares ``i.id = instance_id``, where
        ``instance_id`` resolves to the column n.instance_id, not the argument."""
        return self.database.value(
            "SELECT n.result FROM df.instances i JOIN df.nodes n"
            " ON n.instance_id = i.id AND n.id = i.root_node"
            " WHERE i.id = %s AND n.status = 'completed'",
            [instance_id],
        )

    def output(self, instance_id: str) -> str | None:
        """The root node's stored result text (the error for a failed run)."""
        return self.database.value(
            "SELECT n.result #>> '{}' FROM df.instances i JOIN df.nodes n"
            " ON n.instance_id = i.id AND n.id = i.root_node WHERE i.id = %s",
            [instance_id],
        )

    def nodes(self, instance_id: str) -> list[tuple]:
        return self.database.execute(
            "SELECT node_type, status, result, status_details FROM df.nodes"
            " WHERE instance_id = %s ORDER BY node_type, id",
            [instance_id],
        )

    def run(self, **options) -> dict[str, int]:
        """Run a worker in this thread until nothing is runnable."""
        options.setdefault("poll_interval", 0.2)
        return asyncio.run(run_worker(self.database.conninfo(), until_idle=True, **options))

    def wait_status(self, instance_id: str, status: str = "completed", timeout: float = 20):
        wait_for(
            lambda: (
                self.status(instance_id) in (status, "failed", "cancelled")
                and self.status(instance_id)
            ),
            timeout=timeout,
            what=f"{instance_id} {status}",
        )
        assert self.status(instance_id) == status, self.output(instance_id)


@pytest.fixture
def alice(database):
    database.create_role("alice")
    database.execute("SELECT df.grant_usage('alice')")
    return "alice"


@pytest.fixture
def wf(database, alice) -> Workflows:
    return Workflows(database, alice)


class BackgroundWorker:
    """A worker on its own thread and event loop, stopped at teardown."""

    def __init__(self, conninfo: str, **options) -> None:
        options.setdefault("poll_interval", 0.2)
        self.worker: Worker | None = None
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.conninfo = conninfo
        self.options = options
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main():
            self.worker = Worker(self.conninfo, WorkerOptions(**self.options))
            self.ready.set()
            await self.worker.run()

        self.loop.run_until_complete(main())
        self.loop.close()

    def stop(self) -> None:
        if self.worker is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(30)


@pytest.fixture
def background_worker(database):
    workers: list[BackgroundWorker] = []

    def start(**options) -> BackgroundWorker:
        worker = BackgroundWorker(database.conninfo(), **options)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
