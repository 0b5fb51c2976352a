"""The two permission routes: update (POST) and read (GET)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from app.container import Container
from app.errors import AccountNotFound
from app.http.auth import authenticate, reauthenticating
from app.http.envelope import replayed, success
from app.http.signed_post import signed_post
from app.http.trace import trace_id
from app.http.wiring import current_container
from app.schemas.permissions import load_get_query, load_update_request, refuse_new_account_no
from app.service.model import iso_utc

bp = Blueprint("permissions", __name__, url_prefix="/v1/whaleapi/account")


def _container() -> Container:
    return current_container()


@bp.post("/update_account_trade_permission")
@reauthenticating
def update() -> Response:
    """Apply a batch of permission changes to one account, all or nothing."""
    container = _container()
    post = signed_post(container.authenticator, load_update_request, container.permissions.remember_rejection)
    if post.answer is not None:
        return post.answer
    caller, idempotency, payload = post.caller, post.idempotency, post.payload
    result = container.permissions.update(
        caller=caller,
        account_no=payload["account_no"],
        changes=payload["changes"],
        trace_id=trace_id(),
        idempotency=idempotency,
    )
    if result.replayed is not None:
        return replayed(result.replayed)
    return success(dict(result.data))  # the rules' answer: data.warnings when a warn policy held (SPEC §7a)


@bp.get("/get_account_trade_permission")
@reauthenticating
def read() -> Response:
    """Read an account's permissions: every value its tenant's config enables, in catalog order."""
    container = _container()
    caller = authenticate(request, container.authenticator)
    query = load_get_query(request.args.to_dict())  # any stored number: one stored before SPEC §8's rule is read
    try:
        account = container.permissions.read(caller=caller, account_no=query["account_no"])
    except AccountNotFound:
        refuse_new_account_no(query["account_no"])  # no account has it: say what an account number is
        raise
    return success(
        {
            "account_no": account.account_no,
            "account_status": account.account_status,
            "permissions": [
                {
                    "permission_type": p.permission_type,
                    "permission_status": p.permission_status,
                    "updated_at": iso_utc(p.updated_at),
                }
                for p in account.permissions
            ],
            "attributes": dict(account.attributes),
        }
    )
