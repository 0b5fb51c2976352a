"""The statements every update runs, handed to psycopg itself on PostgreSQL.

They are still written once, as Core statements, beside the repositories that run them; their PostgreSQL SQL is
compiled once, at import, by SQLAlchemy's own psycopg dialect. On PostgreSQL the repositories give that SQL and
plain parameters to the psycopg connection under the session's, in the session's transaction: SQLAlchemy's
per-statement work (execution context, parameter and result processing) was a fifth of an update's time in the
profile of issue 13, and a pipeline of statements whose results are read (app/persistence/decision_state.py)
cannot go through it at all. Elsewhere (SQLite) the same Core statements run through SQLAlchemy as usual.

Only values psycopg adapts as SQLAlchemy's types would may cross here: text, integers and timezone-aware
datetimes (read back in UTC, as UTCDateTime does).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import ClauseElement, Connection, Table
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from app.errors import StorageBusy, StorageError

_PSYCOPG = PGDialect_psycopg()
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout expired


def postgresql_sql(statement: ClauseElement, columns: Sequence[str] | None = None) -> str:
    """The statement's SQL for psycopg (named %(name)s parameters); an INSERT's `columns` name the values given."""
    return str(statement.compile(dialect=_PSYCOPG, column_keys=list(columns) if columns is not None else None))


@functools.lru_cache(maxsize=64)
def insert_sql(table: Table, columns: tuple[str, ...]) -> str:
    """The INSERT of these columns of table (no RETURNING), for psycopg."""
    return postgresql_sql(table.insert().inline(), columns)


def psycopg_of(connection: Connection) -> psycopg.Connection[Any] | None:
    """The psycopg connection under a SQLAlchemy connection (None on another driver)."""
    if connection.dialect.driver != "psycopg":
        return None
    return connection.connection.driver_connection


def aware(value: datetime) -> datetime:
    """A timestamp as it may be stored: timezone-aware (UTCDateTime refuses naive ones the same way)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value


def in_utc(value: datetime) -> datetime:
    """A timestamp read back, in UTC."""
    return value.astimezone(UTC)


def execute_many(driver: psycopg.Connection[Any], sql: str, rows: Iterable[Mapping[str, Any]]) -> None:
    """One statement for each row; in a pipeline they go out together."""
    with driver.cursor() as cursor:
        cursor.executemany(sql, list(rows))


def storage_error(exc: psycopg.Error) -> StorageError:
    """A driver error as the service layer sees it (as unit_of_work.as_storage_error sees SQLAlchemy's)."""
    if exc.sqlstate == LOCK_NOT_AVAILABLE:
        return StorageBusy(type(exc).__name__, "lock not available")
    first = str(exc).strip().splitlines()
    return StorageError(type(exc).__name__, first[0][:200] if first else "")
