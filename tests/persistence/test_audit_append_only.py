"""The audit trail is append-only, enforced by the database itself (SPEC §5; migration 0003).

Rows are written by the real service (a signed update), then changed or removed with plain SQL on a
connection of our own: the database must refuse, and the rows must be exactly as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from tests.conftest import postgres_only
from tests.support import body_of

TRACE_ID = "append-only-1"
COLUMNS = (
    "id, trace_id, tenant_id, app_key, account_no, permission_type, status_before, status_after, "
    "rule_set_version, created_at"
)


@pytest.fixture
def audited(api: Any, database_url: str) -> Iterator[Engine]:
    """Two audit rows written by the service (ACC-2: stock.US and stock.HK opened, besides the fixture
    loader's rows); an engine of our own."""
    response = api.update(
        body_of("ACC-2", ("stock.US", "open"), ("stock.HK", "open")), headers={"X-Trace-Id": TRACE_ID}
    )
    assert (response.status_code, response.get_json()["code"]) == (200, 0), response.get_json()
    engine = create_engine(database_url)
    try:
        assert [r[5] for r in rows(engine) if r[1] == TRACE_ID] == ["stock.US", "stock.HK"]
        yield engine
    finally:
        engine.dispose()


def rows(engine: Engine) -> list[tuple[Any, ...]]:
    """Every audit row, every column, in id order."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(f"SELECT {COLUMNS} FROM permission_audit ORDER BY id"))]


def refused(engine: Engine, statement: str, *, operation: str) -> None:
    """The statement fails with the append-only error and leaves every row as it was."""
    before = rows(engine)
    with pytest.raises(DBAPIError) as raised, engine.begin() as conn:
        conn.execute(text(statement))
    message = str(raised.value.orig)
    assert "append-only" in message, message
    assert operation in message, message
    assert rows(engine) == before


@pytest.mark.parametrize(
    ("statement", "operation"),
    [
        (f"UPDATE permission_audit SET status_after = 'close' WHERE trace_id = '{TRACE_ID}'", "UPDATE"),
        ("UPDATE permission_audit SET trace_id = 'forged'", "UPDATE"),
        ("UPDATE permission_audit SET created_at = created_at WHERE permission_type = 'stock.HK'", "UPDATE"),
        ("DELETE FROM permission_audit WHERE permission_type = 'stock.US'", "DELETE"),
        ("DELETE FROM permission_audit", "DELETE"),
    ],
)
def test_update_and_delete_are_refused(audited: Engine, statement: str, operation: str):
    refused(audited, statement, operation=operation)
    assert [r[1] for r in rows(audited)].count(TRACE_ID) == 2


def test_refused_inside_a_transaction_that_also_appends(audited: Engine):
    """A transaction that appends a row and then deletes an old one fails as a whole: nothing of it persists."""
    before = rows(audited)
    with pytest.raises(DBAPIError), audited.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO permission_audit (trace_id, tenant_id, app_key, account_no, permission_type,"
                " status_before, status_after, rule_set_version, created_at)"
                " SELECT 'cover-up', tenant_id, app_key, account_no, permission_type, status_after, status_before,"
                " rule_set_version, created_at FROM permission_audit"
                " WHERE permission_type = 'stock.US'"
            )
        )
        conn.execute(text("DELETE FROM permission_audit WHERE trace_id = :t"), {"t": TRACE_ID})
    assert rows(audited) == before


def test_an_existing_row_cannot_be_overwritten_by_an_insert(audited: Engine):
    """An insert that reuses an existing row's id must not replace that row (SQLite's INSERT OR REPLACE deletes
    the old row without firing delete triggers; PostgreSQL's ON CONFLICT DO UPDATE is an update)."""
    before = rows(audited)
    first_id = before[0][0]
    sqlite = audited.dialect.name == "sqlite"
    verb = "INSERT OR REPLACE INTO" if sqlite else "INSERT INTO"
    tail = "" if sqlite else " ON CONFLICT (id) DO UPDATE SET status_after = EXCLUDED.status_after"
    try:
        with audited.begin() as conn:
            conn.execute(
                text(
                    f"{verb} permission_audit ({COLUMNS}) SELECT id, 'forged', tenant_id, app_key, account_no,"
                    f" permission_type, status_after, status_before, rule_set_version, created_at FROM permission_audit"
                    f" WHERE id = :id{tail}"
                ),
                {"id": first_id},
            )
    except DBAPIError as exc:
        assert "append-only" in str(exc.orig), exc
    after = rows(audited)
    assert after == before, f"audit row {first_id} was overwritten: {before[0]} -> {after[0]}"


# --- PostgreSQL: TRUNCATE too -----------------------------------------------------------------------------


def _default_replication_role(conn: Connection) -> None:
    # conftest empties tables with session_replication_role = replica, which silences ordinary triggers:
    # the refusal must hold on an ordinary connection, so make sure this one is one.
    assert conn.execute(text("SHOW session_replication_role")).scalar_one() == "origin"


@pytest.mark.postgres
def test_postgres_truncate_is_refused_by_a_statement_level_before_truncate_trigger(audited: Engine, database_url: str):
    postgres_only(database_url)
    with audited.connect() as conn:
        triggers = conn.execute(
            text(
                "SELECT tgname, tgtype, tgenabled FROM pg_trigger "
                "WHERE tgrelid = 'permission_audit'::regclass AND NOT tgisinternal ORDER BY tgname"
            )
        ).all()
    # tgtype bits: 1 row-level, 2 BEFORE, 8 DELETE, 16 UPDATE, 32 TRUNCATE.
    truncate = [t for t in triggers if t.tgtype & 32]
    assert len(truncate) == 1, triggers
    assert truncate[0].tgtype & 2 and not truncate[0].tgtype & 1, truncate  # BEFORE, FOR EACH STATEMENT
    assert truncate[0].tgenabled == "O", truncate  # fires in the default (origin) replication role
    update_delete = [t for t in triggers if t.tgtype & (8 | 16)]
    assert {t.tgtype & (1 | 2 | 8 | 16) for t in update_delete} == {1 | 2 | 8 | 16}, triggers

    before = rows(audited)
    for statement in (
        "TRUNCATE permission_audit",
        "TRUNCATE TABLE permission_audit RESTART IDENTITY",
        "TRUNCATE permission_audit, decisions CASCADE",
    ):
        fresh = create_engine(database_url)  # a new session: default session_replication_role
        try:
            with pytest.raises(DBAPIError) as raised, fresh.begin() as conn:
                _default_replication_role(conn)
                conn.execute(text(statement))
            assert getattr(raised.value.orig, "sqlstate", None) == "42501", raised.value  # insufficient_privilege
            assert "append-only" in str(raised.value.orig) and "TRUNCATE" in str(raised.value.orig), raised.value
        finally:
            fresh.dispose()
        assert rows(audited) == before, statement
    assert [r[1] for r in before].count(TRACE_ID) == 2


@pytest.mark.postgres
def test_postgres_update_and_delete_are_refused_with_insufficient_privilege(audited: Engine, database_url: str):
    postgres_only(database_url)
    before = rows(audited)
    for statement in ("UPDATE permission_audit SET status_after = 'close'", "DELETE FROM permission_audit"):
        fresh = create_engine(database_url)
        try:
            with pytest.raises(DBAPIError) as raised, fresh.begin() as conn:
                _default_replication_role(conn)
                conn.execute(text(statement))
            assert getattr(raised.value.orig, "sqlstate", None) == "42501", raised.value
        finally:
            fresh.dispose()
        assert rows(audited) == before, statement
