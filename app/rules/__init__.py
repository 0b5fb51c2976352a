"""Compliance-owned rules: loading rules/, compiling it for durable_rules, and evaluating changes."""

from app.rules.engine import DurableRulesEngine, RulesEngineError, Verdict
from app.rules.loader import Problem, RuleSetInvalid, load_rule_set
from app.rules.model import Catalog, Rule, RuleSet

__all__ = [
    "Catalog",
    "DurableRulesEngine",
    "Problem",
    "Rule",
    "RuleSet",
    "RuleSetInvalid",
    "RulesEngineError",
    "Verdict",
    "load_rule_set",
]
