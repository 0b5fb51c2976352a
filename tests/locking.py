"""Another transaction holding an account's lock, as a concurrent request does: on PostgreSQL the account's row
(SELECT ... FOR UPDATE), on SQLite the database write lock (BEGIN IMMEDIATE). Held on a connection of its own,
through the driver, until the block ends; then rolled back."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import make_url


@contextmanager
def account_locked(database_url: str, account_no: str, tenant_id: str = "sg_mexc") -> Iterator[None]:
    """The account's lock, held by another transaction for the duration of the block."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database
        lite = sqlite3.connect(url.database, isolation_level=None)
        try:
            lite.execute("BEGIN IMMEDIATE")
            yield
            lite.execute("ROLLBACK")
        finally:
            lite.close()
        return
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as pg:
        # Should a request wait for ever after all, the server ends this holder and the test fails, not hangs.
        pg.execute("SET idle_in_transaction_session_timeout = '20s'")
        locked = pg.execute(
            "SELECT id FROM accounts WHERE tenant_id = %s AND origin_id = %s FOR UPDATE", (tenant_id, account_no)
        ).fetchone()
        assert locked is not None, f"no account {account_no!r} of {tenant_id!r} to lock"
        yield
        pg.rollback()
