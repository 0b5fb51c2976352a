"""The rule files of rules/ (see rules/README.md): validation.yaml (`rules:`) and policies.yaml (`policies:`),
YAML in, Rules out, every mistake located by file, line, column and rule id.

Each entry is read against its schema (app/rules/language/schema.py: its keys and the type of each value),
then for what the entry alone cannot tell: its id among the others, the placeholders of its message, and its
condition (app/rules/language/conditions.py).
"""

from __future__ import annotations

import re
import string
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from app.rules.language.attributes import AttributeDeclaration, deprecated_read
from app.rules.language.clauses import ConditionTooLarge, clauses
from app.rules.language.conditions import GLOB as GLOB
from app.rules.language.conditions import RuleContext, parse_condition, reads
from app.rules.language.conditions import is_glob as is_glob
from app.rules.language.model import MESSAGE_FIELDS, Catalog, Condition, Rule, Window
from app.rules.language.schema import OUTCOME_FACTS, POLICY_ENTRY, VALIDATION_ENTRY, Mistake
from app.rules.language.source import Problem, YamlReader, position

VALIDATION_FILE = "validation.yaml"
POLICY_FILE = "policies.yaml"
RULE_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
DECLARED_ID = re.compile(r"^\s*(?:-\s+)?id:\s*[\"']?([a-z0-9][a-z0-9-]*)[\"']?\s*(?:#.*)?$", re.MULTILINE)


def _id_mistakes(rule_id: object, seen: set[str]) -> list[Mistake]:
    """What is wrong with a rule's id: its form, a reserved word, or an id an earlier rule has."""
    if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
        return [("'id' must be lower-case letters, digits and dashes", "id")]
    if rule_id == "pass":
        return [("'pass' is reserved for changes no rule denies", "id")]
    if rule_id in seen:
        return [(f"duplicate rule id '{rule_id}'", "id")]
    return []


def _window(ctx: RuleContext, item: CommentedMap, values: dict[str, Any]) -> Window | None:
    """When a policy is in force (None: always); a window that ends before it starts is reported."""
    start, end = values["from"], values["until"]
    if start is not None and end is not None and start >= end:
        ctx.problem(item, "'from' must be before 'until'", "until")
    return None if start is None and end is None else Window(start, end)


def _message_fields(ctx: RuleContext, item: CommentedMap) -> None:
    """Report a malformed message template, or a placeholder that is no fact and no declared attribute."""
    if not isinstance(item.get("message"), str):
        return
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(item["message"]) if f is not None}
    except ValueError as exc:
        ctx.problem(item, f"message template is malformed: {exc}", "message")
        return
    for name in sorted(names - set(MESSAGE_FIELDS) - set(ctx.attributes)):
        ctx.problem(item, f"message names unknown placeholder {{{name}}}", "message")
    for name in sorted(names - set(MESSAGE_FIELDS)):
        if name in ctx.attributes and ctx.attributes[name].deprecated:
            ctx.problem(item, deprecated_read(name), "message")


def _condition(ctx: RuleContext, item: CommentedMap, outcome: object) -> Condition | None:
    """The rule's `when:`, as small as the engine takes, and reading the facts its outcome is a fault of."""
    if "when" not in item:
        return None
    condition = parse_condition(ctx, item["when"], item, "when")
    if condition is None:
        return None
    try:
        clauses(condition)  # the engine gets one rule per alternative: refuse it here, not at start-up
    except ConditionTooLarge as exc:
        ctx.problem(item, str(exc), "when")
    fits = OUTCOME_FACTS.get(outcome, set()) if isinstance(outcome, str) and not ctx.policy else set()
    if fits and not reads(condition) & fits:
        facts = " or ".join(sorted(fits))
        ctx.problem(item, f"{outcome} reports a fault of {facts}, which this rule's condition never reads", "when")
    return condition


def _rule(
    reader: YamlReader,
    item: CommentedMap,
    index: int,
    *,
    policy: bool,
    seen: set[str],
    attributes: dict[str, AttributeDeclaration],
    catalog: Catalog | None = None,
) -> Rule | None:
    """One entry as a Rule, or None when anything in it is wrong (every mistake reported)."""
    rule_id = item.get("id")
    shown_id = rule_id if isinstance(rule_id, str) else f"{'policies' if policy else 'rules'}[{index}]"
    ctx = RuleContext(reader, shown_id, attributes, catalog, policy)
    before = len(reader.problems)
    schema = POLICY_ENTRY if policy else VALIDATION_ENTRY
    mistakes = [*schema.key_mistakes(item), *_id_mistakes(rule_id, seen)]
    seen.add(str(rule_id))
    values, wrong_values = schema.read_values(item)
    for text, key in mistakes + wrong_values:
        ctx.problem(item, text, key)
    window = _window(ctx, item, values)
    _message_fields(ctx, item)
    condition = _condition(ctx, item, values["outcome"])
    if len(reader.problems) != before or condition is None:
        return None
    return Rule(
        id=str(rule_id),
        description=item["description"].strip(),
        field=str(values["field"]),
        condition=condition,
        outcome=str(values["outcome"]),
        message=item["message"],
        enforcement=str(values["enforcement"]),
        window=window,
        source=reader.shown,
        line=item.lc.line + 1,
        places=tuple((str(key), *position(item, key)) for key in item),
        column=item.lc.col + 1,
        applies_to=str(values.get("applies_to", "holding")),
    )


def _declared_ids(data: bytes | None) -> set[str]:
    """The rule ids a file appears to declare, read from its text (even when it is broken)."""
    try:
        text = data.decode("utf-8") if data is not None else ""
    except UnicodeDecodeError:
        text = ""
    return set(DECLARED_ID.findall(text))


def _entries(reader: YamlReader, doc: Any, key: str) -> CommentedSeq | None:
    """The file's list of entries, or None when the file holds none (reported); other top-level keys are
    reported."""
    if doc is None:
        if not reader.problems:
            reader.problem(None, key, "file is empty")
        return None
    if not isinstance(doc, CommentedMap) or not isinstance(doc.get(key), CommentedSeq):
        reader.problem(doc, key, f"must be a mapping with a '{key}' list")
        return None
    for name in doc:
        if name != key:
            reader.problem(doc, key, f"unknown key '{name}'", name)
    return doc[key]


def load_rules(
    data: bytes | None,
    shown: str,
    *,
    policy: bool,
    seen: set[str],
    attributes: dict[str, AttributeDeclaration],
    catalog: Catalog | None = None,
) -> tuple[tuple[Rule, ...], list[Problem]]:
    """Read validation.yaml (`rules:`) or policies.yaml (`policies:`) into ordered Rules. Every id the file
    declares goes into `seen`, the ids of rules it cannot read too (a case naming one is not "no rule")."""
    key = "policies" if policy else "rules"
    reader = YamlReader(data, shown)
    entries = _entries(reader, reader.load_items(key), key)
    rules: list[Rule] = []
    for i, item in enumerate(entries or ()):
        if not isinstance(item, CommentedMap):
            reader.problem(entries, key, f"each item of '{key}' is a mapping", i)
            continue
        rule = _rule(reader, item, i, policy=policy, seen=seen, attributes=attributes, catalog=catalog)
        if rule is not None:
            rules.append(rule)
    seen |= _declared_ids(data)
    return tuple(rules), reader.problems
