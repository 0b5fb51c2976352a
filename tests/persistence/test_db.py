"""Engine setup: pooled PostgreSQL connections the server dropped are replaced before a request uses them."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from tests.conftest import postgres_only

BACKEND_PID = text("SELECT pg_backend_pid()")


def _pool_two_connections(engine: Engine) -> set[int]:
    """Open two connections at once and return both to the pool; their backend pids."""
    first, second = engine.connect(), engine.connect()
    pids = {first.execute(BACKEND_PID).scalar_one(), second.execute(BACKEND_PID).scalar_one()}
    first.close()
    second.close()
    return pids


def _terminate(database_url: str, pids: set[int]) -> None:
    """What a database restart does to pooled connections: the server ends their backends."""
    admin = create_engine(database_url)
    try:
        with admin.connect() as conn:
            for pid in pids:
                # The timeout makes the call wait until the backend has exited (PostgreSQL ≥ 14).
                assert conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}).scalar_one()
    finally:
        admin.dispose()


@pytest.mark.postgres
def test_a_plain_pool_hands_out_a_connection_the_server_dropped(database_url: str):
    """The failure the service guards against: without the check, the first query after a restart fails."""
    postgres_only(database_url)
    plain = create_engine(database_url)
    try:
        _terminate(database_url, _pool_two_connections(plain))
        with pytest.raises(OperationalError), plain.connect() as conn:
            conn.execute(BACKEND_PID)
    finally:
        plain.dispose()


@pytest.mark.postgres
def test_connections_the_server_dropped_are_replaced_on_checkout(engine: Engine, database_url: str):
    postgres_only(database_url)
    dropped = _pool_two_connections(engine)
    _terminate(database_url, dropped)
    fresh = set()
    for _ in range(3):  # more checkouts than there were dropped connections in the pool
        with engine.connect() as conn:
            fresh.add(conn.execute(BACKEND_PID).scalar_one())
    assert fresh and not fresh & dropped, (fresh, dropped)


@pytest.mark.postgres
def test_a_healthy_pooled_connection_is_reused(engine: Engine, database_url: str):
    """The check costs no reconnects: an idle connection the server kept is handed out again."""
    postgres_only(database_url)
    with engine.connect() as conn:
        before = conn.execute(BACKEND_PID).scalar_one()
    with engine.connect() as conn:
        assert conn.execute(BACKEND_PID).scalar_one() == before
