"""The rule language of rules/validation.yaml and rules/policies.yaml (see rules/README.md): YAML in, Rules
out, every mistake located by file, line, column and rule id.

A condition is a mapping whose keys are combined with "all of them":
  change: {FIELD: MATCH, ...}           facts of the change being judged
  account: {status | ATTRIBUTE: MATCH}   the account's status and declared attributes
  tenant: MATCH                          the caller's tenant id
  permission: TEMPLATE, before|after: open|close   another permission of the account (its own item)
  all: [CONDITION, ...] / any: [CONDITION, ...] / not: CONDITION
A MATCH is text (exact, or a glob with * and ?), a list of them (any of them), true/false (flags),
{is: missing | not_text | text} or {same_as: FIELD}.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import UTC, date, datetime
from fnmatch import fnmatchcase
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from app.rules.language.attributes import AttributeDeclaration
from app.rules.language.clauses import ConditionTooLarge, clauses
from app.rules.language.model import (
    ACCOUNT_STATUSES,
    CHANGE_FIELDS,
    ENFORCEMENTS,
    FLAG_FIELDS,
    KINDS,
    MESSAGE_FIELDS,
    PART_FIELDS,
    RAW_FIELDS,
    STATUSES,
    TEXT_FIELDS,
    AccountTest,
    All,
    AnyOf,
    Catalog,
    ChangeTest,
    Condition,
    Match,
    Not,
    PermissionTest,
    Rule,
    TenantTest,
    Window,
)
from app.rules.language.source import Problem, YamlReader, position

VALIDATION_FILE = "validation.yaml"
POLICY_FILE = "policies.yaml"
POLICY_OUTCOME = "PERMISSION_POLICY_DENIED"
VALIDATION_OUTCOMES = (
    "INVALID_PERMISSION_TYPE",
    "INVALID_PERMISSION_STATUS",
    "DUPLICATE_PERMISSION_TYPE",
    "NO_STATE_CHANGE",
)
OUTCOME_FIELD = {  # the request field each validation outcome is a fault of
    "INVALID_PERMISSION_TYPE": "permission_type",
    "INVALID_PERMISSION_STATUS": "permission_status",
    "DUPLICATE_PERMISSION_TYPE": "permission_type",
    "NO_STATE_CHANGE": "permission_status",
}
OUTCOME_FACTS = {  # the facts a rule reporting each outcome must read to be about that fault
    "INVALID_PERMISSION_TYPE": {"permission_type", *PART_FIELDS, "in_catalog", "enabled_for_tenant"},
    "INVALID_PERMISSION_STATUS": {"permission_status"},
    "DUPLICATE_PERMISSION_TYPE": {"named_earlier"},
    "NO_STATE_CHANGE": {"current_status"},
}
MARKET_CODE = re.compile(r"^[A-Z][A-Z0-9]{1,7}$")  # as catalog.yaml writes markets (app/rules/language/loader.py)
RULE_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
GLOB = re.compile(r"^[A-Za-z0-9_.*?-]+$")  # the glob alphabet the engine's regex dialect can take safely
TEXT_VALUE_MAX = 64
HEAD_PLACEHOLDERS = ("product", "group")
TAIL_PLACEHOLDERS = ("market", "name")
PART = re.compile(r"^(?:\{(?P<placeholder>[a-z]+)\}|(?P<text>[A-Za-z0-9_*?-]+))$")
SUBJECTS = ("change", "account", "tenant", "permission", "all", "any", "not")


def is_glob(value: str) -> bool:
    """Whether a text value is a glob pattern rather than an exact value."""
    return "*" in value or "?" in value


@dataclass
class _Rule:
    """What the condition parser needs to know about the rule it is reading."""

    reader: YamlReader
    rule_id: str
    attributes: dict[str, AttributeDeclaration]
    catalog: Catalog | None = None  # as read (None when catalog.yaml cannot be read)
    policy: bool = False


def _problem(ctx: _Rule, node: Any, text: str, key: Any = None) -> None:
    ctx.reader.problem(node, ctx.rule_id, text, key)


def _text_values(ctx: _Rule, node: Any, key: Any, value: Any, what: str) -> tuple[str, ...] | None:
    items = list(value) if isinstance(value, CommentedSeq | list) else [value]
    if not items:
        _problem(ctx, node, f"{what}: an empty list matches nothing", key)
        return None
    out: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int) or str(item) == "":
            _problem(ctx, node, f"{what}: {item!r} is not text (quote it, or use a list of texts)", key)
            return None
        text = str(item)
        if len(text) > TEXT_VALUE_MAX:
            _problem(ctx, node, f"{what}: a value is longer than {TEXT_VALUE_MAX} characters", key)
            return None
        if is_glob(text) and not GLOB.match(text):
            _problem(ctx, node, f"{what}: glob '{text}' may only use letters, digits, _ . - * ?", key)
            return None
        out.append(text)
    return tuple(out)


def _match(ctx: _Rule, node: Any, key: Any, value: Any, field: str, *, text_field: bool) -> Match | None:
    """One MATCH of a change, account or tenant field."""
    what = f"'{field}'"
    if isinstance(value, CommentedMap | dict):
        if len(value) != 1:
            _problem(ctx, node, f"{what}: use one of {{is: ...}} or {{same_as: ...}}", key)
            return None
        ((op, arg),) = value.items()
        if op == "is" and field in RAW_FIELDS:
            if arg not in KINDS:
                _problem(ctx, node, f"{what}: 'is' takes {', '.join(KINDS)}", key)
                return None
            return Match(kind=str(arg))
        if op == "same_as" and text_field:
            if arg not in TEXT_FIELDS or arg == field:
                _problem(ctx, node, f"{what}: 'same_as' names another change field ({', '.join(TEXT_FIELDS)})", key)
                return None
            return Match(same_as=str(arg))
        usable = "'is' (permission_type, permission_status) or 'same_as'" if text_field else "no operators"
        _problem(ctx, node, f"{what}: unknown operator '{op}' (this field takes {usable})", key)
        return None
    if not text_field:
        if not isinstance(value, bool):
            _problem(ctx, node, f"{what} is true or false", key)
            return None
        return Match(values=(value,))
    values = _text_values(ctx, node, key, value, what)
    return None if values is None else Match(values=values)


def _change(ctx: _Rule, node: CommentedMap, value: Any) -> list[Condition] | None:
    if not isinstance(value, CommentedMap) or not value:
        _problem(ctx, node, "'change' maps change fields to what they must match", "change")
        return None
    tests: list[Condition] = []
    for field, match in value.items():
        if field not in CHANGE_FIELDS:
            _problem(ctx, value, f"unknown change field '{field}' (use one of {', '.join(CHANGE_FIELDS)})", field)
            return None
        parsed = _match(ctx, value, field, match, field, text_field=field not in FLAG_FIELDS)
        if parsed is None:
            return None
        if field in ("current_status",) and parsed.values and not set(parsed.values) <= set(STATUSES):
            _problem(ctx, value, "'current_status' is open or close", field)
            return None
        never = _never_matched(ctx, str(field), parsed)
        if never is not None:
            _problem(ctx, value, never, field)
            return None
        tests.append(ChangeTest(str(field), parsed))
    return tests


def _codes(catalog: Catalog) -> dict[str, tuple[str, ...]]:
    """The catalog's codes by the change field that holds them ."""
    groups: list[str] = []
    names: list[str] = []
    for value in catalog.values:
        parts = catalog.parts(value)
        if "group" in parts:
            groups += [] if parts["group"] in groups else [parts["group"]]
            names += [] if parts["name"] in names else [parts["name"]]
    return {"market": catalog.markets, "product": catalog.products, "group": tuple(groups), "name": tuple(names)}


