"""Accounts over real HTTP (gunicorn -w 2) and through the official SDK from this process (issue 10, acceptance 1
and 2): the upsert's whole contract, and 32 concurrent upserts and permission updates on one account."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from longbridge.openapi import HttpClient, OpenApiException
from sqlalchemy import create_engine, text

from app.settings import Settings
from tests.e2e.server import Answer, call, send
from tests.support import OTHER, READ_PATH, UPDATE_PATH, UPSERT_PATH, body_of, signed_headers

pytestmark = pytest.mark.e2e


def client(url: str, app_key: str = "demo-key", secret: str = "demo-secret", token: str = "demo-token") -> Any:
    return HttpClient.from_apikey(app_key, secret, token, http_url=url)


def account_rows(settings: Settings, account_no: str, tenant: str = "sg_mexc") -> list[Any]:
    """The account audit rows of the account, in the order they were written."""
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT id, trace_id, app_key, status_before, status_after, attributes_before, "
                        "attributes_after, created_at FROM account_audit WHERE tenant_id = :t AND account_no = :a "
                        "ORDER BY id"
                    ),
                    {"t": tenant, "a": account_no},
                )
            )
    finally:
        engine.dispose()


def decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def refused_by_sdk(sdk: Any, method: str, path: str, body: Any, code: int) -> str:
    with pytest.raises(OpenApiException) as raised:
        sdk.request(method, path, body=body)
    assert raised.value.code == code, (raised.value.code, raised.value.message)
    assert raised.value.trace_id
    return raised.value.message


def test_the_sdk_creates_reads_replaces_and_repeats(live_server: Any) -> None:
    sdk = client(live_server.url)
    body = {"account_no": "SDK-1", "status": "active", "attributes": {"account_type": "margin", "residency": "SG"}}
    assert sdk.request("post", UPSERT_PATH, body=body) == {**body, "result": "created"}
    read = sdk.request("get", f"{READ_PATH}?account_no=SDK-1")
    assert (read["account_status"], read["attributes"]) == ("active", {"account_type": "margin", "residency": "SG"})

    replaced = sdk.request(
        "post",
        UPSERT_PATH,
        body={"account_no": "SDK-1", "status": "active", "attributes": {"investor_class": "retail"}},
    )
    assert (replaced["result"], replaced["attributes"]) == ("updated", {"investor_class": "retail"})
    assert sdk.request("get", f"{READ_PATH}?account_no=SDK-1")["attributes"] == {"investor_class": "retail"}

    rows = account_rows(live_server.settings, "SDK-1")
    repeat = {"account_no": "SDK-1", "status": "active", "attributes": {"investor_class": "retail"}, "nonce": 1}
    again = sdk.request("post", UPSERT_PATH, body=repeat)  # a nonce: the same bytes in one second are a replay
    assert again["result"] == "unchanged"
    assert account_rows(live_server.settings, "SDK-1") == rows  # the repeat wrote no audit row
    assert [(r.status_before, r.status_after) for r in rows] == [(None, "active"), ("active", "active")]
    assert decoded(rows[1].attributes_after) == {"investor_class": "retail"}
    assert {r.app_key for r in rows} == {"demo-key"}


# Each case starts its own gunicorn: the everyday run keeps one refusal of an attribute and one of the account
# number, the slow run (CI) all; tests/http/test_accounts.py checks every refusal in-process either way.
SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            {"account_no": "SDK-2", "status": "active", "attributes": {"colour": "red"}},
            "attributes.colour 'red'",
            id="undeclared",
        ),
        pytest.param(
            {"account_no": "SDK-2", "status": "active", "attributes": {"residency": "Singapore"}},
            "'Singapore'",
            id="disallowed",
            marks=SLOW,
        ),
        pytest.param({"status": "active"}, "account_no: is required", id="missing-account"),
        pytest.param({"account_no": "", "status": "active"}, "account_no:", id="empty-account", marks=SLOW),
        pytest.param(
            {"account_no": "SDK-2", "status": "suspended"},
            "status: 'suspended' is not one of",
            id="unknown-status",
            marks=SLOW,
        ),
        pytest.param(
            {"account_no": "SDK-2", "status": "active", "attributes": "margin"},
            "attributes: must be a JSON object",
            id="string",
            marks=SLOW,
        ),
        pytest.param(
            {"account_no": "SDK-2", "status": "active", "attributes": ["margin"]},
            "attributes: must be a JSON object",
            id="array",
            marks=SLOW,
        ),
    ],
)
def test_the_sdk_sees_refusals_naming_the_field(live_server: Any, body: dict[str, Any], message: str) -> None:
    sdk = client(live_server.url)
    assert message in refused_by_sdk(sdk, "post", UPSERT_PATH, body, 400001)
    assert account_rows(live_server.settings, "SDK-2") == []


@pytest.mark.slow  # its own gunicorn; in-process: tests/http/test_accounts.py
def test_deregistered_is_final_for_the_sdk(live_server: Any) -> None:
    sdk = client(live_server.url)
    sdk.request("post", UPSERT_PATH, body={"account_no": "ACC-1", "status": "deregistered"})
    change = {"account_no": "ACC-1", "changes": [{"permission_type": "stock.US", "permission_status": "open"}]}
    refused_by_sdk(sdk, "post", UPDATE_PATH, change, 409001)
    refused_by_sdk(sdk, "post", UPSERT_PATH, {"account_no": "ACC-1", "status": "active"}, 409001)
    same = sdk.request("post", UPSERT_PATH, body={"account_no": "ACC-1", "status": "deregistered", "nonce": 1})
    assert same["result"] == "unchanged"
    assert sdk.request("get", f"{READ_PATH}?account_no=ACC-1")["account_status"] == "deregistered"


@pytest.mark.slow  # its own gunicorn; in-process: tests/http/test_accounts.py
def test_unsigned_is_401001_and_another_tenant_never_touches_this_account(live_server: Any) -> None:
    body = b'{"account_no":"ACC-2","status":"deregistered"}'
    unsigned = send(live_server.url, "POST", UPSERT_PATH, body, {"Content-Type": "application/json"})
    assert (unsigned.status, unsigned.envelope["code"]) == (401, 401001)

    other = client(live_server.url, OTHER.app_key, OTHER.app_secret, OTHER.access_token)
    theirs = other.request(
        "post", UPSERT_PATH, body={"account_no": "ACC-2", "status": "deregistered", "attributes": {"residency": "HK"}}
    )
    assert theirs["result"] == "created"  # an account of their own with that number
    mine = client(live_server.url).request("get", f"{READ_PATH}?account_no=ACC-2")
    assert (mine["account_status"], mine["attributes"]) == ("active", {})
    assert [r.status_after for r in account_rows(live_server.settings, "ACC-2")] == ["active"]  # the fixture's


def test_an_idempotency_key_repeat_replays_over_http(live_server: Any) -> None:
    body = b'{"account_no":"KEY-1","status":"active","attributes":{"account_type":"cash"}}'

    def keyed() -> Answer:  # signed afresh each time (a decimal timestamp): a retry, not a replayed signature
        headers = signed_headers("POST", UPSERT_PATH, body, timestamp=f"{time.time():.6f}")
        return send(live_server.url, "POST", UPSERT_PATH, body, {**headers, "Idempotency-Key": "open KEY-1"})

    first = keyed()
    assert (first.status, first.envelope["data"]["result"]) == (200, "created")
    again = keyed()
    assert (again.status, again.envelope, again.headers.get("Idempotency-Replayed")) == (200, first.envelope, "true")
    assert len(account_rows(live_server.settings, "KEY-1")) == 1


# --- 32 concurrent upserts and permission updates on one account ---------------------------------------------

CONCURRENT = 32
ATTRIBUTE_SETS = ({"account_type": "cash"}, {"account_type": "margin"}, {"account_type": "cash", "residency": "SG"})


def all_at_once(url: str, requests: list[tuple[str, bytes]]) -> list[Answer]:
    """POST every (path, body) from its own thread, released together; answers in the order given."""
    barrier = threading.Barrier(len(requests))

    def fire(index: int) -> Answer:
        path, body = requests[index]
        headers = signed_headers("POST", path, body)
        headers["X-Trace-Id"] = f"together-{index}"
        barrier.wait(timeout=30)
        return send(url, "POST", path, body, headers)

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return [f.result(timeout=120) for f in [pool.submit(fire, i) for i in range(len(requests))]]


def test_concurrent_upserts_and_updates_leave_a_consistent_account(live_server: Any) -> None:
    """ACC-2 starts active without attributes. 15 upserts change its attributes, one deregisters it, 16 updates
    open and close stock.US. Whatever order the locks gave them, the account audit rows form one unbroken chain
    (one per effective change), GET shows its end, and no permission changed after the deregistration."""
    requests: list[tuple[str, bytes]] = []
    for i in range(CONCURRENT):
        if i == 16:
            requests.append((UPSERT_PATH, b'{"account_no":"ACC-2","status":"deregistered"}'))
        elif i % 2:
            account = {"account_no": "ACC-2", "status": "active", "attributes": ATTRIBUTE_SETS[i % 3], "nonce": i}
            requests.append((UPSERT_PATH, json.dumps(account).encode()))  # a nonce: no two alike (or: replays)
        else:
            requests.append((UPDATE_PATH, body_of("ACC-2", ("stock.US", ("open", "close")[i // 2 % 2]), nonce=i)))
    fixture_rows = account_rows(live_server.settings, "ACC-2")
    answers = all_at_once(live_server.url, requests)

    upserts = {a.trace_id: a for (path, _), a in zip(requests, answers, strict=True) if path == UPSERT_PATH}
    for answer in upserts.values():
        assert (answer.status, answer.envelope["code"]) in {(200, 0), (409, 409001)}, answer
    rows = account_rows(live_server.settings, "ACC-2")[len(fixture_rows) :]
    state = ("active", {})
    for row in rows:  # one unbroken chain from the state before to the state after
        before, after = (
            (row.status_before, decoded(row.attributes_before)),
            (
                row.status_after,
                decoded(row.attributes_after),
            ),
        )
        assert before == state and after != before, rows
        state = after
    read = call(live_server, "GET", READ_PATH, query="account_no=ACC-2")[1]["data"]  # what GET shows now
    assert (read["account_status"], read["attributes"]) == state
    assert state[0] == "deregistered"
    changed = {t for t, a in upserts.items() if a.envelope["code"] == 0 and a.envelope["data"]["result"] == "updated"}
    assert {r.trace_id for r in rows} == changed  # one audit row per effective change, none for the rest
    deregistered_at = next(r.created_at for r in rows if r.status_after == "deregistered")
    refused_after = [a for a in upserts.values() if a.envelope["code"] == 409001]
    assert all("deregistered" in a.envelope["message"] for a in refused_after)

    engine = create_engine(live_server.settings.database_url)
    try:
        with engine.connect() as conn:
            permission_rows = conn.execute(
                text(
                    "SELECT trace_id, status_before, status_after, created_at FROM permission_audit "
                    "WHERE tenant_id = 'sg_mexc' AND account_no = 'ACC-2' ORDER BY id"
                )
            ).all()
    finally:
        engine.dispose()
    updates = [a for (path, _), a in zip(requests, answers, strict=True) if path == UPDATE_PATH]
    for answer in updates:
        assert answer.envelope["code"] in {0, 400103, 409001}, answer
    assert {r.trace_id for r in permission_rows} == {a.trace_id for a in updates if a.envelope["code"] == 0}
    assert all(r.created_at < deregistered_at for r in permission_rows)  # nothing changed once deregistered
    status = "close"
    for row in permission_rows:
        assert (row.status_before, row.status_after) == (status, "open" if status == "close" else "close")
        status = row.status_after
    print(
        f"\n{len(changed)} attribute changes, {len(refused_after)} upserts refused as deregistered, "
        f"{len(permission_rows)} permission changes before the deregistration"
    )
