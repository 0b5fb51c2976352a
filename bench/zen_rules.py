"""A rule set as a GoRules zen-engine decision table (bench/zen_*.json), and an evaluator around it.

zen-engine is given the facts the adapter gives durable_rules (``engine_facts``, built by app/rules/runtime/facts.py):
the context (tenant, account status and attributes, the time), the account's permissions open before or after
the request, and one record per change. The table is the one a zen-engine author would write:

* hit policy ``collect`` (every rule that holds, as the adapter reports), ``loop`` mode over
  ``map(changes, {c: #, x: context, p: permissions})``, so each row sees one change ``c`` beside the shared
  context ``x`` and permissions ``p`` (a loop item sees nothing else);
* one row per rule, in file order; the simple tests of a rule's top-level conjunction are unary cells in one
  column per fact (``c.product`` = ``"options"``, ``c.market`` = ``"JP", "DE"``, ``x.a_account_type``,
  ``x.now`` = ``[from..until)``);
* what a cell of one fact cannot say — negations, any-of, same-as and relations to other permissions — goes into
  one expression column: ``stock.{market} after: close`` is ``not some(p, #.head == "stock" and #.tail ==
  c.market and #.after == "open")``, a join zen-engine evaluates.

``python -m bench.zen_rules`` rewrites the tables from rules/ and examples/broker-policies/; the benchmark
checks that each table gives exactly the oracle's verdicts before timing it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from app.rules.language.clauses import CountPattern, context_key, count_key, count_patterns, rule_set_clauses
from app.rules.language.model import (
    AccountTest,
    All,
    AnyOf,
    ChangeTest,
    Condition,
    CountTest,
    Match,
    Not,
    PermissionTest,
    Rule,
    RuleSet,
    TenantTest,
    Window,
)
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.runtime.facts import after_request, change_records, context_record, permission_records

HERE = Path(__file__).parent
DECISION_KEY = "trade-permission-rules"
LOOP = "map(changes, {c: #, x: context, p: permissions})"
OTHER = "other"  # the expression column's id
Atom = Condition | Window


def table_path(name: str) -> Path:
    """Where the table of a rule set (shipped, broker-policies) is kept."""
    return HERE / ("zen_rules.json" if name == "shipped" else f"zen_{name.replace('-', '_')}.json")


def _literal(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _glob(subject: str, glob: str) -> str:
    prefix = glob[:-1]
    if glob.endswith("*") and not any(ch in prefix for ch in "*?"):
        return f"{subject} != null and startsWith({subject}, {_literal(prefix)})"
    pattern = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in glob)
    return f"{subject} != null and matches({subject}, {_literal('^' + pattern + '$')})"


def _is_glob(value: object) -> bool:
    return isinstance(value, str) and ("*" in value or "?" in value)


def _values(subject: str, match: Match) -> str:
    """A MATCH as a standard expression over `subject`; an absent fact (null) never matches."""
    if match.kind is not None:
        return f"{subject}__kind == {_literal(match.kind)}"
    if match.same_as is not None:
        other = f"c.{match.same_as}"
        return f"{subject} != null and {other} != null and {subject} == {other}"
    texts = [v for v in match.values if not _is_glob(v)]
    terms = [_glob(subject, str(v)) for v in match.values if _is_glob(v)]
    if len(texts) == 1:
        terms.insert(0, f"{subject} == {_literal(texts[0])}")
    elif texts:
        terms.insert(0, f"{subject} in {_literal(texts)}")
    return terms[0] if len(terms) == 1 else " or ".join(f"({t})" for t in terms)


def _subject(atom: ChangeTest | AccountTest | TenantTest) -> str:
    return f"c.{atom.field}" if isinstance(atom, ChangeTest) else f"x.{context_key(atom)}"


def _part(key: str, spec: str) -> tuple[str, str | None]:
    if spec.startswith("{"):
        bound = spec[1:-1]
        return f"#.{key} == c.{bound}", bound
    if _is_glob(spec):
        return _glob(f"#.{key}", spec), None
    return f"#.{key} == {_literal(spec)}", None


def _relation(test: PermissionTest, negated: bool) -> str:
    """Some permission the template names is open (before or after); a placeholder must bind (SPEC §7a)."""
    terms, guards = [], []
    for key, spec in (("head", test.head), ("tail", test.tail)):
        term, bound = _part(key, spec)
        terms.append(term)
        if bound is not None:
            guards.append(f"c.{bound} != null")
    terms.append(f"#.{test.state} == {_literal('open')}")
    exists = f"some(p, {' and '.join(terms)})"
    if negated != (test.status == "close"):
        exists = f"not {exists}"
    return " and ".join([*guards, exists])


def expression(condition: Atom, negated: bool = False, counts: tuple[CountPattern, ...] = ()) -> str:
    """A condition as one ZEN standard expression, negations pushed down to the tests (as durable_rules has it).
    A count reads the change's own count fact (`c.count_k`, k its pattern's place in `counts`)."""
    if isinstance(condition, Not):
        return expression(condition.part, not negated, counts)
    if isinstance(condition, All | AnyOf):
        joiner = " and " if isinstance(condition, All) != negated else " or "
        return joiner.join(f"({expression(p, negated, counts)})" for p in condition.parts)
    if isinstance(condition, PermissionTest):
        return _relation(condition, negated)
    if isinstance(condition, CountTest):
        field = f"c.{count_key(counts.index(condition.pattern))}"
        return f"{field} <= {condition.more_than}" if negated else f"{field} > {condition.more_than}"
    if isinstance(condition, Window):
        bounds = []
        if condition.start is not None:
            bounds.append(f"x.now >= {condition.start.timestamp()}")
        if condition.end is not None:
            bounds.append(f"x.now < {condition.end.timestamp()}")
        text = " and ".join(bounds)
    else:
        text = _values(_subject(condition), condition.match)
    return f"not ({text})" if negated else text


def _cell(part: Atom) -> tuple[str, str] | None:
    """(column field, unary cell) for a test one fact's column can hold, else None."""
    if isinstance(part, Window):
        start = part.start.timestamp() if part.start is not None else None
        end = part.end.timestamp() if part.end is not None else None
        if start is not None and end is not None:
            return "x.now", f"[{start}..{end})"
        return "x.now", f">= {start}" if start is not None else f"< {end}"
    if not isinstance(part, ChangeTest | AccountTest | TenantTest) or part.match.same_as is not None:
        return None
    subject = _subject(part)
    if part.match.kind is not None:
        return f"{subject}__kind", _literal(part.match.kind)
    if any(_is_glob(v) for v in part.match.values):
        return (subject, _glob("$", str(part.match.values[0]))) if len(part.match.values) == 1 else None
    return subject, ", ".join(_literal(v) for v in part.match.values)


