"""The same rules as a GoRules zen-engine decision table (bench/zen_rules.json), and an evaluator around it.

The table is the natural one for that engine: hit policy ``first`` (the first matching row decides, as rule
order does here), one input column per fact (rules over the same fact share a column), one row per rule in
the rules' order, a final catch-all row for ``pass``, and ``loop`` execution mode so one call evaluates every
change of a request (one call per change costs far more), evaluated through a ``ZenEngine`` whose static
loader keeps the compiled decision (``ZenDecision.evaluate`` costs about ten times more per call). It reads
the same fact records the adapter posts to durable_rules (``app.rules.facts.change_facts``).

``python -m bench.zen_rules`` rewrites bench/zen_rules.json from rules/; the benchmark checks that the file
gives exactly the adapter's verdicts before timing it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from app.rules.compiler import PASS_RULE_ID
from app.rules.facts import change_facts
from app.rules.model import Condition, RuleSet

TABLE_PATH = Path(__file__).with_name("zen_rules.json")
DECISION_KEY = "trade-permission-rules"


def _literal(value: Any) -> str:
    return json.dumps(value)


def _glob_regex(glob: str) -> str:
    out = []
    for ch in glob:
        out.append(".*" if ch == "*" else "." if ch == "?" else f"[{ch}]" if not (ch.isalnum() or ch == "_") else ch)
    return "^" + "".join(out) + "$"


def column_and_cell(condition: Condition) -> tuple[str, str]:
    """(input column expression, unary cell) for a condition; absent facts are null and never match."""
    fact, test, argument = condition.fact, condition.test, condition.argument
    if test == "is":
        return f"{fact}__kind", _literal(argument)
    if test == "matches":
        prefix = argument[:-1]
        if argument.endswith("*") and not any(ch in prefix for ch in "*?["):
            return fact, f"$ != null and startsWith($, {_literal(prefix)})"
        return fact, f"$ != null and matches($, {_literal(_glob_regex(argument))})"
    if test == "equals":
        return fact, _literal(argument)
    if test == "not_one_of":
        return fact, f"$ != null and $ not in {_literal(list(argument))}"
    if test == "equals_fact":
        return f"{fact} != null and {argument} != null and {fact} == {argument}", "true"
    raise ValueError(f"unknown test {test!r}")


def decision_table(rule_set: RuleSet) -> dict[str, Any]:
    """The JDM graph: input → decision table (first hit, loop over `facts`) → output."""
    columns: dict[str, str] = {}  # column expression → column id
    rows = []
    for rule in rule_set.rules:
        expression, cell = column_and_cell(rule.condition)
        column = columns.setdefault(expression, f"in{len(columns)}")
        rows.append({"_id": rule.id, "_description": rule.description, column: cell, "out": _literal(rule.id)})
    rows.append({"_id": PASS_RULE_ID, "_description": "no rule rejects the change", "out": _literal(PASS_RULE_ID)})
    for row in rows:
        for column in columns.values():
            row.setdefault(column, "")
    content = {
        "hitPolicy": "first",
        "inputs": [{"id": column, "name": expression, "field": expression} for expression, column in columns.items()],
        "outputs": [{"id": "out", "name": "rule", "field": "rule_id"}],
        "rules": rows,
        "passThrough": False,
        "inputField": "facts",
        "outputPath": "verdicts",
        "executionMode": "loop",
    }
    return {
        "nodes": [
            {"id": "request", "type": "inputNode", "name": "request", "position": {"x": 0, "y": 0}},
            {
                "id": "rules",
                "type": "decisionTableNode",
                "name": "trade-permission rules",
                "content": content,
                "position": {"x": 250, "y": 0},
            },
            {"id": "response", "type": "outputNode", "name": "response", "position": {"x": 500, "y": 0}},
        ],
        "edges": [
            {"id": "e1", "sourceId": "request", "targetId": "rules", "type": "edge"},
            {"id": "e2", "sourceId": "rules", "targetId": "response", "type": "edge"},
        ],
    }


class ZenEvaluator:
    """Verdicts from zen-engine for every change, in order (rule id, or None when the change passes)."""

    def __init__(self, rule_set: RuleSet, table: Mapping[str, Any] | None = None) -> None:
        import zen

        self.rule_set = rule_set
        content = dict(table) if table is not None else json.loads(TABLE_PATH.read_text())
        # An engine with a static loader keeps the compiled decision; ZenDecision.evaluate costs ~10x more a call.
        self._engine = zen.ZenEngine({"loader": {"type": "static", "content": {DECISION_KEY: content}}})

    def evaluate(
        self, changes: Sequence[Mapping[str, Any]], *, enabled: frozenset[str], current: Mapping[str, str]
    ) -> list[str | None]:
        facts = change_facts(changes, catalog=self.rule_set.catalog, enabled=enabled, current=current)
        verdicts = self._engine.evaluate(DECISION_KEY, {"facts": facts})["result"]["verdicts"]
        return [None if v["rule_id"] == PASS_RULE_ID else v["rule_id"] for v in verdicts]


def main() -> None:
    from app.rules.loader import load_rule_set
    from app.settings import Settings

    table = decision_table(load_rule_set(Settings.from_env().rules_dir))
    TABLE_PATH.write_text(json.dumps(table, indent=2) + "\n")
    print(f"wrote {TABLE_PATH}")


if __name__ == "__main__":
    main()