def _never_matched(ctx: _Rule, field: str, match: Match) -> str | None:
    """Why a value tested on a part of a policy's change can never match, or None.

    Only catalog values reach a policy (type-in-catalog runs first), so `market: us` or `product: stocks`
    never holds there. A validation judges the type as sent and may test any text."""
    if not ctx.policy:
        return None
    texts = [v for v in match.values if isinstance(v, str)]
    if field == "market":
        for value in texts:
            if not is_glob(value) and not MARKET_CODE.match(value) and MARKET_CODE.match(value.upper()):
                return f"'market' is never '{value}': market codes are upper case ('{value.upper()}')"
    if ctx.catalog is None:
        return None
    if field == "permission_type":
        for value in texts:
            if not is_glob(value) and value not in ctx.catalog:
                meant = [v for v in ctx.catalog.values if v.lower() == value.lower()]
                if meant:
                    return f"'permission_type' is never '{value}': catalog values are case-sensitive ('{meant[0]}')"
        return None
    known = _codes(ctx.catalog).get(field)
    if known is None:
        return None
    for value in texts:
        if is_glob(value) and not any(fnmatchcase(code, value) for code in known):
            return f"'{field}' glob '{value}' matches no {field} of the catalog ({', '.join(known)})"
        if not is_glob(value) and value not in known:
            return f"'{field}' is never '{value}' for a catalog value ({field}s: {', '.join(known)})"
    return None