def _row(rule: Rule, columns: dict[str, str], counts: tuple[CountPattern, ...]) -> dict[str, str]:
    parts: list[Atom] = list(rule.condition.parts) if isinstance(rule.condition, All) else [rule.condition]
    if rule.window is not None:
        parts.append(rule.window)
    row = {"_id": rule.id, "_description": rule.description}
    rest = []
    for part in parts:
        cell = _cell(part)
        column = columns.setdefault(cell[0], f"in{len(columns)}") if cell is not None else None
        if cell is None or column in row:
            rest.append(expression(part, counts=counts))
        else:
            row[column] = cell[1]
    if rest:
        row[OTHER] = " and ".join(f"({e})" for e in rest) if len(rest) > 1 else rest[0]
    row["out"] = _literal(rule.id)
    return row


def decision_table(rule_set: RuleSet) -> dict[str, Any]:
    """The JDM graph: input → decision table (collect, loop over the changes) → output."""
    columns: dict[str, str] = {}  # column field → column id
    counts = count_patterns(rule_set_clauses(rule_set.rules))
    rows = [_row(rule, columns, counts) for rule in rule_set.rules]
    inputs = [{"id": column, "name": field, "field": field} for field, column in columns.items()]
    inputs.append({"id": OTHER, "name": "negations, any-of and relations", "field": ""})
    for row in rows:
        for column in [*columns.values(), OTHER]:
            row.setdefault(column, "")
    content = {
        "hitPolicy": "collect",
        "inputs": inputs,
        "outputs": [{"id": "out", "name": "rule", "field": "rule_id"}],
        "rules": rows,
        "passThrough": False,
        "inputField": LOOP,
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


def engine_facts(engine: DurableRulesEngine) -> Callable[[DecisionInput], dict[str, Any]]:
    """The facts the adapter gives durable_rules (context, permissions, change records), built with its own
    functions; without the message values, which zen-engine's table does not read."""
    catalog = engine.rule_set.catalog
    counts = count_patterns(rule_set_clauses(engine.rule_set.rules))

    def build(decision_input: DecisionInput) -> dict[str, Any]:
        enabled = engine.enabled(decision_input.tenant_patterns)
        stored = decision_input.stored
        after = after_request(decision_input.changes, catalog=catalog, enabled=enabled, stored=stored)
        return {
            "context": context_record(
                tenant_id=decision_input.tenant_id,
                account_status=decision_input.account_status,
                attributes=decision_input.attributes,
                now=decision_input.at.timestamp(),
            ),
            "permissions": permission_records(catalog, stored, after),
            "changes": change_records(
                decision_input.changes, catalog=catalog, enabled=enabled, stored=stored, counts=counts
            ),
        }

    return build


class ZenEvaluator:
    """Per change, the ids of the rules zen-engine's table says hold, from the adapter's own facts."""

    def __init__(self, facts_of: Callable[[DecisionInput], dict[str, Any]], table: Mapping[str, Any]) -> None:
        import zen

        self._facts_of = facts_of
        # An engine with a static loader keeps the compiled decision; ZenDecision.evaluate costs ~10x more a call.
        self._engine = zen.ZenEngine({"loader": {"type": "static", "content": {DECISION_KEY: dict(table)}}})

    def held(self, decision_input: DecisionInput) -> tuple[frozenset[str], ...]:
        verdicts = self._engine.evaluate(DECISION_KEY, self._facts_of(decision_input))["result"]["verdicts"]
        return tuple(frozenset(hit["rule_id"] for hit in hits) for hits in verdicts)


def main() -> None:
    from app.rules.language.loader import load_rule_set
    from bench.paths import RULE_SETS

    for name, rules_dir in RULE_SETS.items():
        path = table_path(name)
        path.write_text(json.dumps(decision_table(load_rule_set(rules_dir)), indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
