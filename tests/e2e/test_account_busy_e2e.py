"""Issue 18, finding 1, through gunicorn -w 2: an update of an account another transaction holds answered only
when gunicorn killed the worker (an HTML 500 at 30 s; nginx's 503001 at 25 s). With the bound set in the
environment, it is the envelope's 409003 within the bound, and the worker goes on serving."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.settings import Settings
from tests.e2e.server import LiveServer, send
from tests.locking import account_locked
from tests.support import UPDATE_PATH, body_of, signed_headers

pytestmark = pytest.mark.e2e


@pytest.mark.slow  # through gunicorn; in-process: tests/http/test_account_busy.py
def test_a_held_account_answers_409003_within_the_bound_through_gunicorn(seeded: Settings, tmp_path: Path):
    server = LiveServer(
        settings=seeded, log_path=tmp_path / "gunicorn.log", extra_env={"DATABASE_LOCK_TIMEOUT_SECONDS": "1"}
    ).start()
    try:
        body = body_of("ACC-2", ("stock.US", "open"))

        def signed() -> dict[str, str]:  # afresh: a decimal timestamp, so a retry is never a replay
            return signed_headers("POST", UPDATE_PATH, body, timestamp=f"{time.time():.6f}")

        # A worker's first look (and the adoption of the set it runs, a write) happens before the lock is taken.
        assert send(server.url, "GET", "/readyz", None, {}).status == 200
        with account_locked(seeded.database_url, "ACC-2"):
            started = time.monotonic()
            answer = send(server.url, "POST", UPDATE_PATH, body, signed())
            waited = time.monotonic() - started
        assert (answer.status, answer.envelope["code"]) == (409, 409003), answer
        assert answer.trace_id and 0.8 <= waited < 1 + 2.5, waited
        retried = send(server.url, "POST", UPDATE_PATH, body, signed())
        assert (retried.status, retried.envelope["code"]) == (200, 0), retried
    finally:
        server.stop()
