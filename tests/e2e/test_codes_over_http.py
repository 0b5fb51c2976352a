"""Every code of SPEC §3.3 that a client can provoke, over real HTTP from gunicorn in another process."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.support import UPDATE_PATH, Credentials, body_of, signed_headers

pytestmark = pytest.mark.e2e

OVERSIZED = body_of("ACC-2", ("stock.US", "open"), pad="x" * (64 * 1024))

# name: (method, path, body, credentials or None for unsigned, HTTP status, code, failure_index)
CASES: dict[str, tuple[str, str, bytes, Credentials | None, int, int, int]] = {
    "success": (
        "POST",
        UPDATE_PATH,
        body_of("ACC-2", ("stock.US", "open"), ("account.trade", "open")),
        Credentials(),
        200,
        0,
        0,
    ),
    "invalid-request": ("POST", UPDATE_PATH, b'{"account_no":"ACC-1","changes":[]}', Credentials(), 400, 400001, 0),
    "body-too-large": ("POST", UPDATE_PATH, OVERSIZED, Credentials(), 413, 400001, 0),
    "invalid-type": (
        "POST",
        UPDATE_PATH,
        body_of("ACC-1", ("stock.US", "open"), ("flag.options", "open")),
        Credentials(),
        400,
        400101,
        1,
    ),
    "invalid-status": (
        "POST",
        UPDATE_PATH,
        body_of("ACC-1", ("stock.US", "open"), ("stock.JP", "Open")),
        Credentials(),
        400,
        400102,
        1,
    ),
    "no-state-change": (
        "POST",
        UPDATE_PATH,
        body_of("ACC-1", ("stock.US", "open"), ("account.trade", "open")),
        Credentials(),
        400,
        400103,
        1,
    ),
    "duplicate": (
        "POST",
        UPDATE_PATH,
        body_of("ACC-1", ("stock.US", "open"), ("stock.US", "close")),
        Credentials(),
        400,
        400104,
        1,
    ),
    "unauthenticated": (
        "POST",
        UPDATE_PATH,
        body_of("ACC-1", ("stock.US", "open")),
        Credentials(app_secret="wrong"),
        401,
        401001,
        0,
    ),
    "account-not-found": (
        "POST",
        UPDATE_PATH,
        body_of("OTHER-1", ("flag.options", "open")),
        Credentials(),
        404,
        404001,
        0,
    ),
    "account-deregistered": (
        "POST",
        UPDATE_PATH,
        body_of("ACC-GONE", ("flag.options", "open")),
        Credentials(),
        409,
        409001,
        0,
    ),
    "route-not-found": ("GET", "/v1/whaleapi/account/nope", b"", None, 404, 404000, 0),
    "method-not-allowed": ("GET", UPDATE_PATH, b"", Credentials(), 405, 405000, 0),
}


# Each case starts its own gunicorn (about 2 s): the everyday run keeps one success, one rule refusal and one
# refusal before the app, and the slow run (CI) every code; tests/http/ covers every code in-process either way.
EVERYDAY = ("success", "invalid-type", "route-not-found")


@pytest.mark.parametrize(
    ("method", "path", "body", "creds", "status", "code", "failure_index"),
    [pytest.param(*case, id=name, marks=() if name in EVERYDAY else pytest.mark.slow) for name, case in CASES.items()],
)
def test_code_over_http(
    live_server: Any,
    method: str,
    path: str,
    body: bytes,
    creds: Credentials | None,
    status: int,
    code: int,
    failure_index: int,
) -> None:
    headers = {"Content-Type": "application/json", "X-Trace-Id": f"e2e-{code}"}
    if creds is not None:
        headers.update(signed_headers(method, path, body, creds=creds))
    request = urllib.request.Request(live_server.url + path, data=body or None, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = (response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        answer = (error.code, error.headers, error.read())

    got_status, got_headers, raw = answer
    envelope = json.loads(raw)
    assert set(envelope) == {"code", "message", "data"}, envelope
    assert (got_status, envelope["code"], envelope["data"].get("failure_index", 0)) == (status, code, failure_index), (
        envelope
    )
    if path == UPDATE_PATH and method == "POST":
        assert envelope["data"]["failure_index"] == failure_index
    assert got_headers["Content-Type"].startswith("application/json")
    assert got_headers["X-Trace-Id"] == f"e2e-{code}"
