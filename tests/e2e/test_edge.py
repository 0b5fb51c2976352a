"""Whatever a client can provoke from the proxy or from gunicorn is the envelope with X-Trace-Id (issue 18 #4, #10;
SPEC §3.1, §8).

nginx runs the config `permctl deploy nginx-config` prints, in front of gunicorn with the packaged settings (one
of each for the module). Every odd request goes over a raw socket: through nginx, which answers what it refuses
itself; and straight to gunicorn, whose worker answers its own refusals. Before, these were HTML pages without
X-Trace-Id (gunicorn's 400/414/431/500, nginx's 405/501), and gunicorn refused what nginx had passed up.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest

from app.deploy import nginx
from app.gunicorn_worker import SANE_TRACE_ID
from app.http import trace
from app.settings import Settings
from tests.e2e.proxy import Nginx, need_nginx
from tests.e2e.server import Answer, LiveServer, free_port
from tests.support import SHIPPED_RULES, UPDATE_PATH

pytestmark = pytest.mark.e2e

NEW_TRACE_ID = re.compile(r"[0-9a-f]{32}")  # nginx's $request_id, or the id the service makes up
# An unwritable HOME and no usable XDG_RUNTIME_DIR: where gunicorn's control socket would go by default.
NO_HOME = {"HOME": "/proc/tps-no-home", "XDG_RUNTIME_DIR": "/proc/tps-no-runtime-dir"}
LIMITS = nginx.header_limits()


@dataclass
class Edge:
    server: LiveServer
    proxy: Nginx
    executable: str


def _settings(work: Path, template: Path) -> Settings:
    """An SQLite database of its own: these requests are about the edge, not storage."""
    database = work / "permissions.sqlite"
    shutil.copy(template, database)
    return Settings(
        database_url=f"sqlite:///{database}", redis_url=None, rules_dir=SHIPPED_RULES, instance_dir=work / "instance"
    )


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Edge]:
    """gunicorn -w 2 (packaged settings) with nginx from `permctl deploy nginx-config` in front."""
    executable = need_nginx()
    work = tmp_path_factory.mktemp("edge")
    server = LiveServer(
        settings=_settings(work, sqlite_template), log_path=work / "gunicorn.log", extra_env=NO_HOME
    ).start()
    try:
        proxy = Nginx(executable=executable, upstream=f"127.0.0.1:{server.port}").start()
        try:
            yield Edge(server, proxy, executable)
        finally:
            proxy.stop()
    finally:
        server.stop()


def request(method: str = "GET", target: str = "/healthz", headers: str = "", body: bytes = b"") -> bytes:
    """A request with the caller's trace id as its first header, asking for the connection to be closed after it."""
    head = f"{method} {target} HTTP/1.1\r\nX-Trace-Id: edge-trace\r\nHost: tps\r\nConnection: close\r\n{headers}\r\n"
    return head.encode("latin-1") + body


def line_of(size: int) -> bytes:
    """A GET whose request line (without CRLF) is exactly size bytes."""
    return request(target="/" + "a" * (size - len("GET / HTTP/1.1")))


def header_line_of(size: int) -> bytes:
    """A GET with one header line (without CRLF) of exactly size bytes."""
    return request(headers=f"X-Big: {'a' * (size - len('X-Big: '))}\r\n")


def headers(count: int, line: str = "X-H{n}: v") -> bytes:
    return request(headers="".join(line.format(n=n) + "\r\n" for n in range(count)))


