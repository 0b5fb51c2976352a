"""The Longbridge OpenAPI request signature (SPEC §4): test vectors, canonical form, and the official SDK."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from app.signature import SIGNED_HEADERS, canonical_request, sign, signature_header, token_digest
from tests.support import READ_PATH, UPDATE_PATH

APP_KEY = "appkey123"
APP_SECRET = "secret456"
TOKEN = "token789"
TIMESTAMP = "1795564449"
VECTOR_BODY = b'{"account_no":"L6VQEU00121996","changes":[{"permission_status":"open","permission_type":"stock.US"}]}'
POST_SIGNATURE = "16fbd01b11c42fe4853aa39ec5a1a786f094291ebe43699802e8d695ef33478c"
GET_SIGNATURE = "83a90a573a08bc585728f1c31e6a3f47886e6bf7c82e1ee4e3bdac4d2b4c0926"
HEADERS_BLOCK = f"authorization:{TOKEN}\nx-api-key:{APP_KEY}\nx-timestamp:{TIMESTAMP}\n"


def reference_sign(
    *, secret: str, method: str, path: str, query: str, token: str, key: str, ts: str, body: bytes
) -> str:
    """SPEC §4 written out independently of app.signature."""
    canonical = (
        f"{method}|{path}|{query}|authorization:{token}\nx-api-key:{key}\nx-timestamp:{ts}\n"
        f"|authorization;x-api-key;x-timestamp|"
    )
    if body:
        canonical += hashlib.sha1(body).hexdigest()
    to_sign = "HMAC-SHA256|" + hashlib.sha1(canonical.encode()).hexdigest()
    return hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


# --- SPEC §4 test vectors, byte-exact --------------------------------------------------------------------


def test_post_vector_with_body():
    assert (
        sign(
            app_secret=APP_SECRET,
            method="POST",
            path=UPDATE_PATH,
            query="",
            access_token=TOKEN,
            app_key=APP_KEY,
            timestamp=TIMESTAMP,
            body=VECTOR_BODY,
        )
        == POST_SIGNATURE
    )


def test_get_vector_with_query_and_no_body():
    assert (
        sign(
            app_secret=APP_SECRET,
            method="GET",
            path=READ_PATH,
            query="account_no=X",
            access_token=TOKEN,
            app_key=APP_KEY,
            timestamp=TIMESTAMP,
            body=b"",
        )
        == GET_SIGNATURE
    )


def test_reference_implementation_agrees_with_the_vectors():
    # Guards the reference used below: if it reproduces both vectors, it reads SPEC §4 the same way.
    common = {"secret": APP_SECRET, "token": TOKEN, "key": APP_KEY, "ts": TIMESTAMP}
    assert reference_sign(method="POST", path=UPDATE_PATH, query="", body=VECTOR_BODY, **common) == POST_SIGNATURE
    assert reference_sign(method="GET", path=READ_PATH, query="account_no=X", body=b"", **common) == GET_SIGNATURE


# --- canonical request ------------------------------------------------------------------------------------


def test_canonical_request_format_with_body():
    canonical = canonical_request(
        method="POST",
        path=UPDATE_PATH,
        query="",
        access_token=TOKEN,
        app_key=APP_KEY,
        timestamp=TIMESTAMP,
        body=VECTOR_BODY,
    )
    assert canonical == (
        f"POST|{UPDATE_PATH}||{HEADERS_BLOCK}|authorization;x-api-key;x-timestamp|"
        + hashlib.sha1(VECTOR_BODY).hexdigest()
    )


def test_canonical_request_format_with_query():
    canonical = canonical_request(
        method="GET",
        path=READ_PATH,
        query="account_no=X",
        access_token=TOKEN,
        app_key=APP_KEY,
        timestamp=TIMESTAMP,
        body=b"",
    )
    assert canonical == f"GET|{READ_PATH}|account_no=X|{HEADERS_BLOCK}|authorization;x-api-key;x-timestamp|"


def test_empty_body_adds_no_hash():
    canonical = canonical_request(
        method="POST", path=UPDATE_PATH, query="", access_token=TOKEN, app_key=APP_KEY, timestamp=TIMESTAMP, body=b""
    )
    assert canonical.endswith(f"|{SIGNED_HEADERS}|")
    assert hashlib.sha1(b"").hexdigest() not in canonical
    # ... and an empty body is not the same request as a one-byte body.
    assert sign(
        app_secret=APP_SECRET,
        method="POST",
        path=UPDATE_PATH,
        query="",
        access_token=TOKEN,
        app_key=APP_KEY,
        timestamp=TIMESTAMP,
        body=b"",
    ) != sign(
        app_secret=APP_SECRET,
        method="POST",
        path=UPDATE_PATH,
        query="",
        access_token=TOKEN,
        app_key=APP_KEY,
        timestamp=TIMESTAMP,
        body=b" ",
    )


def test_method_is_upper_cased():
    lower = canonical_request(
        method="post",
        path=UPDATE_PATH,
        query="",
        access_token=TOKEN,
        app_key=APP_KEY,
        timestamp=TIMESTAMP,
        body=VECTOR_BODY,
    )
    assert lower.startswith("POST|")
    assert (
        sign(
            app_secret=APP_SECRET,
            method="post",
            path=UPDATE_PATH,
            query="",
            access_token=TOKEN,
            app_key=APP_KEY,
            timestamp=TIMESTAMP,
            body=VECTOR_BODY,
        )
        == POST_SIGNATURE
    )


def test_timestamp_is_signed_as_sent():
    # "1795564449.0" and "1795564449" are the same instant but different signed text.
    base = {
        "app_secret": APP_SECRET,
        "method": "POST",
        "path": UPDATE_PATH,
        "query": "",
        "access_token": TOKEN,
        "app_key": APP_KEY,
        "body": VECTOR_BODY,
    }
    assert sign(timestamp="1795564449.0", **base) != sign(timestamp=TIMESTAMP, **base)
    assert "x-timestamp:1795564449.123\n" in canonical_request(
        **{k: v for k, v in base.items() if k != "app_secret"}, timestamp="1795564449.123"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("app_secret", "secret457"),
        ("method", "GET"),
        ("path", UPDATE_PATH + "/"),
        ("query", "a=1"),
        ("access_token", "token780"),
        ("app_key", "appkey124"),
        ("timestamp", "1795564450"),
        ("body", VECTOR_BODY + b" "),
    ],
)
def test_every_signed_part_changes_the_signature(field, value):
    parts = {
        "app_secret": APP_SECRET,
        "method": "POST",
        "path": UPDATE_PATH,
        "query": "",
        "access_token": TOKEN,
        "app_key": APP_KEY,
        "timestamp": TIMESTAMP,
        "body": VECTOR_BODY,
    }
    parts[field] = value
    assert sign(**parts) != POST_SIGNATURE


@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("POST", UPDATE_PATH, "", '{"account_no":"Ünïcödé-账户","changes":[]}'.encode()),
        ("GET", READ_PATH, "account_no=A%20B&x=1&x=2", b""),
        ("POST", "/v1/a b/%2F", "q=%E8%B4%A6", b"\x00\xff raw bytes"),
    ],
)
def test_sign_matches_the_reference_on_other_inputs(method, path, query, body):
    got = sign(
        app_secret="s3cr3t-ü",
        method=method,
        path=path,
        query=query,
        access_token="tök",
        app_key="kéy",
        timestamp="1795564449.5",
        body=body,
    )
    assert got == reference_sign(
        secret="s3cr3t-ü", method=method, path=path, query=query, token="tök", key="kéy", ts="1795564449.5", body=body
    )


def test_signature_header_format():
    assert signature_header(POST_SIGNATURE) == (
        f"HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp, Signature={POST_SIGNATURE}"
    )


def test_token_digest_is_sha256_hex():
    assert token_digest(TOKEN) == hashlib.sha256(TOKEN.encode()).hexdigest()


# --- the official SDK, run in a subprocess against a listener in this process ------------------------------


@dataclass
class Captured:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class _Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.captured.append(  # type: ignore[attr-defined]
            Captured(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        out = json.dumps({"code": 0, "message": "success", "data": {"failure_index": 0}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def recorder() -> Iterator[http.server.ThreadingHTTPServer]:
    """A listener in a thread of this process; safe only because the SDK runs in another process."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.daemon_threads = True
    server.captured = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


