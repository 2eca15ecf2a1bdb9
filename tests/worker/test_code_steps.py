"""Code steps run by the worker (SPEC A.4, worker/code_steps.py): PYTHON and
COMMAND nodes in a child process, under the code roots the test gives the
worker, for a role granted them with pgdurable.grant_code. What user code
does to its own process (os._exit, a hang, a memory blow-up) ends only that
process; the worker and other instances carry on. The SQL side (grants,
constructors, refusals at df.start) is tested in tests/schema/test_code_grants.py."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from pgdurable.testing import wait_for
from pgdurable.worker.code_roots import CodeConfig

JOBS = """
import os, signal, sys

def add(a, b):
    return a + b

def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs, "instance": os.environ["PGDURABLE_INSTANCE_ID"]}

def crash():
    print("about to crash", flush=True)
    os._exit(3)

def hang(pid_file):
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    signal.pause()  # hangs until the worker kills it

def hog():
    blocks = []
    while True:
        blocks.append(bytearray(64 * 1024 * 1024))

def a_set():
    return {1, 2}

def boom():
    print("working on it", file=sys.stderr)
    raise ValueError("boom")

def chatty():
    for i in range(20000):
        print("line", i)
    return "done"

def flaky(counter):
    n = int(open(counter).read()) if os.path.exists(counter) else 0
    open(counter, "w").write(str(n + 1))
    if n == 0:
        raise RuntimeError("first attempt fails")
    return n + 1

async def later(x):
    return x * 2
