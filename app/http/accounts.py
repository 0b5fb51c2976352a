"""The account route: the broker creates, changes or deregisters one account (SPEC §5a)."""

from __future__ import annotations

from flask import Blueprint, Response

from app.http.auth import reauthenticating
from app.http.envelope import replayed, success
from app.http.signed_post import signed_post
from app.http.trace import trace_id
from app.http.wiring import current_container
from app.schemas.accounts import load_upsert_request

bp = Blueprint("accounts", __name__, url_prefix="/v1/whaleapi/account")


@bp.post("/upsert_account")
@reauthenticating
def upsert() -> Response:
    """Create or update one account of the caller's tenant: its status and (replacing them) its attributes."""
    container = current_container()
    post = signed_post(container.authenticator, load_upsert_request, container.accounts.remember_rejection)
    if post.answer is not None:
        return post.answer
    caller, idempotency, payload = post.caller, post.idempotency, post.payload
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
