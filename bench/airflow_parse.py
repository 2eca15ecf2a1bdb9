"""Time Airflow's own DAG parser over a folder; run by Airflow's python, not ours.

Usage: ``<airflow venv>/bin/python bench/airflow_parse.py FOLDER RUNS WARMUP``.
Builds a ``DagBag`` over FOLDER (safe mode and everything else as Airflow's
configuration defaults it; example DAGs are off through the environment the
caller sets) ``WARMUP`` times unrecorded and then ``RUNS`` times, and prints
one JSON object: the seconds of each recorded run, the DAGs loaded, the files
that failed to import and the first line of each distinct error. Importing
Airflow itself happens before the clock starts, as it would in a long-lived
DAG processor. This file imports nothing from pgdurable or bench.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter


def main() -> None:
    folder, runs, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    from airflow.dag_processing.dagbag import DagBag

    timings: list[float] = []
    bag = None
    for attempt in range(warmup + runs):
        started = time.perf_counter()
        bag = DagBag(dag_folder=folder)
        elapsed = time.perf_counter() - started
        if attempt >= warmup:
            timings.append(elapsed)
    assert bag is not None
    # Keep the last line of each traceback: the exception, which names the missing import.
    errors = Counter(
        (text.strip().splitlines() or ["?"])[-1][:200] for text in bag.import_errors.values()
    )
    print(
        json.dumps(
            {
                "seconds": timings,
                "dags": len(bag.dags),
                "files_with_dags": len({dag.fileloc for dag in bag.dags.values()}),
                "import_errors": len(bag.import_errors),
                "errors": errors.most_common(),
            }
        )
    )


if __name__ == "__main__":
    main()