def exchange(port: int, data: bytes, timeout: float = 15) -> bytes:
    """Send raw bytes; everything the server sends until it closes (b"" when it closed without a word)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # refused before it read everything: its answer is still there to read
            sock.sendall(data)  # no half-close: nginx takes it for a client gone and drops the request
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    return received


def parsed(raw: bytes) -> Answer:
    """One HTTP answer, its body the JSON envelope (anything else fails here, with the answer shown)."""
    head, separator, body = raw.partition(b"\r\n\r\n")
    assert separator, f"no HTTP answer: {raw[:300]!r}"
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines)
    assert fields.get("Content-Type", "").startswith("application/json"), raw[:600]
    length = int(fields["Content-Length"])
    assert len(body) == length, raw[:600]
    return Answer(int(status_line.split()[1]), json.loads(body), fields.get("X-Trace-Id", ""), fields)


class Case(NamedTuple):
    name: str
    data: bytes
    status: int
    code: int
    echoes: bool  # the answer carries the caller's X-Trace-Id (else a new one: the headers were never read)


def check(answer: Answer, case: Case, *, refused_at_the_edge: bool) -> None:
    assert (answer.status, answer.envelope["code"]) == (case.status, case.code), answer
    assert answer.envelope["message"], answer
    if refused_at_the_edge:
        assert answer.envelope["data"] == {"failure_index": 0}, answer
    if case.echoes:
        assert answer.trace_id == "edge-trace", answer
    else:
        assert NEW_TRACE_ID.fullmatch(answer.trace_id), answer


THROUGH_NGINX = [
    Case("request line of 4,095 bytes", line_of(4095), 400, 400001, False),
    Case("request line of 8,000 bytes", line_of(8000), 400, 400001, False),
    Case("the longest request line nginx passes", line_of(LIMITS.longest_line), 404, 404000, True),
    Case("98 headers", headers(98), 200, 0, True),
    Case("120 headers", headers(120), 200, 0, True),
    # nginx 1.22 passes at most 1,000 header lines (the request's three included); gunicorn takes them all.
    Case("1,000 header lines", headers(997, "a{n}:"), 200, 0, True),
    Case("3,000 header lines (over nginx's 17 KiB)", headers(3000, "a{n}:"), 400, 400001, True),
    Case("a header line of ~8 KiB", header_line_of(8100), 400, 400001, True),
    Case("the longest header line nginx passes", header_line_of(LIMITS.longest_line), 200, 0, True),
    Case("method AB", request("AB"), 405, 405000, True),
    Case("method A", request("A"), 405, 405000, True),
    Case("a 30-letter method", request("A" * 30), 405, 405000, True),
    Case("TRACE", request("TRACE"), 405, 405000, True),
    Case("CONNECT", request("CONNECT"), 405, 405000, True),
    Case("a lower-case method", request("get"), 400, 400001, False),
    Case("not HTTP", b"NOT A REQUEST\r\n\r\n", 400, 400001, False),
    Case(
        "Transfer-Encoding: gzip, chunked",
        request("POST", UPDATE_PATH, "Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
        400,
        400001,
        True,
    ),
    Case(
        "a body over 64 KiB, to a path that looks like HTML",
        request("POST", "/index.html", "Content-Length: 65537\r\n", b"{" * 65537),
        413,
        400001,
        True,
    ),
]


@pytest.mark.parametrize("case", THROUGH_NGINX, ids=[case.name for case in THROUGH_NGINX])
def test_through_nginx_every_answer_is_the_envelope(edge: Edge, case: Case) -> None:
    answer = parsed(exchange(edge.proxy.port, case.data))
    check(answer, case, refused_at_the_edge=case.code != 0 and answer.status in (400, 405, 413))
    assert answer.headers.get("Server", "") != "gunicorn", "nginx passes gunicorn's answers on without its header"


def test_nginx_closes_an_http_0_9_request_whose_answer_could_carry_no_header(edge: Edge) -> None:
    assert exchange(edge.proxy.port, b"GET /healthz\r\n") == b""


DIRECT = [
    Case("request line over gunicorn's 8,190 bytes", line_of(9000), 400, 400001, False),
    Case("request line of 4,095 bytes (gunicorn's old 414)", line_of(4095), 404, 404000, True),
    Case("120 headers (gunicorn's old 431)", headers(120), 200, 0, True),
    Case("more headers than nginx could pass", headers(LIMITS.most_header_lines + 1), 400, 400001, False),
    Case("a header line over 8 KiB", header_line_of(9000), 400, 400001, False),
    Case("method AB", request("AB"), 405, 405000, False),
    Case("method A", request("A"), 405, 405000, False),
    Case("a 30-letter method", request("A" * 30), 405, 405000, False),
    Case("a lower-case method", request("get"), 405, 405000, False),
    Case("not HTTP", b"NOT A REQUEST\r\n\r\n", 400, 400001, False),
    Case("HTTP/0.9", b"GET /healthz\r\n", 400, 400001, False),
    Case(
        "Transfer-Encoding: br, chunked",
        request("POST", UPDATE_PATH, "Transfer-Encoding: br, chunked\r\n", b"0\r\n\r\n"),
        400,
        400001,
        False,
    ),
]


@pytest.mark.parametrize("case", DIRECT, ids=[case.name for case in DIRECT])
def test_straight_to_gunicorn_its_refusals_are_the_envelope(edge: Edge, case: Case) -> None:
    answer = parsed(exchange(edge.server.port, case.data))
    check(answer, case, refused_at_the_edge=answer.headers.get("Server") != "gunicorn")  # the app sends Server


def test_an_upstream_down_is_503001_from_nginx(edge: Edge) -> None:
    nobody = Nginx(executable=edge.executable, upstream=f"127.0.0.1:{free_port()}").start()
    try:
        answer = parsed(exchange(nobody.port, request()))
    finally:
        nobody.stop()
    check(answer, Case("", b"", 503, 503001, True), refused_at_the_edge=True)


def test_a_client_too_slow_with_its_headers_gets_no_html(edge: Edge) -> None:
    """nginx never answers a header timeout (its 408 error page is for completeness): it closes, saying nothing.

    client_header_timeout is scaled down from 10 s to 1 s for the test.
    """
    slow = Nginx(
        executable=edge.executable,
        upstream=f"127.0.0.1:{edge.server.port}",
        overrides={"client_header_timeout": "1s"},
    ).start()
    try:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", slow.port), timeout=15) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: tps\r\nX-Slow: ")
            try:
                said = sock.recv(65536)
            except ConnectionResetError:
                said = b""
        assert said == b"" and time.monotonic() - started >= 1, said
    finally:
        slow.stop()


def test_gunicorns_log_is_json_lines_and_it_opens_no_control_socket(edge: Edge) -> None:
    """gunicorn's own lines were plain text in the JSON log; an unwritable HOME logged 'Control server error'."""
    refused = parsed(exchange(edge.server.port, request("AB")))
    lines = [line for line in edge.server.logs().splitlines() if line]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"timestamp", "level", "event", "pid"} <= record.keys() for record in records), lines
    gunicorns = [record for record in records if record.get("logger") == "gunicorn.error"]
    assert any(record["event"].startswith("Booting worker") for record in gunicorns), lines
    warned = [record for record in gunicorns if record["event"].startswith("Invalid request")]
    assert refused.trace_id in {record.get("trace_id") for record in warned}, warned
    assert not [line for line in lines if "ontrol" in line], "no control socket, so no word about one"
    assert not Path(NO_HOME["HOME"]).exists()


