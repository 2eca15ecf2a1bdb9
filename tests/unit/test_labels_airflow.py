"""Airflow labels that used to claim more than the translation does (issue 18)."""

from __future__ import annotations

from pathlib import Path

from pgdurable import model as m
from pgdurable.diagnostics import Fidelity
from pgdurable.translators import airflow
from pgdurable.translators.base import TranslateContext

LABELS = Path(__file__).resolve().parents[2] / "fixtures" / "labels" / "airflow"


def _translate(path: Path):
    batch = airflow.translate(airflow.read_paths([path]), TranslateContext(default_username="etl"))
    return {r.name: r for r in batch.results}


def test_tasks_of_unknown_operator_classes_are_manual_items():
    result = _translate(LABELS / "company_plugins.py")["acme_nightly_refresh"]
    assert result.fidelity == Fidelity.MANUAL and not result.workflow.start
    messages = [d.message for d in result.diagnostics if d.code == "PGD311"]
    assert len(messages) == 2
    assert messages[0].startswith("task 'upsert_orders' (RedshiftUpsertOperator): ")
    assert "acme_airflow.operators.warehouse.RedshiftUpsertOperator at line 19" in messages[0]
    assert "plugins.operators.dbt.DbtRunOperator at line 25" in messages[1]
    # each becomes a stub step that fails loudly, so the run cannot pass silently
    text = str(result.workflow.body)
    assert "upsert_orders" in text and "dbt_run" in text


def _batch(*paths: Path, **kwargs):
    ctx = TranslateContext(default_username="etl")
    return airflow.translate(airflow.read_paths(list(paths)), ctx, **kwargs)


def _diags(result, code: str) -> list[str]:
    return [d.message for d in result.diagnostics if d.code == code]


def _sql(node) -> list[str]:
    return [n.query for n in m.walk(node) if isinstance(n, m.Sql)]


def test_taskflow_and_partial_expand_over_literals_become_joins():
    result = _translate(LABELS / "mapped_refresh.py")["reporting_refresh"]
    joins = [n for n in m.walk(result.workflow.body) if isinstance(n, m.Join)]
    refresh = [
        "REFRESH MATERIALIZED VIEW CONCURRENTLY reporting.daily_revenue",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY reporting.active_customers",
    ]
    analyze = ["ANALYZE reporting.daily_revenue", "ANALYZE reporting.active_customers"]
    assert [_sql(j) for j in joins if _sql(j) in (refresh, analyze)] == [refresh, analyze]
    # mapped over an upstream's output: manual, naming the value and the line
    (message,) = _diags(result, "PGD315")
    assert "'drop_partition' (line 33)" in message
    assert "the output of task 'stale_partitions'" in message
    assert result.fidelity == Fidelity.MANUAL and not _diags(result, "PGD311")
    assert ("stale_partitions", "drop_partition") in _dag_edges(result)


def _dag_edges(result):
    from pgdurable.translators.airflow.visitor import read

    path = Path(result.source_ref.file)
    (dag,) = read(str(path), path.read_text()).dags
    return dag.edges


def test_expand_takes_the_cross_product_of_its_lists(tmp_path):
    dag = tmp_path / "grid.py"
    dag.write_text(
        "from airflow import DAG\n"
        "from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator\n"
        "with DAG('grid', schedule=None):\n"
        "    SQLExecuteQueryOperator.partial(task_id='t', conn_id='postgres_default').expand(\n"
        "        sql=['SELECT 1', 'SELECT 2'], parameters=[{'a': 1}, {'a': 2}, {'a': 3}])\n"
    )
    (result,) = _batch(dag).results
    (join,) = [n for n in m.walk(result.workflow.body) if isinstance(n, m.Join)][:1]
    assert len(_sql(join)) == 6 and result.fidelity == Fidelity.EXACT


def test_check_rows_keep_duplicate_column_names_and_hook_params_are_carried():
    result = _translate(LABELS / "quality_checks.py")["orders_quality_gate"]
    steps = _sql(result.workflow.body)
    check = next(q for q in steps if "order_lines" in q)
    rollup = next(q for q in steps if "order_rollup" in q)
    assert "row_to_json(q)" in check and "json_each(r)" in check and "to_jsonb(q)" not in check
    assert rollup.startswith(
        "SELECT set_config('statement_timeout', '300000', true);\n"
        "SELECT set_config('lock_timeout', '5s', true);\nINSERT INTO order_rollup"
    )
    assert result.workflow.profile == "pgdurable"
    # SQLCheckOperator without a conn_id: Airflow fails it, the translation runs it
    (conn,) = _diags(result, "PGD251")
    assert "task 'no_orphan_lines'" in conn and "The conn_id `None` isn't defined" in conn
    assert result.fidelity == Fidelity.APPROXIMATE


