"""gunicorn's sync worker, answering its own refusals in the envelope (SPEC §3.1, §3.3, §8).

gunicorn parses each request before the app sees it, and refuses what it cannot parse (a malformed or too long
request line, an odd method, too many or too long headers, an unknown Transfer-Encoding) with an HTML page of
its own; a request whose worker is aborted at the worker timeout gets an HTML 500. `EnvelopeWorker` (the
packaged settings' worker_class) answers those in the envelope instead, with an X-Trace-Id header, for a
request that reaches gunicorn directly. What it cannot cover is in docs/deploy.md: nothing answers a request
that arrives while no worker is running, and a worker killed outright (SIGKILL, out of memory) writes nothing.

This module is imported by the gunicorn master (it loads the worker class): it must not import
prometheus_client, Flask or the app (app/metrics_dir.py).
"""

from __future__ import annotations

import json
import re
import ssl
import uuid
from datetime import datetime
from typing import Any, NamedTuple

import structlog
from gunicorn import util
from gunicorn.http import errors
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.workers.sync import SyncWorker

SANE_TRACE_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")  # as app/http/trace.py (a test holds them equal)
REASONS = {400: "Bad Request", 405: "Method Not Allowed", 503: "Service Unavailable"}


class Refusal(NamedTuple):
    """What gunicorn's refusal becomes: the HTTP status and envelope the contract gives it."""

    status: int
    code: int
    message: str
    client_error: bool  # the client's fault (logged as a warning) rather than the server's (an exception)


BAD_REQUEST = Refusal(400, 400001, "malformed HTTP request", True)
SERVER_FAILED = Refusal(
    503,
    503001,
    "the service is unavailable (the request was aborted); a change may have been applied: "
    "retry with the same Idempotency-Key",
    False,
)
CLIENT_ERRORS: dict[type[BaseException], Refusal] = {
    errors.InvalidRequestMethod: Refusal(405, 405000, "method not allowed", True),
    errors.LimitRequestLine: Refusal(400, 400001, "request line is too long", True),
    errors.LimitRequestHeaders: Refusal(
        400, 400001, "request headers too large (a header line too long, or too many header lines)", True
    ),
    errors.UnsupportedTransferCoding: Refusal(
        400, 400001, "unsupported Transfer-Encoding (only chunked is accepted)", True
    ),
}


def refusal(exc: BaseException) -> Refusal:
    """The envelope for an exception gunicorn's worker caught while handling a request."""
    if isinstance(exc, errors.InvalidResponseHeader | errors.InvalidResponseHeaderName | errors.ConfigurationProblem):
        return SERVER_FAILED  # the application's or the configuration's fault, not the client's
    for kind, answer in CLIENT_ERRORS.items():
        if isinstance(exc, kind):
            return answer
    if isinstance(exc, errors.ParseException | ssl.SSLError):
        return BAD_REQUEST
    return SERVER_FAILED  # the worker timeout's abort (SystemExit), or an exception that escaped the app


def trace_id_of(req: Any) -> str:
    """The caller's X-Trace-Id or X-Request-Id when gunicorn read them and they are sane, else a new id."""
    headers = dict(getattr(req, "headers", None) or ())
    given = headers.get("X-TRACE-ID") or headers.get("X-REQUEST-ID") or ""
    return given if SANE_TRACE_ID.match(given) else uuid.uuid4().hex


def answer(refused: Refusal, trace_id: str, *, head: bool = False) -> bytes:
    """The whole HTTP response for a refusal; the connection is closed after it."""
    body = json.dumps(
        {"code": refused.code, "message": refused.message, "data": {"failure_index": 0}}, separators=(",", ":")
    ).encode()
    lines = [
        f"HTTP/1.1 {refused.status} {REASONS[refused.status]}",
        "Connection: close",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        f"X-Trace-Id: {trace_id}",
    ]
    return "\r\n".join([*lines, "", ""]).encode("latin-1") + (b"" if head else body)


class EnvelopeWorker(SyncWorker):
    """The sync worker (processes: durable_rules is not thread-safe), its refusals in the envelope."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Answer what gunicorn refused, or a request it aborted, in the envelope (in place of its HTML)."""
        started = datetime.now()
        addr = addr or ("", -1)  # a unix socket
        refused, trace_id = refusal(exc), trace_id_of(req)
        structlog.contextvars.bind_contextvars(trace_id=trace_id)
        try:
            if refused.client_error:
                self.log.warning("Invalid request from ip=%s: %s", addr[0], exc)
            else:
                where = f" {req.method} {req.uri}" if hasattr(req, "method") and hasattr(req, "uri") else ""
                self.log.exception("Error handling request%s", where)
        finally:
            structlog.contextvars.clear_contextvars()
        if req is not None and self.cfg.accesslog is not None:
            environ = default_environ(req, client, self.cfg)
            environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = addr[0], str(addr[1])
            response = Response(req, client, self.cfg)
            response.status = f"{refused.status} {REASONS[refused.status]}"
            self.log.access(response, req, environ, datetime.now() - started)
        try:
            util.write_nonblock(client, answer(refused, trace_id, head=getattr(req, "method", "") == "HEAD"))
        except Exception:
            self.log.debug("Failed to send error message.")
