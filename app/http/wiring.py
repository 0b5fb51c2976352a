"""The container an app was built with, typed: one extension key, read in one place."""

from __future__ import annotations

from flask import Flask, current_app

from app.container import Container

_KEY = "permission_service"


def attach(app: Flask, container: Container) -> None:
    """Give the app the parts its routes use."""
    app.extensions[_KEY] = container


def container_of(app: Flask) -> Container:
    """The parts the app was built with."""
    container = app.extensions[_KEY]
    if not isinstance(container, Container):
        raise TypeError(f"app.extensions[{_KEY!r}] holds {type(container).__name__}, not a Container")
    return container


def current_container() -> Container:
    """The parts of the app serving the current request."""
    return container_of(current_app)
