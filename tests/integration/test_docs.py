"""The README and MIGRATING.md are tested like code.

* ``test_readme_quick_start``: runs exactly the README's quick-start block in a
  copy of the repository's files (what a clean clone holds: tracked and new,
  non-ignored files) with a fresh ``PGDURABLE_HOME``, in a subprocess. The
  install line is the one step not re-run: it would download packages. It
  must be the same install ``.ci/run`` performs from scratch on every CI run,
  and the copy's ``.venv`` is a link to this suite's venv (an editable install
  of the same files). Every other line runs verbatim with ``bash``.
* ``test_readme_test_command_is_what_ci_runs``: the README's test command is
  what ``.ci/run`` runs (the whole suite), followed by the per-version runs
  the README names.
* ``test_documented_commands_and_codes_exist``: every ``pgdurable …`` command
  and ``--option`` in a code span or block of the two documents appears in that
  command's ``--help``, and every ``PGDnnn`` is in the diagnostics registry.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgdurable.cli import cli
from pgdurable.diagnostics import CODES
from pgdurable.embedded import EmbeddedCluster

REPO = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "MIGRATING.md")
INSTALL = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'"
# Commands the docs may name before they exist on this branch; each must leave
# this set once it exists (the test below fails until it is removed).
PENDING_COMMANDS: set[str] = set()


def section_blocks(text: str, heading: str) -> list[str]:
    """The fenced ``sh`` blocks of the section that starts with ``heading``."""
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    body = text[start : end if end != -1 else None]
    return re.findall(r"```sh\n(.*?)```", body, re.S)


def readme() -> str:
    return (REPO / "README.md").read_text(encoding="utf-8")


def test_readme_test_command_is_what_ci_runs():
    (block,) = section_blocks(readme(), "## Tests")
    commands = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert block.strip() == commands[-2].strip() == ".venv/bin/pytest"
    assert commands[-1].strip() == "bash .ci/pg-versions.sh"
    assert "`bash .ci/pg-versions.sh`" in readme()


def test_readme_quick_start():
    block = section_blocks(readme(), "## Quick start")[0]
    lines = [line for line in block.splitlines() if line.strip()]
    assert lines[0] == INSTALL
    ci = (REPO / ".ci" / "run").read_text()
    assert "python3 -m venv --clear .venv" in ci and "pip install -q -e '.[dev]'" in ci

    # Under /tmp, enterable by the server account when we are root (as in test_embedded).
    tmp_path = Path(tempfile.mkdtemp(prefix="pgdurable-readme-"))
    tmp_path.chmod(0o755)
    clone = tmp_path / "clone"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = REPO / name.decode()
        if source.is_file():
            target = clone / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (clone / ".venv").symlink_to(REPO / ".venv")
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "DATABASE_URL"}
    env["PGDURABLE_HOME"] = str(home)
    try:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", "\n".join(lines[1:])],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert (
            "7/7 runs completed, 11/11 checks passed, 6/6 verified equal to their originals"
            in result.stdout
        )
        assert "FAIL" not in result.stdout
        # The files it generated are the committed golden files.
        for expected in sorted((REPO / "fixtures" / "examples").glob("*/expected/*.sql")):
            got = home / "quickstart" / expected.parent.parent.name / expected.name
            assert got.read_text() == expected.read_text(), got
    finally:
        if (home / "data" / "postmaster.pid").exists():
            EmbeddedCluster(home).stop()
        shutil.rmtree(tmp_path, ignore_errors=True)


def code_text(text: str) -> list[str]:
    """The code of a Markdown document: fenced blocks, then inline code spans."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    rest = re.sub(r"```.*?```", "", text, flags=re.S)
    return blocks + re.findall(r"`([^`\n]+)`", rest)


def documented_commands() -> dict[tuple[str, ...], set[str]]:
    """(command path) -> the --options written after it, over both documents."""
    found: dict[tuple[str, ...], set[str]] = {}
    groups = {name for name, c in cli.commands.items() if hasattr(c, "commands")}
    for doc in DOCS:
        for code in code_text((REPO / doc).read_text(encoding="utf-8")):
            for line in code.splitlines():
                for segment in re.split(r"&&|\|\||;|\s#\s", line):
                    m = re.search(
                        r"(?:^|[\s/(])pgdurable\s+([a-z][a-z-]*)((?:\s+[a-z][a-z-]*)?)(.*)", segment
                    )
                    if not m:
                        continue
                    path = (m.group(1),)
                    if m.group(1) in groups and m.group(2).strip():
                        path += (m.group(2).strip(),)
                    options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", m.group(3)))
                    found.setdefault(path, set()).update(options)
    return found


def test_documented_commands_and_codes_exist():
    runner = CliRunner()
    found = documented_commands()
    assert ("quickstart",) in found and ("show",) in found
    for path, options in sorted(found.items()):
        if path[0] in PENDING_COMMANDS:
            assert path[0] not in cli.commands, f"{path[0]} exists now: drop it from PENDING"
            continue
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, f"pgdurable {' '.join(path)}: {result.output}"
        for option in options:
            assert re.search(rf"(?<![\w-]){option}(?![\w-])", result.output), (
                f"pgdurable {' '.join(path)} has no {option}"
            )
    for doc in DOCS:
        codes = set(re.findall(r"PGD\d{3}", (REPO / doc).read_text(encoding="utf-8")))
        assert codes <= set(CODES), f"{doc}: unknown codes {sorted(codes - set(CODES))}"
    documented = set(re.findall(r"PGD\d{3}", (REPO / "MIGRATING.md").read_text()))
    assert set(CODES) <= documented, f"undocumented codes {sorted(set(CODES) - documented)}"


@pytest.mark.parametrize("fmt", ["mermaid", "dot", "text"])
def test_show_draws_a_generated_file(fmt, database):
    from pgdurable import show

    path = REPO / "fixtures/examples/airflow/expected/events_daily.sql"
    with database.connect() as conn:
        drawn = show.render(conn, str(path), fmt)
    assert "WAIT '0 0 * * *'" in drawn
    assert {"mermaid": "flowchart TD", "dot": "digraph workflow", "text": "LOOP"}[fmt] in drawn


def test_show_draws_an_instance_with_live_status_and_a_registered_workflow(database):
    from pgdurable import show

    role = database.create_role("show_user")
    database.execute("SELECT df.grant_usage('show_user')")
    instance = database.value(
        "SELECT df.start(df.if('SELECT true', 'SELECT 1', 'SELECT 2'))", user=role
    )
    database.execute(
        "INSERT INTO pgdurable.workflows (source, name, definition, definition_hash, profile,"
        " started) VALUES ('pg_cron', 'nightly', %s, 'x', 'portable', false)",
        [database.value("SELECT (@> (df.wait_for_schedule('0 3 * * *') ~> 'SELECT 1'))::text")],
    )
    with database.connect() as conn:
        live = show.render(conn, instance, "mermaid")
        registered = show.render(conn, "nightly", "dot")
        by_source = show.render(conn, "pg_cron/nightly", "text")
    assert "[pending]" in live and "-->|yes|" in live and "-->|no|" in live
    assert "WAIT '0 3 * * *'" in registered and 'label="again"' in registered
    assert by_source.startswith("pg_cron/nightly\n")
