"""The one place that turns errors into envelopes."""

from __future__ import annotations

import structlog
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from app.errors import (
    BodyTooLarge,
    DomainError,
    InvalidRequest,
    MethodNotAllowed,
    RouteNotFound,
    ServiceUnavailable,
)
from app.http.envelope import envelope, error

log = structlog.get_logger("app.http")


def _as_domain_error(exc: HTTPException) -> DomainError:
    if exc.code == 404:
        return RouteNotFound(f"no route for {request.path}")
    if exc.code == 405:
        return MethodNotAllowed(f"{request.method} is not allowed on {request.path}")
    if exc.code == 413:
        return BodyTooLarge("body is larger than 64 KiB")
    return InvalidRequest(exc.description or exc.name)


def init_error_handlers(app: Flask) -> None:
    """Register handlers so every error, expected or not, answers in the envelope."""

    @app.errorhandler(DomainError)
    def _domain(exc: DomainError) -> Response:
        if isinstance(exc, ServiceUnavailable) and exc.detail:
            log.error("database_unusable", error=exc.kind, detail=exc.detail)
        elif isinstance(exc, ServiceUnavailable) and exc.kind:
            log.warning("database_unavailable", error=exc.kind)
        return error(exc, endpoint=request.endpoint)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        domain = _as_domain_error(exc)
        if exc.code not in (400, 404, 405, 413):
            return envelope((exc.code or 500) * 1000, exc.name, {}, exc.code or 500)
        response = error(domain, endpoint=request.endpoint)
        allowed = getattr(exc, "valid_methods", None)
        if exc.code == 405 and allowed:
            response.headers["Allow"] = ", ".join(sorted(allowed))  # RFC 9110: a 405 lists what is allowed
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled_error", error=type(exc).__name__)
        data = {"failure_index": 0} if request.endpoint == "permissions.update" else {}
        return envelope(500000, "internal error", data, 500)
