"""The account audit trail is append-only, enforced by the database itself (issue 10; migration 0005), as the
permission audit is (migration 0003). Rows are written by the real service (signed upserts), then changed or
removed with plain SQL on a connection of our own: the database must refuse, and the rows must stay as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from tests.conftest import postgres_only

TRACE_ID = "account-append-only-1"
COLUMNS = (
    "id, trace_id, tenant_id, app_key, account_no, status_before, status_after, attributes_before, "
    "attributes_after, rule_set_version, created_at"
)


@pytest.fixture
def audited(api: Any, database_url: str) -> Iterator[Engine]:
    """Two account audit rows written by the service (NEW-1 created, then deregistered); an engine of our own."""
    for status in ("active", "deregistered"):
        body = {"account_no": "NEW-1", "status": status, "attributes": {"account_type": "cash"}}
        response = api.upsert(body, headers={"X-Trace-Id": TRACE_ID})
        assert (response.status_code, response.get_json()["code"]) == (200, 0), response.get_json()
    engine = create_engine(database_url)
    try:
        assert [r[6] for r in rows(engine) if r[1] == TRACE_ID] == ["active", "deregistered"]
        yield engine
    finally:
        engine.dispose()


def rows(engine: Engine) -> list[tuple[Any, ...]]:
    """Every account audit row, every column, in id order."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(f"SELECT {COLUMNS} FROM account_audit ORDER BY id"))]


@pytest.mark.parametrize(
    ("statement", "operation"),
    [
        ("UPDATE account_audit SET status_after = 'active' WHERE status_after = 'deregistered'", "UPDATE"),
        ("UPDATE account_audit SET trace_id = 'forged'", "UPDATE"),
        ("UPDATE account_audit SET attributes_after = attributes_before", "UPDATE"),
        ("DELETE FROM account_audit WHERE status_after = 'deregistered'", "DELETE"),
        ("DELETE FROM account_audit", "DELETE"),
    ],
)
def test_update_and_delete_are_refused(audited: Engine, statement: str, operation: str) -> None:
    before = rows(audited)
    with pytest.raises(DBAPIError) as raised, audited.begin() as conn:
        conn.execute(text(statement))
    message = str(raised.value.orig)
    assert "account_audit is append-only" in message and operation in message, message
    assert rows(audited) == before


def test_an_existing_row_cannot_be_overwritten_by_an_insert(audited: Engine) -> None:
    before = rows(audited)
    sqlite = audited.dialect.name == "sqlite"
    verb = "INSERT OR REPLACE INTO" if sqlite else "INSERT INTO"
    tail = "" if sqlite else " ON CONFLICT (id) DO UPDATE SET status_after = EXCLUDED.status_after"
    try:
        with audited.begin() as conn:
            conn.execute(
                text(
                    f"{verb} account_audit ({COLUMNS}) SELECT id, 'forged', tenant_id, app_key, account_no,"
                    f" status_before, 'active', attributes_before, attributes_after, rule_set_version, created_at"
                    f" FROM account_audit WHERE id = :id{tail}"
                ),
                {"id": before[-1][0]},
            )
    except DBAPIError as exc:
        assert "append-only" in str(exc.orig), exc
    assert rows(audited) == before


@pytest.mark.postgres
def test_postgres_truncate_is_refused(audited: Engine, database_url: str) -> None:
    postgres_only(database_url)
    before = rows(audited)
    for statement in ("TRUNCATE account_audit", "TRUNCATE account_audit, accounts CASCADE"):
        fresh = create_engine(database_url)  # a new session: the default session_replication_role
        try:
            with pytest.raises(DBAPIError) as raised, fresh.begin() as conn:
                assert conn.execute(text("SHOW session_replication_role")).scalar_one() == "origin"
                conn.execute(text(statement))
            assert getattr(raised.value.orig, "sqlstate", None) == "42501", raised.value  # insufficient_privilege
            assert "append-only" in str(raised.value.orig) and "TRUNCATE" in str(raised.value.orig)
        finally:
            fresh.dispose()
        assert rows(audited) == before, statement


def test_attributes_are_rows_of_their_own(audited: Engine) -> None:
    """Typed and queryable: one row per account and name, found by name and value without parsing anything."""
    with audited.connect() as conn:
        found = conn.execute(
            text(
                "SELECT a.origin_id, a.status FROM accounts a JOIN account_attributes x ON x.account_id = a.id "
                "WHERE x.name = 'account_type' AND x.value = 'cash'"
            )
        ).all()
    assert [tuple(r) for r in found] == [("NEW-1", "deregistered")]
