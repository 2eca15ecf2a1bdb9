"""verify --queue: the mapped SQL / the real psql per run against the translated job."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgdurable.errors import VerificationError
from pgdurable.verify import Options, verify

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SEED = Path(__file__).resolve().parents[2] / "fixtures" / "seed"


QUEUE = FIXTURES / "verify" / "queue"


@pytest.mark.parametrize(
    "spec",
    [
        "celeryconfig.py:expire-tokens",
        "celeryconfig.py:nightly-summary",  # $args bound to the entry's kwargs
        "app.crontab",  # psql -c: one implicit transaction, run by the real psql
        # -U without -d (libpq: database queue_app) and PGDATABASE=shop: the run starts
        # in this side's clone; SET before a later -c and PGTZ hold as in psql's session
        "session.crontab:search-path-to-pg-catalog",
        "session.crontab:insert-summaries-region",
    ],
)
def test_translated_queue_entries_leave_the_same_data(admin, spec):
    options = Options(SEED / "queue.sql", tasks_file=QUEUE / "tasks.yaml", run_as="queue_app")
    result = verify("queue", str(QUEUE / spec), options, admin)
    assert result.equal, result.text()
    assert result.old_runs == ["succeeded"]
    assert any(t.old_rows != 3 or t.table != "public.tokens" for t in result.tables)


def test_an_unmapped_task_is_refused_with_the_fix(admin):
    with pytest.raises(VerificationError, match="pass the --tasks file"):
        verify(
            "queue",
            f"{QUEUE / 'celeryconfig.py'}:expire-tokens",
            Options(SEED / "queue.sql"),
            admin,
        )
