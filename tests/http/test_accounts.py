"""POST /v1/whaleapi/account/upsert_account (SPEC §5a, issue 10) in-process: create, read back, replace, repeat,
refusals naming the field, deregistered is final, tenant scoping, Idempotency-Key, and the account audit trail."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from app.http.wiring import container_of
from app.settings import Settings
from tests.conftest import Api
from tests.support import OTHER, UPSERT_PATH, Credentials, body_of, signed_headers

MARGIN_SG = {"account_type": "margin", "residency": "SG"}


def audit_rows(settings: Settings, account_no: str, tenant: str = "sg_mexc") -> list[dict[str, Any]]:
    """The account's audit rows, oldest first, as plain dicts (attributes decoded)."""
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT trace_id, tenant_id, app_key, account_no, status_before, status_after, attributes_before,"
                    " attributes_after, rule_set_version FROM account_audit WHERE account_no = :a AND tenant_id = :t"
                    " ORDER BY id"
                ),
                {"a": account_no, "t": tenant},
            ).mappings()
            return [
                {
                    **row,
                    "attributes_before": _decoded(row["attributes_before"]),
                    "attributes_after": _decoded(row["attributes_after"]),
                }
                for row in rows
            ]
    finally:
        engine.dispose()


def _decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def ok(response: Any) -> dict[str, Any]:
    """The data of a 200 / code 0 answer."""
    body = response.get_json()
    assert (response.status_code, body["code"], body["message"]) == (200, 0, "success"), body
    return body["data"]


def refused(response: Any, status: int, code: int) -> str:
    """The message of a refusal with this HTTP status and code (and no failure_index: this is not the update)."""
    body = response.get_json()
    assert (response.status_code, body["code"]) == (status, code), body
    assert body["data"] == {}, body
    return body["message"]


def test_create_read_back_replace_and_repeat(api: Api, seeded: Settings) -> None:
    created = ok(api.upsert({"account_no": "NEW-1", "status": "active", "attributes": MARGIN_SG}))
    assert created == {"account_no": "NEW-1", "status": "active", "attributes": MARGIN_SG, "result": "created"}
    read = api.read("NEW-1").get_json()["data"]
    assert (read["account_status"], read["attributes"]) == ("active", MARGIN_SG)
    assert all(p["permission_status"] == "close" for p in read["permissions"])

    replaced = ok(api.upsert({"account_no": "NEW-1", "status": "active", "attributes": {"account_type": "cash"}}))
    assert (replaced["result"], replaced["attributes"]) == ("updated", {"account_type": "cash"})  # residency gone
    assert api.read("NEW-1").get_json()["data"]["attributes"] == {"account_type": "cash"}

    again = ok(api.upsert({"account_no": "NEW-1", "status": "active", "attributes": {"account_type": "cash"}}))
    assert again["result"] == "unchanged"
    kept = ok(api.upsert({"account_no": "NEW-1", "status": "active"}))  # attributes omitted: kept
    assert (kept["result"], kept["attributes"]) == ("unchanged", {"account_type": "cash"})

    rows = audit_rows(seeded, "NEW-1")
    assert len(rows) == 2  # the repeats wrote nothing
    assert rows[0]["status_before"] is None and rows[0]["attributes_before"] is None
    assert (rows[0]["status_after"], rows[0]["attributes_after"]) == ("active", MARGIN_SG)
    assert (rows[1]["attributes_before"], rows[1]["attributes_after"]) == (MARGIN_SG, {"account_type": "cash"})
    assert {(r["tenant_id"], r["app_key"]) for r in rows} == {("sg_mexc", "demo-key")}
    version = container_of(api.client.application).rules.engine.version
    assert {r["rule_set_version"] for r in rows} == {version}

    cleared = ok(api.upsert({"account_no": "NEW-1", "status": "active", "attributes": {}}))
    assert (cleared["result"], cleared["attributes"]) == ("updated", {})
    assert api.read("NEW-1").get_json()["data"]["attributes"] == {}
    assert audit_rows(seeded, "NEW-1")[-1]["attributes_after"] == {}


def test_an_existing_account_gets_attributes_and_keeps_its_permissions(api: Api, seeded: Settings) -> None:
    before = api.statuses("ACC-1")
    assert api.read("ACC-1").get_json()["data"]["attributes"] == {}  # GET: an object, empty when none
    updated = ok(api.upsert({"account_no": "ACC-1", "status": "active", "attributes": {"investor_class": "retail"}}))
    assert updated["result"] == "updated"
    assert api.statuses("ACC-1") == before
    assert api.update(body_of("ACC-1", ("stock.US", "open"))).status_code == 200


