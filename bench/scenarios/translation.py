"""Scenario 7: Airflow DAG files translated per second, against Airflow's own parser.

A generated folder of DAG files (``bench.dag_corpus``; 1 000 files, quick 50)
is translated by ``pipeline.import_airflow`` (read, translate, write one SQL
file per DAG) in this process. The same folder is then loaded by Airflow's
``DagBag`` in the Airflow virtualenv (``$PGDURABLE_AIRFLOW_VENV``, made by
``.ci/airflow-venv.sh``) through ``bench/airflow_parse.py``: that is what an
Airflow deployment does to every file on each parse loop, so the ratio says
how a one-off translation compares with work Airflow repeats all the time.
Neither touches PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

from bench.context import Context
from bench.dag_corpus import generate
from bench.harness import Stats, repeat
from bench.report import Section, seconds, spread
from pgdurable import pipeline
from pgdurable.verify.airflow_real import AIRFLOW_VERSION, airflow_env, venv_path

KEY = "translation"
PARSER = Path(__file__).resolve().parent.parent / "airflow_parse.py"
AIRFLOW_TIMEOUT_S = 900


def translate_once(folder: Path, scratch: Path, count: int, summary: dict[str, int]) -> float:
    """Seconds for one ``import_airflow`` pass; ``summary`` gets its fidelity counts."""
    out = Path(tempfile.mkdtemp(dir=scratch, prefix="out-"))
    started = time.perf_counter()
    report = pipeline.import_airflow(paths=[folder], out_dir=out, default_username="etl")
    elapsed = time.perf_counter() - started
    if len(report.results) != count:
        raise RuntimeError(f"translated {len(report.results)} of {count} files: {report.summary}")
    summary.update(report.summary)
    return elapsed


def airflow_parse(folder: Path, home: Path, runs: int, warmup: int) -> dict | str:
    """Airflow's figures as parsed from ``airflow_parse.py``, or why there are none."""
    python = venv_path() / "bin" / "python"
    if not (venv_path() / "bin" / "airflow").is_file():
        return (
            f"not installed (no Airflow in {venv_path()}): run `.ci/airflow-venv.sh` to build "
            f"the Airflow {AIRFLOW_VERSION} virtualenv, or point PGDURABLE_AIRFLOW_VENV at one"
        )
    env = airflow_env(home)
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(folder)
    result = subprocess.run(
        [str(python), str(PARSER), str(folder), str(runs), str(warmup)],
        env=env,
        capture_output=True,
        text=True,
        timeout=AIRFLOW_TIMEOUT_S,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        return f"failed (exit {result.returncode}): {result.stderr.strip()[-500:]}"
    return json.loads(lines[-1])


def run(ctx: Context) -> Section:
    count = ctx.size(1000, 50)
    with tempfile.TemporaryDirectory(prefix="pgdurable-bench-dags-") as tmp:
        scratch = Path(tmp)
        folder = scratch / "dags"
        folder.mkdir()
        generate(folder, count)
        ctx.progress(f"translation: pgdurable import-airflow over {count} files")
        summary: dict[str, int] = {}
        ours = repeat(lambda: translate_once(folder, scratch, count, summary), ctx.runs, ctx.warmup)
        ctx.progress("translation: Airflow DagBag over the same folder")
        home = scratch / "airflow-home"
        home.mkdir()
        theirs = airflow_parse(folder, home, ctx.runs, ctx.warmup)

    ours_rate = count / ours.median
    section = Section(
        KEY,
        "7. Translating Airflow DAG folders",
        f"A generated folder of {count} DAG files (three templates in rotation: Airflow 1.x "
        "`*_operator` imports, 2.x TaskFlow with a TaskGroup and a branch, 3.x `airflow.sdk`; "
        "see `bench/dag_corpus.py`). pgdurable: `pipeline.import_airflow` (read, translate, "
        "write one `.sql` per DAG) in-process. Airflow: `DagBag(dag_folder=...)` in the "
        f"Airflow {AIRFLOW_VERSION} virtualenv (safe mode and the other settings at Airflow's "
        "defaults, example DAGs off), timed inside its process after `import airflow`. "
        f"Each: {ctx.runs} runs after {ctx.warmup} warm-up in one process; files/s = files ÷ "
        "median seconds per pass.",
        ["parser", "seconds per pass, median (min–max)", "files/s", "files OK / errors"],
    )
    section.rows.append(
        [
            "pgdurable import-airflow (translate + write)",
            spread(ours, seconds),
            f"{ours_rate:,.0f}",
            f"{count - summary['failed']} / {summary['failed']}",
        ]
    )
    section.notes.append(
        "pgdurable fidelity per file: "
        + ", ".join(f"{n} {name}" for name, n in summary.items())
        + " (manual = translated with a step left to finish by hand, e.g. a PythonOperator)."
    )
    section.data = {
        "files": count,
        "pgdurable_s": ours.as_dict(),
        "pgdurable_files_per_s": ours_rate,
        "pgdurable_fidelity": summary,
    }
    if isinstance(theirs, str):
        section.rows.append(["Airflow DagBag", theirs, "—", "—"])
        section.notes.append("No ratio: Airflow's parser was not run.")
        section.data["airflow"] = theirs
        return section
    stats = Stats(theirs["seconds"])
    their_rate = count / stats.median
    ok = count - theirs["import_errors"]
    section.rows.append(
        [
            f"Airflow {AIRFLOW_VERSION} DagBag (parse = execute each file)",
            spread(stats, seconds),
            f"{their_rate:,.0f}",
            f"{ok} / {theirs['import_errors']}",
        ]
    )
    ratio = ours_rate / their_rate
    section.rows.append(["ratio pgdurable ÷ Airflow (files/s)", "", f"{ratio:.2f}×", ""])
    section.notes.append(
        f"Airflow loaded {theirs['dags']} DAGs from {theirs['files_with_dags']} files; "
        f"{theirs['import_errors']} files failed to import, so Airflow's rate counts fast "
        "failures as files too: " + "; ".join(f"{n}× `{text}`" for text, n in theirs["errors"])
        if theirs["import_errors"]
        else f"Airflow loaded {theirs['dags']} DAGs, no import errors."
    )
    if theirs["import_errors"]:
        section.notes.append(
            "The failing files use Airflow 1.x module paths (`airflow.operators.bash_operator`, "
            "…) that Airflow 3 removed; pgdurable translates them since it reads the source "
            "without importing it. Airflow 2.x paths still import in Airflow 3 with "
            "deprecation warnings."
        )
    section.data["airflow"] = {**theirs, "seconds": stats.as_dict(), "files_per_s": their_rate}
    section.data["ratio"] = ratio
    return section
