"""GET get_account_trade_permission (SPEC §5), and replay protection of POST against GET (SPEC §4)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.http.wiring import container_of
from tests.conftest import Api
from tests.support import BARE, DEMO, OTHER, READ_PATH, UPDATE_PATH, Credentials, body_of, signed_headers

SG_MEXC = ("account.*", "stock.*", "options.US", "trade.*")


def catalog(app: Any) -> Any:
    return container_of(app).rules.engine.rule_set.catalog


def read_ok(api: Api, account_no: str, creds: Credentials = DEMO) -> dict[str, Any]:
    response = api.read(account_no, creds=creds)
    body = response.get_json()
    assert (response.status_code, body["code"], body["message"]) == (200, 0, "success"), body
    assert set(body["data"]) == {"account_no", "account_status", "permissions", "attributes"}
    assert isinstance(body["data"]["attributes"], dict)
    return body["data"]


def parse_utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    parsed = datetime.fromisoformat(text[:-1] + "+00:00")
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def test_lists_every_enabled_value_in_catalog_order(api: Api, app: Any) -> None:
    data = read_ok(api, "ACC-1")

    assert (data["account_no"], data["account_status"]) == ("ACC-1", "active")
    expected = catalog(app).expand(SG_MEXC)
    assert len(expected) == 9 + 9 + 1 + 4
    assert [p["permission_type"] for p in data["permissions"]] == list(expected)
    for permission in data["permissions"]:
        assert set(permission) == {"permission_type", "permission_status", "updated_at"}
        if permission["permission_type"] in ("account.trade", "stock.HK"):
            assert permission["permission_status"] == "open"
            parse_utc(permission["updated_at"])
        else:
            assert (permission["permission_status"], permission["updated_at"]) == ("close", None), permission


def test_updated_at_follows_a_write(api: Api) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    response = api.update(body_of("ACC-2", ("stock.US", "open"), ("trade.bo", "open")))
    assert (response.status_code, response.get_json()["code"]) == (200, 0)
    after = datetime.now(UTC) + timedelta(seconds=1)

    permissions = {p["permission_type"]: p for p in read_ok(api, "ACC-2")["permissions"]}

    for name in ("stock.US", "trade.bo"):
        assert permissions[name]["permission_status"] == "open"
        assert before <= parse_utc(permissions[name]["updated_at"]) <= after
    assert permissions["stock.US"]["updated_at"] == permissions["trade.bo"]["updated_at"]
    assert permissions["stock.HK"] == {"permission_type": "stock.HK", "permission_status": "close", "updated_at": None}

    # Closing keeps a timestamp: the permission has now been set.
    assert api.update(body_of("ACC-2", ("stock.US", "close"))).status_code == 200
    closed = {p["permission_type"]: p for p in read_ok(api, "ACC-2")["permissions"]}["stock.US"]
    assert closed["permission_status"] == "close"
    assert parse_utc(closed["updated_at"]) >= parse_utc(permissions["stock.US"]["updated_at"])


def test_deregistered_account_can_be_read(api: Api, app: Any) -> None:
    data = read_ok(api, "ACC-GONE")
    assert (data["account_no"], data["account_status"]) == ("ACC-GONE", "deregistered")
    assert [p["permission_type"] for p in data["permissions"]] == list(catalog(app).expand(SG_MEXC))
    assert {p["permission_status"] for p in data["permissions"]} == {"close"}


def test_other_tenant_sees_only_its_config(api: Api, app: Any) -> None:
    data = read_ok(api, "OTHER-1", creds=OTHER)
    types = [p["permission_type"] for p in data["permissions"]]
    assert types == list(catalog(app).expand(("stock.*",)))
    assert len(types) == 9 and all(t.startswith("stock.") for t in types)


def test_tenant_without_config_sees_an_empty_list(api: Api) -> None:
    assert read_ok(api, "BARE-1", creds=BARE) == {
        "account_no": "BARE-1",
        "account_status": "active",
        "permissions": [],
        "attributes": {},
    }


@pytest.mark.parametrize(
    ("account_no", "creds"),
    [("OTHER-1", DEMO), ("ACC-1", OTHER), ("ACC-1", BARE), ("NOPE", DEMO), ("acc-1", DEMO)],
    ids=["other-tenants-account", "seen-from-other-tenant", "seen-from-bare-tenant", "unknown", "case-differs"],
)
def test_account_outside_the_tenant_is_not_found(api: Api, account_no: str, creds: Credentials) -> None:
    response = api.read(account_no, creds=creds)
    body = response.get_json()
    assert (response.status_code, body["code"]) == (404, 404001), body
    assert account_no in body["message"]
    assert "permissions" not in body["data"]


@pytest.mark.parametrize(
    "query",
    ["", "account=ACC-1", "account_no=", "account_no=" + "A" * 65],
    ids=["no-query", "misnamed", "empty", "65-chars"],
)
def test_missing_or_bad_account_no_is_invalid(api: Api, query: str) -> None:
    headers = signed_headers("GET", READ_PATH, query=query)
    response = api.client.get(f"{READ_PATH}?{query}" if query else READ_PATH, headers=headers)
    body = response.get_json()
    assert (response.status_code, body["code"]) == (400, 400001), body
    assert "account_no" in body["message"]


def test_the_same_signed_get_twice_is_not_a_replay(api: Api) -> None:
    query = "account_no=ACC-1"
    headers = signed_headers("GET", READ_PATH, query=query)
    first = api.client.get(f"{READ_PATH}?{query}", headers=headers)
    second = api.client.get(f"{READ_PATH}?{query}", headers=headers)
    assert (first.status_code, second.status_code) == (200, 200), second.get_json()
    assert first.get_json() == second.get_json()


def test_the_same_signed_post_twice_is_a_replay(api: Api) -> None:
    body = body_of("ACC-2", ("stock.US", "open"))
    headers = signed_headers("POST", UPDATE_PATH, body)

    first = api.client.post(UPDATE_PATH, data=body, headers=headers)
    assert (first.status_code, first.get_json()["code"]) == (200, 0)
    assert api.update(body_of("ACC-2", ("stock.US", "close"))).status_code == 200  # moved on since

    second = api.client.post(UPDATE_PATH, data=body, headers=headers)
    answer = second.get_json()
    assert (second.status_code, answer["code"], answer["data"]) == (401, 401001, {"failure_index": 0}), answer
    assert "replay" in answer["message"].lower()
    assert api.statuses("ACC-2")["stock.US"] == "close"  # the replay wrote nothing


def test_a_rejected_post_cannot_be_replayed_either(api: Api) -> None:
    body = body_of("ACC-2", ("flag.options", "open"))
    headers = signed_headers("POST", UPDATE_PATH, body)
    first = api.client.post(UPDATE_PATH, data=body, headers=headers)
    assert first.get_json()["code"] == 400101
    second = api.client.post(UPDATE_PATH, data=body, headers=headers)
    assert (second.status_code, second.get_json()["code"]) == (401, 401001)
    assert "replay" in second.get_json()["message"].lower()


def test_the_same_body_signed_with_another_timestamp_is_not_a_replay(api: Api) -> None:
    body = body_of("ACC-2", ("flag.options", "open"))
    now = int(time.time())
    for timestamp in (str(now), str(now + 1), f"{now}.5"):
        response = api.client.post(
            UPDATE_PATH, data=body, headers=signed_headers("POST", UPDATE_PATH, body, timestamp=timestamp)
        )
        assert (response.status_code, response.get_json()["code"]) == (400, 400101), timestamp
