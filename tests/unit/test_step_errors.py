"""Which step errors the worker runs again (db.connection_lost) and which are the step's outcome."""

from __future__ import annotations

import psycopg

from pgdurable import db


def test_a_rolled_back_transaction_is_run_again_and_a_reported_error_is_not():
    """Deadlocks and serialization failures roll the step back with its
    completion record, so the worker runs the step again; any other error the
    server reported on a live connection is the step's outcome."""
    assert db.connection_lost(psycopg.errors.DeadlockDetected("deadlock detected"), None)
    assert db.connection_lost(psycopg.errors.SerializationFailure("could not serialize"), None)
    assert not db.connection_lost(psycopg.errors.RaiseException("x"), None)
    assert not db.connection_lost(psycopg.errors.StringDataRightTruncation("too long"), None)
