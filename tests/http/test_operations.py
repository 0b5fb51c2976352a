"""/readyz in process (SPEC §8, §8a): what makes it ready, and that a probe does not fill the log."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from app.persistence.migrate import head_revision


def test_readyz_is_ready_on_a_migrated_database(app: Any):
    answer = app.test_client().get("/readyz")
    assert (answer.status_code, answer.get_json()["code"]) == (200, 0)
    assert answer.get_json()["data"]["schema_revision"] == head_revision()


def test_readyz_is_not_ready_while_a_table_the_service_needs_is_missing(app: Any, seeded: Any):
    engine = create_engine(seeded.database_url)
    with engine.begin() as conn:  # at the head revision, yet every upsert would fail
        conn.execute(text("ALTER TABLE account_audit RENAME TO account_audit_away"))
    try:
        answer = app.test_client().get("/readyz")
    finally:  # the PostgreSQL database is shared by the session's tests
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE account_audit_away RENAME TO account_audit"))
        engine.dispose()
    assert (answer.status_code, answer.get_json()["code"]) == (503, 503001)
    data = answer.get_json()["data"]
    assert data["database"] == (
        f"schema at revision {head_revision()} but missing table(s) account_audit: restore them"
    )


def test_a_readyz_probe_logs_nothing_of_alembic(app: Any, caplog: pytest.LogCaptureFixture):
    client = app.test_client()
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            assert client.get("/readyz").status_code == 200
    assert [r.getMessage() for r in caplog.records if r.name.startswith("alembic")] == []