"""

SCRIPTS = {
    "ok.sh": 'echo "hi $1 $GREETING"\necho err >&2\npwd\n',
    "fail.sh": "echo failing >&2\nexit 3\n",
    # a child of its own, so the kill must reach the whole process group
    "sleeper.sh": 'sleep 1000 &\necho "$$ $!" > "$1"\nwait\n',
    "env.sh": "env\n",
}


@pytest.fixture
def code_root(tmp_path) -> Path:
    root = tmp_path / "code"
    (root / "etl").mkdir(parents=True)
    (root / "etl" / "__init__.py").write_text("")
    (root / "etl" / "jobs.py").write_text(textwrap.dedent(JOBS))
    (root / "bin").mkdir()
    for name, body in SCRIPTS.items():
        script = root / "bin" / name
        script.write_text("#!/bin/sh\n" + body)
        script.chmod(0o755)
    (root / "bin" / "escape").symlink_to("/bin/sh")
    (root / "bin" / "plain.txt").write_text("not a program")
    (root / "out").mkdir()
    return root


@pytest.fixture
def granted(database, alice) -> str:
    database.execute("SELECT pgdurable.grant_code('alice', 'python:etl.*')")
    database.execute("SELECT pgdurable.grant_code('alice', 'command:bin/*')")
    return alice


def code(root: Path, **options) -> CodeConfig:
    return CodeConfig.build([str(root)], **options)


def py(target: str, *args, name: str | None = None, **kwargs) -> dict:
    query = json.dumps({"callable": target, "args": list(args), "kwargs": kwargs})
    return {"node_type": "PYTHON", "query": query, **({"result_name": name} if name else {})}


def cmd(*argv: str, env: dict | None = None, cwd: str | None = None, name: str | None = None):
    query = json.dumps({"argv": list(argv), "env": env, "cwd": cwd})
    return {"node_type": "COMMAND", "query": query, **({"result_name": name} if name else {})}


def timeout(node: dict, seconds: int) -> dict:
    return {
        "node_type": "TIMEOUT",
        "left_node": node,
        "query": json.dumps({"timeout_seconds": seconds}),
    }


def code_node(database, instance_id: str, node_type: str) -> tuple:
    return database.execute(
        "SELECT status, result, status_details FROM df.nodes"
        " WHERE instance_id = %s AND node_type = %s",
        [instance_id, node_type],
    )[0]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


# -- results -----------------------------------------------------------------


def test_python_result_is_bindable_and_at_least_once(wf, database, granted, code_root):
    graph = wf.then(
        wf.sql("SELECT 7 AS n", name="q"),
        py("etl.jobs:add", 2, 3, name="total"),
        py("etl.jobs:echo", "$q.n", day="{sys_instance_id}", name="echoed"),
        wf.sql("SELECT $total + 1 AS six, $echoed.kwargs::jsonb ->> 'day' AS day"),
    )
    instance = wf.start(graph)
    wf.run(code=code(code_root))
    wf.wait_status(instance)
    assert wf.result(instance) == {
        "rows": [{"six": 6, "day": instance}],
        "row_count": 1,
    }
    rows = database.execute(
        "SELECT n.result, n.status_details FROM df.nodes n"
        " WHERE n.instance_id = %s AND n.node_type = 'PYTHON' ORDER BY n.result::text",
        [instance],
    )
    assert [r[0] for r in rows] == [
        5,
        {"args": ["7"], "kwargs": {"day": instance}, "instance": instance},
    ]
    for _, details in rows:
        assert details["delivery"] == "at_least_once" and details["exit_code"] == 0
    assert database.value(
        "SELECT array_agg(DISTINCT delivery) FROM pgdurable.journal j JOIN df.nodes n"
        " ON n.instance_id = j.instance_id AND n.id = j.node_id WHERE n.node_type = 'PYTHON'"
    ) == ["at_least_once"]


def test_async_functions_are_awaited(wf, granted, code_root):
    instance = wf.start(py("etl.jobs:later", 21))
    wf.run(code=code(code_root))
    wf.wait_status(instance)
    assert wf.result(instance) == 42


def test_command_result_holds_exit_code_and_output(wf, database, granted, code_root):
    instance = wf.start(
        wf.then(
            wf.sql("SELECT 'there' AS who", name="w"),
            cmd("bin/ok.sh", "$w.who", env={"GREETING": "hello"}, cwd="out", name="out"),
            wf.sql("SELECT ($out::jsonb ->> 'exit_code')::int AS code"),
        )
    )
    wf.run(code=code(code_root))
    wf.wait_status(instance)
    status, result, details = code_node(database, instance, "COMMAND")
    assert status == "completed"
    real = os.path.realpath(code_root)
    assert result == {"exit_code": 0, "stdout": f"hi there hello\n{real}/out\n", "stderr": "err\n"}
    assert details["stdout_tail"] == result["stdout"] and details["stderr_tail"] == "err\n"
    assert details["delivery"] == "at_least_once"
    assert wf.result(instance)["rows"] == [{"code": 0}]


def test_command_environment_is_small_and_explicit(wf, database, granted, code_root):
    os.environ["PGPASSWORD_FOR_TEST"] = "secret"
    try:
        instance = wf.start(cmd("bin/env.sh", env={"A": "1"}))
        wf.run(code=code(code_root))
    finally:
        del os.environ["PGPASSWORD_FOR_TEST"]
    wf.wait_status(instance)
    lines = set(code_node(database, instance, "COMMAND")[1]["stdout"].splitlines())
    assert {"A=1", f"PGDURABLE_INSTANCE_ID={instance}"} <= lines
    assert not any(line.startswith("PGPASSWORD_FOR_TEST") for line in lines)


def test_non_zero_exit_fails_with_the_output_tail(wf, database, granted, code_root):
    instance = wf.start(cmd("bin/fail.sh"))
    wf.run(code=code(code_root))
    wf.wait_status(instance, "failed")
    status, result, details = code_node(database, instance, "COMMAND")
    assert result == "command bin/fail.sh exited with code 3: failing"
    assert details["exit_code"] == 3 and details["stderr_tail"] == "failing\n"
    assert details["delivery"] == "at_least_once"


def test_python_exception_fails_with_its_type_and_traceback_tail(wf, database, granted, code_root):
    instance = wf.start(py("etl.jobs:boom"))
    wf.run(code=code(code_root))
    wf.wait_status(instance, "failed")
    _, result, details = code_node(database, instance, "PYTHON")
    assert result == "Python step etl.jobs:boom raised ValueError: boom"
    assert "working on it" in details["stderr_tail"]
    assert "ValueError: boom" in details["stderr_tail"].splitlines()[-1]


def test_output_tails_are_bounded(wf, database, granted, code_root):
    instance = wf.start(py("etl.jobs:chatty"))
    wf.run(code=CodeConfig.build([str(code_root)]))
    wf.wait_status(instance)
    _, result, details = code_node(database, instance, "PYTHON")
    assert result == "done"
    assert len(details["stdout_tail"].encode()) == 4096 and details["output_truncated"] is True
    assert details["stdout_tail"].endswith("line 19999\n")


# -- user code cannot take the worker down -------------------------------------


def test_a_crash_fails_only_its_node(wf, database, granted, code_root):
    crashed = wf.start(py("etl.jobs:crash"))
    fine = wf.start(wf.then(py("etl.jobs:add", 1, 1), wf.sql("SELECT 'ok' AS s")))
    wf.run(code=code(code_root))
    wf.wait_status(crashed, "failed")
    wf.wait_status(fine)
    _, result, details = code_node(database, crashed, "PYTHON")
    assert result == "Python step etl.jobs:crash exited with code 3 without a result"
    assert details["stdout_tail"] == "about to crash\n"


def test_a_hang_is_killed_at_its_timeout_while_others_complete(
    wf, database, granted, code_root, tmp_path
):
    pid_file = tmp_path / "hang.pid"
    hung = wf.start(timeout(py("etl.jobs:hang", str(pid_file)), 1))
    fine = wf.start(wf.then(wf.sleep(1), py("etl.jobs:add", 2, 2)))
    wf.run(code=code(code_root))
    wf.wait_status(hung, "failed")
    wf.wait_status(fine)
    assert wf.output(hung) == "timed out after 1 s"
    pid = int(pid_file.read_text())
    wait_for(lambda: not alive(pid), what="the hung child to be killed")


def test_the_whole_process_group_is_killed(wf, granted, code_root, tmp_path):
    pid_file = tmp_path / "pids"
    instance = wf.start(timeout(cmd("bin/sleeper.sh", str(pid_file)), 1))
    wf.run(code=code(code_root))
    wf.wait_status(instance, "failed")
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 2
    wait_for(lambda: not any(alive(p) for p in pids), what="the script and its child to die")


def test_the_step_time_limit_kills_a_code_step(wf, database, granted, code_root, tmp_path):
    # pgdurable.step_timeout bounds code steps as it bounds SQL and HTTP steps
    # (a database may lower it); the child's whole process group goes with it.
    database.execute(f"ALTER DATABASE {database.name} SET pgdurable.step_timeout = '1s'")
    pid_file = tmp_path / "pids"
    instance = wf.start(cmd("bin/sleeper.sh", str(pid_file)))
    wf.run(code=code(code_root))
    wf.wait_status(instance, "failed")
    assert "pgdurable.step_timeout (1 s), and was killed" in wf.output(instance)
    pids = [int(p) for p in pid_file.read_text().split()]
    wait_for(lambda: not any(alive(p) for p in pids), what="the script and its child to die")


def test_a_memory_blow_up_hits_the_limit(wf, database, granted, code_root):
    hog = wf.start(py("etl.jobs:hog"))
    fine = wf.start(py("etl.jobs:add", 3, 4))
    wf.run(code=code(code_root, memory_limit_mb=256))
    wf.wait_status(hog, "failed")
    wf.wait_status(fine)
    assert wf.result(fine) == 7
    assert wf.output(hog) == "Python step etl.jobs:hog raised MemoryError: "


def test_cancel_kills_the_running_child(
    wf, database, granted, code_root, tmp_path, background_worker
):
    pid_file = tmp_path / "pids"
    instance = wf.start(cmd("bin/sleeper.sh", str(pid_file)))
    background_worker(code=code(code_root))
    wait_for(lambda: pid_file.exists() and len(pid_file.read_text().split()) == 2, timeout=20)
    pids = [int(p) for p in pid_file.read_text().split()]
    database.execute("SELECT df.cancel(%s)", [instance], user=wf.user)
    wait_for(lambda: not any(alive(p) for p in pids), what="the cancelled child to die")
    assert wf.status(instance) == "cancelled"


def test_shutdown_kills_the_child_after_the_grace(
    wf, granted, code_root, tmp_path, background_worker
):
    pid_file = tmp_path / "pids"
    wf.start(cmd("bin/sleeper.sh", str(pid_file)))
    worker = background_worker(code=code(code_root), grace=0.5)
    wait_for(lambda: pid_file.exists() and len(pid_file.read_text().split()) == 2, timeout=20)
    pids = [int(p) for p in pid_file.read_text().split()]
    worker.stop()
    assert not worker.thread.is_alive()
    wait_for(lambda: not any(alive(p) for p in pids), what="the child to die at shutdown")


# -- composition -----------------------------------------------------------------


def test_retry_and_try_compose(wf, database, granted, code_root, tmp_path):
    retried = wf.start(
        {
            "node_type": "RETRY",
            "left_node": py("etl.jobs:flaky", str(tmp_path / "counter")),
            "query": json.dumps(
                {"max_attempts": 2, "delay_seconds": 0, "backoff": 1.0, "max_delay_seconds": None}
            ),
        }
    )
    recovered = wf.start(
        {
            "node_type": "TRY",
            "left_node": cmd("bin/fail.sh"),
            "right_node": wf.sql("SELECT $error AS e"),
        }
    )
    wf.run(code=code(code_root))
    wf.wait_status(retried)
    wf.wait_status(recovered)
    assert wf.result(retried) == 2
    assert wf.result(recovered)["result"]["rows"] == [
        {"e": "command bin/fail.sh exited with code 3: failing"}
    ]


# -- bad input and refusals --------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (py("etl.nope:f"), "module etl.nope not found under the code roots {root}"),
        (py("etl.jobs:missing"), "etl.jobs ({root}/etl/jobs.py) has no attribute 'missing'"),
        (py("etl.jobs:a_set"), "etl.jobs:a_set returned a value of type set, which is not JSON"),
        (cmd("bin/nope"), "command not found: bin/nope (searched: {root}/bin/nope;"),
        (cmd("bin/escape"), "resolves to /usr/bin/dash, outside the code root"),
        (cmd("bin/plain.txt"), "program {root}/bin/plain.txt is not an executable file"),
        (
            cmd("bin/ok.sh", env={"LD_PRELOAD": "/tmp/x.so"}),
            "env variable 'LD_PRELOAD' is not allowed",
        ),
        (cmd("bin/ok.sh", cwd="missing"), "working directory {root}/missing does not exist"),
    ],
)
def test_bad_code_fails_the_node_saying_where_it_looked(
    wf, database, granted, code_root, node, message
):
    instance = wf.start(node)
    wf.run(code=code(code_root))
    wf.wait_status(instance, "failed")
    expected = message.format(root=os.path.realpath(code_root))
    if "dash" in expected:
        expected = expected.replace("/usr/bin/dash", os.path.realpath("/bin/sh"))
    assert expected in wf.output(instance)


def test_modules_outside_the_code_roots_are_refused(wf, database, alice, code_root):
    database.execute("SELECT pgdurable.grant_code('alice', 'python:*')")
    instance = wf.start(py("os:getcwd"))
    wf.run(code=code(code_root))
    wf.wait_status(instance, "failed")
    assert "module os resolves to" in wf.output(instance)
    assert f"outside the code roots {os.path.realpath(code_root)}" in wf.output(instance)


def test_absolute_programs_need_the_operators_allow_list(wf, database, alice, code_root):
    database.execute("SELECT pgdurable.grant_code('alice', 'command:/bin/echo')")
    database.execute("SELECT pgdurable.grant_code('alice', 'command:echo')")
    refused = wf.start(cmd("/bin/echo", "x"))
    wf.run(code=code(code_root))
    wf.wait_status(refused, "failed")
    assert "is an absolute path the worker's operator did not allow" in wf.output(refused)
    absolute, bare = wf.start(cmd("/bin/echo", "x")), wf.start(cmd("echo", "y"))
    wf.run(code=code(code_root, allow_programs=["/bin/echo"]))
    wf.wait_status(absolute)
    wf.wait_status(bare)
    assert wf.result(absolute)["stdout"] == "x\n" and wf.result(bare)["stdout"] == "y\n"


def test_a_worker_without_code_roots_runs_no_code(wf, granted):
    instance = wf.start(py("etl.jobs:add", 1, 2))
    wf.run()
    wf.wait_status(instance, "failed")
    assert "this worker has no code roots; start it with --code-path DIR" in wf.output(instance)


def test_revoke_after_start_fails_the_step(wf, database, granted, code_root):
    instance = wf.start(py("etl.jobs:add", 1, 2))
    database.execute("SELECT pgdurable.revoke_code('alice', 'python:etl.*')")
    wf.run(code=code(code_root))
    wf.wait_status(instance, "failed")
    assert wf.output(instance) == (
        'code step refused: role "alice" is not allowed to run Python callable'
        ' "etl.jobs:add" in a workflow: no pgdurable.grant_code pattern of it matches'
    )


def test_rows_written_past_the_trigger_are_refused_at_run_time(wf, database, granted, code_root):
    """A superuser can switch triggers off; the worker's own check still holds."""
    instance = wf.start(py("etl.jobs:add", 1, 2))
    with database.connect() as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(
            "UPDATE df.nodes SET query = %s WHERE instance_id = %s",
            [json.dumps({"callable": "other.mod:f", "args": [], "kwargs": {}}), instance],
        )
    wf.run(code=code(code_root))
    wf.wait_status(instance, "failed")
    assert 'not allowed to run Python callable "other.mod:f"' in wf.output(instance)


