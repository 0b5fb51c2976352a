"""No client input gives a 500 or a traceback: every answer is the JSON envelope with an X-Trace-Id (SPEC §3)."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import pytest

from app.http.trace import SANE_TRACE_ID
from app.service.authentication import REFUSED
from tests.conftest import Api
from tests.support import BARE, DEMO, OTHER, READ_PATH, UPDATE_PATH, Credentials, body_of, signed_headers

OK_CHANGE = {"permission_type": "stock.US", "permission_status": "open"}
MAX_BODY = 64 * 1024


def enveloped(response: Any, status: int, code: int) -> dict[str, Any]:
    """Assert the response is the envelope with this status and code, and return it decoded."""
    raw = response.get_data(as_text=True)
    assert response.status_code == status, raw
    assert response.status_code < 500
    assert response.mimetype == "application/json"
    assert "Traceback" not in raw
    body = json.loads(raw)
    assert set(body) == {"code", "message", "data"}, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["data"], dict)
    assert SANE_TRACE_ID.match(response.headers.get("X-Trace-Id", ""))
    return body


def update_error(response: Any, status: int, code: int) -> dict[str, Any]:
    """An update-endpoint error: failure_index 0 unless a change is at fault."""
    body = enveloped(response, status, code)
    if code in (400001, 401001, 404001, 409001):
        assert body["data"]["failure_index"] == 0, body
    return body


def change_body(*changes: Any, account_no: Any = "ACC-1") -> bytes:
    return json.dumps({"account_no": account_no, "changes": list(changes)}).encode()


def nested(depth: int) -> bytes:
    """A change whose permission_type is `depth` nested arrays."""
    return (
        b'{"account_no":"ACC-1","changes":[{"permission_status":"open","permission_type":'
        + b"[" * depth
        + b"]" * depth
        + b"}]}"
    )


def padded(size: int) -> bytes:
    """A valid one-change body of exactly `size` bytes (an ignored field takes up the slack)."""
    head = b'{"account_no":"ACC-2","changes":[{"permission_type":"stock.US","permission_status":"open"}],"pad":"'
    return head + b"x" * (size - len(head) - 2) + b'"}'


# Signed bodies: (raw body, HTTP status, code).
BODIES: dict[str, tuple[bytes, int, int]] = {
    "not-json": (b"account_no=ACC-1", 400, 400001),
    "empty": (b"", 400, 400001),
    "truncated": (b'{"account_no":"ACC-1","changes":[', 400, 400001),
    "array": (b"[]", 400, 400001),
    "array-of-body": (b"[" + change_body(OK_CHANGE) + b"]", 400, 400001),
    "string": (b'"ACC-1"', 400, 400001),
    "number": (b"1", 400, 400001),
    "null": (b"null", 400, 400001),
    "true": (b"true", 400, 400001),
    "empty-object": (b"{}", 400, 400001),
    "no-account": (json.dumps({"changes": [OK_CHANGE]}).encode(), 400, 400001),
    "no-changes": (json.dumps({"account_no": "ACC-1"}).encode(), 400, 400001),
    "account-number": (change_body(OK_CHANGE, account_no=1), 400, 400001),
    "account-null": (change_body(OK_CHANGE, account_no=None), 400, 400001),
    "account-bool": (change_body(OK_CHANGE, account_no=True), 400, 400001),
    "account-list": (change_body(OK_CHANGE, account_no=["ACC-1"]), 400, 400001),
    "account-object": (change_body(OK_CHANGE, account_no={"no": "ACC-1"}), 400, 400001),
    "account-empty": (change_body(OK_CHANGE, account_no=""), 400, 400001),
    "account-65-chars": (change_body(OK_CHANGE, account_no="A" * 65), 400, 400001),
    "account-64-chars": (change_body(OK_CHANGE, account_no="A" * 64), 404, 404001),
    "account-64-wide-chars": (change_body(OK_CHANGE, account_no="账" * 64), 400, 400001),  # ASCII only (SPEC §8)
    "changes-null": (json.dumps({"account_no": "ACC-1", "changes": None}).encode(), 400, 400001),
    "changes-string": (json.dumps({"account_no": "ACC-1", "changes": "stock.US"}).encode(), 400, 400001),
    "changes-number": (json.dumps({"account_no": "ACC-1", "changes": 3}).encode(), 400, 400001),
    "changes-object": (json.dumps({"account_no": "ACC-1", "changes": OK_CHANGE}).encode(), 400, 400001),
    "changes-0": (change_body(), 400, 400001),
    "changes-101": (change_body(*([{"permission_type": "flag.x"}] * 101)), 400, 400001),
    "changes-100": (change_body(*([{"permission_type": "flag.x"}] * 100)), 400, 400101),
    "change-number": (change_body(OK_CHANGE, 1), 400, 400001),
    "change-null": (change_body(None), 400, 400001),
    "change-string": (change_body("stock.US"), 400, 400001),
    "change-array": (change_body(["stock.US", "open"]), 400, 400001),
    "type-number": (change_body({"permission_type": 1, "permission_status": "open"}), 400, 400101),
    "type-huge-float": (
        b'{"account_no":"ACC-1","changes":[{"permission_type":1e400,"permission_status":"open"}]}',
        400,
        400101,
    ),
    "type-big-int": (
        b'{"account_no":"ACC-1","changes":[{"permission_type":' + b"9" * 4000 + b',"permission_status":"open"}]}',
        400,
        400101,
    ),
    "type-too-big-int": (
        b'{"account_no":"ACC-1","changes":[{"permission_type":' + b"9" * 5000 + b',"permission_status":"open"}]}',
        400,
        400001,
    ),
    "type-long-string": (change_body({"permission_type": "s" * 60000, "permission_status": "open"}), 400, 400101),
    "type-lone-surrogate": (
        b'{"account_no":"ACC-1","changes":[{"permission_type":"\\ud800","permission_status":"open"}]}',
        400,
        400101,
    ),
    "type-surrogate-pair-half": (
        b'{"account_no":"ACC-1","changes":[{"permission_type":"stock.\\udfff","permission_status":"open"}]}',
        400,
        400101,
    ),
    "type-nul": (change_body({"permission_type": "stock.US\u0000", "permission_status": "open"}), 400, 400101),
    "status-lone-surrogate": (
        b'{"account_no":"ACC-1","changes":[{"permission_type":"stock.US","permission_status":"open\\udc00"}]}',
        400,
        400102,
    ),
    "status-nul": (change_body({"permission_type": "stock.US", "permission_status": "open\u0000"}), 400, 400102),
    "type-nan": (b'{"account_no":"ACC-1","changes":[{"permission_type":NaN,"permission_status":"open"}]}', 400, 400001),
    "status-infinity": (
        b'{"account_no":"ACC-1","changes":[{"permission_type":"stock.US","permission_status":-Infinity}]}',
        400,
        400001,
    ),
    "non-utf8": (b'{"account_no":"ACC-\xff","changes":[]}', 400, 400001),
    "latin1-body": (
        '{"account_no":"ACC-1","changes":[{"permission_type":"stock.US","permission_status":"öpen"}]}'.encode(
            "latin-1"
        ),
        400,
        400001,
    ),
    "utf16-body": (change_body(OK_CHANGE).decode().encode("utf-16"), 400, 400001),
    "nested-30000": (nested(30000), 400, 400001),
    "nested-100000": (nested(100000), 413, 400001),
    "nested-objects": (
        b'{"account_no":"ACC-1","changes":[' + b'{"a":' * 10000 + b"1" + b"}" * 10000 + b"]}",
        400,
        400001,
    ),
    "exactly-64-KiB": (padded(MAX_BODY), 200, 0),
    "oversized": (padded(MAX_BODY + 1), 413, 400001),
    "oversized-garbage": (b"\xff" * (MAX_BODY * 4), 413, 400001),
}


@pytest.mark.parametrize(("body", "status", "code"), BODIES.values(), ids=BODIES.keys())
def test_bad_body(api: Api, body: bytes, status: int, code: int) -> None:
    response = api.update(body, headers={"X-Trace-Id": "bad-body-1"})
    update_error(response, status, code)
    assert response.headers["X-Trace-Id"] == "bad-body-1"


def test_lone_surrogate_type_is_a_clean_catalog_rejection(api: Api) -> None:
    response = api.update(
        b'{"account_no":"ACC-1","changes":['
        b'{"permission_type":"stock.US","permission_status":"open"},'
        b'{"permission_type":"\\ud800","permission_status":"open"}]}'
    )
    body = update_error(response, 400, 400101)
    assert body["data"] == {"failure_index": 1, "rule_id": "type-in-catalog"}
    assert body["message"].startswith("changes[1].permission_type '")


@pytest.mark.parametrize("depth", [1, 100, 500, 800, 900, 950, 975, 990, 999, 1000, 1100, 5000])
def test_deeply_nested_type_is_never_a_500(api: Api, depth: int) -> None:
    """Either the parser refuses the depth (400001) or the value reaches the rules as not text (400101)."""
    response = api.update(nested(depth))
    body = update_error(response, 400, response.get_json()["code"])
    if body["code"] == 400101:
        assert body["data"] == {"failure_index": 0, "rule_id": "type-must-be-text"}
        assert body["message"].startswith("changes[0].permission_type [")
        assert len(body["message"]) < 300  # the value is shown cut to size
    else:
        assert depth > 500
        assert body["code"] == 400001


def test_a_number_too_long_to_convert_is_refused_in_the_service_s_words(api: Api) -> None:
    """Python refuses integers over 4,300 digits with advice for programmers; the caller gets neither."""
    raw = b'{"account_no":"ACC-1","changes":[],"n":' + b"7" * 5000 + b"}"
    body = update_error(api.update(raw), 400, 400001)
    assert body["message"] == "body is not valid JSON (a number has too many digits)"


def test_a_database_failure_names_no_driver_internals(api: Api, seeded: Any) -> None:
    """A missing table (here: renamed away) is the operator's to see in the log, not the caller's."""
    from sqlalchemy import create_engine, text

    engine = create_engine(seeded.database_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE account_permissions RENAME TO account_permissions_away"))
    try:
        response = api.update(body_of("ACC-1", ("stock.US", "open")))
    finally:  # the PostgreSQL database is shared by the session's tests
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE account_permissions_away RENAME TO account_permissions"))
        engine.dispose()
    assert (response.status_code, response.get_json()) == (
        503,
        {"code": 503001, "message": "the database is unavailable; retry later", "data": {"failure_index": 0}},
    )


@pytest.mark.parametrize(
    "account_no",
    ["ACC-\\ud800", "\\udfff", "ACC-1\\u0000", "\\u0000", "ACC\\u0001\\u001f", "ACC-\\ufffe"],
    ids=["lone-high-surrogate", "lone-low-surrogate", "nul-suffix", "nul", "control-chars", "non-character"],
)
def test_account_no_no_database_can_store(api: Api, account_no: str) -> None:
    """Text a database cannot hold (lone surrogates, NUL) names no account: 400001 or 404001, never 500/503."""
    raw = b'{"account_no":"' + account_no.encode() + b'","changes":[' + json.dumps(OK_CHANGE).encode() + b"]}"
    response = api.update(raw)
    code = response.get_json()["code"]
    assert (response.status_code, code) in {(400, 400001), (404, 404001)}, response.get_json()
    update_error(response, response.status_code, code)
    query = "account_no=" + quote(json.loads(f'"{account_no}"'), errors="surrogatepass")
    read = api.client.get(f"{READ_PATH}?{query}", headers=signed_headers("GET", READ_PATH, query=query))
    assert (read.status_code, read.get_json()["code"]) in {(400, 400001), (404, 404001)}, read.get_json()
    enveloped(read, read.status_code, read.get_json()["code"])


@pytest.mark.parametrize(
    ("content_type", "status", "code"),
    [
        ("text/plain", 400, 400001),
        ("application/x-www-form-urlencoded", 400, 400001),
        ("multipart/form-data; boundary=x", 400, 400001),
        ("application/json; charset=latin-1", 400, 400001),
        ("application/jsonx", 400, 400001),
        ("", 400, 400001),
        ("application/json", 200, 0),
        ("application/json; charset=UTF-8", 200, 0),
        ("Application/JSON;charset=utf8", 200, 0),
    ],
)
def test_content_type(api: Api, content_type: str, status: int, code: int) -> None:
    body = body_of("ACC-2", ("stock.US", "open"))
    headers = signed_headers("POST", UPDATE_PATH, body)
    if content_type:
        headers["Content-Type"] = content_type
    else:
        del headers["Content-Type"]
    response = api.client.post(UPDATE_PATH, data=body, headers=headers)
    update_error(response, status, code)
    assert api.statuses("ACC-2")["stock.US"] == ("open" if code == 0 else "close")


# --- authentication: every signature failure is 401001 with failure_index 0 -----------------------------------


def _ts(offset: float) -> str:
    return f"{time.time() + offset:.3f}"


def tampered(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return body.replace(b"ACC-", b"ACC-X"), headers


def without(name: str) -> Any:
    def change(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        return body, {k: v for k, v in headers.items() if k != name}

    return change


def with_header(name: str, value: str) -> Any:
    def change(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        return body, {**headers, name: value}

    return change


def signature(make: Any) -> Any:
    """Replace X-Api-Signature by make(<the correct hex signature>)."""

    def change(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        good = headers["X-Api-Signature"].rsplit("=", 1)[1]
        return body, {**headers, "X-Api-Signature": make(good)}

    return change


WRONG_SECRET = Credentials(app_secret="not-the-secret")
UNKNOWN_KEY = Credentials(app_key="nobody-key")
# (how the request is signed, how it is altered after signing, timestamp offset or None for integer now)
AUTH_FAILURES: dict[str, tuple[Credentials, Any, float | None]] = {
    "tampered-body": (DEMO, tampered, None),
    "stale-301": (DEMO, None, -301),
    "future-301": (DEMO, None, 301),
    "stale-an-hour": (DEMO, None, -3600),
    "unknown-app-key": (UNKNOWN_KEY, None, None),
    "wrong-token": (Credentials(access_token="wrong-token"), None, None),
    "other-tenants-token": (Credentials(access_token=OTHER.access_token), None, None),
    "other-tenants-secret": (Credentials(app_secret=OTHER.app_secret), None, None),
    "wrong-secret": (WRONG_SECRET, None, None),
    "bare-key-demo-secret": (Credentials(BARE.app_key, DEMO.app_secret, BARE.access_token), None, None),
    "no-app-key": (DEMO, without("X-Api-Key"), None),
    "no-authorization": (DEMO, without("Authorization"), None),
    "no-timestamp": (DEMO, without("X-Timestamp"), None),
    "no-signature": (DEMO, without("X-Api-Signature"), None),
    "empty-signature": (DEMO, with_header("X-Api-Signature", ""), None),
    "timestamp-text": (DEMO, with_header("X-Timestamp", "yesterday"), None),
    "timestamp-negative": (DEMO, with_header("X-Timestamp", "-1"), None),
    "timestamp-exponent": (DEMO, with_header("X-Timestamp", "1.7e9"), None),
    "timestamp-huge": (DEMO, with_header("X-Timestamp", "9" * 400), None),
    "timestamp-nan": (DEMO, with_header("X-Timestamp", "NaN"), None),
    "signature-garbage": (DEMO, with_header("X-Api-Signature", "garbage"), None),
    "signature-bare-hex": (DEMO, signature(lambda s: s), None),
    "signature-wrong-algorithm": (
        DEMO,
        signature(lambda s: f"HMAC-SHA1 SignedHeaders=authorization;x-api-key;x-timestamp, Signature={s}"),
        None,
    ),
    "signature-other-headers": (
        DEMO,
        signature(lambda s: f"HMAC-SHA256 SignedHeaders=x-api-key;authorization;x-timestamp, Signature={s}"),
        None,
    ),
    "signature-63-digits": (
        DEMO,
        signature(lambda s: f"HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp, Signature={s[:-1]}"),
        None,
    ),
    "signature-uppercase": (
        DEMO,
        signature(lambda s: f"HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp, Signature={s.upper()}"),
        None,
    ),
    "signature-trailing-junk": (
        DEMO,
        signature(lambda s: f"HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp, Signature={s}, x=1"),
        None,
    ),
    "signature-flipped": (
        DEMO,
        signature(
            lambda s: (
                "HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp, Signature="
                + ("0" if s[0] != "0" else "1")
                + s[1:]
            )
        ),
        None,
    ),
}


@pytest.mark.parametrize(("creds", "alter", "offset"), AUTH_FAILURES.values(), ids=AUTH_FAILURES.keys())
def test_authentication_failure(api: Api, creds: Credentials, alter: Any, offset: float | None) -> None:
    body = body_of("ACC-2", ("stock.US", "open"))
    headers = signed_headers("POST", UPDATE_PATH, body, creds=creds, timestamp=None if offset is None else _ts(offset))
    if alter is not None:
        body, headers = alter(body, headers)
    response = api.client.post(UPDATE_PATH, data=body, headers={**headers, "X-Trace-Id": "auth-1"})
    update_error(response, 401, 401001)
    assert response.headers["X-Trace-Id"] == "auth-1"
    for secret in ("demo-secret", "demo-token", "other-secret", "other-token", "bare-secret"):
        assert secret not in response.get_data(as_text=True)
    assert api.statuses("ACC-2")["stock.US"] == "close"


CLOCK_FAILURES = ("stale-", "future-", "timestamp-", "no-timestamp")  # about the clock: their own message


@pytest.mark.parametrize("name", AUTH_FAILURES)
def test_every_credential_or_signature_failure_gets_one_message(api: Api, name: str) -> None:
    """A wrong token, a wrong signature, an unknown key and a malformed header read the same (issue 9 #12)."""
    creds, alter, offset = AUTH_FAILURES[name]
    body = body_of("ACC-2", ("stock.US", "open"))
    headers = signed_headers("POST", UPDATE_PATH, body, creds=creds, timestamp=None if offset is None else _ts(offset))
    if alter is not None:
        body, headers = alter(body, headers)
    message = update_error(api.client.post(UPDATE_PATH, data=body, headers=headers), 401, 401001)["message"]
    if name.startswith(CLOCK_FAILURES):
        assert message.startswith("X-Timestamp "), message
    else:
        assert message == REFUSED


@pytest.mark.parametrize("offset", [-299, 299, -0.5, 0.0])
def test_timestamp_inside_the_window_is_accepted(api: Api, offset: float) -> None:
    body = body_of("ACC-2", ("stock.US", "open"))
    headers = signed_headers("POST", UPDATE_PATH, body, timestamp=_ts(offset))
    assert "." in headers["X-Timestamp"]  # a decimal timestamp, as some clients send
    response = api.client.post(UPDATE_PATH, data=body, headers=headers)
    enveloped(response, 200, 0)
    assert api.statuses("ACC-2")["stock.US"] == "open"


def test_authentication_comes_before_the_body_is_parsed(api: Api) -> None:
    headers = signed_headers("POST", UPDATE_PATH, b"[]")
    update_error(api.client.post(UPDATE_PATH, data=b"not json", headers=headers), 401, 401001)
    unsigned = api.client.post(UPDATE_PATH, data=b"not json", headers={"Content-Type": "application/json"})
    update_error(unsigned, 401, 401001)


@pytest.mark.parametrize(
    ("query", "alter", "status", "code"),
    [
        ("account_no=ACC-1", without("Authorization"), 401, 401001),
        ("account_no=ACC-1", with_header("X-Timestamp", str(int(time.time()) - 301)), 401, 401001),
        ("", None, 400, 400001),
        ("account_no=", None, 400, 400001),
        ("account_no=" + "A" * 65, None, 400, 400001),
        ("account_no=%FF%FE", None, 404, 404001),
        ("account_no=%ED%A0%80", None, 404, 404001),
        ("account_no=ACC-1&account_no=ACC-2", None, 200, 0),
        ("account_no=ACC-1&extra=1", None, 200, 0),
    ],
)
def test_bad_read(api: Api, query: str, alter: Any, status: int, code: int) -> None:
    headers = signed_headers("GET", READ_PATH, query=query)
    if alter is not None:
        _, headers = alter(b"", headers)
    response = api.client.get(f"{READ_PATH}?{query}" if query else READ_PATH, headers=headers)
    enveloped(response, status, code)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/", 404, 404000),
        ("GET", "/nope", 404, 404000),
        ("POST", "/v1/whaleapi/account/nope", 404, 404000),
        ("GET", UPDATE_PATH + "/", 404, 404000),
        ("GET", "/%ff%fe", 404, 404000),
        ("GET", UPDATE_PATH, 405, 405000),
        ("PUT", UPDATE_PATH, 405, 405000),
        ("DELETE", UPDATE_PATH, 405, 405000),
        ("PATCH", UPDATE_PATH, 405, 405000),
        ("OPTIONS", UPDATE_PATH, 405, 405000),
        ("POST", READ_PATH, 405, 405000),
        ("DELETE", READ_PATH, 405, 405000),
    ],
)
def test_unknown_route_and_wrong_method(api: Api, method: str, path: str, status: int, code: int) -> None:
    body = body_of("ACC-1", ("stock.US", "open"))
    headers = signed_headers(method, path, body)
    response = api.client.open(path, method=method, data=body, headers={**headers, "X-Trace-Id": "route-1"})
    enveloped(response, status, code)
    assert response.headers["X-Trace-Id"] == "route-1"


