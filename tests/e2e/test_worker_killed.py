"""A gunicorn worker SIGKILLed in the middle of a batch: no partial batch is ever visible (SPEC §1, §3.2 step 5).

One client thread writes batches of all 23 permissions sg_mexc enables for ACC-2, alternately all open and all
close; another reads them back all the time; the test kills workers (one, or all) while a batch is in flight.
Every read, and the audit trail afterwards, must show whole batches only.
"""

from __future__ import annotations

import http.client
import os
import random
import signal
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.server import Answer, LiveServer, send
from tests.support import READ_PATH, UPDATE_PATH, body_of, signed_headers

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ACCOUNT = "ACC-2"
ENABLED = 23  # account.* (9), stock.* (9), options.US, trade.* (4)
KILLS = 20
BUDGET = 50.0  # seconds for the whole run
INTERRUPTED = (OSError, http.client.HTTPException)  # the worker died under the request


def worker_pids(master: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()}


def read(url: str) -> Answer:
    query = f"account_no={ACCOUNT}"
    return send(url, "GET", f"{READ_PATH}?{query}", None, signed_headers("GET", READ_PATH, query=query), timeout=20)


def statuses_of(answer: Answer) -> dict[str, str]:
    assert answer.status == 200, answer
    return {p["permission_type"]: p["permission_status"] for p in answer.envelope["data"]["permissions"]}


def whole(statuses: dict[str, str]) -> bool:
    return len(statuses) == ENABLED and len(set(statuses.values())) == 1


@dataclass
class Run:
    """What the client threads saw."""

    types: tuple[str, ...]
    stop: threading.Event = field(default_factory=threading.Event)
    in_flight: threading.Event = field(default_factory=threading.Event)
    sent: list[tuple[str, str, int | None]] = field(default_factory=list)  # trace id, wanted, code or None
    latencies: list[float] = field(default_factory=list)
    applied: int = 0
    reads: int = 0
    torn: list[dict[str, str]] = field(default_factory=list)  # reads that showed a partial batch
    unexpected: list[object] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def writer(url: str, run: Run) -> None:
    previous_interrupted = False
    try:
        while not run.stop.is_set():
            try:
                current = statuses_of(read(url))
            except INTERRUPTED:
                continue
            if not whole(current):
                run.torn.append(current)
                continue
            wanted = "open" if next(iter(current.values())) == "close" else "close"
            trace_id = f"kill-{uuid.uuid4().hex[:12]}"
            body = body_of(ACCOUNT, *[(t, wanted) for t in run.types], nonce=trace_id)
            headers = signed_headers("POST", UPDATE_PATH, body)
            headers["X-Trace-Id"] = trace_id
            started = time.monotonic()
            run.in_flight.set()
            try:
                answer = send(url, "POST", UPDATE_PATH, body, headers, timeout=20)
            except INTERRUPTED:
                with run.lock:
                    run.sent.append((trace_id, wanted, None))
                previous_interrupted = True
                continue
            finally:
                run.in_flight.clear()
            outcome = (answer.status, answer.envelope.get("code"), answer.envelope.get("data", {}).get("failure_index"))
            with run.lock:
                run.sent.append((trace_id, wanted, answer.envelope.get("code")))
                if outcome == (200, 0, 0):
                    run.applied += 1
                    run.latencies.append(time.monotonic() - started)
                elif not (previous_interrupted and outcome == (400, 400103, 0)):
                    # (On PostgreSQL the COMMIT a killed worker had already sent may land just after our read:
                    # then the whole batch is already in that state. Anything else is wrong.)
                    run.unexpected.append(answer)
            previous_interrupted = False
    except Exception as exc:  # reported by the main thread
        run.unexpected.append(exc)
        run.stop.set()


def reader(url: str, run: Run) -> None:
    try:
        while not run.stop.is_set():
            try:
                current = statuses_of(read(url))
            except INTERRUPTED:
                continue
            run.reads += 1
            if not whole(current):
                run.torn.append(current)
    except Exception as exc:
        run.unexpected.append(exc)
        run.stop.set()


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)  # poll interval


