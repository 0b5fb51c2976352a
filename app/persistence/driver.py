"""The statements every update runs, handed to psycopg itself on PostgreSQL.

They are still written once, as Core statements, beside the repositories that run them; their PostgreSQL SQL is
compiled once, at import, by SQLAlchemy's own psycopg dialect. On PostgreSQL the repositories give that SQL and
plain parameters to the psycopg connection under the session's, in the session's transaction: SQLAlchemy's
per-statement work (execution context, parameter and result processing) is a fifth of an update's time in a
profile, and a pipeline of statements whose results are read (app/persistence/decision_state.py)
cannot go through it at all. Elsewhere (SQLite) the same Core statements run through SQLAlchemy as usual.

Only values psycopg adapts as SQLAlchemy's types would may cross here: text, integers and timezone-aware
datetimes (read back in UTC, as UTCDateTime does).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import ClauseElement, Connection, Table
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from app.errors import StorageError
from app.persistence.failures import classified

_PSYCOPG = PGDialect_psycopg()


def postgresql_sql(statement: ClauseElement, columns: Sequence[str] | None = None) -> str:
    """The statement's SQL for psycopg (named %(name)s parameters); an INSERT's `columns` name the values given."""
    return str(statement.compile(dialect=_PSYCOPG, column_keys=list(columns) if columns is not None else None))


@functools.lru_cache(maxsize=64)
def insert_values_sql(table: Table, columns: tuple[str, ...], suffix: str = "") -> str:
    """The INSERT of one row of these columns (no RETURNING), then `suffix` (an ON CONFLICT clause)."""
    _check_columns(table, columns)
    return f"{postgresql_sql(table.insert().inline(), columns)} {suffix}".strip()


def _check_columns(table: Table, columns: tuple[str, ...]) -> None:
    # Compiling with column_keys would drop a name the table lacks, and add a parameter for a column with a
    # Python-side default, which nothing here would fill: refuse both.
    unknown = [c for c in columns if c not in table.c]
    defaulted = [c.name for c in table.c if c.default is not None and c.name not in columns]
    if unknown or defaulted:
        raise ValueError(f"insert into {table.name}: unknown columns {unknown}, defaulted columns left out {defaulted}")


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


@functools.lru_cache(maxsize=64)
def insert_rows_sql(table: Table, columns: tuple[str, ...], suffix: str = "") -> str:
    """One INSERT of any number of rows: each column's values come as one array, unnested on the server, in order.

    The statement's text does not depend on how many rows there are, so psycopg prepares it once, and ten rows
    cost one execution instead of ten (an executemany runs the statement once per row, even in a pipeline).
    `suffix` follows the row source: an ON CONFLICT clause. The arrays are cast to the columns' types without
    their lengths: an explicit cast to VARCHAR(n) would cut a longer value silently, where the insert refuses it.
    """
    _check_columns(table, columns)
    arrays = ", ".join(f"%({c})s::{_unsized(table.c[c].type.compile(dialect=_PSYCOPG))}[]" for c in columns)
    names = ", ".join(columns)
    # ORDER BY n: the rows in the order given (audit ids follow the changes); it also keeps a following ON CONFLICT
    # from parsing as a JOIN's ON.
    return (
        f"INSERT INTO {table.name} ({names}) SELECT {names} FROM unnest({arrays}) WITH ORDINALITY AS rows({names}, n) "
        f"ORDER BY n {suffix}"
    ).strip()


def _unsized(type_name: str) -> str:
    return re.sub(r"\(\d+\)", "", type_name)


def insert_rows(
    connection: psycopg.Connection[Any], table: Table, rows: Sequence[Mapping[str, Any]], suffix: str = ""
) -> None:
    """Insert rows (each with the same columns, in the same order) in one statement: VALUES for one row, else
    insert_rows_sql."""
    columns = tuple(rows[0])
    if len(rows) == 1:
        connection.execute(insert_values_sql(table, columns, suffix), {c: _checked(v) for c, v in rows[0].items()})
        return
    arrays = {column: [_checked(row[column]) for row in rows] for column in columns}
    connection.execute(insert_rows_sql(table, columns, suffix), arrays)


def _checked(value: Any) -> Any:
    return aware(value) if isinstance(value, datetime) else value


def storage_error(exc: psycopg.Error) -> StorageError:
    """A driver error as the service layer sees it (as unit_of_work.as_storage_error sees SQLAlchemy's): a lock
    wait or a statement past its bound is StorageBusy or StorageTimeout, wherever in a pipeline it happened."""
    return classified(type(exc).__name__, exc)
