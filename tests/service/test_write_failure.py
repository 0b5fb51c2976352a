"""A database error in the middle of the write (SPEC §3.2 step 5, §3.3 WRITE_FAILED): 500001, nothing persisted.

The error is real: a test-only trigger in this test's own database raises on the 5th audit row of a 10-change
batch, after the decision record, the permission upsert and four audit rows were already sent. The request goes
through the Flask app in-process and through real gunicorn workers.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.e2e.server import log_records
from tests.support import READ_PATH, UPDATE_PATH, body_of, signed_headers

ACCOUNT = "ACC-2"  # nothing set: every permission is close
TEN = (
    "account.trade",
    "account.exchange",
    "account.rollover",
    "account.withdraw",
    "account.deposit",
    "account.public_funds",
    "stock.US",
    "stock.SG",
    "options.US",
    "trade.client",
)
FIFTH = TEN[4]
OTHERS = ("stock.HK", "trade.fix")  # a later request for other permissions
TRIGGER = "tps_test_inject_write_failure"
# Fires only when four audit rows of the same request are already in: the failure is the 5th insert.
EARLIER_ROWS = "SELECT count(*) FROM permission_audit WHERE trace_id = NEW.trace_id"
LEAKS = (
    "Traceback",
    'File "',
    "injected",
    "IntegrityError",
    "RaiseException",
    "psycopg",
    "sqlite3",
    "INSERT",
    "permission_audit",
    "sqlalchemy",
)


# --- the injected failure ---------------------------------------------------------------------------------


class Injector:
    """Creates and drops a BEFORE INSERT trigger on permission_audit that raises for one permission type when
    it is the 5th audit row of its request."""

    def __init__(self, engine: Engine, permission_type: str) -> None:
        self.engine = engine
        self.permission_type = permission_type
        self.postgres = engine.dialect.name == "postgresql"

    def arm(self) -> None:
        with self.engine.begin() as conn:
            if self.postgres:
                conn.execute(
                    text(
                        f"CREATE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                        f"BEGIN IF ({EARLIER_ROWS}) = 4 THEN "
                        f"RAISE EXCEPTION 'injected write failure on %', NEW.permission_type; END IF; "
                        f"RETURN NEW; END $$"
                    )
                )
                conn.execute(
                    text(
                        f"CREATE TRIGGER {TRIGGER} BEFORE INSERT ON permission_audit FOR EACH ROW "
                        f"WHEN (NEW.permission_type = '{self.permission_type}') EXECUTE FUNCTION {TRIGGER}()"
                    )
                )
            else:
                conn.execute(
                    text(
                        f"CREATE TRIGGER {TRIGGER} BEFORE INSERT ON permission_audit "
                        f"WHEN NEW.permission_type = '{self.permission_type}' AND ({EARLIER_ROWS}) = 4 "
                        f"BEGIN SELECT RAISE(ABORT, 'injected write failure'); END"
                    )
                )

    def disarm(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(f"DROP TRIGGER IF EXISTS {TRIGGER}" + (" ON permission_audit" if self.postgres else "")))
            if self.postgres:
                conn.execute(text(f"DROP FUNCTION IF EXISTS {TRIGGER}()"))


@pytest.fixture
def injector(db: Engine) -> Iterator[Injector]:
    """The failure, armed on the 5th of the ten changes; always dropped afterwards (the PostgreSQL test
    database is shared by the whole session)."""
    injector = Injector(db, FIFTH)
    injector.disarm()
    injector.arm()
    try:
        yield injector
    finally:
        injector.disarm()


def count(db: Engine, sql: str, **params: Any) -> int:
    with db.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


# --- two ways of sending ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    text: str
    headers: dict[str, str]

    @property
    def envelope(self) -> dict[str, Any]:
        return json.loads(self.text)


Post = Callable[[bytes, dict[str, str]], Reply]


def in_process(api: Any) -> tuple[Post, Callable[[], dict[str, str]]]:
    def post(body: bytes, headers: dict[str, str]) -> Reply:
        response = api.update(body, headers=headers, timestamp=f"{time.time():.6f}")
        return Reply(response.status_code, response.get_data(as_text=True), dict(response.headers))

    return post, lambda: api.statuses(ACCOUNT)


def over_http(url: str) -> tuple[Post, Callable[[], dict[str, str]]]:
    def request(method: str, target: str, body: bytes | None, headers: dict[str, str]) -> Reply:
        sent = urllib.request.Request(url + target, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(sent, timeout=30) as response:
                return Reply(response.status, response.read().decode(), dict(response.headers))
        except urllib.error.HTTPError as error:
            with error:
                return Reply(error.code, error.read().decode(), dict(error.headers))

    def post(body: bytes, headers: dict[str, str]) -> Reply:
        sent = signed_headers("POST", UPDATE_PATH, body, timestamp=f"{time.time():.6f}")
        sent.update(headers)
        return request("POST", UPDATE_PATH, body, sent)

    def statuses() -> dict[str, str]:
        query = f"account_no={ACCOUNT}"
        reply = request("GET", f"{READ_PATH}?{query}", None, signed_headers("GET", READ_PATH, query=query))
        assert reply.status == 200, reply
        return {p["permission_type"]: p["permission_status"] for p in reply.envelope["data"]["permissions"]}

    return post, statuses


# --- the checks -------------------------------------------------------------------------------------------


def assert_write_failed(reply: Reply, trace_id: str) -> None:
    assert reply.status == 500, reply
    assert reply.headers.get("X-Trace-Id") == trace_id, reply.headers
    assert reply.headers.get("Content-Type", "").startswith("application/json"), reply.headers
    envelope = reply.envelope
    assert envelope["code"] == 500001, envelope
    assert envelope["data"] == {"failure_index": 0}, envelope
    assert isinstance(envelope["message"], str) and envelope["message"], envelope
    assert "Idempotency-Replayed" not in reply.headers, reply.headers
    for leak in LEAKS:
        assert leak not in reply.text, (leak, reply.text)


def assert_nothing_persisted(db: Engine, statuses: Callable[[], dict[str, str]], trace_id: str) -> None:
    seen = statuses()
    assert {t: seen[t] for t in TEN} == dict.fromkeys(TEN, "close"), seen
    assert (
        count(
            db,
            "SELECT count(*) FROM account_permissions p JOIN accounts a ON a.id = p.account_id WHERE a.origin_id = :a",
            a=ACCOUNT,
        )
        == 0
    )
    assert count(db, "SELECT count(*) FROM permission_audit WHERE trace_id = :t", t=trace_id) == 0
    assert count(db, "SELECT count(*) FROM permission_audit WHERE account_no = :a", a=ACCOUNT) == 0
    assert count(db, "SELECT count(*) FROM decisions WHERE trace_id = :t", t=trace_id) == 0


def assert_others_still_work(db: Engine, post: Post, statuses: Callable[[], dict[str, str]]) -> None:
    trace_id = f"wf-after-{uuid.uuid4().hex[:8]}"
    reply = post(body_of(ACCOUNT, *[(t, "open") for t in OTHERS]), {"X-Trace-Id": trace_id})
    assert (reply.status, reply.envelope) == (200, {"code": 0, "message": "success", "data": {"failure_index": 0}})
    seen = statuses()
    assert {t: seen[t] for t in OTHERS} == dict.fromkeys(OTHERS, "open"), seen
    assert {t: seen[t] for t in TEN} == dict.fromkeys(TEN, "close"), seen
    assert count(db, "SELECT count(*) FROM permission_audit WHERE trace_id = :t", t=trace_id) == len(OTHERS)
    assert count(db, "SELECT count(*) FROM decisions WHERE trace_id = :t AND code = 0", t=trace_id) == 1


def run_failure(db: Engine, post: Post, statuses: Callable[[], dict[str, str]]) -> str:
    assert {t: s for t, s in statuses().items() if t in TEN} == dict.fromkeys(TEN, "close")
    trace_id = f"wf-{uuid.uuid4().hex[:8]}"
    reply = post(body_of(ACCOUNT, *[(t, "open") for t in TEN]), {"X-Trace-Id": trace_id})
    assert_write_failed(reply, trace_id)
    assert_nothing_persisted(db, statuses, trace_id)
    assert count(db, "SELECT count(*) FROM idempotency_keys") == 0
    assert_others_still_work(db, post, statuses)
    return trace_id


def run_failure_with_key(db: Engine, injector: Injector, post: Post, statuses: Callable[[], dict[str, str]]) -> None:
    key = f"wf-key-{uuid.uuid4().hex}"
    body = body_of(ACCOUNT, *[(t, "open") for t in TEN])

    first = f"wf-k1-{uuid.uuid4().hex[:8]}"
    assert_write_failed(post(body, {"X-Trace-Id": first, "Idempotency-Key": key}), first)
    assert_nothing_persisted(db, statuses, first)
    assert count(db, "SELECT count(*) FROM idempotency_keys WHERE idempotency_key = :k", k=key) == 0

    # Still failing: the repeat is tried again (a stored 500 would come back marked Idempotency-Replayed).
    second = f"wf-k2-{uuid.uuid4().hex[:8]}"
    assert_write_failed(post(body, {"X-Trace-Id": second, "Idempotency-Key": key}), second)
    assert_nothing_persisted(db, statuses, second)
    assert count(db, "SELECT count(*) FROM idempotency_keys WHERE idempotency_key = :k", k=key) == 0

    injector.disarm()
    third = f"wf-k3-{uuid.uuid4().hex[:8]}"
    reply = post(body, {"X-Trace-Id": third, "Idempotency-Key": key})
    assert (reply.status, reply.envelope) == (200, {"code": 0, "message": "success", "data": {"failure_index": 0}})
    assert "Idempotency-Replayed" not in reply.headers, reply.headers
    assert {t: s for t, s in statuses().items() if t in TEN} == dict.fromkeys(TEN, "open")
    assert count(db, "SELECT count(*) FROM permission_audit WHERE trace_id = :t", t=third) == len(TEN)
    assert (
        count(db, "SELECT count(*) FROM idempotency_keys WHERE idempotency_key = :k AND http_status = 200", k=key) == 1
    )

    # Now the answer is stored: a repeat is replayed, not written again.
    fourth = f"wf-k4-{uuid.uuid4().hex[:8]}"
    reply = post(body, {"X-Trace-Id": fourth, "Idempotency-Key": key})
    assert (reply.status, reply.envelope["code"]) == (200, 0), reply
    assert reply.headers.get("Idempotency-Replayed") == "true", reply.headers
    assert count(db, "SELECT count(*) FROM permission_audit WHERE account_no = :a", a=ACCOUNT) == len(TEN)


# --- the tests --------------------------------------------------------------------------------------------


def test_injected_failure_on_the_fifth_of_ten_in_process(api, db, injector):
    post, statuses = in_process(api)
    run_failure(db, post, statuses)


def test_injected_failure_with_idempotency_key_in_process(api, db, injector):
    post, statuses = in_process(api)
    run_failure_with_key(db, injector, post, statuses)


@pytest.mark.slow
@pytest.mark.e2e
def test_injected_failure_on_the_fifth_of_ten_over_gunicorn(live_server, db, injector):
    post, statuses = over_http(live_server.url)
    trace_id = run_failure(db, post, statuses)
    records = [r for r in log_records(live_server.log_path) if r.get("trace_id") == trace_id]
    failed = [r for r in records if r.get("event") == "write_failed"]
    assert len(failed) == 1 and "injected" in json.dumps(failed[0]), records  # our trigger, nothing else
    assert any(r.get("event") == "decision" and r.get("code") == 500001 for r in records), records
    assert not any(r.get("event") == "unhandled_error" for r in log_records(live_server.log_path))


@pytest.mark.slow
@pytest.mark.e2e
def test_injected_failure_with_idempotency_key_over_gunicorn(live_server, db, injector):
    post, statuses = over_http(live_server.url)
    run_failure_with_key(db, injector, post, statuses)
