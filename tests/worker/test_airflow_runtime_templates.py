"""Bash tasks whose templates are rendered at run time (translators/airflow/runtime_templates.py).

Each DAG is written here as people write them, imported with ``pipeline.import_airflow``
(the task module lands in the output folder, as a user gets it), and run by a real
worker with that folder on its code path. The commands write what they rendered into
files; the expected text is what Airflow renders for the same run (its context rules:
``task_instance_key_str`` is ``<dag>__<task>__<ds_nodash>``, ``macros.ds_add`` adds
days to ``ds``, ``dag_run.conf`` is the trigger's payload and overrides ``params``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pgdurable import apply as applying
from pgdurable import pipeline
from pgdurable.model import encode
from pgdurable.testing import wait_for
from pgdurable.worker.code_roots import CodeConfig

NOW = "(now()) AT TIME ZONE 'UTC'"
BASH = os.path.realpath("/bin/bash")

RENDERED = '''
import os
import textwrap
from datetime import datetime

from airflow import DAG
from airflow.operators.bash import BashOperator

OUT = {out!r}
REPORT = textwrap.dedent("""
    {{% for i in range(3) %}}{{{{ i }}}}{{% endfor %}}
    echo "{{{{ task_instance_key_str }}}}|{{{{ macros.ds_add(ds, 7) }}}}|{{{{ params.day_kind }}}}" > report.txt
    echo "{{{{ dag_run.logical_date.strftime('%A').lower() }}}}|{{{{ logical_date | ds_nodash }}}}" >> report.txt
""")

with DAG("tpl_render", schedule=None, start_date=datetime(2024, 1, 1),
         params={{"day_kind": "any"}}) as dag:
    report = BashOperator(task_id="report", bash_command=REPORT, cwd=OUT)
    quoted = BashOperator(
        task_id="quoted",
        bash_command="printf '%s' \\"$WHO\\" > who.txt; "
        "echo '{{{{ ti.task_id }}}} $dag_run.ds {{sys_label}} $$' > raw.txt",
        env={{"WHO": "{{{{ params.who }}}}"}},
        params={{"who": "o'k \\"x\\"\\n$(touch pwned) {{{{ 7*7 }}}} $dag_run.ds {{sys_label}}"}},
        cwd=OUT,
    )
    escape = BashOperator(
        task_id="escape",
        bash_command="echo {{{{ ''.__class__.__mro__ }}}} > escaped.txt",
        cwd=os.path.join(OUT),
    )
    report >> quoted >> escape
'''


def imported(text: str, name: str, tmp_path: Path):
    dag = tmp_path / f"{name}.py"
    dag.write_text(text)
    out = tmp_path / "out"
    report = pipeline.import_airflow(paths=[dag], out_dir=out, default_username="alice")
    return report, out


def start_at(wf, workflow, day: str) -> str:
    graph = encode(workflow.body)
    assert graph.count(NOW) == 2
    return wf.start(graph.replace(NOW, f"(timestamptz '{day} 06:00:00+00') AT TIME ZONE 'UTC'"))


def test_templates_render_on_the_worker_as_airflow_renders_them(wf, database, alice, tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    report, out = imported(RENDERED.format(out=str(files)), "tpl_render", tmp_path)
    (result,) = report.results
    codes = [d.code for d in result.diagnostics]
    assert str(result.fidelity) == "approximate", result.diagnostics
    assert "PGD312" not in codes and "PGD345" not in codes
    module = (out / "airflow_tasks" / "tpl_render.py").read_text()
    assert "pgdurable_render_report" in module and "macros.ds_add(ds, 7)" in module
    database.execute("SELECT pgdurable.grant_code('alice', 'python:airflow_tasks.tpl_render:*')")
    database.execute("SELECT pgdurable.grant_code('alice', 'command:bash')")
    instance = start_at(wf, result.workflow, "2024-06-03")  # a Monday
    wf.run(code=CodeConfig.build([str(out)], allow_programs=[BASH]))
    wf.wait_status(instance, "failed")  # the escape task: the sandbox refuses it
    assert (files / "report.txt").read_text() == (
        "tpl_render__report__20240603|2024-06-10|any\nmonday|20240603\n"
    )
    # the param reaches bash through env, verbatim: Jinja output is not re-rendered,
    # the worker substitutes nothing in it, and bash does not run what is in a value
    assert (files / "who.txt").read_text() == (
        'o\'k "x"\n$(touch pwned) {{ 7*7 }} $dag_run.ds {sys_label}'
    )
    assert not (files / "pwned").exists()
    assert (files / "raw.txt").read_text() == "quoted $dag_run.ds {sys_label} $$\n"
    assert not (files / "escaped.txt").exists()
    failed = [n for n in wf.nodes(instance) if n[1] == "failed" and n[0] == "PYTHON"]
    assert failed and "access to attribute '__class__' of 'str' object is unsafe" in json.dumps(
        failed, default=str
    )


DECORATED = """
from datetime import datetime

