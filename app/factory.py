"""The Flask application factory: settings in, a WSGI app with every part wired out."""

from __future__ import annotations

from flask import Flask

from app.container import Container
from app.http import init_http
from app.http.permissions import load_update_request
from app.http.wiring import attach
from app.logging import configure_logging
from app.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI app from settings (default: the environment). Nothing connects to a database here."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    app = Flask(__name__, static_folder=None)  # no /static route: every answer is the envelope
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False  # OPTIONS is a wrong method here: 405 in the envelope
    app.json.sort_keys = False  # type: ignore[attr-defined]
    attach(app, Container.build(settings, load_request=load_update_request))  # the cases read requests as the API
    init_http(app)
    return app