def test_the_trace_id_is_in_the_audit_row(api: Api, seeded: Settings) -> None:
    response = api.upsert({"account_no": "NEW-2", "status": "active"}, headers={"X-Trace-Id": "onboarding-42"})
    assert response.headers["X-Trace-Id"] == "onboarding-42"
    assert [r["trace_id"] for r in audit_rows(seeded, "NEW-2")] == ["onboarding-42"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"account_no": "NEW-3", "status": "active", "attributes": {"colour": "red"}},
            "attributes.colour 'red': not a declared attribute (declared: account_type, residency, investor_class)",
        ),
        (
            {"account_no": "NEW-3", "status": "active", "attributes": {"residency": "sg"}},
            "attributes.residency 'sg': not allowed (allowed: text matching [A-Z]{2})",
        ),
        (
            {
                "account_no": "NEW-3",
                "status": "active",
                "attributes": {"account_type": "cash", "investor_class": "vip"},
            },
            "attributes.investor_class 'vip': not allowed (allowed: one of retail, professional)",
        ),
        ({"status": "active"}, "account_no: is required"),
        ({"account_no": "", "status": "active"}, "account_no: Length must be between 1 and 64."),
        ({"account_no": 12, "status": "active"}, "account_no: must be a string"),
        ({"account_no": "NEW-3", "status": "closed"}, "status: 'closed' is not one of: active, deregistered"),
        ({"account_no": "NEW-3"}, "status: is required"),
        ({"account_no": "NEW-3", "status": "active", "attributes": ["margin"]}, "attributes: must be a JSON object"),
        ({"account_no": "NEW-3", "status": "active", "attributes": "margin"}, "attributes: must be a JSON object"),
        ({"account_no": "NEW-3", "status": "active", "attributes": None}, "attributes: must be a JSON object"),
        (
            {"account_no": "NEW-3", "status": "active", "attributes": {"account_type": 1}},
            "attributes.account_type: must be a string",
        ),
        (
            {"account_no": "NEW-3", "status": "active", "attributes": {"residency": "S" * 65}},
            "attributes.residency: must be a string of 1 to 64 characters",
        ),
        (
            {"account_no": "NEW-3", "status": "active", "attributes": {f"a{i}": "x" for i in range(33)}},
            "attributes: at most 32 attributes (got 33)",
        ),
        (["NEW-3"], "body must be a JSON object"),
    ],
    ids=[
        "undeclared-name",
        "disallowed-pattern",
        "disallowed-value",
        "missing-account",
        "empty-account",
        "account-not-text",
        "unknown-status",
        "missing-status",
        "attributes-array",
        "attributes-string",
        "attributes-null",
        "value-not-text",
        "value-too-long",
        "too-many",
        "not-an-object",
    ],
)
def test_refusals_name_the_field_and_write_nothing(api: Api, seeded: Settings, body: Any, message: str) -> None:
    assert refused(api.upsert(json.dumps(body).encode()), 400, 400001).startswith(message)
    assert api.read("NEW-3").status_code == 404
    assert audit_rows(seeded, "NEW-3") == []


def test_not_json_and_wrong_content_type_are_400001(api: Api) -> None:
    assert "not valid JSON" in refused(api.upsert(b"{"), 400, 400001)
    body = b'{"account_no":"NEW-4","status":"active"}'
    headers = signed_headers("POST", UPSERT_PATH, body)
    headers["Content-Type"] = "text/plain"
    assert refused(api.client.post(UPSERT_PATH, data=body, headers=headers), 400, 400001) == (
        "Content-Type must be application/json"
    )
    assert "duplicate key 'status'" in refused(
        api.upsert(b'{"account_no":"N","status":"active","status":"x"}'), 400, 400001
    )


def test_deregistered_is_final(api: Api, seeded: Settings) -> None:
    ok(api.upsert({"account_no": "ACC-2", "status": "active", "attributes": {"account_type": "cash"}}))
    gone = ok(api.upsert({"account_no": "ACC-2", "status": "deregistered"}))
    assert (gone["status"], gone["result"], gone["attributes"]) == ("deregistered", "updated", {"account_type": "cash"})

    update = api.update(body_of("ACC-2", ("stock.US", "open")))
    assert (update.status_code, update.get_json()["code"]) == (409, 409001)
    for body in (
        {"account_no": "ACC-2", "status": "active"},  # reactivation
        {"account_no": "ACC-2", "status": "active", "attributes": {"account_type": "cash"}},
        {"account_no": "ACC-2", "status": "deregistered", "attributes": {"account_type": "margin"}},
        {"account_no": "ACC-2", "status": "deregistered", "attributes": {}},
    ):
        assert "deregistered" in refused(api.upsert(body), 409, 409001)
    # A repeat that changes nothing is a success, with or without the attributes.
    assert ok(api.upsert({"account_no": "ACC-2", "status": "deregistered"}))["result"] == "unchanged"
    same = {"account_no": "ACC-2", "status": "deregistered", "attributes": {"account_type": "cash"}}
    assert ok(api.upsert(same))["result"] == "unchanged"
    rows = audit_rows(seeded, "ACC-2")  # the fixture load's creation, then this test's two changes
    assert [(r["app_key"], r["status_before"], r["status_after"]) for r in rows] == [
        ("permctl", None, "active"),
        ("demo-key", "active", "active"),
        ("demo-key", "active", "deregistered"),
    ]
    assert api.read("ACC-2").get_json()["data"]["account_status"] == "deregistered"


