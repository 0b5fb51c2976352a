"""The policy language against the real engine: every MATCH form, all/any/not, account, tenant, permissions
before and after the request, windows. Each probe is a policy of one rule set; a probe holds for an input
when decide() reports it in `held` for the judged change."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.rules.runtime.decision import decide
from app.rules.runtime.engine import DurableRulesEngine
from tests.rules.support import ch, engine_for, request


@dataclass(frozen=True)
class In:
    """A request and the index of the change judged (the last one unless given)."""

    changes: tuple[dict[str, Any], ...]
    index: int = -1
    state: dict[str, Any] = field(default_factory=dict)  # request() keywords

    def __repr__(self) -> str:
        return f"{list(self.changes)}[{self.index}] {self.state}"


def at(*changes: dict[str, Any], index: int = -1, **state: Any) -> In:
    return In(tuple(changes), index, state)


def one(permission_type: Any = ..., permission_status: Any = "open", **state: Any) -> In:
    return at(ch(permission_type, permission_status), **state)


NO_MARKET = "account.trade"
FREEZE_FROM = datetime(2026, 1, 1, tzinfo=UTC)
FREEZE_UNTIL = datetime(2026, 2, 1, tzinfo=UTC)
TICK = timedelta(microseconds=1)

# id -> (when, inputs where it holds, inputs where it does not)
PROBES: dict[str, tuple[str, list[In], list[In]]] = {
    # --- MATCH forms on the change ---
    "exact-market": (
        "{change: {market: US}}",
        [one("stock.US"), one("options.US", "close"), one("stock.US", "maybe")],
        [one("stock.HK"), one(NO_MARKET), one(42), one(), one("stock.us"), one("stock.US ")],
    ),
    "exact-type": (
        "{change: {permission_type: stock.US}}",
        [one("stock.US")],
        [one("Stock.US"), one("stock.US "), one("stock.US\x00"), one("stock.USA"), one(["stock.US"])],
    ),
    "glob-type": (
        '{change: {permission_type: "stock.*"}}',
        [one("stock.US"), one("stock.XX"), one("stock.")],
        [one("stockXUS"), one("options.US"), one("xstock.US"), one(42), one()],
    ),
    "glob-one-character": (
        '{change: {permission_type: "?tock.?S"}}',
        [one("stock.US"), one("Stock.US")],
        [one("stock.HK"), one("stock.USA"), one("tock.US")],
    ),
    "list-market": (
        "{change: {market: [JP, DE]}}",
        [one("ipo.JP"), one("stock.DE")],
        [one("ipo.US"), one(NO_MARKET), one("va.OSL")],
    ),
    "list-with-glob": (
        '{change: {permission_type: [va.OSL, "trade.*"]}}',
        [one("va.OSL"), one("trade.fix"), one("trade.bo")],
        [one("va.HAS"), one("stock.US")],
    ),
    "parts-group-name": (
        "{change: {group: account, name: [withdraw, deposit]}}",
        [one("account.withdraw"), one("account.deposit", "close")],
        [one("account.trade"), one("stock.US"), one("va.OSL")],
    ),
    "parts-product": (
        "{change: {product: [options, shortsell]}}",
        [one("options.HK"), one("shortsell.JP"), one("options.XX")],
        [one("stock.US"), one("account.trade"), one(7)],
    ),
    "status-exact": (
        "{change: {permission_status: close}}",
        [one("stock.US", "close")],
        [one("stock.US", "open"), one("stock.US", "Close"), one("stock.US", ...), one("stock.US", 0)],
    ),
    "flag-true": (
        "{change: {named_earlier: true}}",
        [at(ch("stock.US", "open"), ch("stock.US", "close")), at(ch("x", "open"), ch("y", 1), ch("x"))],
        [at(ch("stock.US", "open"), ch("stock.HK", "open")), at(ch("stock.US", "close"), ch("stock.US"), index=0)],
    ),
    "flag-false": (
        "{change: {in_catalog: false}}",
        [one("stock.XX"), one("flag.options"), one("")],
        [one("stock.US"), one(42), one()],  # a type that is not text has no in_catalog at all
    ),
    "enabled-false": (
        "{change: {enabled_for_tenant: false}}",
        [one("options.US", patterns=("stock.*",)), one("stock.XX", patterns=("*",)), one("stock.US", patterns=())],
        [one("stock.US", patterns=("stock.*",)), one(None, patterns=())],
    ),
    "current-open": (
        "{change: {current_status: open}}",
        [one("stock.US", "close", stored={"stock.US": "open"})],
        [one("stock.US", "close"), one("stock.US", stored={"stock.HK": "open"}), one(3, stored={"stock.US": "open"})],
    ),
    "is-missing": (
        "{change: {permission_status: {is: missing}}}",
        [one("stock.US", ...), one(..., ...)],
        [one("stock.US", None), one("stock.US", "")],
    ),
    "is-not-text": (
        "{change: {permission_status: {is: not_text}}}",
        [one("stock.US", None), one("stock.US", 1), one("stock.US", ["open"]), one("stock.US", {"a": 1})],
        [one("stock.US", "open"), one("stock.US", ...), one("stock.US", "")],
    ),
    "is-text": (
        "{change: {permission_type: {is: text}}}",
        [one(""), one("anything"), one("\ud800")],
        [one(42), one(), one(None), one(True)],
    ),
    "same-as-current": (
        "{change: {permission_status: {same_as: current_status}}}",
        [one("stock.US", "close"), one("stock.US", "open", stored={"stock.US": "open"})],
        [one("stock.US", "open"), one("stock.US", "Open", stored={"stock.US": "open"}), one(5, "close")],
    ),
    "same-as-parts": (
        "{change: {group: {same_as: name}}}",
        [one("trade.trade"), one("x.x")],
        [one("account.trade"), one("stock.US"), one("nodot")],
    ),
    # --- negations of the change: inline, or over the reference copy r ---
    "not-exact": (
        "{not: {change: {market: [US, HK]}}}",
        [one("stock.SG"), one(NO_MARKET), one(42), one()],
        [one("stock.US"), one("options.HK")],
    ),
    "not-glob": (
        '{not: {change: {permission_type: "stock.*"}}}',
        [one("options.US"), one("stockXUS"), one(42), one(), at(ch("stock.US"), ch("options.US"))],
        [one("stock.US"), one("stock.XX"), at(ch("options.US"), ch("stock.US"))],
    ),
    "not-same-as": (
        "{not: {change: {permission_status: {same_as: current_status}}}}",
        [one("stock.US", "open"), one("stock.US", ...), one(5, "close")],
        [one("stock.US", "close"), one("stock.US", "open", stored={"stock.US": "open"})],
    ),
    "not-kind": (
        "{not: {change: {permission_type: {is: text}}}}",
        [one(42), one()],
        [one("stock.US"), one("")],
    ),
    "not-flag": (
        "{not: {change: {in_catalog: true}}}",
        [one("stock.XX"), one(42)],  # no in_catalog fact at all: not true
        [one("stock.US")],
    ),
    # --- the account and the tenant ---
    "account-status": (
        "{account: {status: deregistered}}",
        [one("stock.US", account_status="deregistered")],
        [one("stock.US")],
    ),
    "attribute": (
        "{account: {account_type: margin}}",
        [one("stock.US", attributes={"account_type": "margin"})],
        [
            one("stock.US", attributes={"account_type": "cash"}),
            one("stock.US"),
            one("stock.US", attributes={"x": "margin"}),
        ],
    ),
    "not-attribute": (
        "{not: {account: {account_type: margin}}}",
        [one("stock.US", attributes={"account_type": "cash"}), one("stock.US")],  # unset: not margin
        [one("stock.US", attributes={"account_type": "margin"})],
    ),
    "attribute-glob-list": (
        '{account: {residency: ["C*", HK]}}',
        [one("stock.US", attributes={"residency": r}) for r in ("CN", "CA", "HK")],
        [
            one("stock.US", attributes={"residency": "SG"}),
            one("stock.US"),
            one("stock.US", attributes={"residency": "XC"}),
        ],
    ),
    "two-attributes": (
        "{account: {account_type: margin, investor_class: professional}}",
        [one("stock.US", attributes={"account_type": "margin", "investor_class": "professional"})],
        [
            one("stock.US", attributes={"account_type": "margin"}),
            one("stock.US", attributes={"investor_class": "professional"}),
        ],
    ),
    "tenant": (
        "{tenant: t1}",
        [one("stock.US", tenant="t1")],
        [one("stock.US", tenant="t2"), one("stock.US", tenant="t1 ")],
    ),
    "tenant-list-glob": (
        '{tenant: [t2, "sg_*"]}',
        [one("stock.US", tenant="t2"), one("stock.US", tenant="sg_mexc")],
        [one("stock.US", tenant="t1"), one("stock.US", tenant="hk_sg_x")],
    ),
    "not-tenant": (
        "{not: {tenant: t1}}",
        [one("stock.US", tenant="t2")],
        [one("stock.US", tenant="t1")],
    ),
    # --- other permissions, before and after the request ---
    "before-open-literal": (
        "{permission: account.trade, before: open}",
        [
            one("stock.US", stored={"account.trade": "open"}),
            at(ch("account.trade", "close"), stored={"account.trade": "open"}),
        ],
        [
            one("stock.US"),
            at(ch("account.trade", "open"), ch("stock.US")),
            one("stock.US", stored={"account.trade": "close"}),
        ],
    ),
    "after-open-market": (
        '{permission: "stock.{market}", after: open}',
        [
            one("options.US", stored={"stock.US": "open"}),
            at(ch("stock.US", "open"), ch("options.US")),
            at(ch("options.US"), ch("stock.US", "open"), index=0),  # a later change counts as well
            at(ch("stock.US", "open")),  # the change itself
            at(ch("stock.US", "open"), ch("stock.US", "close"), ch("options.US")),  # the first mention counts
        ],
        [
            one("options.US"),
            one("options.US", stored={"stock.HK": "open"}),
            at(ch("stock.US", "close"), ch("options.US"), stored={"stock.US": "open"}),
            at(ch("stock.US", "close"), ch("stock.US", "open"), ch("options.US"), stored={"stock.US": "open"}),
            at(ch("stock.US", "OPEN"), ch("options.US")),  # an invalid status changes nothing
            at(ch("stock.US", "open"), ch("options.US"), patterns=("options.*",)),  # nor does a disabled type
            one(NO_MARKET, stored={"stock.US": "open"}),
        ],
    ),
    "after-close-market": (
        '{permission: "stock.{market}", after: close}',
        [one("options.US"), at(ch("stock.US", "close"), ch("options.US"), stored={"stock.US": "open"})],
        [one("options.US", stored={"stock.US": "open"}), one(NO_MARKET)],  # no market: the relation is not defined
    ),
    "not-after-open-market": (
        '{not: {permission: "stock.{market}", after: open}}',
        [one("options.US")],
        [one("options.US", stored={"stock.US": "open"}), one(NO_MARKET)],
    ),
    "before-close-but-after-open": (
        '{permission: "stock.{market}", before: close, after: open}',
        [at(ch("stock.HK", "open"), ch("options.HK"))],
        [at(ch("options.HK"), stored={"stock.HK": "open"}), one("options.HK")],
    ),
    "product-placeholder": (
        '{permission: "{product}.US", before: open}',
        [one("stock.HK", stored={"stock.US": "open"}), one("options.SG", "close", stored={"options.US": "open"})],
        [one("stock.HK", stored={"options.US": "open"}), one("va.OSL", stored={"va.US": "open"})],
    ),
    "group-name-placeholders": (
        '{any: [{permission: "{group}.OSL", before: open}, {permission: "trade.{name}", after: open}]}',
        [one("va.HAS", stored={"va.OSL": "open"}), at(ch("trade.fix", "open"), ch("account.fix", "close"))],
        [
            one("va.HAS"),
            one("account.client", stored={"trade.fix": "open"}),
            one("stock.US", stored={"va.OSL": "open"}),
        ],
    ),
    "glob-permission": (
        '{permission: "options.*", after: open}',
        [one("stock.US", "close", stored={"options.JP": "open"}), at(ch("options.SG", "open"), ch(NO_MARKET))],
        [one("stock.US"), one("stock.US", stored={"shortsell.JP": "open"})],
    ),
    "glob-head-with-placeholder": (
        '{permission: "*.{market}", before: open}',
        [one("stock.JP", stored={"ipo.JP": "open"})],
        [one("stock.JP", stored={"ipo.US": "open"}), one("stock.JP")],
    ),
    # --- one fact in two tests of a clause: the engine's distinct correlation must be off ---
    "tenant-and-not-attribute": (
        "{tenant: t2, not: {account: {investor_class: professional}}}",
        [one("stock.US", tenant="t2"), one("stock.US", tenant="t2", attributes={"investor_class": "retail"})],
        [one("stock.US", tenant="t2", attributes={"investor_class": "professional"}), one("stock.US", tenant="t1")],
    ),
    "attribute-and-not-attribute": (
        "{account: {account_type: margin}, not: {account: {residency: CN}}}",
        [one("stock.US", attributes={"account_type": "margin", "residency": "SG"})],
        [one("stock.US", attributes={"account_type": "margin", "residency": "CN"}), one("stock.US")],
    ),
    "opened-by-this-request": (
        '{all: [{permission: "stock.{market}", after: open}, {not: {permission: "stock.{market}", before: open}}]}',
        [at(ch("stock.US", "open"), ch("options.US"))],
        [at(ch("options.US"), stored={"stock.US": "open"}), one("options.US")],
    ),
    "kept-open": (
        '{permission: "stock.{market}", before: open, after: open}',
        [one("options.US", stored={"stock.US": "open"})],
        [
            at(ch("stock.US", "open"), ch("options.US")),
            at(ch("stock.US", "close"), ch("options.US"), stored={"stock.US": "open"}),
        ],
    ),
    "two-relations-one-permission": (
        '{all: [{permission: "stock.{market}", after: open}, {permission: "stock.*", before: open}]}',
        [one("options.US", stored={"stock.US": "open"})],
        [at(ch("stock.US", "open"), ch("options.US"))],
    ),
    # --- all / any / not ---
    "keys-are-all": (
        "{change: {product: options, permission_status: open}, account: {account_type: cash}}",
        [one("options.US", attributes={"account_type": "cash"})],
        [one("options.US"), one("options.US", "close", attributes={"account_type": "cash"})],
    ),
    "all-any": (
        "{all: [{change: {product: ipo}}, {any: [{change: {market: JP}}, {account: {residency: JP}}]}]}",
        [one("ipo.JP"), one("ipo.US", attributes={"residency": "JP"})],
        [one("ipo.US"), one("stock.JP", attributes={"residency": "JP"})],
    ),
    "not-all": (  # De Morgan: holds unless both hold
        "{not: {all: [{change: {product: stock}}, {change: {market: US}}]}}",
        [one("stock.HK"), one("options.US"), one(NO_MARKET), one(1)],
        [one("stock.US")],
    ),
    "not-any": (  # De Morgan: holds when neither holds
        '{not: {any: [{change: {permission_type: "stock.*"}}, {account: {account_type: margin}}]}}',
        [one("options.US"), one("options.US", attributes={"account_type": "cash"})],
        [one("stock.HK"), one("options.US", attributes={"account_type": "margin"})],
    ),
    "not-not": (
        '{not: {not: {change: {permission_type: "va.*"}}}}',
        [one("va.OSL")],
        [one("stock.US")],
    ),
    "nested": (
        "{any: [{all: [{change: {product: options}}, {not: {permission: 'stock.{market}', after: open}}]},"
        " {all: [{tenant: t2}, {not: {any: [{account: {investor_class: professional}}, {change: {group: va}}]}}]}]}",
        [one("options.US"), one("stock.US", tenant="t2"), one("options.US", tenant="t2", stored={"stock.US": "open"})],
        [
            one("options.US", stored={"stock.US": "open"}),
            one("va.OSL", tenant="t2"),
            one("stock.US", tenant="t2", attributes={"investor_class": "professional"}),
        ],
    ),
}

WINDOWS: dict[str, tuple[str, list[datetime], list[datetime]]] = {
    "window": (
        "from: 2026-01-01T00:00:00Z\n    until: 2026-02-01T00:00:00Z",
        [FREEZE_FROM, FREEZE_FROM + TICK, FREEZE_UNTIL - TICK],
        [FREEZE_FROM - TICK, FREEZE_UNTIL, FREEZE_UNTIL + timedelta(days=400)],
    ),
    "window-from": ("from: 2026-01-01", [FREEZE_FROM, datetime(2099, 1, 1, tzinfo=UTC)], [FREEZE_FROM - TICK]),
    "window-until": (
        "until: 2026-02-01T00:00:00Z",
        [datetime(2000, 1, 1, tzinfo=UTC), FREEZE_UNTIL - TICK],
        [FREEZE_UNTIL],
    ),
    "window-offset": (  # a zone given is converted to UTC: 09:00+09:00 is midnight UTC
        "from: 2026-01-01T09:00:00+09:00",
        [FREEZE_FROM],
        [FREEZE_FROM - TICK],
    ),
}


def probe_policies() -> str:
    items = [
        f"  - id: {rule_id}\n    description: probe\n    enforcement: dryrun\n    when: {when}\n    message: m\n"
        for rule_id, (when, _, _) in PROBES.items()
    ]
    items += [
        f"  - id: {rule_id}\n    description: probe\n    enforcement: dryrun\n    {window}\n"
        "    when: {change: {permission_type: account.withdraw}}\n    message: m\n"
        for rule_id, (window, _, _) in WINDOWS.items()
    ]
    return "policies:\n" + "".join(items)


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> DurableRulesEngine:
    return engine_for(tmp_path_factory.mktemp("probes"), probe_policies())


def held_for(engine: DurableRulesEngine, case: In, *, use_memo: bool) -> frozenset[str]:
    decision = decide(engine, request(case.changes, **case.state), use_memo=use_memo)
    return decision.held[case.index]


CASES = [
    pytest.param(rule_id, case, expected, id=f"{rule_id}-{'holds' if expected else 'not'}-{n}")
    for rule_id, (_, holds, fails) in PROBES.items()
    for expected, inputs in ((True, holds), (False, fails))
    for n, case in enumerate(inputs)
]


@pytest.mark.parametrize(("rule_id", "case", "expected"), CASES)
def test_probe(probes, rule_id, case, expected):
    for use_memo in (False, True, True):  # the engine, then the memo's answer for the same facts
        assert (rule_id in held_for(probes, case, use_memo=use_memo)) is expected, (case, use_memo)


@pytest.mark.parametrize(
    ("rule_id", "moment", "expected"),
    [
        pytest.param(rule_id, moment, expected, id=f"{rule_id}-{moment.isoformat()}")
        for rule_id, (_, inside, outside) in WINDOWS.items()
        for expected, moments in ((True, inside), (False, outside))
        for moment in moments
    ],
)
def test_window(probes, rule_id, moment, expected):
    case = one("account.withdraw", at=moment)
    for use_memo in (False, True, True):
        assert (rule_id in held_for(probes, case, use_memo=use_memo)) is expected, use_memo
    assert rule_id not in held_for(probes, one("account.deposit", at=moment), use_memo=False)


def test_every_probe_holds_somewhere_and_fails_somewhere():
    for rule_id, (_, holds, fails) in PROBES.items():
        assert holds and fails, rule_id


def test_probes_that_negate_a_glob_or_same_as_use_reference_facts(probes):
    compiled = probes._compiled
    assert compiled.needs_references
    references = {compiled.rule_of[name] for name, rule in compiled.definition.items() if "r1$not" in str(rule)}
    assert references == {"not-glob", "not-same-as", "not-any"}


def test_a_placeholder_binds_only_for_a_change_that_has_the_part(probes):
    """stock.{market} names no permission for account.trade: neither the relation nor its negation holds."""
    found = held_for(probes, one(NO_MARKET, stored={"stock.US": "open"}), use_memo=False)
    assert {"after-open-market", "after-close-market", "not-after-open-market"}.isdisjoint(found)