# --- trace ids ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "echoed"),
    [
        ({"X-Trace-Id": "abc-123"}, "abc-123"),
        ({"X-Trace-Id": "svc/api:1.2+x=y_z"}, "svc/api:1.2+x=y_z"),
        ({"X-Trace-Id": "t" * 128}, "t" * 128),
        ({"X-Request-Id": "req-9"}, "req-9"),
        ({"X-Trace-Id": "trace-wins", "X-Request-Id": "req-loses"}, "trace-wins"),
        ({"X-Trace-Id": "t" * 300}, None),
        ({"X-Trace-Id": "has space"}, None),
        ({"X-Trace-Id": "new\tline"}, None),
        ({"X-Trace-Id": "<script>"}, None),
        ({"X-Request-Id": "r" * 129}, None),
        ({"X-Trace-Id": "é-accent"}, None),
        ({}, None),
    ],
)
def test_trace_id(api: Api, given: dict[str, str], echoed: str | None) -> None:
    for response in (
        api.update(body_of("NOPE", ("stock.US", "open")), headers=given),
        api.client.get("/nope", headers=given),
    ):
        trace = response.headers.get("X-Trace-Id", "")
        assert SANE_TRACE_ID.match(trace)
        if echoed is None:
            assert trace not in given.values()
        else:
            assert trace == echoed
