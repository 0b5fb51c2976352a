"""A statement that runs past the request path's statement bound answers 503/503001 in the envelope within the
bound, and nothing is persisted (SPEC §8): here the update's write is made slow by a trigger that sleeps."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import Engine, create_engine, text

from app import create_app
from app.http.wiring import container_of
from app.settings import Settings
from tests.conftest import postgres_only
from tests.http.test_idempotency_refusals import written
from tests.support import UPDATE_PATH, body_of, signed_headers

BOUND = 0.5
SLOW = "tps_test_slow_audit"


@pytest.fixture
def slow_audit(seeded: Settings) -> Iterator[Engine]:
    """A trigger that makes every audit insert take 5 s; an engine on the test's database."""
    postgres_only(seeded.database_url)
    engine = create_engine(seeded.database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE FUNCTION {SLOW}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN PERFORM pg_sleep(5); RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(f"CREATE TRIGGER {SLOW} BEFORE INSERT ON permission_audit FOR EACH ROW EXECUTE FUNCTION {SLOW}()")
        )
    try:
        yield engine
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TRIGGER IF EXISTS {SLOW} ON permission_audit"))
            conn.execute(text(f"DROP FUNCTION IF EXISTS {SLOW}()"))
        engine.dispose()


@pytest.fixture
def bounded(seeded: Settings) -> Iterator[Flask]:
    application = create_app(seeded.with_overrides(database_statement_timeout_seconds=BOUND))
    # The worker's first look (compiling, and adopting the set it runs) happens now, not inside the timed request.
    assert application.test_client().get("/readyz").status_code == 200
    yield application
    container_of(application).engine.dispose()


@pytest.mark.postgres
def test_a_statement_past_the_bound_answers_503001_and_persists_nothing(bounded: Flask, slow_audit: Engine):
    body = body_of("ACC-2", ("stock.SG", "open"))
    before = written(slow_audit)
    started = time.monotonic()
    response = bounded.test_client().post(
        UPDATE_PATH, data=body, headers=signed_headers("POST", UPDATE_PATH, body, timestamp=f"{time.time():.6f}")
    )
    elapsed = time.monotonic() - started
    envelope = response.get_json()
    assert (response.status_code, envelope["code"], envelope["data"]) == (503, 503001, {"failure_index": 0}), envelope
    assert response.headers["X-Trace-Id"]
    assert BOUND * 0.8 <= elapsed < BOUND + 1.5, elapsed
    assert written(slow_audit) == before