def test_the_worker_and_the_app_take_the_same_trace_ids() -> None:
    assert SANE_TRACE_ID.pattern == trace.SANE_TRACE_ID.pattern


def _unread_by_server(server_port: int, client_port: int) -> int | None:
    """Bytes the kernel holds for the server's end of this connection that no worker has read yet."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, remote, queues = row.split()[1], row.split()[2], row.split()[4]
            if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
                return int(queues.split(":")[1], 16)
    return None


def _sleeping(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "S"


def test_a_request_gunicorn_aborts_is_the_envelope_and_its_traceback_one_json_line(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """At the worker timeout gunicorn's master sends the worker SIGABRT, which used to answer HTML 500 and log a
    traceback over many lines. Here the worker is stuck for an honest reason (a body that never completes, sent
    straight to gunicorn) and the test sends the SIGABRT itself once the worker is blocked, rather than waiting
    out the 30 s timeout."""
    server = LiveServer(settings=_settings(tmp_path, sqlite_template), log_path=tmp_path / "gunicorn.log", workers=1)
    server.start()
    try:
        assert server.process is not None
        (worker,) = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
        with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
            stuck = request("POST", UPDATE_PATH, "Content-Type: application/json\r\nContent-Length: 100\r\n", b"{")
            sock.sendall(stuck)
            client_port = sock.getsockname()[1]
            deadline = time.monotonic() + 15
            while _unread_by_server(server.port, client_port) != 0 or not _sleeping(int(worker)):
                assert time.monotonic() < deadline, "the worker never took the request"
                time.sleep(0.01)  # poll interval
            os.kill(int(worker), signal.SIGABRT)
            said = b""
            while chunk := sock.recv(65536):
                said += chunk
    finally:
        server.stop()
    answer = parsed(said)
    check(answer, Case("", b"", 503, 503001, True), refused_at_the_edge=True)
    records = [json.loads(line) for line in server.logs().splitlines() if line]  # every line one JSON object
    (aborted,) = [record for record in records if "SystemExit" in record.get("exception", "")]
    assert aborted["event"] == f"Error handling request POST {UPDATE_PATH}", aborted
    assert aborted["exception"].startswith("Traceback") and aborted["trace_id"] == "edge-trace", aborted
    assert aborted["logger"] == "gunicorn.error" and aborted["level"] == "error", aborted
