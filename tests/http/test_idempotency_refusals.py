"""A POST refused for its Idempotency-Key (400105 reused, 409002 in flight) authenticated: its signature is
spent all the same, so the very same bytes and headers sent again are a replay (SPEC §3.4, §4), and the refusal
itself changes nothing else. Every route where a key is claimed: the update, the account upsert, and a malformed
body of either (kept under its key before any service runs)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from flask import Flask, request
from sqlalchemy import Engine, func, select, text
from structlog.testing import capture_logs

from app import create_app
from app.http.idempotency import idempotency_request
from app.http.wiring import container_of
from app.persistence.models import (
    AcceptedSignature,
    Account,
    AccountAttribute,
    AccountAudit,
    AccountPermission,
    IdempotencyKey,
    PermissionAudit,
    RecordedDecision,
)
from app.service import authentication
from app.settings import Settings
from tests.conftest import postgres_only
from tests.support import DEMO, UPDATE_PATH, UPSERT_PATH, body_of, signed_headers

# Everything a request may write, apart from the signature it spends.
WRITTEN = (
    PermissionAudit,
    AccountAudit,
    RecordedDecision,
    AccountPermission,
    Account,
    AccountAttribute,
    IdempotencyKey,
)
SECRETS = (DEMO.app_secret, DEMO.access_token)


@dataclass(frozen=True)
class Route:
    """A signed POST route, a request it answers and another request it refuses under the same key."""

    name: str
    path: str
    first: bytes  # answered and stored under the key
    refused: bytes  # the same key with this request: 400105


VALID_UPDATE = body_of("ACC-2", ("stock.US", "open"))
VALID_UPSERT = b'{"account_no":"ACC-2","status":"active","attributes":{"account_type":"margin"}}'
ROUTES = [
    Route("update", UPDATE_PATH, VALID_UPDATE, body_of("ACC-2", ("stock.HK", "open"))),
    Route("malformed update", UPDATE_PATH, VALID_UPDATE, b'{"account_no":"ACC-2","changes":[]}'),
    Route("upsert", UPSERT_PATH, VALID_UPSERT, b'{"account_no":"ACC-2","status":"active","attributes":{}}'),
    Route("malformed upsert", UPSERT_PATH, VALID_UPSERT, b'{"account_no":"ACC-2","status":"bogus"}'),
]
BY_NAME = pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])


@pytest.fixture(autouse=True)
def _uncached_auth_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh logger for app.service.authentication: the app configures structlog to cache each logger on first
    use, and a cached one writes past capture_logs()."""
    monkeypatch.setattr(authentication, "log", structlog.get_logger("app.auth"))


