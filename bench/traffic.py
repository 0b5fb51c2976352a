"""Which catalog values the load generator's batches use under each served rule set.

Batches take the first k values of a list (bench/scenarios.py). Under the shipped rules that is the catalog in
order. Under a rule set with policies the list starts with changes the policies look at — stock.US before
options.US (the relation joins hold within the request, opening and closing together), otc.US (a warning),
stockgrey.US (a dryrun hit), ipo.US — and leaves out every value a deny policy refuses to open for an account
with no attributes at the time of the run (shortsell.*, va.*, ipo.JP/DE, account.withdraw during its freeze).
The oracle checks that every batch the benchmark sends gets the answer the load generator expects.
"""

from __future__ import annotations

from datetime import datetime

from app.rules.language.model import RuleSet
from app.rules.runtime.decision_input import DecisionInput
from bench.reference import Oracle

POLICY_FIRST = (
    "stock.US",
    "options.US",
    "otc.US",
    "stockgrey.US",
    "ipo.US",
    "stock.HK",
    "options.HK",
    "account.trade",
    "trade.client",
    "stock.SG",
)
TENANT = "bench"


def _request(values: list[str], status: str, stored: dict[str, str], at: datetime) -> DecisionInput:
    changes = tuple({"permission_type": v, "permission_status": status} for v in values)
    return DecisionInput(TENANT, ("*",), changes, stored=stored, at=at)


def _denied(oracle: Oracle, decision_input: DecisionInput) -> tuple[int, str] | None:
    return oracle.decision(oracle.held(decision_input))[0]


def served_values(rule_set: RuleSet, *, at: datetime) -> list[str]:
    """The values batches take, in order: every prefix opens from closed, and 1, 10 and all close again."""
    catalog = rule_set.catalog
    if not any(rule.is_policy for rule in rule_set.rules):
        return list(catalog.values)
    oracle = Oracle(rule_set)
    values = [v for v in POLICY_FIRST if v in catalog] + [v for v in catalog.values if v not in POLICY_FIRST]
    while (denial := _denied(oracle, _request(values, "open", {}, at))) is not None:
        values.pop(denial[0])  # an options.M whose stock.M went is refused in the next round, and goes too
    for size in range(1, len(values) + 1):
        denial = _denied(oracle, _request(values[:size], "open", {}, at))
        if denial is not None:
            raise AssertionError(f"opening the first {size} served values is refused: {denial}")
    for size in {1, min(10, len(values)), len(values)}:
        denial = _denied(oracle, _request(values[:size], "close", dict.fromkeys(values[:size], "open"), at))
        if denial is not None:
            raise AssertionError(f"closing the first {size} served values is refused: {denial}")
    return values