def _account(ctx: _Rule, node: CommentedMap, value: Any) -> list[Condition] | None:
    if not isinstance(value, CommentedMap) or not value:
        _problem(ctx, node, "'account' maps status or declared attributes to what they must match", "account")
        return None
    tests: list[Condition] = []
    for field, match in value.items():
        if field != "status" and field not in ctx.attributes:
            declared = ", ".join(["status", *sorted(ctx.attributes)])
            _problem(ctx, value, f"unknown account field '{field}' (declared: {declared})", field)
            return None
        parsed = _match(ctx, value, field, match, str(field), text_field=True)
        if parsed is None or parsed.kind is not None or parsed.same_as is not None:
            if parsed is not None:
                _problem(ctx, value, f"'{field}' takes values, not operators", field)
            return None
        allowed = ACCOUNT_STATUSES if field == "status" else (ctx.attributes[str(field)].values or ())
        unknown = [v for v in parsed.values if isinstance(v, str) and not is_glob(v) and allowed and v not in allowed]
        if unknown:
            _problem(ctx, value, f"'{field}' is never '{unknown[0]}' (allowed: {', '.join(allowed)})", field)
            return None
        tests.append(AccountTest(str(field), parsed))
    return tests


def _permission(ctx: _Rule, node: CommentedMap) -> list[Condition] | None:
    template = node["permission"]
    head, dot, tail = str(template).partition(".") if isinstance(template, str) else ("", "", "")
    parts = (PART.match(head), PART.match(tail)) if dot else (None, None)
    if not all(parts):
        _problem(ctx, node, f"'permission' is a type like stock.US or stock.{{market}}, not {template!r}", "permission")
        return None
    for found, allowed in zip(parts, (HEAD_PLACEHOLDERS, TAIL_PLACEHOLDERS), strict=True):
        placeholder = found.group("placeholder") if found else None
        if placeholder is not None and placeholder not in allowed:
            _problem(ctx, node, f"'{{{placeholder}}}' cannot stand there (use {' or '.join(allowed)})", "permission")
            return None
    unknown = _unknown_permission(ctx.catalog, head, tail)
    if unknown is not None:
        _problem(ctx, node, f"'permission' {template!r} {unknown}", "permission")
        return None
    states = [k for k in ("before", "after") if k in node]
    if not states:
        _problem(ctx, node, "'permission' needs before: or after: (open or close)", "permission")
        return None
    tests: list[Condition] = []
    for state in states:
        if node[state] not in STATUSES:
            _problem(ctx, node, f"'{state}' is open or close", state)
            return None
        at = position(node, "permission")
        tests.append(PermissionTest(str(template), head, tail, state, str(node[state]), at=at))
    return tests


def _unknown_permission(catalog: Catalog | None, head: str, tail: str) -> str | None:
    """Why a permission template names no permission of the catalog (only catalog values are stored), or None."""
    if catalog is None:
        return None
    if not head.startswith("{") and not tail.startswith("{"):
        literal = f"{head}.{tail}"
        if is_glob(literal):
            return None if any(fnmatchcase(v, literal) for v in catalog.values) else "matches no catalog value"
        if literal in catalog:
            return None
        meant = [v for v in catalog.values if v.lower() == literal.lower()]
        hint = f" (catalog values are case-sensitive: '{meant[0]}')" if meant else ""
        return f"is not in the catalog{hint}: it is never set"
    heads = {v.partition(".")[0] for v in catalog.values}
    tails = {v.partition(".")[2] for v in catalog.values}
    for part, known, where in ((head, heads, "before"), (tail, tails, "after")):
        if not part.startswith("{") and not any(fnmatchcase(code, part) for code in known):
            return f"names '{part}' {where} the dot, which no catalog value has: it is never set"
    return None


