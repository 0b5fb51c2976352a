"""Over a raw socket to gunicorn: a body over 64 KiB is 413 and changes nothing however it is framed (issue 9 #8)."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.e2e.server import call
from tests.http.test_bad_input import MAX_BODY, padded
from tests.support import READ_PATH, UPDATE_PATH, signed_headers

pytestmark = pytest.mark.e2e

SIGNED = padded(MAX_BODY)  # a valid one-change body for ACC-2 (stock.US open) of exactly 64 KiB
TAIL = b"x" * (4 * 1024)


def chunked(body: bytes, size: int = 8 * 1024) -> bytes:
    """body in Transfer-Encoding: chunked framing."""
    pieces = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)]
    return b"".join(pieces) + b"0\r\n\r\n"


def head(port: int, signed_over: bytes, framing: str) -> bytes:
    """A POST request head signed over `signed_over`, with the given framing header line."""
    headers = signed_headers("POST", UPDATE_PATH, signed_over)
    lines = [
        f"POST {UPDATE_PATH} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        framing,
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def exchange(port: int, request: bytes, *, half_close: bool = False) -> tuple[int, dict[str, Any]]:
    """Send the bytes, then read one response (status, envelope) by its Content-Length."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while b"\r\n\r\n" not in received:
            received += _recv(sock)
        header_block, body = received.split(b"\r\n\r\n", 1)
        status_line, *header_lines = header_block.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
        while len(body) < int(headers["content-length"]):
            body += _recv(sock)
    assert headers["content-type"].startswith("application/json") and headers.get("x-trace-id")
    return int(status_line.split()[1]), json.loads(body)


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    assert data, "the server closed the connection without a complete answer"
    return data


def stock_us(server: Any) -> str:
    status, envelope, _ = call(server, "GET", READ_PATH, query="account_no=ACC-2")
    assert status == 200, envelope
    return next(p["permission_status"] for p in envelope["data"]["permissions"] if p["permission_type"] == "stock.US")


def test_chunked_68_kib_signed_over_its_first_64_kib_is_413_and_changes_nothing(live_server: Any) -> None:
    port = live_server.port
    status, envelope = exchange(port, head(port, SIGNED, "Transfer-Encoding: chunked") + chunked(SIGNED + TAIL))
    assert (status, envelope["code"], envelope["data"]["failure_index"]) == (413, 400001, 0), envelope
    assert stock_us(live_server) == "close"
    # The same 64 KiB alone, chunked the same way, is a good request: the limit, not the framing, refused it.
    status, envelope = exchange(port, head(port, SIGNED, "Transfer-Encoding: chunked") + chunked(SIGNED))
    assert (status, envelope["code"]) == (200, 0), envelope
    assert stock_us(live_server) == "open"


def test_content_length_over_the_limit_is_413_before_the_body_arrives(live_server: Any) -> None:
    port = live_server.port
    # Only 100 bytes of the announced 64 KiB + 1 are sent and the connection stays open: the answer comes anyway.
    request = head(port, SIGNED, f"Content-Length: {MAX_BODY + 1}") + SIGNED[:100]
    status, envelope = exchange(port, request)
    assert (status, envelope["code"]) == (413, 400001), envelope
    assert stock_us(live_server) == "close"


def test_a_body_shorter_than_its_content_length_is_400(live_server: Any) -> None:
    port = live_server.port
    request = head(port, SIGNED[:1000], "Content-Length: 2000") + SIGNED[:1000]
    status, envelope = exchange(port, request, half_close=True)
    assert (status, envelope["code"]) == (400, 400001), envelope
    assert stock_us(live_server) == "close"
