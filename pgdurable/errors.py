"""The one exception tree of pgdurable.

Every error a user can cause or meet derives from ``PgDurableError``. Its
message says what went wrong and how to fix it; a class docstring is the
default message. ``exit_code`` is what the CLI exits with (see README: 1 the
job failed, 3 no database could be reached or started). Control flow that is
not an error (retries, cancellation) never uses these classes.
"""

from __future__ import annotations


class PgDurableError(Exception):
    """pgdurable failed."""

    exit_code = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class DatabaseUnavailable(PgDurableError):
    """Could not connect to PostgreSQL: check --dsn, PGDURABLE_DSN or DATABASE_URL,
    or run `pgdurable db start` to use the embedded database."""

    exit_code = 3


class ServerBinariesNotFound(DatabaseUnavailable):
    """PostgreSQL server programs (initdb, pg_ctl, postgres) were not found."""


class EmbeddedClusterError(DatabaseUnavailable):
    """The embedded PostgreSQL cluster could not be prepared or started."""


class MissingDependency(PgDurableError):
    """A Python package pgdurable needs is not installed: reinstall pgdurable with
    `pip install -e .` (or `pip install .`) in its checkout."""

    exit_code = 2  # the installation, not the job: as a usage error


class SchemaError(PgDurableError):
    """The pgdurable schema in this database is not usable."""


class SchemaNotInstalled(SchemaError):
    """The pgdurable schema is not installed in this database: run `pgdurable schema install`."""


class SchemaOutOfDate(SchemaError):
    """The pgdurable schema in this database is older than this version of
    pgdurable: run `pgdurable schema upgrade`."""


class MigrationFailed(SchemaError):
    """A schema migration failed; its transaction was rolled back."""


class TranslationError(PgDurableError):
    """A source could not be translated."""


class SourceParseError(TranslationError):
    """A source file could not be read: fix the file named in the message."""


class ApplyFailed(PgDurableError):
    """A generated file could not be applied; its transaction was rolled back."""


class WorkerError(PgDurableError):
    """The worker failed."""


class VerificationError(PgDurableError):
    """`pgdurable verify` could not replay the job: fix the input named in the message."""


class VerificationMismatch(PgDurableError):
    """The old job and the new workflow left different data (see the report)."""

    def __init__(self, diffs: list[object], message: str | None = None) -> None:
        super().__init__(message)
        self.diffs = diffs
