"""Slow clients cannot stop the service behind the shipped nginx config (issue 9, defect 9; SPEC §3.1, §3.3, §4).

gunicorn's sync workers read each request themselves, so one slow connection per worker stalls the service
(checked by hand: with 50 slowloris and 50 trickled bodies straight at `gunicorn -w 2`, `/healthz` had no
answer within 60 s, and the first slow clients got gunicorn's HTML 500 at the 30 s worker timeout). Here nginx,
started with the shipped config in front of gunicorn, holds the slow clients; signed requests stay fast, and
whatever nginx answers itself is the envelope.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.deploy import nginx
from app.persistence.db import is_sqlite
from app.settings import Settings
from tests.e2e.proxy import Nginx, need_nginx
from tests.e2e.server import Answer, LiveServer, log_records, send
from tests.support import PROJECT_ROOT, READ_PATH, UPDATE_PATH, body_of, signed_headers

pytestmark = pytest.mark.e2e

SLOWLORIS = 50  # connections sending their headers a byte at a time, never finishing
TRICKLED = 50  # connections with complete headers whose body arrives a byte at a time
TICK = 0.5  # seconds between two bytes of one slow connection
ROUNDS = 6  # each an update and a read, while the slow connections are open
FAST = 1.0  # seconds: the most a signed request may take under that load
ACCOUNT = "ACC-2"


def directive(name: str) -> str:
    """The value of a directive that the shipped config sets exactly once."""
    return nginx.directive(name)


def seconds(name: str) -> float:
    value = directive(name)
    assert value.endswith("s") and value[:-1].isdigit(), f"{name} {value}: expected whole seconds"
    return float(value[:-1])


@contextlib.contextmanager
def proxied_service(
    settings: Settings,
    tmp_path: Path,
    executable: str,
    *,
    gunicorn_args: str = "",
    nginx_overrides: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[LiveServer, Nginx]]:
    """gunicorn -w 2 on settings' database with nginx (the printed config) in front; both stopped on exit."""
    extra_env = ({"GUNICORN_CMD_ARGS": gunicorn_args} if gunicorn_args else {}) | (env or {})
    server = LiveServer(settings=settings, log_path=tmp_path / "gunicorn.log", extra_env=extra_env).start()
    try:
        proxy = Nginx(
            executable=executable, upstream=f"127.0.0.1:{server.port}", overrides=nginx_overrides or {}
        ).start()
        try:
            yield server, proxy
        finally:
            proxy.stop()
    finally:
        server.stop()


@pytest.fixture
def nginx_executable() -> str:
    """nginx, which these tests need (they fail without it in CI)."""
    return need_nginx()


@pytest.fixture
def proxied(nginx_executable: str, seeded: Settings, tmp_path: Path) -> Iterator[tuple[LiveServer, Nginx]]:
    """The service as production runs it: nginx with the shipped config in front of gunicorn (timeout 30 s)."""
    with proxied_service(seeded, tmp_path, nginx_executable) as pair:
        yield pair


def assert_envelope(answer: Answer, status: int, code: int) -> None:
    assert (answer.status, answer.envelope.get("code")) == (status, code), answer
    assert answer.envelope["data"] == {"failure_index": 0}, answer
    assert answer.envelope["message"], answer
    assert answer.headers["Content-Type"].startswith("application/json"), answer


