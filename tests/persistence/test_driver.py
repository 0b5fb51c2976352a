"""The hot statements PostgreSQL gets from psycopg directly (app/persistence/driver.py): one insert for many rows,
in order, refusing what the column refuses, and a refused statement reported as StorageError."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select

from app.errors import StorageError
from app.persistence import driver
from app.persistence.db import make_session_factory
from app.persistence.models import PermissionAudit
from app.persistence.repositories import _DECISIONS, _ON_PERMISSION_CONFLICT, _permissions
from app.persistence.unit_of_work import UnitOfWork
from tests.conftest import postgres_only

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


def _audit_row(n: int, permission_type: str = "stock.US") -> dict[str, object]:
    return {
        "trace_id": f"t{n}",
        "tenant_id": "t",
        "app_key": "k",
        "account_no": "A-1",
        "permission_type": permission_type,
        "status_before": "close",
        "status_after": "open",
        "rule_set_version": "v",
        "created_at": NOW,
        "warned_by": None,
    }


def test_many_audit_rows_go_in_order(engine: Engine) -> None:
    rows = [_audit_row(n, f"stock.X{n}") for n in (3, 1, 2, 5, 4)]
    with UnitOfWork(make_session_factory(engine), write=True) as uow:
        uow.audit.append(rows)
        uow.commit()
    with engine.connect() as conn:
        stored = conn.execute(select(PermissionAudit.trace_id).order_by(PermissionAudit.id)).scalars().all()
    assert stored == ["t3", "t1", "t2", "t5", "t4"]


@pytest.mark.postgres
def test_an_over_long_value_is_refused_not_cut(engine: Engine, database_url: str) -> None:
    postgres_only(database_url)  # SQLite does not enforce VARCHAR lengths
    rows = [_audit_row(1), _audit_row(2, "x" * 65)]  # permission_type is VARCHAR(64)
    with pytest.raises(StorageError), UnitOfWork(make_session_factory(engine), write=True) as uow:
        uow.audit.append(rows)
        uow.commit()
    with engine.connect() as conn:
        assert conn.execute(select(PermissionAudit.id)).first() is None


def test_the_array_casts_carry_no_length() -> None:
    sql = driver.insert_rows_sql(_permissions, ("account_id", "permission_type", "status", "updated_at"))
    assert "::VARCHAR[]" in sql and "VARCHAR(" not in sql
    upsert = driver.insert_rows_sql(
        _permissions, ("account_id", "permission_type", "status", "updated_at"), _ON_PERMISSION_CONFLICT
    )
    assert upsert.endswith(
        "ON CONFLICT (account_id, permission_type) DO UPDATE SET status = excluded.status, "
        "updated_at = excluded.updated_at"
    )


def test_an_unknown_column_is_refused_rather_than_dropped() -> None:
    with pytest.raises(ValueError, match="unknown columns \\['bogus'\\]"):
        driver.insert_rows_sql(_DECISIONS, ("trace_id", "bogus"))
    with pytest.raises(ValueError, match="unknown columns"):
        driver.insert_values_sql(_DECISIONS, ("bogus",))
