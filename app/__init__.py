"""Trade-permission policy service.

`create_app` builds the Flask WSGI app; it is imported lazily so that `permctl` and other light entry points
do not pay for Flask, SQLAlchemy and the rules engine until they need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from app.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI app from settings (default: the environment). Nothing connects to a database here."""
    from app.factory import create_app as build

    return build(settings)