def raw_exchange(port: int, request: bytes, timeout: float = 10) -> Answer:
    """Send raw bytes and read one answer (its Content-Length says where it ends) and parse it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # nginx may answer before reading all
            sock.sendall(request)
        received, deadline = b"", time.monotonic() + timeout
        while True:
            assert time.monotonic() < deadline, f"no whole answer within {timeout} s: {received[:300]!r}"
            head, separator, body = received.partition(b"\r\n\r\n")
            length = re.search(rb"\r\nContent-Length: (\d+)", head)
            if separator and length and len(body) >= int(length.group(1)):
                break
            chunk = sock.recv(65536)
            assert chunk, f"nginx closed the connection after {received!r}"
            received += chunk
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return Answer(int(status_line.split()[1]), json.loads(body), headers.get("X-Trace-Id", ""), headers)


def update(url: str, wanted: str, *, trace_id: str) -> tuple[Answer, float]:
    body = body_of(ACCOUNT, ("stock.US", wanted), nonce=uuid.uuid4().hex)  # never a replay
    headers = signed_headers("POST", UPDATE_PATH, body) | {"X-Trace-Id": trace_id}
    started = time.monotonic()
    answer = send(url, "POST", UPDATE_PATH, body, headers, timeout=10)
    return answer, time.monotonic() - started


def read(url: str, *, request_id: str, query: str = f"account_no={ACCOUNT}") -> tuple[Answer, float]:
    headers = signed_headers("GET", READ_PATH, query=query) | {"X-Request-Id": request_id}
    started = time.monotonic()
    answer = send(url, "GET", f"{READ_PATH}?{query}", None, headers, timeout=10)
    return answer, time.monotonic() - started


def statuses(answer: Answer) -> dict[str, str]:
    assert (answer.status, answer.envelope["code"]) == (200, 0), answer
    return {p["permission_type"]: p["permission_status"] for p in answer.envelope["data"]["permissions"]}


def padded(size: int, change: tuple[str, str]) -> bytes:
    """A valid update body of exactly size bytes (an unknown field, which the service ignores, fills it)."""
    base = body_of(ACCOUNT, change, pad="")
    body = body_of(ACCOUNT, change, pad="x" * (size - len(base)))
    assert len(body) == size
    return body


@dataclass
class SlowConnection:
    """One slow client: it sends a byte per tick; nginx closes it at some point."""

    kind: str  # "headers": the request never ends its headers; "body": the body never completes
    sock: socket.socket
    opened: float
    closed: float | None = None
    answered: bytes = b""

    def still_open(self) -> bool:
        """Neither closed nor answered by nginx (checked without blocking)."""
        if self.closed is None and select.select([self.sock], [], [], 0)[0]:
            self.receive()
        return self.closed is None and not self.answered

    def receive(self) -> None:
        try:
            data = self.sock.recv(4096)
        except ConnectionResetError:
            data = b""
        if data:
            self.answered += data
        else:
            self.closed = time.monotonic()


def open_slow_connections(port: int) -> list[SlowConnection]:
    connections = []
    for i in range(SLOWLORIS):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(f"GET /slowloris-{i} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode())
        connections.append(SlowConnection("headers", sock, time.monotonic()))
    for i in range(TRICKLED):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(
            f"POST {UPDATE_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Trace-Id: trickled-{i}\r\n"
            "Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n{".encode()
        )
        connections.append(SlowConnection("body", sock, time.monotonic()))
    return connections


def trickle(
    connections: list[SlowConnection],
    stop: threading.Event,
    bodies: threading.Event,
    deadline: float,
    errors: list[BaseException],
) -> None:
    """One byte per tick on every slow connection still open (bodies only while `bodies` is set)."""
    try:
        while not stop.wait(TICK) and time.monotonic() < deadline:
            for connection in connections:
                if connection.closed is None and (connection.kind == "headers" or bodies.is_set()):
                    with contextlib.suppress(OSError):  # nginx has closed it: the main thread sees that
                        connection.sock.send(b"a")
    except BaseException as exc:  # reported by the test
        errors.append(exc)


@pytest.mark.slow  # ten seconds of trickling clients
def test_slow_clients_leave_signed_requests_fast(proxied: tuple[LiveServer, Nginx]):
    server, proxy = proxied
    header_timeout, body_timeout = seconds("client_header_timeout"), seconds("client_body_timeout")
    connections = open_slow_connections(proxy.port)
    stop, bodies, errors = threading.Event(), threading.Event(), []
    bodies.set()
    sender = threading.Thread(
        target=trickle, daemon=True, args=(connections, stop, bodies, time.monotonic() + header_timeout * 6, errors)
    )
    sender.start()
    try:
        latencies: list[float] = []
        for n in range(ROUNDS):
            wanted = "open" if n % 2 == 0 else "close"
            answer, took = update(proxy.url, wanted, trace_id=f"fast-update-{n}")
            assert (answer.status, answer.envelope, answer.trace_id) == (
                200,
                {"code": 0, "message": "success", "data": {"failure_index": 0}},
                f"fast-update-{n}",
            ), answer
            latencies.append(took)
            # The raw query goes up as sent: the signature covers "ACC%2D2", which the service decodes to ACC-2.
            query = f"account_no={ACCOUNT}" if n % 2 == 0 else "account_no=ACC%2D2"
            answer, took = read(proxy.url, request_id=f"fast-read-{n}", query=query)
            assert statuses(answer)["stock.US"] == wanted, answer
            assert answer.envelope["data"]["account_no"] == ACCOUNT and answer.trace_id == f"fast-read-{n}"
            latencies.append(took)
        open_during = [c.kind for c in connections if c.still_open()]
        assert not errors, errors
        assert len(open_during) == SLOWLORIS + TRICKLED, f"only {len(open_during)} slow connections held open"
        assert max(latencies) < FAST, f"signed requests under slow clients: {sorted(latencies)}"

        # nginx then drops the slow clients by itself: headers after client_header_timeout from their first
        # byte, bodies client_body_timeout after their last; it never answers them, and gunicorn never saw them.
        bodies.clear()
        bodies_stopped = time.monotonic()
        deadline = bodies_stopped + max(header_timeout, body_timeout) + 10
        while any(c.closed is None for c in connections) and time.monotonic() < deadline:
            waiting = [c.sock for c in connections if c.closed is None]
            for sock in select.select(waiting, [], [], 0.5)[0]:
                next(c for c in connections if c.sock is sock).receive()
        for connection in connections:
            assert connection.closed is not None, f"a slow {connection.kind} connection is still open"
            assert connection.answered == b"", connection.answered[:200]
            since = connection.opened if connection.kind == "headers" else bodies_stopped
            limit = header_timeout if connection.kind == "headers" else body_timeout
            assert connection.closed - since < limit + 5, (connection.kind, connection.closed - since)
    finally:
        stop.set()
        sender.join(timeout=10)
        for connection in connections:
            connection.sock.close()
    assert not sender.is_alive()
    seen = [r for r in log_records(server.log_path) if r.get("event") == "request"]
    assert not [r for r in seen if "slowloris" in r["path"] or r.get("trace_id", "").startswith("trickled-")]
    assert len([r for r in seen if r.get("trace_id", "").startswith("fast-")]) == 2 * ROUNDS
    print(
        f"\n{ROUNDS * 2} signed requests through nginx under {SLOWLORIS} slowloris + {TRICKLED} trickled bodies: "
        f"median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
    )


def test_a_body_over_64_kib_is_413_in_the_envelope_and_changes_nothing(proxied: tuple[LiveServer, Nginx]):
    server, proxy = proxied
    limit = server.settings.max_body_bytes
    assert limit == 64 * 1024

    over = padded(limit + 1, ("stock.US", "open"))
    headers = signed_headers("POST", UPDATE_PATH, over) | {"X-Trace-Id": "too-large-1"}
    answer = send(proxy.url, "POST", UPDATE_PATH, over, headers)
    assert_envelope(answer, 413, 400001)
    assert answer.trace_id == "too-large-1"

    chunked = padded(68 * 1024, ("stock.US", "open"))
    headers = signed_headers("POST", UPDATE_PATH, chunked) | {"X-Trace-Id": "too-large-2"}
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part) for part in (chunked[i : i + 8192] for i in range(0, len(chunked), 8192))
    )
    answer = raw_exchange(
        proxy.port,
        f"POST {UPDATE_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}Transfer-Encoding: chunked\r\n\r\n".encode()
        + chunks
        + b"0\r\n\r\n",
    )
    assert_envelope(answer, 413, 400001)
    assert answer.trace_id == "too-large-2"

    # The limits line up: a body of exactly 64 KiB passes nginx and the service applies it.
    exact = padded(limit, ("options.US", "open"))
    answer = send(proxy.url, "POST", UPDATE_PATH, exact, signed_headers("POST", UPDATE_PATH, exact))
    assert (answer.status, answer.envelope["code"]) == (200, 0), answer

    after = statuses(read(proxy.url, request_id="after-413")[0])
    assert after["options.US"] == "open" and after["stock.US"] == "close", after
    decided = [r for r in log_records(server.log_path) if r.get("event") == "decision"]
    assert [r["trace_id"] for r in decided if r["trace_id"].startswith("too-large")] == []


@contextlib.contextmanager
def account_locked(database_url: str) -> Iterator[None]:
    """Hold the lock an update of ACCOUNT needs, from another connection, as a long transaction would."""
    if is_sqlite(database_url):
        connection = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")  # the database's write lock
            yield
        finally:
            connection.rollback()
            connection.close()
        return
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("SELECT id FROM accounts WHERE origin_id = :a FOR UPDATE"), {"a": ACCOUNT})
            yield
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_request_stuck_in_a_worker_gets_the_envelope_not_gunicorns_html(
    nginx_executable: str, seeded: Settings, tmp_path: Path
):
    """A request stuck in a worker: nginx gives up first (503001), then gunicorn aborts the worker.

    Production: proxy_read_timeout 25 s, gunicorn's worker timeout 30 s. Here both are scaled down in the same
    order (2 s and 5 s) so the test need not wait 30 s. The request is slow for an honest reason: another
    transaction holds the lock it needs, past the request path's own bounds: those are raised above both
    timeouts here (by default a request waits 3 s for a lock and answers 409003, before either), so the request
    is still waiting when the proxy and the worker give up. Had gunicorn's timeout come first (checked by
    swapping the two, before the packaged worker answered its aborts in the envelope), the client got
    gunicorn's HTML 500 through nginx on PostgreSQL (the abort interrupts the lock wait in Python and gunicorn
    answers) and nginx's 503001 only after the worker was killed on SQLite.
    """
    proxy_timeout, worker_timeout = 2, 5
    assert seconds("proxy_read_timeout") < 30
    with proxied_service(
        seeded,
        tmp_path,
        nginx_executable,
        gunicorn_args=f"--timeout {worker_timeout}",
        nginx_overrides={"proxy_read_timeout": f"{proxy_timeout}s"},
        env={"DATABASE_LOCK_TIMEOUT_SECONDS": "20", "DATABASE_STATEMENT_TIMEOUT_SECONDS": "20"},
    ) as (server, proxy):
        with account_locked(seeded.database_url):
            answer, took = update(proxy.url, "open", trace_id="stuck-1")
            assert_envelope(answer, 503, 503001)
            assert answer.trace_id == "stuck-1"
            assert proxy_timeout <= took < worker_timeout, took
            deadline = time.monotonic() + worker_timeout + 10
            while "WORKER TIMEOUT" not in server.logs():  # the request really was stuck in its worker
                assert time.monotonic() < deadline, "gunicorn never timed the stuck worker out"
                time.sleep(0.1)  # poll interval
        assert statuses(read(proxy.url, request_id="after-timeout")[0])["stock.US"] == "close"


def test_nginx_gives_up_before_gunicorn_and_takes_the_service_body_limit(tmp_path: Path):
    """The limits that cannot be shown quickly end to end, checked against the service's own values."""
    printed = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--print-config", "wsgi:app"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")},
    )
    found = re.search(r"^timeout\s*=\s*(\d+)$", printed.stdout, flags=re.MULTILINE)
    assert found, printed.stdout + printed.stderr
    worker_timeout = int(found.group(1))
    for name in ("proxy_connect_timeout", "proxy_send_timeout", "proxy_read_timeout"):
        assert seconds(name) < worker_timeout, (name, worker_timeout)
    assert directive("client_max_body_size") == f"{Settings().max_body_bytes // 1024}k"
    assert directive("proxy_request_buffering") == "on" and directive("proxy_buffering") == "on"
    assert re.fullmatch(r"http://[\w.-]+", directive("proxy_pass")), "proxy_pass must have no URI part"
