"""What every signed POST route does first: read the body, authenticate, take the Idempotency-Key, and parse
the body with the route's schema — a malformed body is remembered under its key, so a repeat gets the same
answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Response, request

from app.errors import InvalidRequest
from app.http.auth import authenticate
from app.http.body import json_body, request_body
from app.http.envelope import replayed
from app.http.idempotency import idempotency_request
from app.service.authentication import Authenticator
from app.service.model import Caller, IdempotencyRequest, StoredAnswer

Remember = Callable[..., StoredAnswer | None]  # remember_rejection(caller=, idempotency=, error=) of a service


@dataclass(frozen=True)
class SignedPost:
    """The caller, its key, and either the parsed payload or the stored answer of an earlier identical request."""

    caller: Caller
    idempotency: IdempotencyRequest | None
    payload: dict[str, Any]
    answer: Response | None = None


def signed_post(authenticator: Authenticator, load: Callable[[Any], dict[str, Any]], remember: Remember) -> SignedPost:
    """Authenticate and parse this POST (the body is read first: the signature covers it, 413 comes first)."""
    body = request_body()
    caller = authenticate(request, authenticator)
    idempotency = idempotency_request(request, body)
    try:
        return SignedPost(caller, idempotency, load(json_body(body)))
    except InvalidRequest as error:
        if idempotency is None:  # the signature was valid: it is spent all the same
            authenticator.accept(caller)
            raise
        stored = remember(caller=caller, idempotency=idempotency, error=error)
        if stored is None:
            raise
        return SignedPost(caller, idempotency, {}, replayed(stored))
