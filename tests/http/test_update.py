"""POST update_account_trade_permission: every per-change code, the evaluation order (SPEC §3.2),
atomic writes and the audit trail (SPEC §5), through the signing Flask test client."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from app.http.wiring import container_of
from app.persistence.models import PermissionAudit
from tests.conftest import Api
from tests.support import BARE, DEMO, OTHER, Credentials, body_of

Change = tuple[str, str] | dict[str, Any]

# Two valid changes for ACC-1 (both never set, so both move close → open): a failure after them has index 2.
VALID = (("stock.US", "open"), ("stock.JP", "open"))
MISSING = object()  # a field left out of the change


def send(
    api: Api, account_no: str, *changes: Change, creds: Credentials = DEMO, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """POST a signed update; the HTTP status and the decoded envelope."""
    response = api.update(body_of(account_no, *changes), creds=creds, headers=headers)
    body = json.loads(response.get_data())
    assert set(body) == {"code", "message", "data"}, body
    return response.status_code, body


def audit_rows(app: Any) -> list[PermissionAudit]:
    """Every audit row, oldest first."""
    with container_of(app).session_factory() as session:
        return list(session.scalars(select(PermissionAudit).order_by(PermissionAudit.id)))


def audit_count(app: Any) -> int:
    with container_of(app).session_factory() as session:
        return session.scalar(select(func.count()).select_from(PermissionAudit))


def place(index: int, name: str, value: Any = MISSING) -> str:
    """How a message starts: changes[i].field, then the value (quoted when it is text), or ':' when missing."""
    if value is MISSING:
        return f"changes[{index}].{name}:"
    return f"changes[{index}].{name} '{value}':" if isinstance(value, str) else f"changes[{index}].{name} "


@dataclass(frozen=True)
class Rejection:
    """A request that a per-change rule (or the account check) rejects, and what must come back."""

    changes: tuple[Change, ...]
    code: int
    failure_index: int
    rule_id: str | None
    message_start: str
    account_no: str = "ACC-1"
    creds: Credentials = DEMO
    http_status: int = 400


def type_case(value: Any, rule_id: str, *, index: int = 2, **kw: Any) -> Rejection:
    """A change with this permission_type (omitted when value is MISSING) after `index` valid changes."""
    change: dict[str, Any] = {"permission_status": "open"}
    if value is not MISSING:
        change["permission_type"] = value
    return Rejection((*VALID[:index], change), 400101, index, rule_id, place(index, "permission_type", value), **kw)


def status_case(value: Any, rule_id: str, *, index: int = 2) -> Rejection:
    change: dict[str, Any] = {"permission_type": "stock.SG"}
    if value is not MISSING:
        change["permission_status"] = value
    return Rejection((*VALID[:index], change), 400102, index, rule_id, place(index, "permission_status", value))


REJECTIONS: dict[str, Rejection] = {
    # 400101, one rule at a time
    "type-missing": type_case(MISSING, "type-required"),
    "type-number": type_case(7, "type-must-be-text"),
    "type-float": type_case(1.5, "type-must-be-text"),
    "type-bool": type_case(True, "type-must-be-text"),
    "type-null": type_case(None, "type-must-be-text"),
    "type-list": type_case(["stock.US"], "type-must-be-text"),
    "type-object": type_case({"stock": "US"}, "type-must-be-text"),
    "type-flag-options": type_case("flag.options", "type-banned-group"),
    "type-flag-unknown-member": type_case("flag.anything", "type-banned-group", index=0),
    "type-lowercase-market": type_case("stock.us", "type-in-catalog"),
    "type-capitalised-product": type_case("Stock.US", "type-in-catalog"),
    "type-unknown-market": type_case("stock.XX", "type-in-catalog"),
    "type-questionnaire": type_case("risk.questionnaire", "type-in-catalog"),
    "type-empty": type_case("", "type-in-catalog"),
    "type-padded": type_case(" stock.US", "type-in-catalog"),
    "type-not-enabled": type_case("options.HK", "type-enabled-for-tenant"),
    "type-not-enabled-va": type_case("va.OSL", "type-enabled-for-tenant", index=1),
    "type-not-enabled-other-tenant": Rejection(
        (("stock.US", "open"), ("account.trade", "open")),
        400101,
        1,
        "type-enabled-for-tenant",
        place(1, "permission_type", "account.trade"),
        account_no="OTHER-1",
        creds=OTHER,
    ),
    # 400102
    "status-missing": status_case(MISSING, "status-required"),
    "status-number": status_case(1, "status-must-be-text"),
    "status-null": status_case(None, "status-must-be-text"),
    "status-bool": status_case(False, "status-must-be-text"),
    "status-list": status_case(["open"], "status-must-be-text"),
    "status-object": status_case({"open": True}, "status-must-be-text"),
    "status-capitalised": status_case("Open", "status-open-or-close"),
    "status-opened": status_case("opened", "status-open-or-close"),
    "status-upper": status_case("CLOSE", "status-open-or-close", index=0),
    "status-empty": status_case("", "status-open-or-close"),
    "status-padded": status_case("open ", "status-open-or-close"),
    # 400104
    "duplicate": Rejection(
        (*VALID, ("stock.SG", "open"), ("stock.JP", "close")),
        400104,
        3,
        "no-duplicate-type",
        place(3, "permission_type", "stock.JP"),
    ),
    # 400103
    "no-op-open": Rejection(
        (*VALID, ("account.trade", "open")), 400103, 2, "must-change-state", place(2, "permission_status", "open")
    ),
    "no-op-never-set-counts-as-close": Rejection(
        (("stock.US", "open"), ("options.US", "close")),
        400103,
        1,
        "must-change-state",
        place(1, "permission_status", "close"),
    ),
    "no-op-first": Rejection(
        (("stock.HK", "open"), ("flag.options", "open")),
        400103,
        0,
        "must-change-state",
        place(0, "permission_status", "open"),
    ),
    # order inside one change: type before status
    "type-before-status": Rejection(
        (*VALID, {"permission_type": "flag.options", "permission_status": "Open"}),
        400101,
        2,
        "type-banned-group",
        place(2, "permission_type", "flag.options"),
    ),
    "type-before-missing-status": Rejection(
        ({"permission_type": 5},), 400101, 0, "type-must-be-text", place(0, "permission_type", 5)
    ),
    "nothing-given": Rejection(({},), 400101, 0, "type-required", place(0, "permission_type")),
    # order across changes: the first failing change wins, however bad the later ones are
    "first-failure-wins": Rejection(
        (("stock.US", "Open"), ("flag.options", "open"), {"permission_type": 1}),
        400102,
        0,
        "status-open-or-close",
        place(0, "permission_status", "Open"),
    ),
    "first-failure-wins-no-op": Rejection(
        (*VALID, ("stock.HK", "open"), ("stock.us", "open")),
        400103,
        2,
        "must-change-state",
        place(2, "permission_status", "open"),
    ),
    # order among the rules: status before duplicate, duplicate before no-op
    "status-before-duplicate": Rejection(
        (*VALID, ("stock.US", "opened")), 400102, 2, "status-open-or-close", place(2, "permission_status", "opened")
    ),
    "duplicate-before-no-op": Rejection(
        (*VALID, ("stock.US", "close")), 400104, 2, "no-duplicate-type", place(2, "permission_type", "stock.US")
    ),
    "duplicate-of-a-no-op-before-no-op": Rejection(
        (("account.trade", "close"), ("account.trade", "open")),
        400104,
        1,
        "no-duplicate-type",
        place(1, "permission_type", "account.trade"),
    ),
    # account errors come before any change error and have failure_index 0
    "unknown-account": Rejection(
        (("flag.options", "Open"),), 404001, 0, None, "account_no 'NOPE'", account_no="NOPE", http_status=404
    ),
    "other-tenants-account": Rejection(
        (("stock.US", "open"),), 404001, 0, None, "account_no 'OTHER-1'", account_no="OTHER-1", http_status=404
    ),
    "account-seen-from-other-tenant": Rejection(
        (("stock.US", "open"),), 404001, 0, None, "account_no 'ACC-1'", creds=OTHER, http_status=404
    ),
    "deregistered-account": Rejection(
        (*VALID, ("flag.options", "x")),
        409001,
        0,
        None,
        "account_no 'ACC-GONE'",
        account_no="ACC-GONE",
        http_status=409,
    ),
}


@pytest.mark.parametrize("case", REJECTIONS.values(), ids=REJECTIONS.keys())
def test_rejections(api: Api, app: Any, case: Rejection) -> None:
    readable = case.http_status == 400
    before = api.statuses(case.account_no, creds=case.creds) if readable else None
    audited = audit_count(app)

    status, body = send(api, case.account_no, *case.changes, creds=case.creds)

    assert (status, body["code"], body["data"]["failure_index"]) == (case.http_status, case.code, case.failure_index), (
        body
    )
    assert body["data"].get("rule_id") == case.rule_id, body
    assert body["message"].startswith(case.message_start), body["message"]
    # A rejected request changes nothing and writes no audit row.
    if readable:
        assert api.statuses(case.account_no, creds=case.creds) == before
    assert audit_count(app) == audited


def test_tenant_without_config_may_use_nothing(api: Api, app: Any) -> None:
    audited = audit_count(app)
    catalog = container_of(app).rules.engine.rule_set.catalog
    for index, permission_type in enumerate(catalog.values):
        status, body = send(api, "BARE-1", (permission_type, "open"), creds=BARE)
        assert (status, body["code"], body["data"]) == (
            400,
            400101,
            {"failure_index": 0, "rule_id": "type-enabled-for-tenant"},
        ), (index, body)
        assert body["message"].startswith(place(0, "permission_type", permission_type))
    assert api.statuses("BARE-1", creds=BARE) == {}
    assert audit_count(app) == audited


def test_every_catalog_value_outside_the_config_is_rejected(api: Api, app: Any) -> None:
    catalog = container_of(app).rules.engine.rule_set.catalog
    enabled = set(catalog.expand(("account.*", "stock.*", "options.US", "trade.*")))
    outside = [v for v in catalog.values if v not in enabled]
    assert len(outside) == len(catalog) - len(enabled) > 0
    for permission_type in outside:
        status, body = send(api, "ACC-2", ("stock.US", "open"), (permission_type, "open"))
        assert (status, body["code"], body["data"]) == (
            400,
            400101,
            {"failure_index": 1, "rule_id": "type-enabled-for-tenant"},
        ), (permission_type, body)
    # Every enabled value passes the type rules (the batch is valid as a whole and is written).
    changes = [(v, "open") for v in catalog.values if v in enabled]
    status, body = send(api, "ACC-2", *changes)
    assert (status, body) == (200, {"code": 0, "message": "success", "data": {"failure_index": 0}})
    assert {t for t, s in api.statuses("ACC-2").items() if s == "open"} == enabled


def test_batch_is_written_whole(api: Api) -> None:
    changes = (
        ("stock.US", "open"),
        ("account.trade", "close"),
        ("options.US", "open"),
        ("stock.HK", "close"),
        ("trade.openapi", "open"),
    )
    before = api.statuses("ACC-1")
    assert before["account.trade"] == before["stock.HK"] == "open"

    status, body = send(api, "ACC-1", *changes)

    assert (status, body) == (200, {"code": 0, "message": "success", "data": {"failure_index": 0}})
    after = api.statuses("ACC-1")
    assert after == {**before, **dict(changes)}
    assert api.statuses("ACC-2") == {t: "close" for t in before}  # another account is untouched


def test_unknown_fields_are_ignored(api: Api) -> None:
    body = json.dumps(
        {
            "account_no": "ACC-2",
            "note": {"x": 1},
            "changes": [
                {"permission_type": "stock.US", "permission_status": "open", "reason": "KYC done", "extra": [1, 2]}
            ],
        }
    )
    response = api.update(body.encode())
    assert (response.status_code, response.get_json()["code"]) == (200, 0)
    assert api.statuses("ACC-2")["stock.US"] == "open"


def test_a_rejected_batch_leaves_earlier_valid_changes_unwritten(api: Api, app: Any) -> None:
    before = api.statuses("ACC-1")
    audited = audit_count(app)
    status, body = send(api, "ACC-1", ("stock.US", "open"), ("account.trade", "close"), ("stock.HK", "open"))
    assert (status, body["code"], body["data"]["failure_index"]) == (400, 400103, 2)
    assert api.statuses("ACC-1") == before
    assert audit_count(app) == audited


def test_open_then_close_round_trip(api: Api) -> None:
    assert send(api, "ACC-2", ("stock.US", "open"))[0] == 200
    assert api.statuses("ACC-2")["stock.US"] == "open"
    status, body = send(api, "ACC-2", ("stock.US", "open"), ("stock.HK", "open"))
    assert (status, body["code"], body["data"]["failure_index"]) == (400, 400103, 0)
    assert send(api, "ACC-2", ("stock.US", "close"))[0] == 200
    assert api.statuses("ACC-2")["stock.US"] == "close"


def test_accepted_batch_writes_one_audit_row_per_change(api: Api, app: Any) -> None:
    version = container_of(app).rules.engine.version
    assert version
    changes = (("stock.US", "open"), ("account.trade", "close"), ("trade.fix", "open"))
    seeded = audit_rows(app)  # the fixture loader's rows

    response = api.update(body_of("ACC-1", *changes), headers={"X-Trace-Id": "trace-audit-1"})

    assert (response.status_code, response.get_json()["code"]) == (200, 0)
    assert response.headers["X-Trace-Id"] == "trace-audit-1"
    rows = audit_rows(app)[len(seeded) :]
    assert [(r.permission_type, r.status_before, r.status_after) for r in rows] == [
        ("stock.US", "close", "open"),
        ("account.trade", "open", "close"),
        ("trade.fix", "close", "open"),
    ]
    for row in rows:
        assert (row.trace_id, row.tenant_id, row.app_key, row.account_no, row.rule_set_version) == (
            "trace-audit-1",
            "sg_mexc",
            "demo-key",
            "ACC-1",
            version,
        )
        assert row.created_at is not None and row.created_at.utcoffset() is not None

    # A later batch appends its own rows and leaves the earlier ones as they were.
    response = api.update(body_of("ACC-1", ("stock.US", "close")), headers={"X-Trace-Id": "trace-audit-2"})
    assert (response.status_code, response.headers["X-Trace-Id"]) == (200, "trace-audit-2")
    later = audit_rows(app)[len(seeded) :]
    assert [(r.id, r.trace_id, r.status_after) for r in later[:3]] == [(r.id, r.trace_id, r.status_after) for r in rows]
    assert [(r.trace_id, r.permission_type, r.status_before, r.status_after) for r in later[3:]] == [
        ("trace-audit-2", "stock.US", "open", "close")
    ]


def test_audit_rows_name_the_caller_of_another_tenant(api: Api, app: Any) -> None:
    seeded = len(audit_rows(app))
    response = api.update(body_of("OTHER-1", ("stock.SG", "open")), creds=OTHER)
    assert (response.status_code, response.get_json()["code"]) == (200, 0)
    trace = response.headers["X-Trace-Id"]
    [row] = audit_rows(app)[seeded:]
    assert (row.trace_id, row.tenant_id, row.app_key, row.account_no, row.permission_type) == (
        trace,
        "hk_other",
        "other-key",
        "OTHER-1",
        "stock.SG",
    )


def test_rejection_echoes_trace_id_and_writes_no_audit(api: Api, app: Any) -> None:
    seeded = audit_rows(app)
    response = api.update(
        body_of("ACC-1", ("stock.US", "open"), ("flag.options", "open")), headers={"X-Trace-Id": "trace-rejected"}
    )
    assert (response.status_code, response.headers["X-Trace-Id"]) == (400, "trace-rejected")
    assert response.get_json()["data"] == {"failure_index": 1, "rule_id": "type-banned-group"}
    assert [r.id for r in audit_rows(app)] == [r.id for r in seeded]


@pytest.mark.parametrize(
    ("payload", "message_start"),
    [
        ({"account_no": "NOPE", "changes": []}, "changes"),
        ({"account_no": "ACC-1", "changes": {"permission_type": "stock.US", "permission_status": "open"}}, "changes"),
        (
            {"account_no": "ACC-1", "changes": [{"permission_type": "stock.US", "permission_status": "open"}, None]},
            "changes[1]",
        ),
        (
            {"account_no": "ACC-1", "changes": [{"permission_type": "stock.US", "permission_status": "open"}, "x"]},
            "changes[1]",
        ),
        ({"account_no": "ACC-GONE", "changes": [["flag.options", "open"]]}, "changes[0]"),
        ({"account_no": "", "changes": [{"permission_type": "flag.options"}]}, "account_no"),
        ({"changes": [{"permission_type": "flag.options"}]}, "account_no"),
        ({"account_no": "ACC-1"}, "changes"),
    ],
    ids=[
        "empty-changes",
        "changes-object",
        "change-null",
        "change-string",
        "change-array",
        "empty-account",
        "no-account",
        "no-changes",
    ],
)
def test_shape_errors_come_first(api: Api, app: Any, payload: dict[str, Any], message_start: str) -> None:
    before = api.statuses("ACC-1")
    audited = audit_count(app)
    response = api.update(json.dumps(payload).encode())
    body = response.get_json()
    assert (response.status_code, body["code"], body["data"]) == (400, 400001, {"failure_index": 0}), body
    assert body["message"].startswith(message_start), body["message"]
    assert api.statuses("ACC-1") == before
    assert audit_count(app) == audited
