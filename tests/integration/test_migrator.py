"""The schema migrator against a real database."""

from __future__ import annotations

import threading

import pytest

from pgdurable import db, migrator
from pgdurable.errors import MigrationFailed, SchemaError, SchemaNotInstalled, SchemaOutOfDate
from pgdurable.migrator import Migration

BOOKKEEPING = migrator.available_migrations()[0]


def _tables(database) -> list[str]:
    rows = database.execute(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_schema IN ('pgdurable', 'public') ORDER BY 1"
    )
    return [r[0] for r in rows]


def test_bundled_migrations_are_numbered_from_one_without_gaps():
    versions = [m.version for m in migrator.available_migrations()]
    assert versions == list(range(1, len(versions) + 1))


def test_install_applies_everything_in_order_then_is_a_no_op(empty_database):
    migrations = [
        BOOKKEEPING,
        Migration(2, "first", "CREATE TABLE public.a (id int)"),
        Migration(3, "second", "ALTER TABLE public.a ADD COLUMN b int"),  # needs 2 first
    ]
    with empty_database.connect(autocommit=True) as conn:
        assert migrator.status(conn, migrations).installed_version is None
        seen: list[int] = []
        applied = migrator.apply(conn, migrations, progress=lambda m: seen.append(m.version))
        assert [m.version for m in applied] == [1, 2, 3] == seen
        assert migrator.apply(conn, migrations) == []
        state = migrator.status(conn, migrations)
    assert state.up_to_date and state.installed_version == 3
    assert empty_database.execute(
        "SELECT version, name FROM pgdurable.schema_migrations ORDER BY version"
    ) == [(1, "pgdurable_bookkeeping"), (2, "first"), (3, "second")]


def test_failing_migration_leaves_database_unchanged(empty_database):
    migrations = [
        BOOKKEEPING,
        Migration(2, "good", "CREATE TABLE public.good (id int)"),
        Migration(3, "bad", "CREATE TABLE public.half (id int); SELECT 1/0"),
        Migration(4, "after", "CREATE TABLE public.after (id int)"),
    ]
    with empty_database.connect(autocommit=True) as conn:
        with pytest.raises(MigrationFailed) as caught:
            migrator.apply(conn, migrations)
        assert "0003_bad.sql failed and was rolled back" in caught.value.message
        assert "division by zero" in caught.value.message
        assert migrator.status(conn, migrations).installed_version == 2
    # The half-done table of 0003 is gone and 0004 never ran.
    assert _tables(empty_database) == ["pgdurable.schema_migrations", "public.good"]


def test_edited_migration_is_reported_and_blocks_upgrade(empty_database):
    original = [BOOKKEEPING, Migration(2, "t", "CREATE TABLE public.t (id int)")]
    edited = [
        BOOKKEEPING,
        Migration(2, "t", "CREATE TABLE public.t (id bigint)"),
        Migration(3, "more", "SELECT 1"),
    ]
    with empty_database.connect(autocommit=True) as conn:
        migrator.apply(conn, original)
        assert migrator.status(conn, edited).modified == [2]
        with pytest.raises(SchemaError, match="0002 changed after they were applied"):
            migrator.apply(conn, edited)


def test_database_from_a_newer_pgdurable_is_refused(empty_database):
    newer = [BOOKKEEPING, Migration(2, "future", "SELECT 1")]
    with empty_database.connect(autocommit=True) as conn:
        migrator.apply(conn, newer)
        assert migrator.status(conn, [BOOKKEEPING]).unknown == [2]
        with pytest.raises(SchemaError, match="installed by a newer pgdurable"):
            migrator.apply(conn, [BOOKKEEPING])


def test_require_current(empty_database):
    with empty_database.connect(autocommit=True) as conn:
        with pytest.raises(SchemaNotInstalled):
            migrator.require_current(conn)
        migrator.apply(conn, [BOOKKEEPING])
        if len(migrator.available_migrations()) > 1:
            with pytest.raises(SchemaOutOfDate, match="pgdurable schema upgrade"):
                migrator.require_current(conn)
        migrator.apply(conn)
        assert migrator.require_current(conn).up_to_date


def test_concurrent_installers_apply_each_migration_once(empty_database):
    marker = Migration(
        2, "counted", "CREATE TABLE public.runs (n int); INSERT INTO public.runs VALUES (1)"
    )
    migrations = [BOOKKEEPING, marker]
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def install() -> None:
        try:
            with empty_database.connect(autocommit=True) as conn:
                barrier.wait(timeout=10)
                migrator.apply(conn, migrations)
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=install) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert empty_database.value("SELECT count(*) FROM public.runs") == 1


def test_misnamed_file_is_rejected(monkeypatch, tmp_path):
    (tmp_path / "0001_ok.sql").write_text("SELECT 1")
    (tmp_path / "2_Bad Name.sql").write_text("SELECT 1")
    monkeypatch.setattr(migrator, "migrations_folder", lambda: tmp_path)
    with pytest.raises(SchemaError, match="misnamed: use NNNN_description.sql"):
        migrator.available_migrations()


def test_template_database_holds_the_full_schema(database):
    with db.connection(database.conninfo()) as conn:
        assert (
            migrator.require_current(conn).installed_version
            == migrator.available_migrations()[-1].version
        )


def test_upgrade_sql_prints_exactly_the_pending_migrations(empty_database):
    """`schema upgrade --sql` (alembic's offline mode): the pending migrations as the
    script `upgrade` runs, changing nothing; running that script upgrades."""
    from click.testing import CliRunner

    from pgdurable.cli import cli

    everything = migrator.available_migrations()
    with empty_database.connect(autocommit=True) as conn:
        migrator.apply(conn, everything[:-1])
    result = CliRunner().invoke(
        cli, ["schema", "upgrade", "--sql", "--dsn", empty_database.conninfo()]
    )
    assert result.exit_code == 0, result.output
    script = result.stdout
    last = everything[-1]
    assert script.count("BEGIN;") == 1 and script.rstrip().endswith("COMMIT;")
    assert f"-- {last.label}.sql\n" in script and last.sql.strip().rstrip(";") in script
    assert f"pending {last.label}.sql" in result.stderr
    with empty_database.connect(autocommit=True) as conn:
        assert [m.version for m in migrator.status(conn).pending] == [last.version]
        conn.execute(script.encode())  # what was printed is what upgrade would run
        assert migrator.status(conn).up_to_date
    again = CliRunner().invoke(
        cli, ["schema", "upgrade", "--sql", "--dsn", empty_database.conninfo()]
    )
    assert again.exit_code == 0 and again.stdout == ""
