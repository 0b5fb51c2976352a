"""The broker policies of examples/broker-policies over real HTTP (gunicorn): every policy denies (400106 at the
right index, its rule_id, its message) and allows exactly where it should; warn shows in data.warnings and the
audit rows; dryrun is invisible to the caller and visible in the decision log, the decision record, /metrics
and `rules impact` (issue 11, acceptance 1 and 2)."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from app.settings import Settings
from tests.conftest import seed
from tests.e2e.server import LiveServer, call, log_records
from tests.support import PROJECT_ROOT, UPDATE_PATH, body_of

pytestmark = pytest.mark.e2e

POLICIES = PROJECT_ROOT / "examples" / "broker-policies"
CREDENTIALS = [{"app_key": "demo-key", "app_secret": "demo-secret", "access_token": "demo-token"}]
PROFESSIONAL = {"account_type": "margin", "investor_class": "professional", "residency": "SG"}
DOCUMENT: dict[str, Any] = {
    "tenants": [{"id": "broker", "credentials": CREDENTIALS, "saas_config": {"enabled": ["*"]}}],
    "accounts": [
        {"account_no": "PRO", "tenant": "broker", "status": "active", "attributes": PROFESSIONAL},
        {
            "account_no": "CASH-CN",
            "tenant": "broker",
            "status": "active",
            "attributes": {"account_type": "cash", "investor_class": "retail", "residency": "CN"},
        },
        {"account_no": "NO-ATTRS", "tenant": "broker", "status": "active"},
        {
            "account_no": "BOTH-OPEN",
            "tenant": "broker",
            "status": "active",
            "attributes": PROFESSIONAL,
            "permissions": {"stock.US": "open", "options.US": "open", "ipo.JP": "open", "account.withdraw": "open"},
        },
    ],
}


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    """gunicorn -w 2 with RULES_DIR=examples/broker-policies, on this test's database."""
    policies = settings.with_overrides(rules_dir=POLICIES)
    seed(policies, DOCUMENT)
    server = LiveServer(settings=policies, log_path=tmp_path / "gunicorn.log").start()
    yield server
    server.stop()


def post(server: LiveServer, account: str, *changes: tuple[str, str], nonce: object = 0) -> dict[str, Any]:
    status, envelope, _ = call(server, "POST", UPDATE_PATH, body_of(account, *changes, nonce=nonce))
    envelope["status"] = status
    return envelope


DENIALS = [
    (
        "options-need-stock",
        "PRO",
        [("options.HK", "open")],
        0,
        "changes[0].permission_type 'options.HK': opening options needs stock.HK open (now or in the same request)",
    ),
    (
        "stock-close-needs-options-closed",
        "BOTH-OPEN",
        [("stock.US", "close")],
        0,
        "changes[0].permission_type 'stock.US': close options.US first (or in the same request)",
    ),
    (
        "shortsell-margin-only",
        "CASH-CN",
        [("stock.HK", "open"), ("shortsell.HK", "open")],
        1,
        "changes[1].permission_type 'shortsell.HK': short selling needs a margin account",
    ),
    (
        "shortsell-margin-only",
        "NO-ATTRS",
        [("shortsell.US", "open")],
        0,
        "changes[0].permission_type 'shortsell.US': short selling needs a margin account",
    ),
    (
        "va-professional-only",
        "CASH-CN",
        [("va.OSL", "open")],
        0,
        "changes[0].permission_type 'va.OSL': virtual assets are for professional investors only",
    ),
    (
        "ipo-closed-markets",
        "PRO",
        [("ipo.DE", "open")],
        0,
        "changes[0].permission_type 'ipo.DE': IPO subscriptions on DE are not offered",
    ),
    (
        "no-northbound-for-cn-residents",
        "CASH-CN",
        [("stock.SZ", "open")],
        0,
        "changes[0].permission_type 'stock.SZ': northbound trading is not open to residents of mainland China",
    ),
    (
        "withdraw-freeze",
        "PRO",
        [("account.withdraw", "open")],
        0,
        "changes[0].permission_type 'account.withdraw': withdrawals cannot be opened until 2030-01-01",
    ),
]

ALLOWED = [
    ("stock then options together", "PRO", [("stock.US", "open"), ("options.US", "open")]),
    ("options then stock together", "PRO", [("options.HK", "open"), ("stock.HK", "open")]),
    ("close both together", "BOTH-OPEN", [("stock.US", "close"), ("options.US", "close")]),
    (
        "close a frozen withdrawal and a closed-market IPO",
        "BOTH-OPEN",
        [("account.withdraw", "close"), ("ipo.JP", "close")],
    ),
    ("margin professional outside CN", "PRO", [("shortsell.US", "open"), ("va.HAS", "open"), ("stock.SH", "open")]),
    ("the expired deposit freeze never fires", "PRO", [("account.deposit", "open")]),
    ("ipo on an open market", "CASH-CN", [("ipo.US", "open")]),
]


