"""Engine and session factory, the typed declarative base, and per-dialect connection setup."""

from __future__ import annotations

import select
from datetime import UTC, datetime
from typing import Annotated, Any

from sqlalchemy import DateTime, Engine, String, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

from app.settings import Settings


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


str64 = Annotated[str, mapped_column(String(64))]
str128 = Annotated[str, mapped_column(String(128))]
utc_datetime = Annotated[datetime, mapped_column(UTCDateTime())]


class Base(DeclarativeBase):
    """Declarative base with the project's column types."""


def is_sqlite(url: str) -> bool:
    """Whether the URL names an SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(settings: Settings, *, request_path: bool) -> Engine:
    """An Engine for settings.database_url; nothing connects until first use.

    request_path=True is the engine requests use: every transaction on it gives up a lock wait after
    database_lock_timeout_seconds (PostgreSQL lock_timeout; SQLite's busy timeout, its database write lock) and
    a statement after database_statement_timeout_seconds (PostgreSQL statement_timeout), so a request answers in
    the envelope before gunicorn or nginx give up on it (SPEC §8). request_path=False is for maintenance
    (migrations, import, prune, audit, load): no statement bound, and locks waited for as they always were
    (PostgreSQL without a bound, SQLite for sqlite_busy_timeout_seconds).
    """
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            from pathlib import Path

            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        busy_seconds = settings.database_lock_timeout_seconds if request_path else settings.sqlite_busy_timeout_seconds
        engine = create_engine(url, connect_args={"timeout": busy_seconds, "check_same_thread": False})
        _sqlite_setup(engine, busy_seconds)
        return engine
    if url.get_backend_name() == "postgresql" and url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    connect_args: dict[str, Any] = {"connect_timeout": max(1, int(settings.database_connect_timeout_seconds))}
    if request_path:
        connect_args["options"] = request_bounds_options(settings, url.query.get("options"))
    engine = create_engine(
        url,
        pool_recycle=3600,  # no pre-ping: it costs a round trip per checkout; _discard_closed_by_server is free
        pool_size=5,
        max_overflow=5,
        pool_timeout=settings.database_connect_timeout_seconds,
        connect_args=connect_args,
    )
    if url.get_driver_name() == "psycopg":  # closed_by_server reads psycopg 3's connection attributes
        event.listen(engine, "checkout", _discard_closed_by_server)
    return engine


def request_bounds_options(settings: Settings, given: str | tuple[str, ...] | None = None) -> str:
    """The libpq `options` that make the request bounds every session's defaults, after any the URL gives.

    Sent with the connection's startup packet, they cost no round trip, and they are the session's defaults:
    a transaction that sets its own lock_timeout for a while (an idempotency key's wait) returns to them with
    SET LOCAL ... TO DEFAULT.
    """
    lock_ms = max(1, round(settings.database_lock_timeout_seconds * 1000))
    statement_ms = max(1, round(settings.database_statement_timeout_seconds * 1000))
    ours = f"-c lock_timeout={lock_ms} -c statement_timeout={statement_ms}"
    if isinstance(given, tuple):  # a URL naming options twice
        given = " ".join(given)
    return f"{given} {ours}" if given else ours


def closed_by_server(dbapi_connection: Any) -> bool:
    """Whether an idle PostgreSQL connection has been closed or written to by the server.

    An idle connection in the pool has nothing to read; readable bytes there are the server's
    "terminating connection" message and end-of-file, sent when it restarts or drops the backend.
    """
    if dbapi_connection.closed or dbapi_connection.broken:
        return True
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def _discard_closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    # Without this, the first request each worker serves after a database restart would meet a
    # dead pooled connection and answer 503. Raising here makes the pool reconnect this checkout,
    # found with a poll() instead of pre-ping's round trip. Only this connection is replaced: the
    # others are checked the same way when handed out, and one dropped backend says nothing of them.
    if closed_by_server(dbapi_connection):
        raise exc.DisconnectionError("the database closed this pooled connection")


def _sqlite_setup(engine: Engine, busy_seconds: float) -> None:
    busy_ms = int(busy_seconds * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN IMMEDIATE can be issued (SQLAlchemy's recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A writer takes the database lock when its transaction starts, so two requests for one
        # account cannot both read the old state: SQLite's equivalent of SELECT ... FOR UPDATE.
        immediate = connection.get_execution_options().get("sqlite_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_session_factory(engine: Engine) -> sessionmaker[Any]:
    """A session factory bound to engine."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)
