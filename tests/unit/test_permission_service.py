"""PermissionService on a fake unit of work and the real rules engine: the decision pipeline's every outcome in
milliseconds, with no database (the same service code the API runs)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from app.errors import AccountDeregistered, AccountNotFound, ChangeRejected, Code
from app.persistence.accounts import AccountRecord
from app.persistence.config_cache import InProcessConfigCache
from app.rules.language.loader import load_rule_set
from app.rules.runtime.engine import DurableRulesEngine
from app.service.model import Caller
from app.service.permissions import PermissionService
from app.service.tenant_config import EnabledPermissions
from tests.support import PROJECT_ROOT, SHIPPED_RULES
from tests.unit.fakes import FakeUnitOfWork, Store

CALLER = Caller(tenant_id="broker", app_key="key-1")
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class Live:
    """A LiveRules stand-in: one engine for one rule set."""

    def __init__(self, rules_dir: object) -> None:
        self.engine = DurableRulesEngine(load_rule_set(rules_dir))  # type: ignore[arg-type]

    def refresh(self) -> DurableRulesEngine:
        return self.engine


SHIPPED = Live(SHIPPED_RULES)
BROKER = Live(PROJECT_ROOT / "examples" / "broker-policies")


def service(store: Store, live: Live = SHIPPED) -> PermissionService:
    return PermissionService(
        unit_of_work=lambda **_: FakeUnitOfWork(store),
        rules=live,
        enabled=EnabledPermissions(InProcessConfigCache(30)),
        clock=lambda: NOW,
    )


def store_with(*, status: str = "active", attributes: dict[str, str] | None = None) -> Store:
    store = Store()
    store.accounts[("broker", "ACC-1")] = AccountRecord(1, "broker", "ACC-1", status, 1, attributes or {})
    store.patterns["broker"] = ("*",)
    return store


def change(permission_type: str, status: str) -> dict[str, str]:
    return {"permission_type": permission_type, "permission_status": status}


def update(svc: PermissionService, *changes: dict[str, str]):  # type: ignore[no-untyped-def]
    return svc.update(caller=CALLER, account_no="ACC-1", changes=list(changes), trace_id="t-1")


def test_an_accepted_request_writes_every_change_its_audit_and_its_decision_in_one_commit():
    store = store_with()
    result = update(service(store), change("stock.US", "open"), change("account.trade", "open"))
    assert [(a.permission_type, a.status_before, a.status_after) for a in result.applied] == [
        ("stock.US", "close", "open"),
        ("account.trade", "close", "open"),
    ]
    assert {t: p.status for t, p in store.permissions[1].items()} == {"stock.US": "open", "account.trade": "open"}
    assert [(r["permission_type"], r["status_after"], r["warned_by"]) for r in store.audit] == [
        ("stock.US", "open", "[]"),
        ("account.trade", "open", "[]"),
    ]
    (decision,) = store.decisions
    assert (decision["code"], decision["account_status"], json.loads(decision["changes"])) == (
        0,
        "active",
        [change("stock.US", "open"), change("account.trade", "open")],
    )
    assert store.commits == 1


def test_a_rejected_request_writes_nothing_but_its_decision():
    store = store_with()
    with pytest.raises(ChangeRejected) as refused:
        update(service(store), change("stock.US", "open"), change("flag.x", "open"))
    assert (refused.value.code, refused.value.failure_index, refused.value.rule_id) == (
        Code.INVALID_PERMISSION_TYPE,
        1,
        "type-banned-group",
    )
    assert store.permissions == {} and store.audit == []
    assert [(d["code"], d["failure_index"], d["rule_id"]) for d in store.decisions] == [
        (400101, 1, "type-banned-group")
    ]


def test_unknown_fields_of_a_change_are_never_recorded():
    store = store_with()
    update(service(store), {**change("stock.US", "open"), "note": "x" * 60_000})
    assert json.loads(store.decisions[0]["changes"]) == [change("stock.US", "open")]


def test_missing_and_deregistered_accounts():
    with pytest.raises(AccountNotFound):
        service(Store()).update(caller=CALLER, account_no="ACC-1", changes=[change("stock.US", "open")], trace_id="t")
    with pytest.raises(AccountDeregistered):
        update(service(store_with(status="deregistered")), change("stock.US", "open"))


def test_policies_see_attributes_relations_and_time_and_record_warnings_and_dryruns():
    store = store_with(attributes={"account_type": "cash"})
    svc = service(store, BROKER)
    with pytest.raises(ChangeRejected) as refused:
        update(svc, change("shortsell.US", "open"))
    assert (refused.value.code, refused.value.rule_id) == (Code.PERMISSION_POLICY_DENIED, "shortsell-margin-only")
    result = update(
        svc,
        change("options.US", "open"),
        change("stock.US", "open"),
        change("otc.HK", "open"),
        change("stockgrey.HK", "open"),
    )
    assert [(w.index, w.rule_id) for w in result.warnings] == [(2, "otc-open-warning")]
    assert result.dryrun_by == ("stockgrey-dryrun",)
    decision = store.decisions[-1]
    assert (json.loads(decision["warned_by"]), json.loads(decision["dryrun_by"])) == (
        ["otc-open-warning"],
        ["stockgrey-dryrun"],
    )
    assert [json.loads(r["warned_by"]) for r in store.audit] == [[], [], ["otc-open-warning"], []]
    with pytest.raises(ChangeRejected) as refused:
        update(svc, change("account.withdraw", "open"))  # the freeze is in force at NOW
    assert refused.value.rule_id == "withdraw-freeze"