def test_an_account_created_deregistered_stays_so(api: Api) -> None:
    assert ok(api.upsert({"account_no": "NEW-5", "status": "deregistered"}))["result"] == "created"
    refused(api.upsert({"account_no": "NEW-5", "status": "active"}), 409, 409001)


def test_unsigned_and_badly_signed_are_401001(api: Api) -> None:
    body = b'{"account_no":"NEW-6","status":"active"}'
    unsigned = api.client.post(UPSERT_PATH, data=body, headers={"Content-Type": "application/json"})
    assert (unsigned.status_code, unsigned.get_json()["code"]) == (401, 401001)
    assert api.upsert(body, creds=Credentials(app_secret="wrong")).status_code == 401
    assert api.read("NEW-6").status_code == 404


def test_a_replayed_signature_is_refused(api: Api) -> None:
    body = b'{"account_no":"NEW-7","status":"active"}'
    signed = signed_headers("POST", UPSERT_PATH, body)
    assert api.client.post(UPSERT_PATH, data=body, headers=signed).status_code == 200
    again = api.client.post(UPSERT_PATH, data=body, headers=signed)
    assert (again.status_code, again.get_json()["code"]) == (401, 401001)
    assert "replay" in again.get_json()["message"]


def test_another_tenants_upsert_never_touches_this_tenants_account(api: Api, seeded: Settings) -> None:
    ok(api.upsert({"account_no": "SHARED-1", "status": "active", "attributes": MARGIN_SG}))
    theirs = ok(
        api.upsert({"account_no": "SHARED-1", "status": "deregistered", "attributes": {"residency": "HK"}}, creds=OTHER)
    )
    assert theirs["result"] == "created"  # their own account of that number
    mine = api.read("SHARED-1").get_json()["data"]
    assert (mine["account_status"], mine["attributes"]) == ("active", MARGIN_SG)
    other = api.read("SHARED-1", creds=OTHER).get_json()["data"]
    assert (other["account_status"], other["attributes"]) == ("deregistered", {"residency": "HK"})
    # Nor can they change it: ACC-1 exists only in sg_mexc, so theirs is a new account.
    assert ok(api.upsert({"account_no": "ACC-1", "status": "deregistered"}, creds=OTHER))["result"] == "created"
    assert api.read("ACC-1").get_json()["data"]["account_status"] == "active"
    assert len(audit_rows(seeded, "SHARED-1")) == 1


def test_an_idempotency_key_repeat_replays_the_first_answer(api: Api, seeded: Settings) -> None:
    body = {"account_no": "NEW-8", "status": "active", "attributes": {"residency": "SG"}}
    first = api.upsert(body, headers={"Idempotency-Key": "open-NEW-8"})
    assert ok(first)["result"] == "created"
    # Meanwhile the account changes; the repeat still gets the first answer and writes nothing.
    ok(api.upsert({"account_no": "NEW-8", "status": "active", "attributes": {"residency": "HK"}}))
    again = api.upsert(body, headers={"Idempotency-Key": "open-NEW-8"})
    assert again.headers["Idempotency-Replayed"] == "true"
    assert (again.status_code, again.get_json()) == (200, first.get_json())
    assert api.read("NEW-8").get_json()["data"]["attributes"] == {"residency": "HK"}
    assert len(audit_rows(seeded, "NEW-8")) == 2

    other = api.upsert({**body, "status": "deregistered"}, headers={"Idempotency-Key": "open-NEW-8"})
    assert (other.status_code, other.get_json()["code"]) == (422, 400105)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"account_no": "NEW-9", "status": "active", "attributes": {"colour": "red"}}, 400, 400001),
        ({"account_no": "NEW-9", "status": "frozen"}, 400, 400001),
        ({"account_no": "ACC-GONE", "status": "active"}, 409, 409001),
    ],
    ids=["undeclared", "malformed", "deregistered"],
)
def test_a_refusal_under_an_idempotency_key_is_replayed(api: Api, body: Any, status: int, code: int) -> None:
    first = api.upsert(body, headers={"Idempotency-Key": "k-1"})
    message = refused(first, status, code)
    again = api.upsert(body, headers={"Idempotency-Key": "k-1"})
    assert again.headers["Idempotency-Replayed"] == "true"
    assert refused(again, status, code) == message


def test_an_upsert_as_a_workers_first_request_adopts_the_rule_set_it_runs(api: Api, seeded: Settings) -> None:
    """The first look of a worker may adopt its set (nothing published yet): it must happen before the upsert's
    transaction, whose write lock (SQLite) the adoption would otherwise wait for until it failed."""
    assert ok(api.upsert({"account_no": "FIRST-1", "status": "active"}))["result"] == "created"
    engine = create_engine(seeded.database_url)
    try:
        with engine.connect() as conn:
            published = list(conn.execute(text("SELECT id, kind FROM rule_set_publications")))
    finally:
        engine.dispose()
    assert [tuple(row) for row in published] == [(1, "adopted")]
    rules = container_of(api.client.application).rules
    assert rules.last_reload_error is None and rules.live_version == rules.published_version
