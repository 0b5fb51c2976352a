"""Where the benchmark finds the checkout and the rule sets it measures."""

from pathlib import Path

from app.defaults import shipped_rules_dir

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_RULES = shipped_rules_dir()
BROKER_POLICIES = PROJECT_ROOT / "examples" / "broker-policies"
# The rule sets measured side by side: the seed's contract (no policies) and the ten broker policies.
RULE_SETS = {"shipped": SHIPPED_RULES, "broker-policies": BROKER_POLICIES}
