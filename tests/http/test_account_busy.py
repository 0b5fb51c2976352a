"""A request meeting an account another transaction holds answers 409003 within the request path's lock bound
(SPEC §3.3, §8) instead of waiting for gunicorn to kill the worker; it writes nothing, and once the lock is
released the same change, signed afresh, goes through. The holder is a real second connection: on PostgreSQL it
holds the account's row (SELECT ... FOR UPDATE), on SQLite the database write lock (BEGIN IMMEDIATE)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from flask import Flask
from sqlalchemy import Engine, select
from structlog.testing import capture_logs

from app import create_app
from app.http.wiring import container_of
from app.persistence.models import PermissionAudit
from app.service import accounts, permissions
from app.settings import Settings
from tests.conftest import postgres_only
from tests.http.test_idempotency_refusals import spent, written
from tests.locking import account_locked
from tests.support import UPDATE_PATH, UPSERT_PATH, body_of, signed_headers

BOUND = 0.5  # the lock bound of this module's app, in seconds
MARGIN = 1.5  # what a loaded 2-core CI machine may add to a request that gave up at the bound
CHANGE = body_of("ACC-2", ("stock.SG", "open"))  # ACC-2 has no permission set: close → open
UPSERT = b'{"account_no":"ACC-2","status":"active","attributes":{"account_type":"margin"}}'


@pytest.fixture
def bounded(seeded: Settings) -> Iterator[Flask]:
    """The app with a short lock bound, so a test waits half a second where production waits three."""
    application = create_app(seeded.with_overrides(database_lock_timeout_seconds=BOUND))
    # The worker's first look (compiling, and adopting the set it runs: a write) happens now, not inside a timed
    # request while the test holds the lock: what is timed is the wait for the account alone.
    assert application.test_client().get("/readyz").status_code == 200
    yield application
    container_of(application).engine.dispose()


@pytest.fixture(autouse=True)
def _uncached_loggers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fresh decision and account loggers: the app makes structlog cache each logger on first use, and a cached
    one writes past capture_logs() (an earlier test in the same worker may have used it)."""
    monkeypatch.setattr(permissions, "log", structlog.get_logger("app.decision"))
    monkeypatch.setattr(accounts, "log", structlog.get_logger("app.accounts"))


def signed(path: str, body: bytes, key: str | None = None) -> dict[str, str]:
    """Headers signed afresh (a new decimal timestamp); with an Idempotency-Key when given."""
    headers = signed_headers("POST", path, body, timestamp=f"{time.time():.6f}")
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def timed(app: Flask, path: str, body: bytes, headers: dict[str, str]) -> tuple[Any, float]:
    """The response and how long it took."""
    started = time.monotonic()
    response = app.test_client().post(path, data=body, headers=headers)
    return response, time.monotonic() - started


def refused_busy(response: Any, elapsed: float, path: str) -> None:
    """409003 naming the account, within the bound (and not before it: the request did wait)."""
    envelope = json.loads(response.get_data())
    assert (response.status_code, envelope["code"]) == (409, 409003), envelope
    assert envelope["data"] == ({"failure_index": 0} if path == UPDATE_PATH else {}), envelope
    assert envelope["message"] == "account_no 'ACC-2': the account is locked by another request; retry"
    assert response.headers["X-Trace-Id"]
    assert BOUND * 0.8 <= elapsed < BOUND + MARGIN, elapsed


def test_an_update_of_an_account_another_request_holds_answers_409003_within_the_bound(
    bounded: Flask, db: Engine, seeded: Settings
):
    before = written(db)
    with account_locked(seeded.database_url, "ACC-2"), capture_logs() as logs:
        response, elapsed = timed(bounded, UPDATE_PATH, CHANGE, signed(UPDATE_PATH, CHANGE))
    refused_busy(response, elapsed, UPDATE_PATH)
    assert written(db) == before  # no permission, audit row or decision
    [decision] = [e for e in logs if e["event"] == "decision"]
    assert (decision["outcome"], decision["code"], decision["account_no"]) == ("rejected", 409003, "ACC-2")

    retried, _ = timed(bounded, UPDATE_PATH, CHANGE, signed(UPDATE_PATH, CHANGE))  # released; signed afresh
    assert (retried.status_code, retried.get_json()["code"]) == (200, 0), retried.get_json()
    assert _audit(db, "ACC-2") == [("stock.SG", "close", "open")]