# -- a translated crontab line -------------------------------------------------------


def test_a_crontab_command_runs_as_a_command_step(
    database, wf, code_root, tmp_path, background_worker
):
    """import-queue turns a non-psql crontab line into a command step; apply is
    refused until the administrator grants it, then the worker runs it."""
    from pgdurable import apply as applying
    from pgdurable import pipeline
    from pgdurable.errors import ApplyFailed

    role = "cron_ops"
    database.create_role(role)
    database.execute(f"SELECT df.grant_usage('{role}')")
    marker = tmp_path / "marker"
    cron_d = tmp_path / "cron.d" / "mark"
    cron_d.parent.mkdir()
    cron_d.write_text(f"GREETING=hello\n0 3 * * * {role} bin/ok.sh {marker.name}\n")
    out = tmp_path / "out"
    (report,) = pipeline.import_queue([cron_d], out_dir=out)
    assert report.summary["approximate"] == 1, report.text()
    assert "PGD270" in report.text() and "not as 'cron_ops'" in report.text()
    with pytest.raises(ApplyFailed, match='role "cron_ops" is not allowed to run program'):
        with database.connect() as conn:
            applying.apply_directory(out, applying.DatabaseSink(conn))
    database.execute(f"SELECT pgdurable.grant_code('{role}', 'command:bin/ok.sh')")
    with database.connect() as conn:
        applying.apply_directory(out, applying.DatabaseSink(conn))
    (name,) = [p.stem for p in out.glob("*.sql") if p.stem not in ("cutover", "rollback")]
    run = database.value(f"SELECT pgdurable_jobs.enqueue_{name.replace('-', '_')}()", user=role)
    background_worker(code=code(code_root))
    wf.wait_status(run, "completed", timeout=30)
    status, result, _ = code_node(database, run, "COMMAND")
    assert result["stdout"].startswith(f"hi {marker.name} hello\n")
    scheduler = database.value(
        "SELECT instance_id FROM pgdurable.workflows WHERE source = 'crontab' AND name = %s",
        [name],
    )
    database.execute("SELECT df.cancel(%s)", [scheduler])