def test_every_policy_denies_where_it_should_and_allows_where_it_should(served: LiveServer):
    for n, (rule_id, account, changes, index, message) in enumerate(DENIALS):
        answer = post(served, account, *changes, nonce=f"deny-{n}")
        assert (answer["status"], answer["code"]) == (400, 400106), (rule_id, answer)
        assert answer["data"] == {"failure_index": index, "rule_id": rule_id}
        assert answer["message"] == message
    for n, (what, account, changes) in enumerate(ALLOWED):
        answer = post(served, account, *changes, nonce=f"allow-{n}")
        assert (answer["status"], answer["code"], answer["data"]) == (200, 0, {"failure_index": 0}), (what, answer)


@pytest.mark.slow  # its own gunicorn; in-process: tests/rules/tools/test_broker_policies.py and test_impact.py
def test_validations_come_first_within_a_change_and_the_first_failing_change_wins(served: LiveServer):
    answer = post(served, "CASH-CN", ("shortsell.US", "opne"))  # invalid status beats the policy
    assert (answer["code"], answer["data"]) == (400102, {"failure_index": 0, "rule_id": "status-open-or-close"})
    answer = post(served, "CASH-CN", ("va.OSL", "open"), ("flag.x", "open"), nonce=1)  # the policy at 0 wins
    assert (answer["code"], answer["data"]) == (400106, {"failure_index": 0, "rule_id": "va-professional-only"})
    answer = post(served, "CASH-CN", ("stock.US", "open"), ("stock.US", "close"), ("va.OSL", "open"), nonce=2)
    assert (answer["code"], answer["data"]) == (400104, {"failure_index": 1, "rule_id": "no-duplicate-type"})


def _rows(settings: Settings, sql: str) -> list[Any]:
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)))
    finally:
        engine.dispose()


def test_warn_reaches_the_caller_and_the_audit_dryrun_only_the_records(served: LiveServer):
    answer = post(served, "PRO", ("otc.HK", "open"), ("stockgrey.US", "open"))
    assert (answer["status"], answer["code"]) == (200, 0)
    assert answer["data"] == {
        "failure_index": 0,
        "warnings": [
            {
                "index": 0,
                "rule_id": "otc-open-warning",
                "message": "changes[0].permission_type 'otc.HK': collect the OTC risk disclosure before trading otc.HK",
            }
        ],
    }
    assert "stockgrey" not in json.dumps(answer)  # dryrun: the caller sees nothing
    settings = served.settings
    audit = dict(_rows(settings, "SELECT permission_type, warned_by FROM permission_audit WHERE account_no = 'PRO'"))
    assert (json.loads(audit["otc.HK"]), json.loads(audit["stockgrey.US"])) == (["otc-open-warning"], [])
    ((warned, dryrun),) = _rows(settings, "SELECT warned_by, dryrun_by FROM decisions WHERE code = 0")
    assert (json.loads(warned), json.loads(dryrun)) == (["otc-open-warning"], ["stockgrey-dryrun"])
    logged = [r for r in log_records(served.log_path) if r.get("event") == "decision" and r.get("outcome") == "applied"]
    assert [(r["warned_by"], r["dryrun_by"]) for r in logged] == [(["otc-open-warning"], ["stockgrey-dryrun"])]
    with urllib.request.urlopen(served.url + "/metrics", timeout=10) as response:
        metrics = response.read().decode()
    for rule_id, enforcement in (("stockgrey-dryrun", "dryrun"), ("otc-open-warning", "warn")):
        pattern = rf'^tps_policy_hits_total\{{enforcement="{enforcement}",rule_id="{rule_id}"\}} 1\.0$'
        assert re.search(pattern, metrics, re.MULTILINE), metrics[-3000:]


@pytest.mark.slow  # its own gunicorn; in-process: tests/rules/tools/test_broker_policies.py and test_impact.py
def test_rules_impact_shows_what_a_dryrun_would_deny(served: LiveServer):
    from tests.cli.runner import db_env, invoke, ok

    post(served, "PRO", ("stockgrey.US", "open"))
    post(served, "PRO", ("stock.US", "open"), nonce=1)
    env = db_env(served.settings)
    out = ok(invoke("rules", "impact", "--rules", str(POLICIES), env=env))
    assert re.search(r"^dryrun rule stockgrey-dryrun: would deny 1 decision\(s\) if enforced", out, re.MULTILINE)
    assert out.strip().endswith(f"2 decisions replayed through rule-set version {_version()}; 0 would change")


def _version() -> str:
    from app.rules.language.loader import rule_set_version

    return rule_set_version(POLICIES)
