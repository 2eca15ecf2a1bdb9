"""Golden tests of the worked examples: fixtures/examples/<example>/ ->
fixtures/examples/<example>/expected/.

The quick start translates the examples with exactly this call
(``quickstart.Example.translate``); its generated files and human summary are
committed as the expected output. ``pytest --update-goldens`` rewrites them;
review with ``git diff``.
"""

from __future__ import annotations

import shutil

import pytest

from pgdurable import quickstart

EXAMPLES = {ex.name: ex for ex in quickstart.EXAMPLES}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_golden(name, repo_root, tmp_path, monkeypatch, update_goldens):
    monkeypatch.chdir(repo_root)  # source references are relative to the repository
    example = EXAMPLES[name]
    out = tmp_path / name
    report = example.translate(repo_root.joinpath("fixtures/examples").relative_to(repo_root), out)
    got = {p.name: p.read_text() for p in sorted(out.iterdir())}
    got["summary.txt"] = report.text() + "\n"
    expected_dir = repo_root / "fixtures" / "examples" / name / "expected"
    if update_goldens:
        shutil.rmtree(expected_dir, ignore_errors=True)
        expected_dir.mkdir(parents=True)
        for file_name, text in got.items():
            (expected_dir / file_name).write_text(text)
    expected = {p.name: p.read_text() for p in sorted(expected_dir.iterdir())}
    assert sorted(got) == sorted(expected), "generated file set differs"
    for file_name in expected:
        assert got[file_name] == expected[file_name], f"{name}/{file_name} differs"
    assert report.summary["failed"] == 0
