"""permctl call's exit status follows the HTTP status (issue 9 #15), against a stub HTTP server on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.signature import sign, signature_header
from tests.cli.runner import Ran, invoke
from tests.support import DEMO

# path -> (status, content type, body)
ANSWERS = {
    "/openapi.json": (200, "application/json", b'{"openapi": "3.1.0", "paths": {}}'),
    "/metrics": (200, "text/plain; version=0.0.4", b"tps_requests_total 1.0\n"),
    "/created": (201, "application/json", b'{"id": 7}'),
    "/envelope": (200, "application/json", b'{"code": 0, "message": "success", "data": {}}'),
    "/missing": (404, "application/json", b'{"code": 404000, "message": "no route", "data": {}}'),
    "/broken": (500, "text/html", b"<html>Internal Server Error</html>"),
}


class _Stub(BaseHTTPRequestHandler):
    """Answers ANSWERS[path] and remembers the headers it got."""

    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        _Stub.seen.append({**dict(self.headers.items()), "path": self.path})
        status, content_type, body = ANSWERS[self.path.split("?")[0]]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Trace-Id", "stub-trace")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def stub_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def _call(url: str, path: str) -> Ran:
    return invoke(
        "call",
        "GET",
        path,
        env={
            "LONGBRIDGE_APP_KEY": DEMO.app_key,
            "LONGBRIDGE_APP_SECRET": DEMO.app_secret,
            "LONGBRIDGE_ACCESS_TOKEN": DEMO.access_token,
            "LONGBRIDGE_HTTP_URL": url,
        },
    )


@pytest.mark.parametrize("path", ["/openapi.json", "/metrics", "/created", "/envelope"])
def test_any_2xx_exits_0_and_prints_the_body(stub_url, path):
    result = _call(stub_url, path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ANSWERS[path][2].decode() + "\n"
    assert result.stderr.strip() == f"HTTP {ANSWERS[path][0]}  X-Trace-Id: stub-trace"


@pytest.mark.parametrize("path", ["/missing", "/broken"])
def test_anything_else_exits_1_and_still_prints_the_body(stub_url, path):
    result = _call(stub_url, path)
    assert result.returncode == 1
    assert result.stdout == ANSWERS[path][2].decode() + "\n"
    assert "Traceback" not in result.stderr


def test_the_request_is_signed_like_the_sdk(stub_url):
    _Stub.seen.clear()
    assert _call(stub_url, "/envelope?account_no=A1").returncode == 0
    headers = _Stub.seen[-1]
    expected = sign(
        app_secret=DEMO.app_secret,
        method="GET",
        path="/envelope",
        query="account_no=A1",
        access_token=DEMO.access_token,
        app_key=DEMO.app_key,
        timestamp=headers["X-Timestamp"],
        body=b"",
    )
    assert headers["X-Api-Signature"] == signature_header(expected)
    assert headers["X-Api-Key"] == DEMO.app_key and headers["Authorization"] == DEMO.access_token
