"""Read the signed parts of a Flask request and hand them to the Authenticator."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import Request

from app.errors import CredentialChanged, ServiceUnavailable
from app.http.body import request_body
from app.http.wiring import current_container
from app.service.authentication import Authenticator, SignedRequest
from app.service.model import Caller


def signed_request(request: Request) -> SignedRequest:
    """The parts of the request that its signature covers."""
    environ = request.environ
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    return SignedRequest(
        method=request.method,
        path=path,
        query=environ.get("QUERY_STRING", ""),
        body=request_body(),
        app_key=request.headers.get("X-Api-Key"),
        access_token=request.headers.get("Authorization"),
        timestamp=request.headers.get("X-Timestamp"),
        signature_header=request.headers.get("X-Api-Signature"),
    )


def authenticate(request: Request, authenticator: Authenticator) -> Caller:
    """Authenticate the request or raise Unauthenticated."""
    return authenticator.authenticate(signed_request(request))


_ATTEMPTS = 3  # a credential changed while one request was being served, and again while it was retried


P = ParamSpec("P")
R = TypeVar("R")


def reauthenticating(view: Callable[P, R]) -> Callable[P, R]:
    """Run a signed route again, credential read from the database, when the worker's cached copy of the
    caller's credential turns out to have changed: its transaction was rolled back, so nothing was kept."""

    @wraps(view)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        authenticator: Authenticator = current_container().authenticator
        for _ in range(_ATTEMPTS):
            try:
                return view(*args, **kwargs)
            except CredentialChanged as changed:
                authenticator.forget(changed.app_key)
        raise ServiceUnavailable("the credential changed while the request was served; retry")

    return run
