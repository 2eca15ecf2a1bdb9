"""verify compares what jobs change (issue 18, item 3): materialized views always,
sequences when --compare names them, and it names each written target it did not
compare."""

from __future__ import annotations

from pathlib import Path

from pgdurable.verify import Options, compare, subjects, verify

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
JOBS = FIXTURES / "verify" / "pg_cron" / "reporting.sql"
SEED = FIXTURES / "seed" / "reporting.sql"


def _table(result, name):
    return next(t for t in result.tables if t.table == name)


def test_a_materialized_view_is_compared(admin, tmp_path):
    result = verify("pgcron", f"{JOBS}:refresh-sales", Options(SEED), admin)
    assert result.equal, result.text()
    view = _table(result, "public.sales_by_region")
    assert view.old_rows == 2 and view.equal  # refreshed on both sides
    # a hand-edited file that no longer refreshes the view is caught by the view alone
    subject = subjects.load("pgcron", f"{JOBS}:refresh-sales")
    edited = tmp_path / "refresh-sales.sql"
    edited.write_text(
        subject.generated_text.replace("REFRESH MATERIALIZED VIEW sales_by_region", "SELECT 1")
    )
    different = verify("pgcron", f"{JOBS}:refresh-sales", Options(SEED, workflow=edited), admin)
    assert different.verdict == "DIFFERENT", different.text()
    view = _table(different, "public.sales_by_region")
    assert view.only_old == [(("us", "10.00"), 1)] and view.only_new == [(("us", "7.25"), 1)]
    assert [t.table for t in different.tables if not t.equal] == ["public.sales_by_region"]


def test_a_sequence_is_named_unless_compared(admin):
    result = verify("pgcron", f"{JOBS}:invoice-run", Options(SEED), admin)
    assert result.equal, result.text()
    assert result.not_compared == [
        "sequence public.invoice_no: its value is not compared; add it to --compare to compare it"
    ]
    assert "not compared: sequence public.invoice_no" in result.text()
    asked = Options(SEED, compare=compare.Options(tables=["invoices", "invoice_no"]))
    compared = verify("pgcron", f"{JOBS}:invoice-run", asked, admin)
    assert compared.equal and compared.not_compared == [], compared.text()
    sequence = _table(compared, "public.invoice_no")
    assert sequence.columns == ["last_value", "is_called"]
    assert sequence.old_rows == 1 and sequence.equal


def test_a_written_table_left_out_of_compare_is_named(admin):
    options = Options(SEED, compare=compare.Options(tables=["invoices"]))
    result = verify("pgcron", f"{JOBS}:late-order", options, admin)
    assert result.equal
    assert result.not_compared == ["table public.orders: the job writes it; it is not in --compare"]
    assert result.as_dict()["not_compared"] == result.not_compared


def test_targets_are_read_from_the_generated_sql():
    text = (
        "SELECT pgdurable.deploy_workflow(definition => $sql$INSERT INTO stats.daily (n) "
        "SELECT nextval('stats.ids'); TRUNCATE TABLE ONLY staging; "
        'REFRESH MATERIALIZED VIEW CONCURRENTLY "Top"$sql$)'
    )
    assert compare.targets(text) == [
        "relation stats.daily",
        "sequence stats.ids",
        "relation public.staging",
        "relation public.Top",
    ]
