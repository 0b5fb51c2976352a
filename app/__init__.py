"""Trade-permission policy service: the Flask application factory."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported inside create_app, so `import app.cli` (permctl) does not pay for Flask
    from flask import Flask

    from app.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI app from settings (default: the environment). Nothing connects to a database here."""
    from flask import Flask

    from app.container import Container
    from app.http import init_http
    from app.logging import configure_logging
    from app.settings import Settings

    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False  # OPTIONS is a wrong method here: 405 in the envelope
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["permission_service"] = Container.build(settings)
    init_http(app)
    return app
