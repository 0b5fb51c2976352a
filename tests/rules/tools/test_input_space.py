"""tools/input_space/space.py: every point is judged by decide() on the durable_rules engine — the verdict the space
reports is the traced verdict of the point's change, memo on or off — and judging a class of types by its first
member agrees with judging each member. (test_input_space_soundness.py: a point stands for every input it covers.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.rules.language.loader import load_rule_set
from app.rules.language.model import RuleSet
from app.rules.runtime.decision import decide
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.tools.input_space.space import MISSING, NOT_TEXT, InputSpace, Point
from tests.rules.support import BROKER_POLICIES, rules_dir
from tests.support import SHIPPED_RULES

# Every kind of test the language has: tenants, account status, a pattern attribute, windows, a glob relation
# that names the judged type itself, a negated glob, same_as, named_earlier, enabled_for_tenant, an any/not.
EVERY_KIND = """
policies:
  - id: tenant-and-status
    description: x
    when:
      change: {product: options, permission_status: open}
      tenant: [t1, "t2*"]
      not: {account: {status: deregistered}}
    message: no
  - id: any-options-open
    description: x
    from: 2026-03-01
    until: 2026-04-01
    when:
      change: {product: stock, permission_status: close}
      permission: "options.*"
      after: open
    message: no
  - id: warrant-anywhere-before
    description: x
    enforcement: warn
    when:
      change: {product: warrant}
      permission: "warrant.*"
      before: open
    message: no
  - id: residency-not-glob
    description: x
    when:
      change: {group: va, permission_status: open}
      not: {account: {residency: "S?"}}
    message: no
  - id: not-a-stock-glob
    description: x
    enforcement: dryrun
    until: 2026-03-15
    when:
      all:
        - change: {product: [ipo, otc], market: [US, HK]}
        - not: {change: {permission_type: "ipo.*"}}
        - any:
            - account: {investor_class: retail}
            - change: {named_earlier: true}
    message: no
  - id: counts
    description: x
    when:
      any:
        - count: {permission: "options.*", after: open, more_than: 2}
        - all:
            - change: {market: [US, HK]}
            - not: {count: {permission: "{product}.*", after: open, more_than: 1}}
            - {permission: "stock.{market}", after: open}
    message: no
"""


def _agrees_everywhere(rule_set: RuleSet, *, collapse: bool = False) -> int:
    """Each point's verdict is decide()'s on the request that realises it: the rules that held for the point's
    change, and (when no earlier change of the request is refused first) the request's own answer."""
    engine = DurableRulesEngine(rule_set)
    space = InputSpace((rule_set,), collapse=collapse)
    for point in space.points:
        decision_input, index = space.input_of(point)
        decision = decide(engine, decision_input, use_memo=False)
        (verdict,) = space.verdicts(point)
        assert verdict.held == decision.held[index], point
        assert space.verdicts(point, use_memo=False) == (verdict,), point
        if decision.denial is None or decision.denial.index == index:
            assert verdict.denial == (decision.denial.rule if decision.denial else None), point
            assert verdict.warnings == tuple(h.rule for h in decision.warnings if h.index == index), point
            assert verdict.dryruns == tuple(h.rule for h in decision.dryruns if h.index == index), point
    return len(space.points)


@pytest.fixture(scope="module")
def every_kind(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return load_rule_set(rules_dir(tmp_path_factory.mktemp("every-kind"), EVERY_KIND))


@pytest.mark.parametrize(
    "directory",
    [SHIPPED_RULES, pytest.param(BROKER_POLICIES, marks=pytest.mark.slow)],
    ids=["shipped", "broker-policies"],
)
def test_every_point_of_the_shipped_sets_is_judged_by_decide(directory: Path):
    assert _agrees_everywhere(load_rule_set(directory)) > 1000


@pytest.mark.slow
def test_every_point_of_a_set_using_every_kind_of_test_is_judged_by_decide(every_kind: RuleSet):
    # one type of each class (the next test shows each class is judged as each of its members)
    assert _agrees_everywhere(every_kind, collapse=True) > 1000


def _related_states(space: InputSpace, point: Point) -> tuple[tuple[int, str, str], ...]:
    """The related permissions' states by the group they stand for (the same for every type of a class), not by
    the member that shows them (stock.US for options.US, stock.HK for options.HK)."""
    _, groups = space._related(point.permission_type, space._facts[point.permission_type])
    return tuple(
        (next(i for i, group in enumerate(groups) if other in group), before, after)
        for other, before, after in point.related
    )


@pytest.mark.parametrize("which", ["shipped", "broker-policies", pytest.param("every-kind", marks=pytest.mark.slow)])
def test_a_class_of_types_is_judged_as_each_of_its_members(which: str, every_kind: RuleSet):
    rule_set = {"shipped": None, "broker-policies": None, "every-kind": every_kind}[which] or load_rule_set(
        SHIPPED_RULES if which == "shipped" else BROKER_POLICIES
    )
    collapsed, full = InputSpace((rule_set,)), InputSpace((rule_set,), collapse=False)
    assert len(collapsed.points) < len(full.points)
    by_type: dict[str, dict[tuple[object, ...], frozenset[str]]] = {}
    for point in full.points:
        held = full.verdicts(point)[0].held
        related = _related_states(full, point)
        key = (point.permission_status, point.current_status, point.named_earlier, point.earlier_status)
        key += (point.enabled, point.account_status, point.attributes, point.tenant, point.interval)
        key += (related, point.counted)
        by_type.setdefault(point.permission_type, {})[key] = held
    for point in collapsed.points:
        held = collapsed.verdicts(point)[0].held
        related = _related_states(collapsed, point)
        key = (point.permission_status, point.current_status, point.named_earlier, point.earlier_status)
        key += (point.enabled, point.account_status, point.attributes, point.tenant, point.interval)
        key += (related, point.counted)
        for member in collapsed.members[point.permission_type]:
            assert by_type[member][key] == held, (member, point)


def test_the_space_covers_every_catalog_value_status_and_malformed_type(every_kind: RuleSet):
    space = InputSpace((every_kind,))
    covered = {m for p in space.points for m in space.members[p.permission_type]}
    assert set(every_kind.catalog.values) <= covered
    assert {MISSING, NOT_TEXT, "flag.x", "unknown"} <= covered
    statuses = {p.permission_status for p in space.points}
    assert statuses == {MISSING, NOT_TEXT, "open", "close", "other"}
    assert {p.tenant for p in space.points} >= {"t1", "t2x", "other-tenant"}
    assert {dict(p.attributes).get("residency") for p in space.points} >= {"SX", "ZZ", None}
    assert len({p.interval for p in space.points}) == 4  # before, in both windows, in one, after both
