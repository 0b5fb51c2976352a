"""Checkout shim: `gunicorn wsgi:app` from the repository root. The app lives in the package (app.wsgi)."""

from app.wsgi import app

__all__ = ["app"]
