"""Golden tests: fixtures/airflow/dags (DAG files of Airflow 1.10, 2.x and 3.x,
broken ones included) -> fixtures/expected/airflow/<case>/.

Each case runs the whole import (static reader, compiler, file generation)
into a temporary folder and compares every generated file, the human summary
and the JSON report's diagnostics with the expected folder.
``pytest --update-goldens`` rewrites them; review with ``git diff``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pgdurable import pipeline

DAGS = Path("fixtures/airflow/dags")
CONNECTIONS = Path("fixtures/airflow/connections.yaml")
CASES = {
    "default": {"default_username": "etl"},
    "portable": {"default_username": "etl", "portable": True},
}


def generate(options: dict, out: Path) -> dict[str, str]:
    report = pipeline.import_airflow(
        paths=[DAGS], out_dir=out, connections_file=CONNECTIONS, **options
    )
    files = {p.name: p.read_text() for p in sorted(out.glob("*.sql"))}
    # the task modules of Python tasks, flattened into the expected folder's names
    files |= {
        f"airflow_tasks.{p.name}": p.read_text() for p in sorted(out.glob("airflow_tasks/*.py"))
    }
    files["summary.txt"] = report.text() + "\n"
    data = report.as_dict()
    for item in data["items"]:
        item.pop("output", None)
    files["report.json"] = json.dumps(data, indent=1, sort_keys=True) + "\n"
    return files


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case, repo_root, tmp_path, monkeypatch, update_goldens):
    monkeypatch.chdir(repo_root)  # source references are relative to the repository
    got = generate(CASES[case], tmp_path / "out")
    expected_dir = repo_root / "fixtures" / "expected" / "airflow" / case
    if update_goldens:
        shutil.rmtree(expected_dir, ignore_errors=True)
        expected_dir.mkdir(parents=True)
        for name, text in got.items():
            (expected_dir / name).write_text(text)
    expected = {p.name: p.read_text() for p in sorted(expected_dir.iterdir())}
    assert sorted(got) == sorted(expected), "generated file set differs"
    for name in expected:
        assert got[name] == expected[name], f"{case}/{name} differs (pytest --update-goldens)"


def test_every_fixture_is_covered(repo_root, monkeypatch):
    """At least 40 DAG files, every generation, broken and skipped files included."""
    monkeypatch.chdir(repo_root)
    files = sorted(DAGS.rglob("*.py"))
    assert len(files) >= 40
    names = {f.name[:2] for f in files}
    assert {"a1", "a2", "a3", "e0", "e1", "br"} <= names
    report = pipeline.import_airflow(
        paths=[DAGS], out_dir=Path("/nonexistent"), connections_file=CONNECTIONS, dry_run=True
    )
    assert report.skipped == ["fixtures/airflow/dags/lib/helpers.py"]
    failed = {r.name: r.diagnostics[0].code for r in report.results if r.workflow is None}
    assert failed == {"a2_cycle": "PGD106", "a2_duplicate": "PGD106", "broken_syntax": "PGD105"}
    broken = next(r for r in report.results if r.name == "broken_syntax")
    assert broken.source_ref.line == 3  # CPython places it: the "(" never closed
