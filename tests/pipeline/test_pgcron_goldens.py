"""Golden tests: fixtures/pg_cron/<source> -> fixtures/expected/pg_cron/<case>/.

Each case runs the whole import (reader, translator, file generation) into a
temporary folder and compares every generated file, plus the human summary,
with the expected folder. `pytest --update-goldens` rewrites the expected
folders; review the change with `git diff` before committing it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pgdurable import pipeline

CASES = {
    "cron_job_export": ("cron_job_export.csv", {}),
    "cron_job_export_portable": ("cron_job_export.csv", {"portable": True}),
    "cron_job_v1_0": ("cron_job_v1_0.tsv", {}),
    "schedule_script": (
        "schedule_script.sql",
        {"default_username": "app_owner", "default_database": "app"},
    ),
}


def generate(repo_root: Path, fixture: str, options: dict, out: Path) -> dict[str, str]:
    report = pipeline.import_pgcron(
        from_db=None, from_file=Path("fixtures/pg_cron") / fixture, out_dir=out, **options
    )
    files = {p.name: p.read_text() for p in sorted(out.glob("*.sql"))}
    files["summary.txt"] = report.text() + "\n"
    return files


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case, repo_root, tmp_path, monkeypatch, update_goldens):
    monkeypatch.chdir(repo_root)  # source references are relative to the repository
    fixture, options = CASES[case]
    got = generate(repo_root, fixture, options, tmp_path / "out")
    expected_dir = repo_root / "fixtures" / "expected" / "pg_cron" / case
    if update_goldens:
        shutil.rmtree(expected_dir, ignore_errors=True)
        expected_dir.mkdir(parents=True)
        for name, text in got.items():
            (expected_dir / name).write_text(text)
    expected = {p.name: p.read_text() for p in sorted(expected_dir.iterdir())}
    assert sorted(got) == sorted(expected), "generated file set differs"
    for name in expected:
        assert got[name] == expected[name], f"{case}/{name} differs (pytest --update-goldens)"
