"""Airflow labels that used to claim more than the translation does (issue 18)."""

from __future__ import annotations

from pathlib import Path

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