# -- a translated Celery beat entry ----------------------------------------------------

CELERY_TASKS = """
import json, os

from proj.app import app


@app.task(name="cleanup-old")
def purge_sessions(days=7, marker=None):
    with open(marker, "w") as fh:
        json.dump({"days": days}, fh)
    return {"purged_older_than": days}
"""

# Celery's own app would register the task; calling a decorated task runs its body in
# the caller, which is all a Python step needs, so the worker's code root can use this.
CELERY_APP = """
class App:
    def task(self, *args, **options):
        return lambda function: function


app = App()
"""


def test_a_celery_beat_entry_runs_its_task_function(database, wf, tmp_path, background_worker):
    """import-queue finds the function of a task registered under a name of its own
    among the app's modules; the worker calls it with the entry's kwargs."""
    from pgdurable import apply as applying
    from pgdurable import pipeline

    role = "celery_app"
    database.create_role(role)
    database.execute(f"SELECT df.grant_usage('{role}')")
    root = tmp_path / "src"
    (root / "proj").mkdir(parents=True)
    (root / "proj" / "__init__.py").write_text("")
    (root / "proj" / "app.py").write_text(CELERY_APP)
    (root / "proj" / "tasks.py").write_text(CELERY_TASKS)
    marker = tmp_path / "purged.json"
    config = tmp_path / "celeryconfig.py"
    config.write_text(
        "from celery.schedules import crontab\n"
        "beat_schedule = {'purge': {'task': 'cleanup-old', 'schedule': crontab(minute=0),\n"
        f"    'kwargs': {{'days': 30, 'marker': {str(marker)!r}}}}}}}\n"
    )
    out = tmp_path / "out"
    (report,) = pipeline.import_queue(
        [config], out_dir=out, default_username=role, code_roots=[root]
    )
    assert report.summary["approximate"] == 1, report.text()
    database.execute(f"SELECT pgdurable.grant_code('{role}', 'python:proj.tasks:*')")
    with database.connect() as conn:
        applying.apply_directory(out, applying.DatabaseSink(conn))
    run = database.value("SELECT pgdurable_jobs.enqueue_purge()", user=role)
    background_worker(code=code(root))
    wf.wait_status(run, "completed", timeout=30)
    _, result, details = code_node(database, run, "PYTHON")
    assert result == {"purged_older_than": 30}
    assert json.loads(marker.read_text()) == {"days": 30}
    assert details["delivery"] == "at_least_once"
    scheduler = database.value(
        "SELECT instance_id FROM pgdurable.workflows WHERE source = 'celery' AND name = 'purge'"
    )
    database.execute("SELECT df.cancel(%s)", [scheduler])


