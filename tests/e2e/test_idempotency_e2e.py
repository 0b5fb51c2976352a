"""Idempotency keys under concurrency, through gunicorn -w 2 (SPEC §3.4; issue 4, acceptance 1)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.settings import Settings
from tests.e2e.server import Answer, LiveServer, send
from tests.e2e.test_concurrency import audit_rows, read_statuses
from tests.support import UPDATE_PATH, body_of, signed_headers

pytestmark = pytest.mark.e2e


def post_keyed_at_once(url: str, body: bytes, key: str, count: int) -> list[Answer]:
    """The same body with the same key from `count` threads at once, each signed afresh."""
    barrier = threading.Barrier(count)

    def fire(index: int) -> Answer:
        headers = signed_headers("POST", UPDATE_PATH, body, timestamp=f"{int(time.time())}.{index:03d}")
        headers.update({"Idempotency-Key": key, "X-Trace-Id": f"keyed-{index}"})
        barrier.wait(timeout=30)
        return send(url, "POST", UPDATE_PATH, body, headers)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return [f.result(timeout=120) for f in [pool.submit(fire, i) for i in range(count)]]


def test_sixteen_concurrent_repeats_write_once(live_server: LiveServer):
    body = body_of("ACC-2", ("stock.US", "open"), ("options.US", "open"))
    answers = post_keyed_at_once(live_server.url, body, "concurrent-order", 16)
    success = {"code": 0, "message": "success", "data": {"failure_index": 0}}
    fresh = [a for a in answers if "Idempotency-Replayed" not in a.headers and a.envelope == success]
    assert len(fresh) == 1, answers
    for answer in answers:
        if answer is fresh[0]:
            continue
        repeat = answer.headers.get("Idempotency-Replayed") == "true" and (answer.status, answer.envelope) == (
            200,
            success,
        )
        waited_too_long = (answer.status, answer.envelope["code"]) == (409, 409002)
        assert repeat or waited_too_long, answer
    rows = [r for r in audit_rows(live_server.settings, "ACC-2") if r.permission_type in ("stock.US", "options.US")]
    assert len(rows) == 2
    statuses = read_statuses(live_server.url, "ACC-2")
    assert statuses["stock.US"] == statuses["options.US"] == "open"


@pytest.mark.postgres
def test_a_repeat_waiting_past_the_bound_gets_in_flight(seeded: Settings, tmp_path: Path):
    if not seeded.database_url.startswith("postgresql"):
        pytest.skip("the bounded wait on a key is PostgreSQL's lock_timeout")
    server = LiveServer(
        settings=seeded, log_path=tmp_path / "gunicorn.log", extra_env={"IDEMPOTENCY_WAIT_SECONDS": "0.5"}
    ).start()
    engine = create_engine(seeded.database_url)
    try:
        with engine.connect() as held:
            # Another request's transaction holds the key and has not finished.
            held.execute(
                text(
                    "INSERT INTO idempotency_keys (tenant_id, idempotency_key, request_sha256, "
                    "created_at, expires_at) VALUES ('sg_mexc', 'slow-order', 'x', now(), "
                    "now() + interval '1 day')"
                )
            )
            body = body_of("ACC-2", ("stock.US", "open"))
            headers = signed_headers("POST", UPDATE_PATH, body)
            headers["Idempotency-Key"] = "slow-order"
            started = time.monotonic()
            answer = send(server.url, "POST", UPDATE_PATH, body, headers)
            waited = time.monotonic() - started
            held.rollback()
        assert (answer.status, answer.envelope["code"], answer.envelope["data"]) == (409, 409002, {"failure_index": 0})
        assert 0.4 < waited < 5
        retry = signed_headers("POST", UPDATE_PATH, body, timestamp=f"{int(time.time())}.5")
        retry["Idempotency-Key"] = "slow-order"
        again = send(server.url, "POST", UPDATE_PATH, body, retry)
        assert (again.status, again.envelope["code"]) == (200, 0)  # the first never finished: this one runs
    finally:
        engine.dispose()
        server.stop()
