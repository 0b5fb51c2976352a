"""Rule coverage of the cases (issue 12): fired and passed, read from decide() through Decision.reached()."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from app.errors import InvalidRequest
from app.rules.runtime.decision import decide
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.tools.cases import Case, Expected, run_cases
from app.rules.tools.coverage import Coverage, RuleCoverage, exercised, shown_percent
from app.schemas.permissions import load_update_request
from tests.rules.support import VALIDATION_IDS, ch, engine_for, request
from tests.support import PROJECT_ROOT

POLICIES = """
policies:
  - id: no-options
    description: A catch-all over every options change; it shadows the next policy.
    when: {change: {product: options}}
    message: options are not offered
  - id: no-us-options
    description: Shadowed by no-options, so it can never decide anything.
    when: {change: {permission_type: options.US, permission_status: open}}
    message: US options are not offered
  - id: otc-warning
    description: A reminder.
    enforcement: warn
    when: {change: {product: otc, permission_status: open}}
    message: collect the OTC disclosure
  - id: grey-watch
    description: Watched.
    enforcement: dryrun
    when: {change: {product: stockgrey, permission_status: open}}
    message: grey market
  - id: old-freeze
    description: Expired.
    from: 2020-01-01T00:00:00Z
    until: 2020-02-01T00:00:00Z
    when: {change: {permission_status: open}}
    message: frozen
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> DurableRulesEngine:
    return engine_for(tmp_path_factory.mktemp("coverage"), POLICIES)


def test_reached_stops_at_the_deciding_rule_of_the_denied_change(engine):
    decision = decide(engine, request([ch("otc.US", "open"), ch("options.HK", "open"), ch("stock.US", "open")]))
    assert decision.denial is not None and decision.denial.rule.id == "no-options"
    everything = [r.id for r in engine.rule_set.rules]
    assert [r.id for r in decision.reached(0)] == everything
    assert [r.id for r in decision.reached(1)] == everything[: everything.index("no-options") + 1]
    assert decision.reached(2) == ()


def test_an_accepted_request_reached_every_rule_for_every_change(engine):
    decision = decide(engine, request([ch("stock.US", "open"), ch("stock.HK", "open")]))
    assert decision.accepted
    assert all(len(decision.reached(i)) == len(engine.rule_set.rules) for i in range(2))


def test_a_shadowed_rule_holds_but_never_fires(engine):
    decision = decide(engine, request([ch("options.US", "open")]))
    assert {"no-options", "no-us-options"} <= decision.held[0]  # the engine says both hold ...
    seen = exercised(decision)
    assert seen.fired == {"no-options"}  # ... but only the first decides
    assert "no-us-options" not in seen.let_pass  # it was never reached for that change
    assert set(VALIDATION_IDS) <= seen.let_pass  # every validation judged the change and let it pass


def test_warn_and_dryrun_policies_fire_when_hit(engine):
    seen = exercised(decide(engine, request([ch("otc.US", "open"), ch("stockgrey.HK", "open")])))
    assert seen.fired == {"otc-warning", "grey-watch"}
    assert {"no-options", "no-us-options", "old-freeze"} <= seen.let_pass


def test_a_policy_outside_its_window_passes_and_inside_it_fires(engine):
    outside = exercised(decide(engine, request([ch("stock.US", "open")])))
    assert "old-freeze" in outside.let_pass and "old-freeze" not in outside.fired
    inside = exercised(decide(engine, request([ch("stock.US", "open")], at=datetime(2020, 1, 15, tzinfo=UTC))))
    assert inside.fired == {"old-freeze"}


def _case(name: str, changes: list[dict[str, str]], code: str = "SUCCESS", rule_id: str | None = None) -> Case:
    return Case(name, "cases/x.yaml", 1, ("*",), {}, changes, Expected(code, 0, rule_id))


def test_coverage_counts_fired_and_passed_per_rule(engine):
    report = run_cases(
        engine.rule_set,
        [
            _case("options refused", [ch("options.US", "open")], "PERMISSION_POLICY_DENIED", "no-options"),
            _case("otc warned", [ch("otc.US", "open")]),
        ],
        load_update_request,
    )
    assert report.failed == 0
    by_rule = {r.rule_id: r for r in report.coverage.rules}
    assert by_rule["no-options"] == RuleCoverage("no-options", fired=True, passed=True)
    assert by_rule["no-us-options"] == RuleCoverage("no-us-options", fired=False, passed=True)
    # the only case that reaches it is the one it warns in: the options case stops at no-options
    assert by_rule["otc-warning"] == RuleCoverage("otc-warning", fired=True, passed=False)
    assert by_rule["grey-watch"] == RuleCoverage("grey-watch", fired=False, passed=True)
    assert by_rule["type-required"] == RuleCoverage("type-required", fired=False, passed=True)
    rules = len(engine.rule_set.rules)
    assert report.coverage.percent == pytest.approx(100 * (2 + rules - 1) / (2 * rules))
    assert report.unexercised == report.coverage.never_fired
    assert "no-us-options" in report.unexercised and "no-options" not in report.unexercised


def test_the_percentage_is_never_rounded_up_to_a_threshold():
    coverage = Coverage(tuple(RuleCoverage(f"r{i}", fired=i > 0, passed=True) for i in range(1000)))
    assert coverage.percent == pytest.approx(99.95)
    assert shown_percent(coverage.percent) == "99.9%"
    assert Coverage(()).percent == 100.0


def test_a_request_refused_by_its_shape_covers_nothing(engine):
    cases = [_case("not a list", "nope", "INVALID_REQUEST")]  # type: ignore[arg-type]
    report = run_cases(engine.rule_set, cases, load_update_request)
    assert report.failed == 0
    assert not any(r.fired or r.passed for r in report.coverage.rules)
    assert report.coverage.percent == 0.0


def test_a_case_reads_its_request_with_the_loader_its_caller_gives(engine):
    """The rules import no API schema: the caller's loader decides the shape, and its message is the case's."""
    refusing = _case("any request", [ch("stock.US", "open")], "INVALID_REQUEST")

    def loader(body: Mapping[str, Any]) -> Mapping[str, Any]:
        raise InvalidRequest(f"refused by the caller's loader: {len(body['changes'])} change(s)")

    (result,) = run_cases(engine.rule_set, [refusing], loader).results
    assert result.passed
    assert (result.outcome.code, result.outcome.message) == (
        "INVALID_REQUEST",
        "refused by the caller's loader: 1 change(s)",
    )
    (accepted,) = run_cases(engine.rule_set, [refusing], load_update_request).results
    assert accepted.outcome.code == "SUCCESS" and not accepted.passed


def test_no_module_of_the_rules_imports_the_api_schemas():
    rules = PROJECT_ROOT / "app" / "rules"
    importing = [
        str(path.relative_to(PROJECT_ROOT))
        for path in rules.rglob("*.py")
        if re.search(r"^\s*(from|import) app\.schemas", path.read_text(encoding="utf-8"), re.MULTILINE)
    ]
    assert importing == []