def test_sigkilled_workers_never_leave_a_partial_batch(live_server: LiveServer):
    assert live_server.process is not None and live_server.workers == 2
    master = live_server.process.pid
    first = statuses_of(read(live_server.url))
    assert len(first) == ENABLED and set(first.values()) == {"close"}, first
    run = Run(types=tuple(first))
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)

    threads = [
        threading.Thread(target=writer, args=(live_server.url, run), daemon=True),
        threading.Thread(target=reader, args=(live_server.url, run), daemon=True),
    ]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    killed: list[int] = []
    try:
        wait_for(lambda: run.applied >= 3, 20, "the first batches")
        for kill in range(KILLS):
            assert not run.stop.is_set(), run.unexpected
            assert time.monotonic() - began < BUDGET, f"only {kill} kills within {BUDGET} s"
            wait_for(lambda: len(worker_pids(master)) == live_server.workers, 20, "a full set of workers")
            assert run.in_flight.wait(timeout=20), "no batch in flight"
            with run.lock:
                typical = statistics.median(run.latencies[-10:])
            # Vary where in the request the kill lands: anywhere from its start to about its usual end.
            time.sleep(rng.uniform(0, typical))
            pids = worker_pids(master)
            victims = pids if kill % 2 == 0 else {rng.choice(sorted(pids))}
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            killed.extend(victims)
            applied = run.applied

            def replaced() -> bool:
                now = worker_pids(master)
                return len(now) == live_server.workers and not now & set(killed)

            wait_for(replaced, 20, "gunicorn to replace the killed workers")
            wait_for(lambda: run.applied > applied, 20, "a batch to succeed after the kill")  # noqa: B023
    finally:
        run.stop.set()
        for thread in threads:
            thread.join(timeout=30)
    elapsed = time.monotonic() - began

    assert not any(t.is_alive() for t in threads)
    assert live_server.process.poll() is None, live_server.logs()[-3000:]
    assert not run.unexpected, run.unexpected[:5]
    assert not run.torn, run.torn[:3]
    final = statuses_of(read(live_server.url))
    assert whole(final), final

    # The audit trail: every request left all of its 23 rows or none.
    engine = create_engine(live_server.settings.database_url)
    try:
        with engine.connect() as conn:
            audit = conn.execute(
                text(
                    "SELECT id, trace_id, permission_type, status_before, status_after FROM permission_audit "
                    "WHERE account_no = :a ORDER BY id"
                ),
                {"a": ACCOUNT},
            ).all()
            decided = Counter(
                r.trace_id
                for r in conn.execute(
                    text("SELECT trace_id FROM decisions WHERE account_no = :a AND code = 0"), {"a": ACCOUNT}
                )
            )
    finally:
        engine.dispose()
    rows = Counter(r.trace_id for r in audit)
    sent = {trace_id: (wanted, code) for trace_id, wanted, code in run.sent}
    assert set(rows) <= set(sent), set(rows) - set(sent)
    for trace_id, (_wanted, code) in sent.items():
        assert rows.get(trace_id, 0) in (0, ENABLED), (trace_id, rows.get(trace_id))
        assert decided.get(trace_id, 0) == (1 if rows.get(trace_id) else 0), trace_id
        if code == 0:
            assert rows.get(trace_id) == ENABLED, trace_id
    for trace_id, count in rows.items():
        its = [r for r in audit if r.trace_id == trace_id]
        assert {r.status_after for r in its} == {sent[trace_id][0]}, its
        assert {r.permission_type for r in its} == set(run.types) and count == ENABLED
    # And the rows chain: each batch flips all 23 from what the previous one left, ending where GET says.
    for permission_type in run.types:
        state = "close"
        for row in (r for r in audit if r.permission_type == permission_type):
            assert (row.status_before, row.status_after) == (state, "open" if state == "close" else "close"), row
            state = row.status_after
        assert state == final[permission_type], permission_type

    interrupted = [t for t, _w, code in run.sent if code is None]
    committed_unanswered = [t for t in interrupted if rows.get(t)]
    print(
        f"\nseed {seed}: {len(killed)} workers killed in {KILLS} kills over {elapsed:.1f} s; {run.applied} batches "
        f"applied, {len(interrupted)} interrupted ({len(committed_unanswered)} of them committed), "
        f"{run.reads} concurrent reads; median batch {statistics.median(run.latencies) * 1000:.0f} ms"
    )
    assert interrupted, "no kill landed on a batch in flight: the test proved nothing"
    assert elapsed < 60