def parse_condition(ctx: _Rule, node: Any, parent: Any = None, key: Any = None) -> Condition | None:
    """A condition mapping (its keys all hold) as a Condition."""
    if not isinstance(node, CommentedMap) or not node:
        _problem(
            ctx, parent if parent is not None else node, f"a condition is a mapping with {', '.join(SUBJECTS)}", key
        )
        return None
    parts: list[Condition] = []
    if "permission" in node:
        tests = _permission(ctx, node)
        if tests is None:
            return None
        parts.extend(tests)
    elif "before" in node or "after" in node:
        _problem(ctx, node, "'before' and 'after' go with a 'permission'", "before" if "before" in node else "after")
        return None
    for subject, value in node.items():
        if subject in ("permission", "before", "after"):
            continue
        if subject in ("all", "any"):
            if not isinstance(value, CommentedSeq) or not value:
                _problem(ctx, node, f"'{subject}' takes a non-empty list of conditions", subject)
                return None
            items = [parse_condition(ctx, item, value, i) for i, item in enumerate(value)]
            if any(item is None for item in items):
                return None
            kept = tuple(item for item in items if item is not None)
            parts.append(All(kept) if subject == "all" else AnyOf(kept))
        elif subject == "not":
            inner = parse_condition(ctx, value, node, "not")
            if inner is None:
                return None
            parts.append(Not(inner))
        elif subject in ("change", "account"):
            tests = _change(ctx, node, value) if subject == "change" else _account(ctx, node, value)
            if tests is None:
                return None
            parts.extend(tests)
        elif subject == "tenant":
            match = _match(ctx, node, "tenant", value, "tenant", text_field=True)
            if match is None or match.kind is not None or match.same_as is not None:
                if match is not None:
                    _problem(ctx, node, "'tenant' takes tenant ids", "tenant")
                return None
            parts.append(TenantTest(match))
        else:
            _problem(ctx, node, f"unknown condition '{subject}' (use {', '.join(SUBJECTS)})", subject)
            return None
    return parts[0] if len(parts) == 1 else All(tuple(parts))


def _moment(ctx: _Rule, item: CommentedMap, key: str) -> datetime | bool | None:
    """A from/until moment in UTC; False when it is wrong (reported)."""
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None:
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    _problem(ctx, item, f"'{key}' is a UTC time like 2026-01-01T00:00:00Z or a date like 2026-01-01", key)
    return False


def _message_fields(ctx: _Rule, item: CommentedMap) -> None:
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(item["message"]) if f is not None}
    except ValueError as exc:
        _problem(ctx, item, f"message template is malformed: {exc}", "message")
        return
    for name in sorted(names - set(MESSAGE_FIELDS) - set(ctx.attributes)):
        _problem(ctx, item, f"message names unknown placeholder {{{name}}}", "message")


def _outcome_fits(ctx: _Rule, item: CommentedMap, *, policy: bool, field: object) -> None:
    """Report an outcome that is no code, or one that does not fit the rule's kind (validation or policy) or
    the field its message points at."""
    outcome = item["outcome"]
    if policy:
        if outcome in VALIDATION_OUTCOMES:
            text = f"a policy's outcome is always {POLICY_OUTCOME}; {outcome} is a validation's (validation.yaml)"
            _problem(ctx, item, text, "outcome")
        elif outcome != POLICY_OUTCOME:
            _problem(ctx, item, f"unknown outcome {outcome!r} (a policy's outcome is {POLICY_OUTCOME})", "outcome")
    elif outcome == POLICY_OUTCOME:
        _problem(ctx, item, f"{POLICY_OUTCOME} is a policy's outcome: write this rule in policies.yaml", "outcome")
    elif outcome not in VALIDATION_OUTCOMES:
        _problem(ctx, item, f"unknown outcome {outcome!r} (use one of {', '.join(VALIDATION_OUTCOMES)})", "outcome")
    elif field in RAW_FIELDS and OUTCOME_FIELD[str(outcome)] != field:
        text = f"{outcome} is a fault of {OUTCOME_FIELD[str(outcome)]}, but this rule's field is {field}"
        _problem(ctx, item, text, "outcome")