def test_postgres_operator_without_conn_id_uses_its_default(tmp_path):
    dag = tmp_path / "pg.py"
    dag.write_text(
        "from airflow import DAG\n"
        "from airflow.providers.postgres.operators.postgres import PostgresOperator\n"
        "with DAG('pg', schedule_interval=None):\n"
        "    a = PostgresOperator(task_id='a', sql='SELECT 1')\n"
        "    b = PostgresOperator(task_id='b', sql='SELECT 2')\n"
    )
    (result,) = _batch(dag).results
    (note,) = _diags(result, "PGD250")
    assert "tasks 'a', 'b'" in note and result.fidelity == Fidelity.EXACT


def test_hook_params_that_cannot_be_carried_are_reported(tmp_path):
    dag = tmp_path / "hp.py"
    dag.write_text(
        "from airflow.sdk import DAG\n"
        "from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator\n"
        "with DAG('hp', schedule=None):\n"
        "    SQLExecuteQueryOperator(task_id='a', sql='SELECT 1',\n"
        "        hook_params={'options': '-c statement_timeout=5s', 'sslmode': 'require'})\n"
    )
    (result,) = _batch(dag).results
    assert any("'sslmode'" in msg for msg in _diags(result, "PGD252"))
    # Airflow 3, no conn_id: the task fails there; the translation says whose behaviour it follows
    (conn,) = _diags(result, "PGD251")
    assert "Airflow fails such a task" in conn and result.fidelity == Fidelity.APPROXIMATE
    portable = airflow.translate(
        airflow.read_paths([dag]), TranslateContext(default_username="etl", portable=True)
    ).results[0]
    assert any("--portable" in msg for msg in _diags(portable, "PGD252"))
    assert not any("set_config" in q for q in _sql(portable.workflow.body))


def test_legacy_trigger_callable_is_manual_and_foreign_targets_are_reported():
    alone = _translate(LABELS / "legacy_trigger.py")["nightly_controller"]
    (stub,) = _diags(alone, "PGD311")
    assert "python_callable" in stub and "only_on_weekdays()" in stub
    (foreign,) = _diags(alone, "PGD330")
    assert "'reporting_refresh_v2'" in foreign and alone.fidelity == Fidelity.MANUAL
    assert not alone.workflow.start


def test_a_trigger_of_a_dag_in_the_same_import_is_not_reported(tmp_path):
    target = tmp_path / "target.py"
    target.write_text(
        "from airflow import DAG\n"
        "from airflow.operators.empty import EmptyOperator\n"
        "with DAG('reporting_refresh_v2', schedule=None):\n"
        "    EmptyOperator(task_id='x')\n"
    )
    batch = _batch(LABELS / "legacy_trigger.py", target)
    controller = {r.name: r for r in batch.results}["nightly_controller"]
    assert not _diags(controller, "PGD330") and _diags(controller, "PGD311")


def test_same_dag_id_in_two_folders_gets_two_outputs(tmp_path):
    from pgdurable import output

    batch = _batch(LABELS / "teams")
    names = sorted(r.name for r in batch.results)
    assert names == ["etl__finance_etl", "etl__marketing_etl"]
    for r in batch.results:
        assert _diags(r, "PGD254") and r.fidelity == Fidelity.EXACT
    plan = output.plan("airflow", batch.results, tmp_path)
    bodies = [t for p, t in plan.files.items() if p.name not in (output.CUTOVER, output.ROLLBACK)]
    assert len(bodies) == 2
    assert any("finance.load" in t for t in bodies) and any("marketing.load" in t for t in bodies)


def test_missing_template_files_are_reported_once_and_can_be_mapped():
    folder = LABELS / "searchpath"
    (result,) = _batch(folder).results
    missing = _diags(result, "PGD317")
    assert len(missing) == 2 and not _diags(result, "PGD311")
    dims = next(msg for msg in missing if "build_dims.sql" in msg)
    assert "tasks 'dims_eu', 'dims_us'" in dims and "--search-path-map /opt/airflow" in dims
    (operand,) = _diags(result, "PGD315")
    assert "`finaliser_for(dag)` is not a task" in operand
    (mapped,) = _batch(folder, search_path_map=[("/opt/airflow/sql", str(folder / "sql"))]).results
    assert not any("load_orders.sql" in msg for msg in _diags(mapped, "PGD317"))
    assert any("INSERT INTO orders SELECT" in q for q in _sql(mapped.workflow.body))


