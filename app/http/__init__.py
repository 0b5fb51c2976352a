"""The HTTP layer: the only package that imports Flask."""

from __future__ import annotations

from flask import Flask

from app.http.accounts import bp as accounts_bp
from app.http.errors import init_error_handlers
from app.http.openapi import bp as openapi_bp
from app.http.operations import bp as operations_bp
from app.http.permissions import bp as permissions_bp
from app.http.trace import init_trace


def init_http(app: Flask) -> None:
    """Register trace ids, routes and error handlers."""
    init_trace(app)
    app.register_blueprint(permissions_bp)
    app.register_blueprint(accounts_bp)
    app.register_blueprint(openapi_bp)
    app.register_blueprint(operations_bp)
    init_error_handlers(app)
