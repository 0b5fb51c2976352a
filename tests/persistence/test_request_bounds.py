"""The request path's bounds (SPEC §8): the request engine's every session waits for a lock and runs a statement
at most as long as the settings say, maintenance engines keep their own waits, and a wait past a bound reaches the
service as StorageBusy / StorageTimeout whichever way the statement went (SQLAlchemy, or psycopg's pipeline)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, text

from app.errors import StorageBusy, StorageError, StorageTimeout
from app.persistence import driver
from app.persistence.db import make_engine, make_session_factory
from app.persistence.failures import classified
from app.persistence.unit_of_work import UnitOfWork
from app.settings import Settings
from tests.conftest import postgres_only

BOUNDED = {"database_lock_timeout_seconds": 0.25, "database_statement_timeout_seconds": 0.75}


@pytest.fixture
def engines(settings: Settings) -> Iterator[tuple[Engine, Engine]]:
    """The request engine with short bounds, and a maintenance engine on the same database."""
    bounded = settings.with_overrides(**BOUNDED)
    request, maintenance = make_engine(bounded, request_path=True), make_engine(bounded, request_path=False)
    yield request, maintenance
    request.dispose()
    maintenance.dispose()


def _bounds(engine: Engine) -> tuple[str, str]:
    """What a session of the engine waits for a lock and lets a statement run (the database's own words)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":  # no statement bound: a statement there never waits on the network
            return f"{conn.exec_driver_sql('PRAGMA busy_timeout').scalar_one()}ms", "-"
        lock = conn.exec_driver_sql("SHOW lock_timeout").scalar_one()
        return lock, conn.exec_driver_sql("SHOW statement_timeout").scalar_one()


def test_the_request_engine_carries_the_bounds_and_a_maintenance_engine_its_own(engines: tuple[Engine, Engine]):
    request, maintenance = engines
    if request.dialect.name == "sqlite":
        assert (_bounds(request), _bounds(maintenance)) == (("250ms", "-"), ("30000ms", "-"))
    else:  # a maintenance command (migration, import, prune) waits for locks and statements as it always has
        assert (_bounds(request), _bounds(maintenance)) == (("250ms", "750ms"), ("0", "0"))


@pytest.mark.postgres
def test_options_the_url_gives_are_kept(settings: Settings):
    postgres_only(settings.database_url)
    url = settings.database_url + "?options=-c%20application_name%3Dtps-bounds"
    engine = make_engine(settings.with_overrides(database_url=url, **BOUNDED), request_path=True)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW application_name").scalar_one() == "tps-bounds"
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar_one() == "250ms"
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_statement_past_the_bound_is_a_storage_timeout_either_way(engines: tuple[Engine, Engine]):
    request, _ = engines
    postgres_only(request.url.render_as_string(hide_password=False))
    with pytest.raises(StorageTimeout), UnitOfWork(make_session_factory(request)) as uow:  # through SQLAlchemy
        uow.session.execute(text("SELECT pg_sleep(5)"))
    with request.connect() as conn:  # through psycopg itself, as the update's pipelines go
        raw = driver.psycopg_of(conn)
        assert raw is not None
        with pytest.raises(psycopg.errors.QueryCanceled) as raised:
            raw.execute("SELECT pg_sleep(5)")
        assert isinstance(driver.storage_error(raised.value), StorageTimeout)
        conn.rollback()


def test_driver_errors_are_told_apart():
    busy = classified("LockNotAvailable", psycopg.errors.LockNotAvailable("x"))
    assert isinstance(busy, StorageBusy) and not busy.whole_database  # a row's lock: other rows are free
    assert isinstance(classified("QueryCanceled", psycopg.errors.QueryCanceled("x")), StorageTimeout)
    other = classified("UniqueViolation", psycopg.errors.UniqueViolation("duplicate key\nDETAIL: secret"))
    assert type(other) is StorageError and str(other) == "UniqueViolation: duplicate key"


def test_a_locked_sqlite_database_is_storage_busy_of_the_whole_database(tmp_path: Path):
    path = tmp_path / "locked.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    waiter = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as raised:
            waiter.execute("BEGIN IMMEDIATE")
    finally:
        holder.close()
        waiter.close()
    busy = classified("OperationalError", raised.value)
    assert isinstance(busy, StorageBusy) and busy.whole_database