SDK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from longbridge.openapi import HttpClient
    url, key, secret, token = sys.argv[1:5]
    client = HttpClient.from_apikey(key, secret, token, http_url=url)
    client.request("post", {update!r},
                   body={{"account_no": "L6VQEU00121996",
                          "changes": [{{"permission_type": "stock.US", "permission_status": "open"}}]}})
    client.request("get", {read!r} + "?account_no=X")
    client.request("post", {update!r},
                   body={{"account_no": "Ünïcödé 账户", "changes": [{{"permission_type": "options.US",
                                                                     "permission_status": "close"}}]}})
    client.request("get", {read!r} + "?account_no=A%20B&x=1")
    print("sdk-done")
    """
).format(update=UPDATE_PATH, read=READ_PATH)


@pytest.mark.e2e
def test_sdk_signatures_are_reproduced(recorder):
    url = f"http://127.0.0.1:{recorder.server_address[1]}"
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy") and not k.startswith("LONGBRIDGE_")
    }
    result = subprocess.run(
        [sys.executable, "-c", SDK_SCRIPT, url, APP_KEY, APP_SECRET, TOKEN],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "sdk-done" in result.stdout

    captured = recorder.captured
    assert [(c.method, urlsplit(c.target).path) for c in captured] == [
        ("POST", UPDATE_PATH),
        ("GET", READ_PATH),
        ("POST", UPDATE_PATH),
        ("GET", READ_PATH),
    ]
    # The SPEC's POST vector body is byte for byte what the SDK sends for that request.
    assert captured[0].body == VECTOR_BODY
    assert captured[1].body == b""
    assert urlsplit(captured[1].target).query == "account_no=X"

    for request in captured:
        headers = request.headers
        assert headers["x-api-key"] == APP_KEY
        assert headers["authorization"] == TOKEN
        target = urlsplit(request.target)
        expected = sign(
            app_secret=APP_SECRET,
            method=request.method,
            path=target.path,
            query=target.query,
            access_token=headers["authorization"],
            app_key=headers["x-api-key"],
            timestamp=headers["x-timestamp"],
            body=request.body,
        )
        assert headers["x-api-signature"] == signature_header(expected), request

    # With the SDK's own method, path, query and body and the vector's timestamp, SPEC §4's signatures come out.
    post, get = captured[0], captured[1]
    assert (
        sign(
            app_secret=APP_SECRET,
            method=post.method,
            path=UPDATE_PATH,
            query="",
            access_token=TOKEN,
            app_key=APP_KEY,
            timestamp=TIMESTAMP,
            body=post.body,
        )
        == POST_SIGNATURE
    )
    assert (
        sign(
            app_secret=APP_SECRET,
            method=get.method,
            path=READ_PATH,
            query=urlsplit(get.target).query,
            access_token=TOKEN,
            app_key=APP_KEY,
            timestamp=TIMESTAMP,
            body=get.body,
        )
        == GET_SIGNATURE
    )
