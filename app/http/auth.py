"""Read the signed parts of a Flask request and hand them to the Authenticator."""

from __future__ import annotations

from flask import Request

from app.http.body import request_body
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