def reads(condition: Condition) -> set[str]:
    """Every change field a condition reads (same_as included)."""
    if isinstance(condition, All | AnyOf):
        return set().union(*(reads(part) for part in condition.parts))
    if isinstance(condition, Not):
        return reads(condition.part)
    if isinstance(condition, ChangeTest):
        return {condition.field} | ({condition.match.same_as} if condition.match.same_as else set())
    return set()


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
    rule_id = item.get("id")
    shown_id = rule_id if isinstance(rule_id, str) else f"{'policies' if policy else 'rules'}[{index}]"
    ctx = _Rule(reader, shown_id, attributes, catalog, policy)
    before = len(reader.problems)
    required = ("id", "description", "when", "message") + (() if policy else ("field", "outcome"))
    optional = ("field", "enforcement", "from", "until", "outcome") if policy else ()
    for key in item:
        if key not in required and key not in optional:
            hint = " (only policies have it)" if key in ("enforcement", "from", "until") else ""
            _problem(ctx, item, f"unknown key '{key}'{hint}", key)
    for key in required:
        if key not in item:
            _problem(ctx, item, f"missing key '{key}'")
    if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
        _problem(ctx, item, "'id' must be lower-case letters, digits and dashes", "id")
    elif rule_id == "pass":
        _problem(ctx, item, "'pass' is reserved for changes no rule denies", "id")
    elif rule_id in seen:
        _problem(ctx, item, f"duplicate rule id '{rule_id}'", "id")
    seen.add(str(rule_id))
    for key in ("description", "message"):
        if key in item and (not isinstance(item[key], str) or not item[key].strip()):
            _problem(ctx, item, f"'{key}' must be non-empty text", key)
    field = item.get("field", "permission_type")
    if field not in RAW_FIELDS:
        _problem(ctx, item, "'field' is permission_type or permission_status", "field")
    outcome = POLICY_OUTCOME if policy else item.get("outcome")
    if "outcome" in item:
        _outcome_fits(ctx, item, policy=policy, field=field)
    enforcement = item.get("enforcement", "deny")
    if enforcement not in ENFORCEMENTS:
        _problem(ctx, item, f"'enforcement' is one of {', '.join(ENFORCEMENTS)}", "enforcement")
    start, end = _moment(ctx, item, "from"), _moment(ctx, item, "until")
    if isinstance(start, datetime) and isinstance(end, datetime) and start >= end:
        _problem(ctx, item, "'from' must be before 'until'", "until")
    if isinstance(item.get("message"), str):
        _message_fields(ctx, item)
    condition = parse_condition(ctx, item["when"], item, "when") if "when" in item else None
    if condition is not None:
        try:
            clauses(condition)  # the engine gets one rule per alternative: refuse it here, not at start-up
        except ConditionTooLarge as exc:
            _problem(ctx, item, str(exc), "when")
        fits = OUTCOME_FACTS.get(outcome, set()) if isinstance(outcome, str) and not policy else set()
        if fits and not reads(condition) & fits:
            facts = " or ".join(sorted(fits))
            text = f"{outcome} reports a fault of {facts}, which this rule's condition never reads"
            _problem(ctx, item, text, "when")
    if len(reader.problems) != before or condition is None:
        return None
    window = None
    if isinstance(start, datetime) or isinstance(end, datetime):
        window = Window(start if isinstance(start, datetime) else None, end if isinstance(end, datetime) else None)
    return Rule(
        id=str(rule_id),
        description=item["description"].strip(),
        field=str(field),
        condition=condition,
        outcome=str(outcome),
        message=item["message"],
        enforcement=str(enforcement),
        window=window,
        source=reader.shown,
        line=item.lc.line + 1,
        places=tuple((str(key), *position(item, key)) for key in item),
        column=item.lc.col + 1,
    )


DECLARED_ID = re.compile(r"^\s*(?:-\s+)?id:\s*[\"']?([a-z0-9][a-z0-9-]*)[\"']?\s*(?:#.*)?$", re.MULTILINE)


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
    doc = reader.load_items(key)
    try:
        text = data.decode("utf-8") if data is not None else ""
    except UnicodeDecodeError:
        text = ""
    declared = set(DECLARED_ID.findall(text))
    if doc is None:
        if not reader.problems:
            reader.problem(None, key, "file is empty")
        seen |= declared
        return (), reader.problems
    if not isinstance(doc, CommentedMap) or not isinstance(doc.get(key), CommentedSeq):
        reader.problem(doc, key, f"must be a mapping with a '{key}' list")
        seen |= declared
        return (), reader.problems
    for name in doc:
        if name != key:
            reader.problem(doc, key, f"unknown key '{name}'", name)
    rules: list[Rule] = []
    for i, item in enumerate(doc[key]):
        if not isinstance(item, CommentedMap):
            reader.problem(doc[key], key, f"each item of '{key}' is a mapping", i)
            continue
        rule = _rule(reader, item, i, policy=policy, seen=seen, attributes=attributes, catalog=catalog)
        if rule is not None:
            rules.append(rule)
    seen |= declared
    return tuple(rules), reader.problems
