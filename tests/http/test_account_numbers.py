"""Account numbers on every route (issue 18 #6, SPEC §8): the upsert and the permission update refuse a number with
a space at either end, of spaces only or outside printable ASCII (400001 naming account_no, nothing written); the
read refuses it too unless an account was stored under it before the rule, which stays readable."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text

from app.settings import Settings
from tests.cli.runner import snapshot
from tests.conftest import Api
from tests.support import READ_PATH, body_of, signed_headers

BAD = {"leading-space": " ACC-1", "trailing-space": "ACC-1 ", "spaces-only": "   ", "non-ascii": "ACC-1é"}
RULE = "account_no: must be 1 to 64 printable ASCII characters with no leading or trailing space"


def store_legacy_account(settings: Settings, account_no: str, tenant: str = "sg_mexc") -> None:
    """An account as an earlier release could store it, written past the service (the API refuses it now)."""
    engine = create_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO accounts (tenant_id, origin_id, status, created_at) VALUES (:t, :a, 'active', :at)"),
                {"t": tenant, "a": account_no, "at": datetime.now(UTC).replace(tzinfo=None)},
            )
    finally:
        engine.dispose()


def read(api: Api, account_no: str) -> Any:
    """GET with the number percent-encoded (a space is %20), signed over the query as sent."""
    query = f"account_no={quote(account_no, safe='')}"
    return api.client.get(f"{READ_PATH}?{query}", headers=signed_headers("GET", READ_PATH, query=query))


def refused(response: Any) -> str:
    body = response.get_json()
    assert (response.status_code, body["code"]) == (400, 400001), body
    return body["message"]


@pytest.mark.parametrize("account_no", BAD.values(), ids=BAD.keys())
def test_the_upsert_refuses_a_bad_number_and_writes_nothing(api: Api, seeded: Settings, account_no: str) -> None:
    before = snapshot(seeded.database_url)
    message = refused(api.upsert({"account_no": account_no, "status": "active"}))
    assert message.startswith(RULE), message
    assert snapshot(seeded.database_url)["accounts"] == before["accounts"]


@pytest.mark.parametrize("account_no", BAD.values(), ids=BAD.keys())
def test_the_permission_update_refuses_a_bad_number(api: Api, seeded: Settings, account_no: str) -> None:
    message = refused(api.update(body_of(account_no, ("stock.US", "open"))))
    assert message.startswith(RULE), message


@pytest.mark.parametrize("account_no", BAD.values(), ids=BAD.keys())
def test_the_read_refuses_a_bad_number_no_account_has(api: Api, account_no: str) -> None:
    assert refused(read(api, account_no)).startswith(RULE)


def test_an_account_stored_before_the_rule_stays_readable_but_takes_no_change(api: Api, seeded: Settings) -> None:
    """' ACC-1' stored by an earlier release: GET reads it (not ACC-1); the writes refuse its number, so a client
    whose stray space once made it can no longer change it in place of ACC-1 or beside it."""
    store_legacy_account(seeded, " ACC-1")
    legacy = read(api, " ACC-1")
    body = legacy.get_json()
    assert (legacy.status_code, body["code"]) == (200, 0), body
    assert (body["data"]["account_no"], body["data"]["account_status"]) == (" ACC-1", "active")
    opened = {p["permission_type"] for p in body["data"]["permissions"] if p["permission_status"] == "open"}
    assert opened == set()  # its own permissions, not ACC-1's (account.trade and stock.HK open)
    assert refused(api.update(body_of(" ACC-1", ("stock.US", "open")))).startswith(RULE)
    assert refused(api.upsert({"account_no": " ACC-1", "status": "deregistered"})).startswith(RULE)
    assert read(api, " ACC-1").get_json()["data"]["account_status"] == "active"


def test_a_good_number_with_an_inner_space_is_an_account_like_any(api: Api) -> None:
    created = api.upsert({"account_no": "ACC 7", "status": "active"})
    assert (created.status_code, created.get_json()["data"]["result"]) == (200, "created")
    assert read(api, "ACC 7").get_json()["data"]["account_no"] == "ACC 7"
