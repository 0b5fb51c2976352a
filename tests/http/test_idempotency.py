"""Idempotency keys (SPEC §3.4): a repeat gets the first answer and writes nothing more."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from app.http.wiring import container_of
from app.persistence.models import IdempotencyKey, PermissionAudit
from tests.conftest import Api
from tests.support import OTHER, body_of


def audit_rows(app) -> int:
    with container_of(app).session_factory() as session:
        return session.scalar(select(func.count()).select_from(PermissionAudit))


def keyed(key: str, **more: str) -> dict[str, str]:
    return {"Idempotency-Key": key, **more}


class Retrying:
    """Sends like a client retrying: every attempt is signed afresh (a new timestamp), so none is a replay."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.attempt = 0

    def update(self, body: bytes, **kwargs):
        self.attempt += 1
        return self.api.update(body, timestamp=f"{time.time():.0f}.{self.attempt:03d}", **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.api, name)


@pytest.fixture
def api(api: Api) -> Retrying:
    return Retrying(api)


def test_a_repeat_gets_the_first_answer_and_writes_nothing(api: Api, app):
    body = body_of("ACC-2", ("stock.US", "open"), ("account.trade", "open"))
    before = audit_rows(app)
    first = api.update(body, headers=keyed("order-1"))
    assert first.status_code == 200 and "Idempotency-Replayed" not in first.headers
    assert audit_rows(app) == before + 2
    rows = audit_rows(app)
    again = api.update(body, headers=keyed("order-1"))
    assert again.status_code == 200
    assert again.get_data() == first.get_data()
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.headers["X-Trace-Id"] != first.headers["X-Trace-Id"]
    assert audit_rows(app) == rows


def test_the_same_key_with_another_request_is_refused_and_writes_nothing(api: Api, app):
    before = audit_rows(app)
    assert api.update(body_of("ACC-2", ("stock.US", "open")), headers=keyed("order-2")).status_code == 200
    other = api.update(body_of("ACC-2", ("stock.HK", "open")), headers=keyed("order-2"))
    assert other.status_code == 422
    assert other.get_json() == {"code": 400105, "message": other.get_json()["message"], "data": {"failure_index": 0}}
    assert "order-2" in other.get_json()["message"]
    assert api.statuses("ACC-2")["stock.HK"] == "close"
    assert audit_rows(app) == before + 1


def test_keys_belong_to_one_tenant(api: Api):
    assert api.update(body_of("ACC-2", ("stock.US", "open")), headers=keyed("shared")).status_code == 200
    theirs = api.update(body_of("OTHER-1", ("stock.US", "open")), creds=OTHER, headers=keyed("shared"))
    assert theirs.status_code == 200 and "Idempotency-Replayed" not in theirs.headers
    assert api.statuses("OTHER-1", creds=OTHER)["stock.US"] == "open"


def test_a_rejected_first_attempt_is_answered_the_same_even_after_the_state_moved(api: Api):
    body = body_of("ACC-2", ("stock.US", "close"))
    first = api.update(body, headers=keyed("close-1"))
    assert (first.status_code, first.get_json()["code"]) == (400, 400103)
    assert api.update(body_of("ACC-2", ("stock.US", "open"))).status_code == 200  # now a close would succeed
    again = api.update(body, headers=keyed("close-1"))
    assert again.get_data() == first.get_data() and again.status_code == 400
    assert again.headers["Idempotency-Replayed"] == "true"
    assert api.statuses("ACC-2")["stock.US"] == "open"


def test_account_errors_are_kept_too(api: Api):
    first = api.update(body_of("ACC-GONE", ("stock.US", "open")), headers=keyed("gone"))
    assert first.status_code == 409
    again = api.update(body_of("ACC-GONE", ("stock.US", "open")), headers=keyed("gone"))
    assert again.get_data() == first.get_data() and again.headers["Idempotency-Replayed"] == "true"


def test_a_malformed_body_is_kept_under_its_key(api: Api):
    first = api.update(b'{"account_no":"ACC-2","changes":[]}', headers=keyed("bad-1"))
    assert (first.status_code, first.get_json()["code"]) == (400, 400001)
    again = api.update(b'{"account_no":"ACC-2","changes":[]}', headers=keyed("bad-1"))
    assert again.get_data() == first.get_data() and again.headers["Idempotency-Replayed"] == "true"
    other = api.update(body_of("ACC-2", ("stock.US", "open")), headers=keyed("bad-1"))
    assert (other.status_code, other.get_json()["code"]) == (422, 400105)


@pytest.mark.parametrize("key", ["", "x" * 129, "tab\there", "naïve"])
def test_a_malformed_key_is_a_request_error(api: Api, key: str):
    response = api.update(body_of("ACC-2", ("stock.US", "open")), headers=keyed(key))
    assert (response.status_code, response.get_json()["code"]) == (400, 400001)
    assert "Idempotency-Key" in response.get_json()["message"]
    assert api.statuses("ACC-2")["stock.US"] == "close"


def test_a_key_older_than_a_day_is_new_again(api: Api, app):
    assert api.update(body_of("ACC-2", ("stock.US", "open")), headers=keyed("old")).status_code == 200
    with container_of(app).session_factory() as session:
        session.execute(update(IdempotencyKey).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        session.commit()
    fresh = api.update(body_of("ACC-2", ("stock.US", "close")), headers=keyed("old"))
    assert fresh.status_code == 200 and "Idempotency-Replayed" not in fresh.headers
    assert api.statuses("ACC-2")["stock.US"] == "close"
