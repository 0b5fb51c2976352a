"""Secrets, tokens and signatures never reach the logs or the responses; every line logged while serving a
request carries its trace id (SPEC §3.1, §4, §5) — checked on the log of real gunicorn workers."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.settings import Settings
from tests.e2e.server import Answer, LiveServer, log_records, send
from tests.support import DEMO, READ_PATH, UPDATE_PATH, Credentials, body_of, signed_headers

pytestmark = pytest.mark.e2e

SECRET = DEMO.app_secret  # 'demo-secret'
TOKEN = DEMO.access_token  # 'demo-token'
# Logged by the process outside any request (worker start-up), so without a trace id.
OUTSIDE_REQUESTS = frozenset({"rules_snapshot_not_saved"})


@dataclass
class Traffic:
    """Every request sent and what came back."""

    url: str
    answers: list[tuple[str, Answer, str]] = field(default_factory=list)  # label, answer, raw response text
    signatures: set[str] = field(default_factory=set)  # every X-Api-Signature header sent, and its hex
    tokens: set[str] = field(default_factory=set)  # every Authorization value sent
    secrets: set[str] = field(default_factory=set)  # every secret a request was signed with

    def send(
        self,
        label: str,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        query: str = "",
        creds: Credentials = DEMO,
        headers: dict[str, str] | None = None,
        trace: bool = True,
        replay_of: dict[str, str] | None = None,
    ) -> tuple[Answer, dict[str, str]]:
        # A decimal timestamp (allowed) makes every signature unique, so only the deliberate replay is one.
        sent = (
            dict(replay_of)
            if replay_of
            else signed_headers(method, path, body, query=query, creds=creds, timestamp=f"{time.time():.6f}")
        )
        if trace:  # a replay too: the trace id is not signed, and each request here gets its own
            sent["X-Trace-Id"] = f"clean-{label}-{uuid.uuid4().hex[:8]}"
        sent.update(headers or {})
        if "X-Api-Signature" in sent:
            self.signatures.add(sent["X-Api-Signature"])
            self.signatures.update(re.findall(r"[0-9a-f]{64}", sent["X-Api-Signature"]))
        if "Authorization" in sent:
            self.tokens.add(sent["Authorization"])
        self.secrets.add(creds.app_secret)
        answer = send(self.url, method, path + (f"?{query}" if query else ""), body or None, sent)
        if trace and "X-Trace-Id" in sent:
            assert answer.trace_id == sent["X-Trace-Id"], (label, answer)
        self.answers.append((label, answer, json.dumps(answer.envelope) + json.dumps(answer.headers)))
        return answer, sent


def drive(url: str) -> Traffic:
    """Accepted, rejected, unauthenticated and replayed requests, and a few others."""
    traffic = Traffic(url)

    def expect(answer: Answer, status: int, code: int) -> None:
        assert (answer.status, answer.envelope["code"]) == (status, code), answer

    opened = body_of("ACC-1", ("stock.US", "open"))
    answer, accepted_headers = traffic.send("accepted", "POST", UPDATE_PATH, opened)
    expect(answer, 200, 0)
    answer, _ = traffic.send(
        "accepted-untraced", "POST", UPDATE_PATH, body_of("ACC-1", ("stock.SG", "open")), trace=False
    )
    expect(answer, 200, 0)
    expect(traffic.send("read", "GET", READ_PATH, query="account_no=ACC-1")[0], 200, 0)

    expect(
        traffic.send("rejected-type", "POST", UPDATE_PATH, body_of("ACC-1", ("flag.options", "open")))[0], 400, 400101
    )
    expect(traffic.send("rejected-same", "POST", UPDATE_PATH, body_of("ACC-1", ("stock.US", "open")))[0], 400, 400103)
    expect(
        traffic.send("rejected-account", "POST", UPDATE_PATH, body_of("NOPE-1", ("stock.US", "open")))[0], 404, 404001
    )
    expect(
        traffic.send("rejected-shape", "POST", UPDATE_PATH, b'{"account_no": "ACC-1", "changes": "x"}')[0], 400, 400001
    )

    wrong_token = Credentials(DEMO.app_key, DEMO.app_secret, f"wrong-token-{uuid.uuid4().hex}")
    wrong_secret = Credentials(DEMO.app_key, f"wrong-secret-{uuid.uuid4().hex}", DEMO.access_token)
    unknown_key = Credentials(f"unknown-key-{uuid.uuid4().hex[:6]}", SECRET, TOKEN)
    closed = body_of("ACC-1", ("stock.US", "close"))
    for label, creds in (("wrong-token", wrong_token), ("wrong-secret", wrong_secret), ("unknown-key", unknown_key)):
        expect(traffic.send(label, "POST", UPDATE_PATH, closed, creds=creds)[0], 401, 401001)
        expect(traffic.send(f"{label}-read", "GET", READ_PATH, query="account_no=ACC-1", creds=creds)[0], 401, 401001)
    expect(
        traffic.send(
            "stale",
            "POST",
            UPDATE_PATH,
            closed,
            headers=signed_headers("POST", UPDATE_PATH, closed, timestamp=str(int(time.time()) - 3600)),
        )[0],
        401,
        401001,
    )
    expect(
        traffic.send(
            "tampered", "POST", UPDATE_PATH, closed, headers={"X-Api-Signature": accepted_headers["X-Api-Signature"]}
        )[0],
        401,
        401001,
    )

    replayed, _ = traffic.send("replayed", "POST", UPDATE_PATH, opened, replay_of=accepted_headers)
    expect(replayed, 401, 401001)
    assert "replay" in replayed.envelope["message"].lower(), replayed

    key = f"clean-key-{uuid.uuid4().hex[:8]}"
    expect(traffic.send("idempotent", "POST", UPDATE_PATH, closed, headers={"Idempotency-Key": key})[0], 200, 0)
    again, _ = traffic.send("idempotent-again", "POST", UPDATE_PATH, closed, headers={"Idempotency-Key": key})
    expect(again, 200, 0)
    assert again.headers.get("Idempotency-Replayed") == "true", again
    expect(traffic.send("no-route", "GET", "/v1/whaleapi/nothing")[0], 404, 404000)
    expect(traffic.send("wrong-method", "DELETE", UPDATE_PATH)[0], 405, 405000)
    return traffic


def check(traffic: Traffic, log_path: Path, log_text: str) -> None:
    # 1. Nothing secret in the log, in any line (gunicorn's own included) ...
    forbidden = {SECRET, TOKEN} | traffic.tokens | traffic.secrets | traffic.signatures
    assert len(traffic.signatures) >= 2 * len(traffic.answers) - 4  # every signature and its hex, one per request
    leaked = sorted(value for value in forbidden if value in log_text)
    assert not leaked, leaked
    # ... nor in any response.
    for label, answer, raw in traffic.answers:
        for value in {SECRET, TOKEN} | traffic.tokens | traffic.secrets:
            assert value not in raw, (label, value, answer)

    # 2. Every JSON line logged while serving carries the trace id of its request.
    records = list(log_records(log_path))
    ours = {answer.trace_id for _label, answer, _raw in traffic.answers}
    probes = {r.get("trace_id") for r in records if r.get("event") == "request" and r.get("path") == "/__ready__"}
    assert records
    for record in records:
        if record.get("event") in OUTSIDE_REQUESTS or record.get("logger") == "gunicorn.error":
            continue  # gunicorn's own lines (JSON too) are about its processes, not a request
        assert record.get("trace_id") in ours | probes, record
    by_trace: dict[str, list[dict[str, object]]] = {}
    for record in records:
        by_trace.setdefault(str(record.get("trace_id")), []).append(record)
    for label, answer, _raw in traffic.answers:
        lines = by_trace.get(answer.trace_id, [])
        request_lines = [r for r in lines if r.get("event") == "request"]
        assert len(request_lines) == 1, (label, lines)
        assert (request_lines[0]["status"], request_lines[0]["code"]) == (answer.status, answer.envelope["code"]), (
            label,
            request_lines,
        )
        decisions = [r for r in lines if r.get("event") == "decision"]
        reached_rules = answer.envelope["code"] in (0, 400101, 400103, 404001) and label != "read"
        assert len(decisions) == (1 if reached_rules else 0), (label, lines)
        for decision in decisions:
            assert decision["code"] == answer.envelope["code"] or decision.get("outcome") == "replayed", decision
            assert decision.get("account_no") and decision.get("tenant") == "sg_mexc", decision


def test_logs_and_responses_are_clean(live_server: LiveServer):
    traffic = drive(live_server.url)
    live_server.stop()  # every line written and flushed
    check(traffic, live_server.log_path, live_server.logs())


@pytest.fixture
def debug_server(seeded: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    """The same service with LOG_LEVEL=DEBUG: an operator chasing a problem must not get secrets in the log."""
    server = LiveServer(
        settings=seeded, log_path=tmp_path / "gunicorn-debug.log", extra_env={"LOG_LEVEL": "DEBUG"}
    ).start()
    yield server
    server.stop()


def test_logs_are_clean_at_debug_level(debug_server: LiveServer):
    traffic = drive(debug_server.url)
    debug_server.stop()
    check(traffic, debug_server.log_path, debug_server.logs())
