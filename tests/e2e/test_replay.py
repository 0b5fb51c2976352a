"""Replay protection across gunicorn workers (SPEC §4): a POST signature is accepted once, by any worker."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.server import Answer, log_records, send
from tests.support import READ_PATH, UPDATE_PATH, body_of, signed_headers

pytestmark = pytest.mark.e2e

PAIRS_PER_ROUND = 20
MAX_PAIRS = 200
CLIENTS = ("stock.US", "stock.HK", "stock.SG", "stock.JP")  # one permission of ACC-2 per client thread


def pids_by_trace(log_path: Path) -> dict[str, set[int]]:
    """trace_id → pids of the server log lines carrying it."""
    found: dict[str, set[int]] = {}
    for record in log_records(log_path):
        if "trace_id" in record and "pid" in record:
            found.setdefault(record["trace_id"], set()).add(record["pid"])
    return found


def assert_replay_refused(answer: Answer) -> None:
    assert answer.status == 401, answer
    assert answer.envelope["code"] == 401001, answer
    assert "replay" in answer.envelope["message"].lower(), answer
    assert answer.envelope["data"]["failure_index"] == 0, answer


def read_statuses(url: str, account_no: str) -> dict[str, str]:
    query = f"account_no={account_no}"
    answer = send(url, "GET", f"{READ_PATH}?{query}", None, signed_headers("GET", READ_PATH, query=query))
    assert answer.status == 200, answer
    return {p["permission_type"]: p["permission_status"] for p in answer.envelope["data"]["permissions"]}


def test_same_signed_post_twice_is_refused_the_second_time(live_server):
    body = body_of("ACC-2", ("stock.US", "open"))
    headers = signed_headers("POST", UPDATE_PATH, body)

    first = send(live_server.url, "POST", UPDATE_PATH, body, headers)
    assert first.status != 401, first
    assert (first.status, first.envelope["code"]) == (200, 0), first

    second = send(live_server.url, "POST", UPDATE_PATH, body, dict(headers))
    assert_replay_refused(second)
    assert second.trace_id and second.trace_id != first.trace_id


def replay_pairs(url: str, client: int, indices: range) -> list[tuple[Answer, Answer]]:
    """For each index a signed original, answered, then the same bytes and headers again on a new connection."""
    permission_type = CLIENTS[client]
    pairs = []
    for i in indices:
        # Each client alternates its own permission so every original succeeds; the nonce keeps bodies distinct.
        body = body_of("ACC-2", (permission_type, "open" if i % 2 == 0 else "close"), nonce=i)
        headers = signed_headers("POST", UPDATE_PATH, body)
        original = send(url, "POST", UPDATE_PATH, body, headers)
        pairs.append((original, send(url, "POST", UPDATE_PATH, body, dict(headers))))
    return pairs


def test_replays_are_refused_whichever_worker_serves_them(live_server):
    """Originals and their replays, each on its own connection, until a pair was split across the two workers.

    The pairs run on a few client threads at once so both workers are busy and take connections freely
    (a single client in lock-step is mostly served by one worker); within a pair the replay is sent only
    once the original was answered.
    """
    pairs: list[tuple[Answer, Answer]] = []
    sent_by_client = [0] * len(CLIENTS)
    crossed: list[tuple[int, int]] = []
    served: dict[int, int] = {}
    per_client = PAIRS_PER_ROUND // len(CLIENTS)
    with ThreadPoolExecutor(max_workers=len(CLIENTS)) as pool:
        while len(pairs) < MAX_PAIRS:
            futures = [
                pool.submit(replay_pairs, live_server.url, c, range(sent_by_client[c], sent_by_client[c] + per_client))
                for c in range(len(CLIENTS))
            ]
            for client, future in enumerate(futures):
                round_pairs = future.result(timeout=120)
                sent_by_client[client] += len(round_pairs)
                pairs.extend(round_pairs)

            for original, replay in pairs:
                assert (original.status, original.envelope["code"]) == (200, 0), original
                assert_replay_refused(replay)

            by_trace = pids_by_trace(live_server.log_path)
            crossed, served = [], {}
            for original, replay in pairs:
                original_pids, replay_pids = by_trace.get(original.trace_id), by_trace.get(replay.trace_id)
                assert original_pids and len(original_pids) == 1, (original, original_pids)
                assert replay_pids and len(replay_pids) == 1, (replay, replay_pids)
                for pid in (*original_pids, *replay_pids):
                    served[pid] = served.get(pid, 0) + 1
                if original_pids != replay_pids:
                    crossed.append((next(iter(original_pids)), next(iter(replay_pids))))
            if crossed:
                break

    print(f"\n{len(pairs)} original/replay pairs; requests per worker pid {served}; {len(crossed)} pairs crossed")
    assert crossed, f"after {len(pairs)} pairs no original and its replay were served by different workers"
    assert len(served) == 2, served

    # The replays changed nothing: each permission holds what its client's originals alone made of it.
    statuses = read_statuses(live_server.url, "ACC-2")
    for client, permission_type in enumerate(CLIENTS):
        assert statuses[permission_type] == ("open" if sent_by_client[client] % 2 == 1 else "close"), permission_type


def test_same_post_sent_twice_at_once_is_accepted_once(live_server):
    """Both copies race through authentication: exactly one is accepted, the other refused as a replay."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        for i in range(10):
            body = body_of("ACC-2", ("stock.SG", "open" if i % 2 == 0 else "close"), nonce=i)
            headers = signed_headers("POST", UPDATE_PATH, body)
            barrier = threading.Barrier(2)

            def fire(body: bytes = body, headers: dict[str, str] = headers, barrier: threading.Barrier = barrier):
                barrier.wait(timeout=30)
                return send(live_server.url, "POST", UPDATE_PATH, body, dict(headers))

            answers = [f.result(timeout=60) for f in [pool.submit(fire), pool.submit(fire)]]
            assert sorted(a.envelope["code"] for a in answers) == [0, 401001], answers
            assert_replay_refused(next(a for a in answers if a.envelope["code"] == 401001))
    assert read_statuses(live_server.url, "ACC-2")["stock.SG"] == "close"


def test_identical_get_signatures_are_both_served(live_server):
    query = "account_no=ACC-1"
    headers = signed_headers("GET", READ_PATH, query=query)
    answers = [send(live_server.url, "GET", f"{READ_PATH}?{query}", None, dict(headers)) for _ in range(2)]
    for answer in answers:
        assert answer.status == 200, answer
        assert answer.envelope["code"] == 0, answer
        assert answer.envelope["data"]["account_no"] == "ACC-1"
    assert answers[0].envelope["data"] == answers[1].envelope["data"]
    assert answers[0].trace_id != answers[1].trace_id
