"""Trace ids: the caller's X-Trace-Id or X-Request-Id when sane, else a new one; on every response."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from flask import Flask, Response, g, request

from app import metrics

SANE_TRACE_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
log = structlog.get_logger("app.http")


def trace_id() -> str:
    """The current request's trace id."""
    return g.trace_id


def init_trace(app: Flask) -> None:
    """Assign a trace id before each request, bind it to the logs, and echo it on the response."""

    @app.before_request
    def _assign() -> None:
        given = request.headers.get("X-Trace-Id") or request.headers.get("X-Request-Id") or ""
        g.trace_id = given if SANE_TRACE_ID.match(given) else uuid.uuid4().hex
        g.started = time.perf_counter()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(trace_id=g.trace_id)

    @app.after_request
    def _echo(response: Response) -> Response:
        if "trace_id" not in g:  # a failure before _assign ran (e.g. a malformed request line)
            g.trace_id = uuid.uuid4().hex
        response.headers["X-Trace-Id"] = g.trace_id
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        route = metrics.route_label(request.url_rule.rule if request.url_rule else None)
        metrics.requests_answered(
            route, metrics.method_label(request.method), str(response.status_code), metrics.code_label(g.get("code"))
        ).inc()
        metrics.request_seconds(route).observe(elapsed)
        log.info(
            "request",
            method=request.method,
            path=request.path,
            status=response.status_code,
            code=g.get("code"),
            duration_ms=round(elapsed * 1000, 3),
        )
        return response

    @app.teardown_request
    def _unbind(_exc: BaseException | None) -> None:
        structlog.contextvars.clear_contextvars()