def written(db: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row a request may write, table by table."""
    with db.connect() as conn:
        return {
            model.__tablename__: sorted(
                (tuple(row) for row in conn.execute(select(model.__table__))), key=lambda row: repr(row)
            )
            for model in WRITTEN
        }


def spent(db: Engine) -> int:
    with db.connect() as conn:
        return conn.scalar(select(func.count()).select_from(AcceptedSignature)) or 0


def headers_for(route: Route, body: bytes, key: str, *, at: str) -> dict[str, str]:
    """The headers of one request, signed once: sending them again is a replay."""
    headers = signed_headers("POST", route.path, body, timestamp=at)
    headers["Idempotency-Key"] = key
    return headers


def post(app: Flask, route: Route, body: bytes, headers: dict[str, str]) -> Any:
    return app.test_client().post(route.path, data=body, headers=headers)


def answered(response: Any, status: int, code: int) -> str:
    envelope = response.get_json()
    assert (response.status_code, envelope["code"]) == (status, code), envelope
    return envelope["message"]


def answer_first(app: Flask, route: Route, key: str) -> None:
    """The route's first request under the key: answered and stored (a malformed one is refused and stored)."""
    response = post(app, route, route.first, headers_for(route, route.first, key, at=f"{time.time():.3f}"))
    assert response.status_code == 200, response.get_json()


def fingerprint(app: Flask, route: Route, body: bytes, key: str) -> str:
    """The request's fingerprint, as the key stores it."""
    with app.test_request_context(route.path, method="POST", data=body, headers={"Idempotency-Key": key}):
        found = idempotency_request(request, body)
    assert found is not None
    return found.request_sha256


def refused_then_a_replay(app: Flask, db: Engine, route: Route, key: str, status: int, code: int) -> str:
    """Send a request the key refuses, then its very bytes and headers again: a replay. Nothing else changed."""
    headers = headers_for(route, route.refused, key, at=f"{time.time():.3f}")
    before, signatures = written(db), spent(db)
    message = answered(post(app, route, route.refused, headers), status, code)
    assert key in message
    assert written(db) == before  # no audit row, no permission, account or key changed
    assert spent(db) == signatures + 1  # but its signature is spent
    replay = post(app, route, route.refused, headers)
    assert "replay" in answered(replay, 401, 401001)
    assert written(db) == before
    return message


@BY_NAME
def test_a_request_refused_for_a_reused_key_spends_its_signature(app: Flask, db: Engine, route: Route):
    answer_first(app, route, "reused")
    refused_then_a_replay(app, db, route, "reused", 422, 400105)


@BY_NAME
def test_a_request_refused_while_its_key_is_unanswered_spends_its_signature(app: Flask, db: Engine, route: Route):
    # The key was taken by an identical request whose answer is not stored: 409002 (retry later).
    now = datetime.now(UTC)
    with db.begin() as conn:
        conn.execute(
            IdempotencyKey.__table__.insert().values(
                tenant_id="sg_mexc",
                idempotency_key="unanswered",
                request_sha256=fingerprint(app, route, route.refused, "unanswered"),
                created_at=now,
                expires_at=now + timedelta(days=1),
            )
        )
    refused_then_a_replay(app, db, route, "unanswered", 409, 409002)


@pytest.mark.postgres
@BY_NAME
def test_a_request_refused_while_a_concurrent_one_holds_its_key_spends_its_signature(
    seeded: Settings, db: Engine, route: Route
):
    postgres_only(seeded.database_url)  # the bounded wait on a held key is PostgreSQL's lock_timeout
    app = create_app(replace(seeded, idempotency_wait_seconds=0.2))
    try:
        with db.connect() as held:  # another request's transaction holds the key and has not finished
            held.execute(
                text(
                    "INSERT INTO idempotency_keys (tenant_id, idempotency_key, request_sha256, created_at, expires_at)"
                    " VALUES ('sg_mexc', 'held', 'another request', now(), now() + interval '1 day')"
                )
            )
            message = refused_then_a_replay(app, db, route, "held", 409, 409002)
            held.rollback()
        assert "still being processed" in message
    finally:
        container_of(app).engine.dispose()


SPEND_FAILS = "tps_test_spend_fails"


@pytest.fixture
def failing_spend(seeded: Settings, db: Engine) -> Iterator[None]:
    """A trigger that lets one signature in (the request's own transaction, which rolls back) and refuses every
    later one (the spend): nextval is not rolled back."""
    postgres_only(seeded.database_url)
    with db.begin() as conn:
        conn.execute(text(f"CREATE SEQUENCE {SPEND_FAILS}"))
        conn.execute(
            text(
                f"CREATE FUNCTION {SPEND_FAILS}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF nextval('{SPEND_FAILS}') > 1 THEN RAISE EXCEPTION 'injected spend failure'; END IF; "
                f"RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                f"CREATE TRIGGER {SPEND_FAILS} BEFORE INSERT ON accepted_signatures "
                f"FOR EACH ROW EXECUTE FUNCTION {SPEND_FAILS}()"
            )
        )
    try:
        yield
    finally:
        with db.begin() as conn:
            conn.execute(text(f"DROP TRIGGER IF EXISTS {SPEND_FAILS} ON accepted_signatures"))
            conn.execute(text(f"DROP FUNCTION IF EXISTS {SPEND_FAILS}()"))
            conn.execute(text(f"DROP SEQUENCE IF EXISTS {SPEND_FAILS}"))


@pytest.mark.postgres
def test_a_database_failure_while_spending_is_logged_and_the_refusal_stays_the_answer(
    app: Flask, db: Engine, failing_spend: None
):
    route = ROUTES[0]
    answer_first(app, route, "reused")  # before the trigger counts: the sequence starts below
    with db.begin() as conn:
        conn.execute(text(f"ALTER SEQUENCE {SPEND_FAILS} RESTART"))
    headers = headers_for(route, route.refused, "reused", at=f"{time.time():.3f}")
    before, signatures = written(db), spent(db)
    with capture_logs() as logs:
        response = post(app, route, route.refused, headers)
    answered(response, 422, 400105)
    assert (written(db), spent(db)) == (before, signatures)
    [warning] = [e for e in logs if e["event"] == "signature_not_spent"]
    assert warning["log_level"] == "warning" and warning["app_key"] == DEMO.app_key, warning
    assert not any(secret in repr(warning) for secret in SECRETS) and "injected" not in repr(warning)