from airflow.decorators import dag, task


@task.bash(cwd={out!r})
def stamp(label: str) -> str:
    return f"echo {{{{{{{{ ds_nodash }}}}}}}}-{{label}}-{{{{{{{{ params.n }}}}}}}} > stamp.txt"


@task.bash(cwd={out!r})
def empty() -> str:
    return "   "


@dag(schedule=None, start_date=datetime(2024, 1, 1), params={{"n": 3}})
def tpl_decorated():
    stamp("daily") >> empty()


tpl_decorated()
"""


def test_a_task_bash_callable_runs_and_its_command_is_rendered(wf, database, alice, tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    report, out = imported(DECORATED.format(out=str(files)), "tpl_decorated", tmp_path)
    (result,) = report.results
    assert str(result.fidelity) == "approximate", result.diagnostics
    database.execute("SELECT pgdurable.grant_code('alice', 'python:airflow_tasks.tpl_decorated:*')")
    database.execute("SELECT pgdurable.grant_code('alice', 'command:bash')")
    instance = start_at(wf, result.workflow, "2024-02-29")
    wf.run(code=CodeConfig.build([str(out)], allow_programs=[BASH]))
    wf.wait_status(instance, "failed")  # empty() returns blank text: Airflow's TypeError
    assert (files / "stamp.txt").read_text() == "20240229-daily-3\n"
    text = json.dumps(wf.nodes(instance), default=str)
    assert "The returned value from the TaskFlow callable must be a non-empty string." in text


CONTROLLER = """
from datetime import datetime

from airflow import DAG
from airflow.operators.trigger_dagrun import TriggerDagRunOperator

with DAG("tpl_controller", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
    TriggerDagRunOperator(
        task_id="trigger",
        trigger_dag_id="tpl_target",
        conf={{"message": "it's {{x}} $r_y '7b7d' /*pgdurable:dag_run.conf*/", "n": 2}},
    )
"""

TARGET = """
from datetime import datetime

from airflow import DAG
from airflow.operators.bash import BashOperator

with DAG("tpl_target", schedule=None, start_date=datetime(2024, 1, 1),
         params={{"n": 1}}) as dag:
    BashOperator(
        task_id="say",
        bash_command='printf "%s|%s" "$MESSAGE" "{{{{ params.n }}}}" > {out}/message.txt',
        env={{"MESSAGE": '{{{{ dag_run.conf.get("message", "none") }}}}'}},
    )
"""


def test_trigger_conf_reaches_the_started_run(database, background_worker, alice, tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "tpl_controller.py").write_text(CONTROLLER.format())
    (tmp_path / "dags" / "tpl_target.py").write_text(TARGET.format(out=files))
    out = tmp_path / "out"
    report = pipeline.import_airflow(
        paths=[tmp_path / "dags"], out_dir=out, default_username="alice"
    )
    for result in report.results:
        assert "PGD346" not in [d.code for d in result.diagnostics], result.diagnostics
        assert str(result.fidelity) != "manual", result.diagnostics
    # an older import's one-argument trigger function: replaced, not overloaded
    database.execute("CREATE SCHEMA airflow_dags")
    database.execute(
        'CREATE FUNCTION airflow_dags."trigger_tpl_target"(label text DEFAULT NULL) '
        "RETURNS varchar LANGUAGE sql AS 'SELECT NULL::varchar'"
    )
    with database.connect() as conn:
        applying.apply_directory(out, applying.DatabaseSink(conn))
    database.execute("GRANT USAGE ON SCHEMA airflow_dags TO alice")
    database.execute("SELECT pgdurable.grant_code('alice', 'python:airflow_tasks.tpl_target:*')")
    database.execute("SELECT pgdurable.grant_code('alice', 'command:bash')")
    run = database.value("SELECT airflow_dags.trigger_tpl_controller()", user="alice")
    background_worker(code=CodeConfig.build([str(out)], allow_programs=[BASH]))
    message = files / "message.txt"
    wait_for(message.exists, what="the triggered run's command")
    # conf overrides params (dag_run_conf_overrides_params); nothing in it was substituted
    assert message.read_text() == "it's {x} $r_y '7b7d' /*pgdurable:dag_run.conf*/|2"
    wait_for(
        lambda: (
            database.value("SELECT status FROM df.instances WHERE id = %s", [run]) == "completed"
        ),
        what="the controller run",
    )
    # an old caller (no conf) still works: the run's conf is {}
    message.unlink()
    database.value("SELECT airflow_dags.trigger_tpl_target('by hand')", user="alice")
    wait_for(message.exists, what="the run without conf")
    assert message.read_text() == "none|1"
