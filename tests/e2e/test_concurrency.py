"""Concurrent updates of one account against gunicorn -w 2 behave like some sequential order (SPEC §3.2 step 3)."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.persistence.db import make_engine
from app.persistence.models import PermissionAudit
from app.settings import Settings
from tests.e2e.server import Answer, send
from tests.support import READ_PATH, UPDATE_PATH, body_of, signed_headers

pytestmark = pytest.mark.e2e

CONCURRENT = 32


def post_all_at_once(url: str, bodies: list[bytes]) -> list[Answer]:
    """POST every body from its own thread, released together by a barrier; answers in the order of bodies."""
    barrier = threading.Barrier(len(bodies))

    def fire(index: int) -> Answer:
        body = bodies[index]
        headers = signed_headers("POST", UPDATE_PATH, body)
        headers["X-Trace-Id"] = f"concurrent-{index}-{threading.get_ident()}"
        barrier.wait(timeout=30)
        return send(url, "POST", UPDATE_PATH, body, headers)

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        futures = [pool.submit(fire, i) for i in range(len(bodies))]
        return [f.result(timeout=120) for f in futures]


def read_statuses(url: str, account_no: str) -> dict[str, str]:
    query = f"account_no={account_no}"
    answer = send(url, "GET", f"{READ_PATH}?{query}", None, signed_headers("GET", READ_PATH, query=query))
    assert answer.status == 200, answer
    return {p["permission_type"]: p["permission_status"] for p in answer.envelope["data"]["permissions"]}


def audit_rows(settings: Settings, account_no: str) -> list[PermissionAudit]:
    """The account's audit rows (sg_mexc) in the order they were written, read from settings.database_url."""
    engine = make_engine(settings, request_path=False)
    try:
        with Session(engine) as session:
            return list(
                session.scalars(
                    select(PermissionAudit)
                    .where(PermissionAudit.tenant_id == "sg_mexc", PermissionAudit.account_no == account_no)
                    .order_by(PermissionAudit.id)
                )
            )
    finally:
        engine.dispose()


ROUNDS = ("open", "close", "open", "close", "open", "close", "open", "close")


def test_identical_opens_at_once_succeed_exactly_once(live_server):
    """32 concurrent opens of stock.US: one applies, 31 see it already open; then more rounds alternating the
    status, each with exactly one winner (every round is one more chance for a lost update to show)."""
    audited: list[PermissionAudit] = []
    for round_no, wanted in enumerate(ROUNDS):
        bodies = [body_of("ACC-2", ("stock.US", wanted), nonce=f"{round_no}-{i}") for i in range(CONCURRENT)]
        answers = post_all_at_once(live_server.url, bodies)

        winners = [a for a in answers if a.envelope["code"] == 0]
        losers = [a for a in answers if a.envelope["code"] != 0]
        assert len(winners) == 1, (round_no, answers)
        assert winners[0].status == 200
        assert winners[0].envelope == {"code": 0, "message": "success", "data": {"failure_index": 0}}
        assert len(losers) == CONCURRENT - 1
        for answer in losers:
            assert answer.status == 400, answer
            assert answer.envelope["code"] == 400103, answer
            assert answer.envelope["data"]["failure_index"] == 0, answer
            assert answer.envelope["data"]["rule_id"] == "must-change-state", answer

        assert read_statuses(live_server.url, "ACC-2")["stock.US"] == wanted
        rows = [r for r in audit_rows(live_server.settings, "ACC-2") if r.permission_type == "stock.US"]
        assert [r.id for r in rows[:-1]] == [r.id for r in audited], rows
        assert len(rows) == round_no + 1, rows
        row = rows[-1]
        before = "close" if wanted == "open" else "open"
        assert (row.tenant_id, row.app_key, row.status_before, row.status_after) == (
            "sg_mexc",
            "demo-key",
            before,
            wanted,
        )
        assert row.trace_id == winners[0].trace_id
        audited = rows


# Eight permissions of ACC-1, each asked open, close, open, close by four of the 32 concurrent requests.
# account.trade and stock.HK start open (fixtures), the others close. With four requests on one permission a
# lost update (two requests deciding on the same stale state) breaks the audit chain, so it cannot hide.
CONTESTED = (
    "account.trade",
    "stock.HK",
    "stock.US",
    "stock.SG",
    "account.deposit",
    "trade.client",
    "trade.fix",
    "options.US",
)
PER_PERMISSION = ("open", "close", "open", "close")


def sequential_outcomes(start: str, requests: list[tuple[str, str]]) -> list[tuple[dict[str, int], list[str], str]]:
    """Every outcome some sequential order of the requests (trace id, wanted status) could have from start:
    (code per trace id, trace ids of the applied requests in order, final status)."""
    outcomes = []
    for order in itertools.permutations(requests):
        state, codes, applied = start, {}, []
        for trace_id, wanted in order:
            if wanted == state:
                codes[trace_id] = 400103
            else:
                codes[trace_id] = 0
                applied.append(trace_id)
                state = wanted
        outcomes.append((codes, applied, state))
    return outcomes


def test_concurrent_opens_and_closes_match_a_sequential_order(live_server):
    before = read_statuses(live_server.url, "ACC-1")
    assert before["account.trade"] == before["stock.HK"] == "open"
    last_fixture_row = max((r.id for r in audit_rows(live_server.settings, "ACC-1")), default=0)

    # Interleaved so that neighbours in the list (and in the start-up order of the threads) differ in permission.
    requests = [(permission_type, status) for status in PER_PERMISSION for permission_type in CONTESTED]
    assert len(requests) == CONCURRENT
    bodies = [body_of("ACC-1", request, nonce=i) for i, request in enumerate(requests)]  # no two alike
    answers = post_all_at_once(live_server.url, bodies)

    after = read_statuses(live_server.url, "ACC-1")
    rows = [r for r in audit_rows(live_server.settings, "ACC-1") if r.id > last_fixture_row]
    assert {r.trace_id for r in rows} <= {a.trace_id for a in answers}, rows

    for permission_type in CONTESTED:
        mine = [(answers[i], status) for i, (t, status) in enumerate(requests) if t == permission_type]
        for answer, _status in mine:
            expected_http = 200 if answer.envelope["code"] == 0 else 400
            assert (answer.status, answer.envelope["data"]["failure_index"]) == (expected_http, 0), answer
        its_rows = [r for r in rows if r.permission_type == permission_type]
        # The audit rows form an unbroken chain from the state before to the state GET reports.
        state = before[permission_type]
        for row in its_rows:
            assert (row.status_before, row.status_after) == (state, "open" if state == "close" else "close"), (
                permission_type,
                [(r.trace_id, r.status_before, r.status_after) for r in its_rows],
            )
            state = row.status_after
        assert state == after[permission_type], (permission_type, its_rows)
        observed = (
            {a.trace_id: a.envelope["code"] for a, _ in mine},
            [r.trace_id for r in its_rows],
            after[permission_type],
        )
        possible = sequential_outcomes(before[permission_type], [(a.trace_id, status) for a, status in mine])
        assert observed in possible, (permission_type, observed)

    applied = sum(a.envelope["code"] == 0 for a in answers)
    print(
        f"\n{applied} of {CONCURRENT} requests applied; {len(rows)} audit rows; "
        f"open after: {sorted(t for t in CONTESTED if after[t] == 'open')}"
    )
    assert applied == len(rows)
    # Nothing else of the account moved.
    assert {t: s for t, s in after.items() if t not in CONTESTED} == {
        t: s for t, s in before.items() if t not in CONTESTED
    }