# -- a translated Airflow BashOperator ----------------------------------------------

DAG = """
from airflow import DAG
from airflow.decorators import task
from airflow.operators.bash import BashOperator
import pendulum


@task.bash
def stamp():
    return "echo stamped {{ ds_nodash }}"


with DAG("shell_dag", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
    nap = BashOperator(task_id="nap", bash_command="sleep 0")
    say = BashOperator(
        task_id="say",
        bash_command='echo "day {{ ds }} in $AIRFLOW_CTX_DAG_ID/$AIRFLOW_CTX_TASK_ID $WHO"',
        env={"WHO": "{{ params.who }}"},
        params={"who": "ops"},
    )
    nap >> say >> stamp()
"""


def test_an_airflow_bash_command_runs_as_a_command_step(wf, database, alice, code_root, tmp_path):
    from pgdurable.model import encode
    from pgdurable.translators import airflow
    from pgdurable.translators.base import TranslateContext

    dag = tmp_path / "shell_dag.py"
    dag.write_text(DAG)
    (result,) = airflow.translate(airflow.read_paths([dag]), TranslateContext()).results
    codes = [d.code for d in result.diagnostics]
    assert codes.count("PGD271") == 3 and str(result.fidelity) == "approximate", codes
    graph = encode(result.workflow.body)
    with pytest.raises(Exception, match='role "alice" is not allowed to run program "sleep"'):
        wf.start(graph)
    database.execute("SELECT pgdurable.grant_code('alice', 'command:sleep')")
    database.execute("SELECT pgdurable.grant_code('alice', 'command:bash')")
    instance = wf.start(graph)
    allowed = [os.path.realpath("/usr/bin/sleep"), os.path.realpath("/bin/bash")]
    wf.run(code=code(code_root, allow_programs=allowed))
    wf.wait_status(instance)
    outputs = sorted(
        r[0]["stdout"]
        for r in database.execute(
            "SELECT result FROM df.nodes WHERE instance_id = %s AND node_type = 'COMMAND'",
            [instance],
        )
    )
    day = database.value("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
    assert outputs == ["", f"day {day} in shell_dag/say ops\n", f"stamped {day.replace('-', '')}\n"]


# -- the worker's options ---------------------------------------------------------


def test_worker_options_are_checked_before_anything_runs(tmp_path):
    from click.testing import CliRunner

    from pgdurable.cli import cli

    runner = CliRunner()
    missing = tmp_path / "missing"
    result = runner.invoke(cli, ["worker", "--code-path", str(missing)])
    assert result.exit_code == 2 and f"code path {missing} is not a directory" in result.output
    result = runner.invoke(
        cli, ["worker"], env={"PGDURABLE_CODE_PATH": f"{tmp_path}{os.pathsep}{missing}"}
    )
    assert result.exit_code == 2 and f"code path {missing} is not a directory" in result.output
    result = runner.invoke(cli, ["worker", "--allow-program", "psql"])
    assert result.exit_code == 2 and "must be an absolute path" in result.output
    # a root is kept as its real path, which the symlink checks compare with
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    roots = CodeConfig.build([str(tmp_path / "link")]).roots
    assert roots == (os.path.realpath(tmp_path / "real"),)