def test_search_path_map_is_checked_by_the_cli(tmp_path):
    from click.testing import CliRunner

    from pgdurable.cli import cli

    args = ["import-airflow", str(LABELS / "searchpath"), "--out", str(tmp_path)]
    bad = CliRunner().invoke(cli, [*args, "--search-path-map", "/opt/airflow/sql"])
    assert bad.exit_code == 2 and "OLD=NEW" in bad.output
    folder = str(LABELS / "searchpath" / "sql")
    good = CliRunner().invoke(cli, [*args, "--search-path-map", f"/opt/airflow/sql={folder}"])
    assert good.exit_code == 0, good.output
    assert "INSERT INTO orders SELECT" in (tmp_path / "warehouse_loads.sql").read_text()


def _window(result):
    """The condition around each tick's run, and what happens outside it."""
    loop = result.workflow.body
    assert isinstance(loop, m.Loop)
    gate = next(n for n in m.walk(loop) if isinstance(n, m.If))
    return gate


def test_start_and_end_date_gate_every_tick_and_end_the_schedule():
    result = _translate(LABELS / "campaign_window.py")["holiday_campaign_counters"]
    gate = _window(result)
    inside = gate.condition.query
    assert inside.startswith("SELECT $dag_run.data_interval_start::timestamptz >= ")
    assert "(timestamp '2031-11-24T00:00:00' AT TIME ZONE 'Europe/Berlin')" in inside
    assert "<= (timestamp '2031-12-27T00:00:00' AT TIME ZONE 'Europe/Berlin')" in inside
    assert isinstance(gate.otherwise, m.If) and isinstance(gate.otherwise.then, m.Break)
    assert "INSERT INTO campaign_stats" in " ".join(_sql(gate.then))
    (note,) = _diags(result, "PGD256")
    assert "after end_date the schedule ends" in note and result.fidelity == Fidelity.EXACT


def test_dates_only_known_at_run_time_are_reported(tmp_path):
    dag = tmp_path / "rolling.py"
    dag.write_text(
        "from datetime import datetime\n"
        "from airflow import DAG\n"
        "from airflow.models import Variable\n"
        "from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator\n"
        "with DAG('rolling', schedule='@daily', start_date=datetime(2024, 1, 1),\n"
        "         end_date=Variable.get('sunset')):\n"
        "    SQLExecuteQueryOperator(task_id='t', conn_id='postgres_default', sql='SELECT 1')\n"
    )
    (result,) = _batch(dag).results
    (message,) = _diags(result, "PGD255")
    assert "end_date `Variable.get('sunset')`" in message
    assert result.fidelity == Fidelity.APPROXIMATE


def test_each_mapped_instance_is_retried_on_its_own(tmp_path):
    dag = tmp_path / "retried.py"
    dag.write_text(
        "from datetime import timedelta\n"
        "from airflow.sdk import DAG\n"
        "from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator\n"
        "with DAG('retried', schedule=None, default_args={'retries': 2}):\n"
        "    SQLExecuteQueryOperator.partial(task_id='t', conn_id='postgres_default',\n"
        "        retry_delay=timedelta(seconds=30)).expand(sql=['SELECT 1', 'SELECT 2'])\n"
    )
    (result,) = _batch(dag).results
    (join,) = [n for n in m.walk(result.workflow.body) if isinstance(n, m.Join)]
    assert [type(part) for part in join.branches] == [m.Retry, m.Retry]
    assert not [n for n in m.walk(result.workflow.body) if isinstance(n, m.Retry)][2:]
    assert result.workflow.profile == "pgdurable"


def test_a_trigger_with_its_own_logical_date_or_run_id_is_manual(tmp_path):
    dag = tmp_path / "controller.py"
    dag.write_text(
        "from airflow import DAG\n"
        "from airflow.operators.empty import EmptyOperator\n"
        "from airflow.operators.trigger_dagrun import TriggerDagRunOperator\n"
        "with DAG('target', schedule=None):\n"
        "    EmptyOperator(task_id='x')\n"
        "with DAG('controller', schedule=None):\n"
        "    TriggerDagRunOperator(task_id='go', trigger_dag_id='target',\n"
        "                          logical_date='{{ ds }}', trigger_run_id='nightly')\n"
    )
    controller = {r.name: r for r in _batch(dag).results}["controller"]
    (message,) = _diags(controller, "PGD311")
    assert "logical_date/trigger_run_id is not passed" in message
    assert controller.fidelity == Fidelity.MANUAL
