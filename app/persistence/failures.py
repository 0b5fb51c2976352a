"""A database library's error as the service layer sees it: StorageBusy, StorageTimeout or StorageError.

One place for both paths a statement takes (SQLAlchemy, and psycopg itself in app/persistence/driver.py), so a
lock wait past its bound is told apart from a failure however the statement was sent.
"""

from __future__ import annotations

import sqlite3

from app.errors import StorageBusy, StorageError, StorageTimeout

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout expired (or NOWAIT)
QUERY_CANCELED = "57014"  # PostgreSQL: statement_timeout expired (or the statement was cancelled)
SQLITE_BUSY = 5  # SQLite: the database is locked by another connection past the busy timeout


def classified(kind: str, original: BaseException) -> StorageError:
    """The StorageError for a driver error (`original`), reported as `kind` (the class name the caller saw)."""
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate == LOCK_NOT_AVAILABLE:
        return StorageBusy(kind, "lock not available")
    if sqlstate == QUERY_CANCELED:
        return StorageTimeout(kind, "statement cancelled (statement timeout)")
    if _sqlite_busy(original):
        return StorageBusy(kind, "database is locked", whole_database=True)
    first = str(original).strip().splitlines()
    return StorageError(kind, first[0][:200] if first else "")


def _sqlite_busy(original: BaseException) -> bool:
    if not isinstance(original, sqlite3.OperationalError):
        return False
    code = getattr(original, "sqlite_errorcode", None)  # extended codes (e.g. BUSY_SNAPSHOT) keep BUSY's low byte
    return (code & 0xFF) == SQLITE_BUSY if code is not None else "database is locked" in str(original)
