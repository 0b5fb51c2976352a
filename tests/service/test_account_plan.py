"""The account service's decisions as pure functions (no database): what an upsert means for a stored account."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import AccountDeregistered
from app.persistence.accounts import AccountRecord
from app.rules.language.attributes import AttributeDeclaration, AttributeSet
from app.service.accounts import AccountUpsert, Outcome, PlannedAccount, plan, refusal
from app.service.model import Caller

DECLARED = AttributeSet(
    (
        AttributeDeclaration("account_type", "cash or margin", values=("cash", "margin")),
        AttributeDeclaration("residency", "ISO 3166-1 alpha-2", pattern="[A-Z]{2}"),
    )
)
CALLER = Caller("t", "k")


def upsert(status: str = "active", attributes: dict[str, str] | None = None) -> AccountUpsert:
    return AccountUpsert(CALLER, "A-1", status, attributes, "trace")


def stored(status: str = "active", **attributes: str) -> PlannedAccount:
    record = AccountRecord(1, "t", "A-1", status, 0, attributes)
    return PlannedAccount(record, status, dict(attributes))


@pytest.mark.parametrize(
    ("state", "request_", "expected"),
    [
        (None, upsert(attributes={"account_type": "cash"}), (Outcome.CREATED, "active", {"account_type": "cash"})),
        (None, upsert("deregistered"), (Outcome.CREATED, "deregistered", {})),
        (stored(account_type="cash"), upsert(), (Outcome.UNCHANGED, "active", {"account_type": "cash"})),  # kept
        (stored(account_type="cash"), upsert(attributes={}), (Outcome.UPDATED, "active", {})),  # cleared
        (
            stored(account_type="cash", residency="SG"),
            upsert(attributes={"residency": "HK"}),
            (Outcome.UPDATED, "active", {"residency": "HK"}),  # replaced as a whole
        ),
        (stored(), upsert("deregistered"), (Outcome.UPDATED, "deregistered", {})),
        (stored("deregistered"), upsert("deregistered"), (Outcome.UNCHANGED, "deregistered", {})),
        (
            stored("deregistered", account_type="cash"),
            upsert("deregistered", {"account_type": "cash"}),
            (Outcome.UNCHANGED, "deregistered", {"account_type": "cash"}),
        ),
    ],
    ids=["create", "create-deregistered", "omitted-keeps", "empty-clears", "replace", "deregister", "repeat", "same"],
)
def test_plan(state: PlannedAccount | None, request_: AccountUpsert, expected: tuple[Any, ...]) -> None:
    assert plan(state, request_) == expected


@pytest.mark.parametrize(
    "request_",
    [
        upsert(),
        upsert(attributes={"account_type": "cash"}),
        upsert("deregistered", {}),
        upsert("deregistered", {"x": "y"}),
    ],
    ids=["reactivate", "reactivate-with-attributes", "clear-attributes", "change-attributes"],
)
def test_a_deregistered_account_cannot_change(request_: AccountUpsert) -> None:
    with pytest.raises(AccountDeregistered, match="cannot be changed or reactivated"):
        plan(stored("deregistered", residency="SG"), request_)


def test_refusal_names_the_field_and_the_value() -> None:
    assert refusal(upsert(attributes={"account_type": "cash", "residency": "SG"}), DECLARED) is None
    assert refusal(upsert(), DECLARED) is None
    undeclared = refusal(upsert(attributes={"colour": "red"}), DECLARED)
    assert undeclared is not None and (undeclared.field, undeclared.value) == (("attributes", "colour"), "red")
    assert undeclared.message == "attributes.colour 'red': not a declared attribute (declared: account_type, residency)"
    disallowed = refusal(upsert(attributes={"residency": "Singapore"}), DECLARED)
    assert disallowed is not None
    assert disallowed.message == "attributes.residency 'Singapore': not allowed (allowed: text matching [A-Z]{2})"
    status = refusal(upsert("closed"), DECLARED)
    assert status is not None and status.message == "status 'closed': must be one of active, deregistered"