def test_an_upsert_of_an_account_another_request_holds_answers_409003_within_the_bound(
    bounded: Flask, db: Engine, seeded: Settings
):
    before = written(db)
    with account_locked(seeded.database_url, "ACC-2"), capture_logs() as logs:
        response, elapsed = timed(bounded, UPSERT_PATH, UPSERT, signed(UPSERT_PATH, UPSERT))
    refused_busy(response, elapsed, UPSERT_PATH)
    assert written(db) == before  # the attributes and the account audit unchanged
    [upsert] = [e for e in logs if e["event"] == "account_upsert"]
    assert (upsert["outcome"], upsert["code"]) == ("rejected", 409003)

    retried, _ = timed(bounded, UPSERT_PATH, UPSERT, signed(UPSERT_PATH, UPSERT))  # released; signed afresh
    assert (retried.status_code, retried.get_json()["data"]["result"]) == (200, "updated"), retried.get_json()
    assert retried.get_json()["data"]["attributes"] == {"account_type": "margin"}


@pytest.mark.parametrize(("path", "body"), [(UPDATE_PATH, CHANGE), (UPSERT_PATH, UPSERT)], ids=["update", "upsert"])
def test_a_busy_refusal_keeps_nothing_under_its_idempotency_key(
    bounded: Flask, db: Engine, seeded: Settings, path: str, body: bytes
):
    # On PostgreSQL the key is claimed first, under its own wait, which must hand the transaction back to the
    # request bound rather than lift it (SET LOCAL lock_timeout = 0 did): else this request would wait for ever.
    before = written(db)
    with account_locked(seeded.database_url, "ACC-2"):
        response, elapsed = timed(bounded, path, body, signed(path, body, key="busy-1"))
    refused_busy(response, elapsed, path)
    assert written(db) == before  # the key was rolled back with the rest: a retry is not a repeat of a refusal

    retried, _ = timed(bounded, path, body, signed(path, body, key="busy-1"))
    assert (retried.status_code, retried.get_json()["code"]) == (200, 0), retried.get_json()
    assert "Idempotency-Replayed" not in retried.headers


@pytest.mark.postgres
@pytest.mark.parametrize(("path", "body"), [(UPDATE_PATH, CHANGE), (UPSERT_PATH, UPSERT)], ids=["update", "upsert"])
def test_a_busy_refusal_spends_its_signature(bounded: Flask, db: Engine, seeded: Settings, path: str, body: bytes):
    # Like an Idempotency-Key refusal: the request authenticated, then rolled back with its signature; sent again,
    # the very same bytes are a replay, so a copy of a request its caller was told is refused never takes effect.
    # (SQLite's busy database refuses at BEGIN, and a spend would wait for the same lock again: not spent there.)
    postgres_only(seeded.database_url)
    headers = signed(path, body)
    signatures = spent(db)
    with account_locked(seeded.database_url, "ACC-2"):
        response, elapsed = timed(bounded, path, body, headers)
    refused_busy(response, elapsed, path)
    assert spent(db) == signatures + 1
    before = written(db)
    replay = bounded.test_client().post(path, data=body, headers=headers)
    assert (replay.status_code, replay.get_json()["code"]) == (401, 401001)
    assert "replay" in replay.get_json()["message"] and written(db) == before


@pytest.mark.postgres
def test_another_account_is_not_held_up(bounded: Flask, seeded: Settings):
    # PostgreSQL locks the row: ACC-1 is served while ACC-2 is held. (SQLite's lock is the whole database's.)
    postgres_only(seeded.database_url)
    body = body_of("ACC-1", ("stock.SG", "open"))
    with account_locked(seeded.database_url, "ACC-2"):
        response, elapsed = timed(bounded, UPDATE_PATH, body, signed(UPDATE_PATH, body))
    assert (response.status_code, response.get_json()["code"]) == (200, 0), response.get_json()
    assert elapsed < BOUND


def _audit(db: Engine, account_no: str) -> list[tuple[str, str, str]]:
    """The account's audit rows: (permission type, before, after)."""
    audit = PermissionAudit.__table__.c
    query = select(audit.permission_type, audit.status_before, audit.status_after).where(audit.account_no == account_no)
    with db.connect() as conn:
        return [tuple(row) for row in conn.execute(query.order_by(audit.id))]
