"""Bad input to every translator gets a clear error and changes nothing
(issue 11 §3): truncated, binary, huge and malicious files, YAML bombs,
deeply nested Python, and hypothesis-mutated copies of the real fixtures.

Each file goes through the real command line (in process, ``CliRunner``).
Whatever the input, the command must:

- end with exit code 0 or 1 (never a traceback, never a crash);
- when it prints ``error:`` (the whole run refused), write no file at all;
- never leave a temporary file behind (writes are atomic);
- say the same thing twice for the same input (a stable diagnostic);
- never execute the source (a DAG or Celery config that would create a
  marker file when imported leaves no marker).

Regressions found here: a non-UTF-8 ``--from-file`` raised UnicodeDecodeError
with a traceback; deeply nested Python crashed the process (segmentation
fault in LibCST's parser); a YAML alias bomb hung the queue reader; deeply
nested YAML raised RecursionError with a traceback.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgdurable.cli import cli

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

# (name, command line before the input path, suffix of the input, a real fixture)
TARGETS = [
    ("pgcron-sql", ["import-pgcron", "--from-file"], ".sql", "pg_cron/schedule_script.sql"),
    ("pgcron-csv", ["import-pgcron", "--from-file"], ".csv", "pg_cron/cron_job_export.csv"),
    ("pgcron-tsv", ["import-pgcron", "--from-file"], ".tsv", "pg_cron/cron_job_v1_0.tsv"),
    ("celery", ["import-queue", "--format", "celery"], ".py", "queue/celery/celeryconfig.py"),
    ("sidekiq", ["import-queue", "--format", "sidekiq"], ".yml", None),
    ("k8s", ["import-queue", "--format", "k8s"], ".yaml", None),
    ("crontab", ["import-queue", "--format", "crontab"], ".crontab", "queue/crontab/app.crontab"),
    ("queue-auto", ["import-queue"], ".yaml", None),
    ("airflow", ["import-airflow"], ".py", "airflow/dags/a2_loops.py"),
]


def _first(folder: str, pattern: str) -> str | None:
    found = sorted((FIXTURES / folder).rglob(pattern))
    return str(found[0].relative_to(FIXTURES)) if found else None


def _fixture(target: tuple) -> bytes:
    name, _, suffix, path = target
    if path is None:
        path = _first(f"queue/{name}", "*.y*ml") or "queue/celery/tasks.yaml"
    return (FIXTURES / path).read_bytes()


MARKER = "/tmp/pgdurable-hostile-marker"


def _hostile_corpus(suffix: str) -> dict[str, bytes]:
    bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 10):
        previous = "a" if i == 1 else f"l{i - 1}"
        bomb.append(f"l{i}: &l{i} [" + ",".join([f"*{previous}"] * 9) + "]")
    corpus = {
        "empty": b"",
        "binary": bytes(range(256)) * 64,
        "nul-bytes": b"x = 1\x00\x00\n" * 10,
        "latin1": "beat_schedule = {'caf\xe9': 1}\n".encode("latin-1"),
        "bom": "\ufeff".encode() + b"a: 1\n",
        "yaml-bomb": ("\n".join(bomb) + "\n").encode(),
        "yaml-deep": ("a: " + "[" * 20000 + "]" * 20000 + "\n").encode(),
        "yaml-tag": b"x: !!python/object/apply:os.system ['touch " + MARKER.encode() + b"']\n",
        "python-deep-parens": ("x = " + "(" * 5000 + "1" + ")" * 5000 + "\n").encode(),
        "python-deep-unary": ("x = " + "-" * 100000 + "1\n").encode(),
        "python-long-chain": ("x = " + "+".join(["1"] * 50000) + "\n").encode(),
        "python-runs-code": (
            f"import os\nos.system('touch {MARKER}')\nopen('{MARKER}', 'w')\n"
            "from airflow import DAG\nwith DAG('d') as dag:\n    pass\n"
            f"beat_schedule = {{'x': {{'task': __import__('os').system('touch {MARKER}')}}}}\n"
        ).encode(),
        "sql-unterminated": b"SELECT cron.schedule('j', '* * * * *', $$ DELETE FROM t\n",
        "sql-injection-name": (
            b"SELECT cron.schedule('x''); DROP TABLE t; --', '* * * * *', 'SELECT 1');\n"
        ),
        "sql-deep": b"SELECT cron.schedule(" + b"(" * 20000 + b")" * 20000 + b");\n",
        "csv-ragged": b'jobid,schedule,command\n1,"* * * * *\n2,,,,,,,,,,,,,,,,\n"\n',
        "crontab-garbage": b"* * * * * *\n@reboot\n61 25 32 13 8 x\n" + b"%" * 1000 + b"\n",
        "huge-lines": b"# " + b"x" * (4 * 1024 * 1024) + b"\n",
    }
    many = "".join(f"*/5 * * * * psql -c 'SELECT {i}'\n" for i in range(3000))
    corpus["huge-many-jobs"] = many.encode()
    return corpus


def run(target: tuple, data: bytes, work: Path) -> tuple[int, str, list[Path]]:
    """Run the target's command on ``data``; (exit code, output, files written)."""
    _, command, suffix, _ = target
    work.mkdir(parents=True, exist_ok=True)
    source = work / f"input{suffix}"
    source.write_bytes(data)
    out = work / "out"
    result = CliRunner().invoke(cli, [*command, str(source), "--out", str(out)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(
            f"{target[0]}: {type(result.exception).__name__}: {result.exception}\n{result.output}"
        ) from result.exception
    files = sorted(p for p in out.rglob("*") if p.is_file()) if out.exists() else []
    return result.exit_code, result.output, files


def check(target: tuple, data: bytes, work: Path) -> str:
    code, output, files = run(target, data, work)
    assert code in (0, 1), (target[0], code, output[-2000:])
    assert "Traceback" not in output, output[-2000:]
    assert not [p for p in files if p.name.endswith(".tmp")], files
    if any(line.startswith("error:") for line in output.splitlines()):
        assert files == [], f"{target[0]}: refused run wrote {files}"
    assert not Path(MARKER).exists(), f"{target[0]} executed the source"
    return output.replace(str(work), "<work>")


@pytest.mark.parametrize("target", TARGETS, ids=[t[0] for t in TARGETS])
def test_hostile_files_get_a_clear_error_and_write_nothing(target, tmp_path):
    corpus = _hostile_corpus(target[2])
    fixture = _fixture(target)
    rng = random.Random(11)
    for cut in sorted(rng.sample(range(1, max(len(fixture), 2)), min(8, len(fixture) - 1))):
        corpus[f"truncated-{cut}"] = fixture[:cut]
    for name, data in corpus.items():
        first = check(target, data, tmp_path / name / "a")
        again = check(target, data, tmp_path / name / "b")
        assert first.replace("/b/", "/a/") == again.replace("/b/", "/a/"), name


def _mutations(fixture: bytes):
    """Copies of a real source with bytes cut, repeated, replaced or inserted."""
    tokens = [b"$$", b"'", b'"', b"{", b"}", b"[", b"(", b":", b"&a", b"*a", b"\\", b"\n  ",
              b"\t", b"#", b"%", b"@", b"\xff", b"\x00", b"{{", b"}}", b"---\n", b"<<: *a"]  # fmt: skip
    edit = st.tuples(
        st.sampled_from(["cut", "insert", "repeat", "replace"]),
        st.integers(0, max(len(fixture) - 1, 0)),
        st.integers(1, 64),
        st.one_of(st.sampled_from(tokens), st.binary(min_size=1, max_size=8)),
    )

    def apply(edits) -> bytes:
        data = fixture
        for kind, at, width, token in edits:
            at = min(at, len(data))
            if kind == "cut":
                data = data[:at]
            elif kind == "insert":
                data = data[:at] + token + data[at:]
            elif kind == "repeat":
                data = data[:at] + data[at : at + width] * 50 + data[at + width :]
            else:
                data = data[:at] + token + data[at + width :]
        return data

    return st.lists(edit, min_size=1, max_size=4).map(apply)


@pytest.mark.parametrize("target", TARGETS, ids=[t[0] for t in TARGETS])
def test_mutated_fixtures_never_crash_a_translator(target, tmp_path_factory, long_run):
    fixture = _fixture(target)
    tried = []

    @settings(
        max_examples=300 if long_run else 25,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=_mutations(fixture))
    def property_(data: bytes) -> None:
        tried.append(len(data))
        check(target, data, tmp_path_factory.mktemp(target[0]))

    property_()
    print(f"{target[0]}: {len(tried)} mutated sources")
