"""Run the real service under gunicorn in a child process (the SDK's blocking call holds the GIL)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from app.settings import Settings


def free_port() -> int:
    """A TCP port nobody is listening on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    """A gunicorn process serving the packaged app with the packaged settings, as `permctl serve` runs it.

    It runs from the log's directory, not the checkout: nothing may depend on the working directory.
    """

    settings: Settings
    log_path: Path
    workers: int = 2
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    packaged_config: bool = True  # False: a bare `gunicorn app.wsgi:app`, as an operator might start it
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        ours = ("DATABASE_URL", "REDIS_URL", "RULES_DIR", "INSTANCE_DIR", "PROMETHEUS_MULTIPROC_DIR")
        env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
        env.update(
            {
                "DATABASE_URL": self.settings.database_url,
                "RULES_DIR": str(self.settings.rules_dir),
                "INSTANCE_DIR": str(self.settings.instance_dir),
            }
        )
        if self.settings.redis_url:
            env["REDIS_URL"] = self.settings.redis_url
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 30.0) -> LiveServer:
        """Start gunicorn and wait until it answers HTTP."""
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                *(["-c", "python:app.gunicorn_conf"] if self.packaged_config else []),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.workers),
                "--graceful-timeout",
                "5",
                "app.wsgi:app",
            ],
            cwd=self.log_path.parent,
            env=self.env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._log.close()
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.logs()}")
            try:
                urllib.request.urlopen(self.url + "/__ready__", timeout=1)
            except urllib.error.HTTPError:
                return self  # an enveloped 404: a worker is serving
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer within {timeout} s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop gunicorn and its workers."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if hasattr(self, "_log"):
            self._log.close()


class Answer(NamedTuple):
    """A response as tests look at it."""

    status: int
    envelope: dict[str, Any]
    trace_id: str
    headers: dict[str, str]


def send(
    url: str, method: str, target: str, body: bytes | None, headers: dict[str, str], timeout: float = 60
) -> Answer:
    """One request on a fresh connection (urllib sends Connection: close)."""
    request = urllib.request.Request(url + target, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(
                response.status, json.loads(response.read()), response.headers["X-Trace-Id"], dict(response.headers)
            )
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, json.loads(error.read()), error.headers["X-Trace-Id"], dict(error.headers))


@contextmanager
def a_worker_held(url: str, path: str, body: bytes, headers: dict[str, str]) -> Iterator[Callable[[], Answer]]:
    """A POST of body with all but its last byte sent: the sync worker that accepts it waits for that byte.

    Connections are accepted in the order they arrive, so the first worker free takes this one, and every request
    made inside the block is served by another worker: a way to have each worker serve some of the traffic that
    does not depend on which of them wins accept(). The block's value sends the last byte and returns the answer.
    """
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            connection.putheader(name, value)
        connection.endheaders()
        connection.send(body[:-1])

        def finish() -> Answer:
            connection.send(body[-1:])
            response = connection.getresponse()
            envelope = json.loads(response.read())
            return Answer(response.status, envelope, response.headers["X-Trace-Id"], dict(response.headers))

        yield finish
    finally:
        connection.close()


def call(
    server: LiveServer,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    query: str = "",
    creds: object = None,
    headers: dict[str, str] | None = None,
    timeout: float = 15,
) -> tuple[int, dict, dict]:
    """A signed request to the server: (HTTP status, envelope, response headers)."""
    from tests.support import DEMO, signed_headers

    sent = signed_headers(method, path, body, query=query, creds=creds or DEMO)  # type: ignore[arg-type]
    sent.update(headers or {})
    answer = send(server.url, method, path + (f"?{query}" if query else ""), body or None, sent, timeout)
    return answer.status, answer.envelope, answer.headers


def log_records(log_path: Path) -> Iterator[dict[str, Any]]:
    """The server's JSON log lines (a plain line, such as a refusal to start, is skipped)."""
    for line in log_path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record
