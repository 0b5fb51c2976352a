"""The account route: the broker creates, changes or deregisters one account (SPEC §5a)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request

from app.errors import InvalidRequest
from app.http.auth import authenticate
from app.http.body import json_body, request_body
from app.http.envelope import replayed, success
from app.http.idempotency import idempotency_request
from app.http.trace import trace_id
from app.schemas.accounts import load_upsert_request

bp = Blueprint("accounts", __name__, url_prefix="/v1/whaleapi/account")


@bp.post("/upsert_account")
def upsert() -> Response:
    """Create or update one account of the caller's tenant: its status and (replacing them) its attributes."""
    container: Any = current_app.extensions["permission_service"]
    body = request_body()  # read first: the signature covers it and 413 comes before auth
    caller = authenticate(request, container.authenticator)
    idempotency = idempotency_request(request, body)
    try:
        payload = load_upsert_request(json_body(body))
    except InvalidRequest as error:
        stored = (
            container.accounts.remember_rejection(caller=caller, idempotency=idempotency, error=error)
            if idempotency
            else None
        )
        if stored is None:
            raise
        return replayed(stored)
    result = container.accounts.upsert(
        caller=caller,
        account_no=payload["account_no"],
        status=payload["status"],
        attributes=payload.get("attributes"),
        trace_id=trace_id(),
        idempotency=idempotency,
    )
    if result.replayed is not None:
        return replayed(result.replayed)
    return success(result.data())
