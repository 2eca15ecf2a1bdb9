"""Labels of bash templates rendered at run time, static bash commands and trigger conf
(translators/airflow/runtime_templates.py, static_calls.py, dag_run_conf.py), and the
run-time renderer itself (pgdurable/airflow_templates.py) against Airflow's rules."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pgdurable import airflow_templates
from pgdurable import model as m
from pgdurable.diagnostics import Fidelity
from pgdurable.translators import airflow
from pgdurable.translators.base import TranslateContext

HEAD = """
import os
import textwrap
from datetime import datetime
from airflow import DAG
from airflow.decorators import task
from airflow.operators.bash import BashOperator
from airflow.operators.trigger_dagrun import TriggerDagRunOperator
"""


def translate(tmp_path, body: str, name: str = "d"):
    path = tmp_path / f"{name}.py"
    path.write_text(HEAD + body)
    ctx = TranslateContext(default_username="etl")
    (result,) = airflow.translate(airflow.read_paths([path]), ctx).results
    return result


def dag(*tasks: str, params: str = "{}", version: str = "") -> str:
    lines = "\n".join(f"    {t}" for t in tasks)
    return (
        f'with DAG("d", schedule=None, start_date=datetime(2024, 1, 1), params={params}) as dag:\n'
        f"{lines}\n"
    )


def codes(result) -> list[str]:
    return [d.code for d in result.diagnostics]


def messages(result, code: str) -> list[str]:
    return [d.message for d in result.diagnostics if d.code == code]


def nodes(node) -> list:
    found = [node]
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        for child in value if isinstance(value, tuple) else [value]:
            if isinstance(child, m.NodeBase):
                found += nodes(child)
    return found


def test_a_template_sql_cannot_express_is_rendered_at_run_time(tmp_path):
    result = translate(
        tmp_path,
        dag('BashOperator(task_id="t", bash_command="echo {{ task_instance_key_str }}")'),
    )
    assert result.fidelity == Fidelity.APPROXIMATE, result.diagnostics
    assert "PGD312" not in codes(result)
    (note,) = messages(result, "PGD271")
    assert "rendered when it runs, by the Python step airflow_tasks.d:pgdurable_render_t" in note
    text = m.encode(result.workflow.body)
    assert '"argv": [\\"bash\\", \\"-c\\", \\"$render_t.command\\"]'.replace("\\", "") in (
        text.replace("\\", "")
    )
    # the template lives in the task module, not in the database's graph
    assert "task_instance_key_str" not in text
    assert "task_instance_key_str" in result.workflow.code_files[0][1]


@pytest.mark.parametrize(
    ("template", "named"),
    [
        ("{{ inlet_events['x'] }}", "'inlet_events'"),
        ("{{ dag_run.start_date }}", "dag_run.start_date is not provided"),
        ("{{ ds | shout }}", "the filter 'shout'"),
        ("{% include 'other.sh' %}", "{% include %} reads another template file"),
        ("{{ ti.xcom_push(key='k', value=1) }}", "ti.xcom_push(...) in a command template"),
        ("{{ ti.xcom_pull(task_ids='nope') }}", "task 'nope', which is not an upstream"),
        ("{{ ti.xcom_pull(task_ids=name) }}", "without literal task_ids"),
        ("{{ macros.ds_format_locale(ds, '%Y', 'yyyy') }}", "macros.ds_format_locale"),
        ("{{ foo' }}", "does not parse"),
    ],
)
def test_what_the_run_time_context_lacks_stays_manual_naming_it(tmp_path, template, named):
    command = json.dumps(f"echo {template} {{{{ task_instance_key_str }}}}")
    result = translate(tmp_path, dag(f'BashOperator(task_id="t", bash_command={command})'))
    assert result.fidelity == Fidelity.MANUAL
    (reason,) = messages(result, "PGD345")
    assert reason.startswith("task 't': its templates cannot be rendered at run time either: ")
    assert named in reason, reason


def test_values_that_differ_from_airflow_are_approximate_with_the_difference(tmp_path):
    result = translate(
        tmp_path,
        dag(
            'BashOperator(task_id="t", bash_command="echo {{ ti.try_number }} {{ logical_date }}")'
        ),
    )
    assert result.fidelity == Fidelity.APPROXIMATE
    notes = " ".join(messages(result, "PGD285"))
    assert "ti.try_number is always 1" in notes and "pendulum" in notes
    result = translate(
        tmp_path, dag('BashOperator(task_id="t", bash_command="echo {{ dag_run }}")'), "e"
    )
    assert result.fidelity == Fidelity.APPROXIMATE
    assert "stand-in for Airflow's object" in " ".join(messages(result, "PGD285"))


def test_bash_commands_built_from_literals_are_evaluated(tmp_path):
    body = (
        'BASE = "/opt/jobs"\n'
        'SCRIPT = textwrap.dedent("""\n    echo one\n    echo two\n""")\n'
        + dag(
            'BashOperator(task_id="a", bash_command=SCRIPT)',
            'BashOperator(task_id="b", bash_command=os.path.join(BASE, "run.sh") + " --go ")',
            'BashOperator(task_id="c", bash_command=f"echo {BASE}")',
            'BashOperator(task_id="d", bash_command=os.path.join(os.getcwd(), "x"))',
        )
    )
    result = translate(tmp_path, body)
    argv = sorted(n.argv for n in nodes(result.workflow.body) if isinstance(n, m.Command))
    assert ("bash", "-c", "echo one\necho two") in argv
    assert ("/opt/jobs/run.sh", "--go") in argv and ("echo", "/opt/jobs") in argv
    (manual,) = messages(result, "PGD311")
    assert 'bash_command `os.path.join(os.getcwd(), "x")` is not known' in manual


def test_trigger_conf_is_passed_hex_encoded_and_a_template_in_it_is_manual(tmp_path):
    conf = {"m": "it's $x {y}"}
    result = translate(
        tmp_path,
        dag(f'TriggerDagRunOperator(task_id="go", trigger_dag_id="other", conf={conf!r})'),
    )
    (step,) = [
        n for n in nodes(result.workflow.body) if isinstance(n, m.Sql) and "trigger_" in n.query
    ]
    hexed = json.dumps(conf, sort_keys=True).encode().hex()
    assert step.query == (
        f"SELECT airflow_dags.\"trigger_other\"(NULL, convert_from(decode('{hexed}', 'hex'), "
        "'UTF8')::jsonb) AS instance_id"
    )
    templated = translate(
        tmp_path,
        dag('TriggerDagRunOperator(task_id="go", trigger_dag_id="other", conf={"d": "{{ ds }}"})'),
        "e",
    )
    (manual,) = messages(templated, "PGD346")
    assert "is not a static JSON dict without templates" in manual


def payload(**extra):
    row = {"ds": "2024-06-01", "ds_nodash": "20240601", "ts": "2024-06-01T00:00:00+00:00",
           "run_id": "manual__x", "conf": {"n": 5}}  # fmt: skip
    return {"dag_id": "d", "task_id": "t", "generation": 2,
            "dag_run": json.dumps([row]), "params": {"n": 1, "k": "v"}, **extra}  # fmt: skip


def test_the_renderer_follows_airflow_context_and_environment():
    text = (
        "{{ task_instance_key_str }} {{ params.n }} {{ params.k }} {{ dag_run.conf.n }} "
        "{{ macros.ds_add(ds, -1) }} {{ macros.ds_format(ds, '%Y-%m-%d', '%d/%m') }} "
        "{{ macros.timedelta(days=1).days }} {{ logical_date | ts_nodash }}"
    )
    assert airflow_templates.render(text, payload()) == (
        "d__t__20240601 5 v 5 2024-05-31 01/06 1 20240601T000000"
    )
    # Airflow 1.10: conf does not override params, an unknown name renders empty
    old = payload(generation=1)
    assert airflow_templates.render("{{ params.n }}|{{ missing }}", old) == "1|"
    import jinja2

    with pytest.raises(jinja2.UndefinedError):
        airflow_templates.render("{{ missing }}", payload())
    with pytest.raises(jinja2.exceptions.SecurityError):
        airflow_templates.render("{{ ''.__class__.__mro__ }}", payload())
    with pytest.raises((jinja2.exceptions.SecurityError, jinja2.UndefinedError)):
        airflow_templates.render("{{ macros.json.__loader__ }}", payload())


@pytest.mark.parametrize(
    "escape",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ macros.uuid.os.system('touch /tmp/pwned') }}",
        "{{ macros.json.codecs }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ ti._run.__dict__ }}",
        "{% set x = [] %}{% do x.append(1) %}{{ x }}",
    ],
)
def test_templates_cannot_leave_the_sandbox(escape):
    import jinja2

    with pytest.raises((jinja2.exceptions.SecurityError, jinja2.UndefinedError, AttributeError)):
        airflow_templates.render(escape, payload())


def test_single_underscore_attributes_and_module_functions_work_as_in_airflow():
    text = "{{ macros.uuid.uuid4() | string | length }} {{ macros.json.dumps({'a': 1}) }} {{ ti._run is defined }}"
    assert airflow_templates.render(text, payload()) == '36 {"a": 1} True'


def test_task_ids_alike_and_mapped_copies_get_their_own_render_step(tmp_path):
    result = translate(
        tmp_path,
        dag(
            'BashOperator.partial(task_id="t").expand(bash_command=['
            '"echo {{ task_instance_key_str }} a", "echo {{ task_instance_key_str }} b"])',
            'BashOperator(task_id="a.b", bash_command="echo {{ task_instance_key_str }} 1")',
            'BashOperator(task_id="a_b", bash_command="echo {{ task_instance_key_str }} 2")',
        ),
    )
    steps = [n for n in nodes(result.workflow.body) if isinstance(n, m.Python)]
    assert sorted(s.name for s in steps) == ["render_a_b", "render_a_b_2", "render_t", "render_t_2"]
    assert len({s.callable for s in steps}) == 4
    module = result.workflow.code_files[0][1]
    for text in ("} a'", "} b'", "} 1'", "} 2'"):
        assert module.count(text) == 1
