"""Checkout shim: `gunicorn wsgi:app` run from the repository root reads this file. The settings live in the
package (app.gunicorn_conf), so an installed service uses the same ones through `permctl serve`."""

from app.gunicorn_conf import *  # noqa: F403
