"""Reading the `when:` of a rule into a Condition, every mistake located by file, line, column and rule id.

A condition is a mapping whose keys are combined with "all of them":
  change: {FIELD: MATCH, ...}           facts of the change being judged
  account: {status | ATTRIBUTE: MATCH}   the account's status and declared attributes
  tenant: MATCH                          the caller's tenant id
  permission: TEMPLATE, before|after: open|close   another permission of the account (its own item)
  count: {permission: TEMPLATE, after: open, more_than: N}   more than N permissions TEMPLATE names are open
                                         after the request (later openings left out), and this change opens
                                         one of them (CountTest)
  all: [CONDITION, ...] / any: [CONDITION, ...] / not: CONDITION
A MATCH is text (exact, or a glob with * and ?), a list of them (any of them), true/false (flags),
{is: missing | not_text | text} or {same_as: FIELD}.

Each subject has its reader (SUBJECT_READERS); a condition stops at its first mistake, and every item of an
all/any list is read, so a mistake in one item hides none in its siblings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from app.rules.language.allowed_values import is_glob, never_is
from app.rules.language.attributes import AttributeDeclaration, deprecated_read
from app.rules.language.clauses import Test, atoms
from app.rules.language.model import (
    ACCOUNT_STATUSES,
    CHANGE_FIELDS,
    FLAG_FIELDS,
    KINDS,
    RAW_FIELDS,
    STATUSES,
    TEXT_FIELDS,
    AccountTest,
    All,
    AnyOf,
    Catalog,
    ChangeTest,
    Condition,
    CountTest,
    Match,
    Not,
    PermissionTest,
    TenantTest,
)
from app.rules.language.source import Problem, YamlReader, position, shown

MARKET_CODE = re.compile(r"^[A-Z][A-Z0-9]{1,7}$")  # as catalog.yaml writes markets (app/rules/language/loader.py)
GLOB = re.compile(r"^[A-Za-z0-9_.*?-]+$")  # the glob alphabet the engine's regex dialect can take safely
TEXT_VALUE_MAX = 64
HEAD_PLACEHOLDERS = ("product", "group")
TAIL_PLACEHOLDERS = ("market", "name")
PART = re.compile(r"^(?:\{(?P<placeholder>[a-z]+)\}|(?P<text>[A-Za-z0-9_*?-]+))$")
SUBJECTS = ("change", "account", "tenant", "permission", "count", "all", "any", "not")
COUNT_KEYS = ("permission", "after", "more_than")
RELATION_KEYS = ("permission", "before", "after")  # one item: the permission and its states


@dataclass
class RuleContext:
    """What the condition reader needs to know about the rule it is reading."""

    reader: YamlReader
    rule_id: str
    attributes: dict[str, AttributeDeclaration]
    catalog: Catalog | None = None  # as read (None when catalog.yaml cannot be read)
    policy: bool = False

    def problem(self, node: Any, text: str, key: Any = None) -> None:
        """Report a mistake of this rule at a key of node (at node itself when the key is not there)."""
        self.reader.problem(node, self.rule_id, text, key)

    def problem_at(self, place: tuple[int, int], text: str) -> None:
        """Report a mistake of this rule at a line and column (a value, rather than its key)."""
        self.reader.problems.append(Problem(self.reader.shown, *place, self.rule_id, text))


def _text_problem(item: Any, what: str) -> str | None:
    """Why one value of a text MATCH cannot be matched, or None."""
    if isinstance(item, bool) or not isinstance(item, str | int) or str(item) == "":
        return f"{what}: {shown(item)} is not text (quote it, or use a list of texts)"
    text = str(item)
    if len(text) > TEXT_VALUE_MAX:
        return f"{what}: a value is longer than {TEXT_VALUE_MAX} characters"
    if is_glob(text) and not GLOB.match(text):
        return f"{what}: glob '{text}' may only use letters, digits, _ . - * ?"
    return None


def _text_values(ctx: RuleContext, node: Any, key: Any, value: Any, what: str) -> tuple[str, ...] | None:
    items = list(value) if isinstance(value, CommentedSeq | list) else [value]
    if not items:
        ctx.problem(node, f"{what}: an empty list matches nothing", key)
        return None
    for item in items:
        wrong = _text_problem(item, what)
        if wrong is not None:
            ctx.problem(node, wrong, key)
            return None
    return tuple(str(item) for item in items)


def _operator(ctx: RuleContext, node: Any, key: Any, value: Any, field: str, *, text_field: bool) -> Match | None:
    """{is: KIND} (permission_type, permission_status) or {same_as: FIELD} (text fields)."""
    what = f"'{field}'"
    if len(value) != 1:
        ctx.problem(node, f"{what}: use one of {{is: ...}} or {{same_as: ...}}", key)
        return None
    ((op, arg),) = value.items()
    if op == "is" and field in RAW_FIELDS:
        if arg not in KINDS:
            ctx.problem(node, f"{what}: 'is' takes {', '.join(KINDS)}", key)
            return None
        return Match(kind=str(arg))
    if op == "same_as" and text_field:
        if arg not in TEXT_FIELDS or arg == field:
            ctx.problem(node, f"{what}: 'same_as' names another change field ({', '.join(TEXT_FIELDS)})", key)
            return None
        return Match(same_as=str(arg))
    usable = "'is' (permission_type, permission_status) or 'same_as'" if text_field else "no operators"
    ctx.problem(node, f"{what}: unknown operator '{op}' (this field takes {usable})", key)
    return None


def _match(ctx: RuleContext, node: Any, key: Any, value: Any, field: str, *, text_field: bool) -> Match | None:
    """One MATCH of a change, account or tenant field."""
    if isinstance(value, CommentedMap | dict):
        return _operator(ctx, node, key, value, field, text_field=text_field)
    if not text_field:
        if not isinstance(value, bool):
            ctx.problem(node, f"'{field}' is true or false", key)
            return None
        return Match(values=(value,))
    values = _text_values(ctx, node, key, value, f"'{field}'")
    return None if values is None else Match(values=values)


def _values_only(ctx: RuleContext, node: Any, key: Any, value: Any, field: str, wrong: str) -> Match | None:
    """A MATCH of values, no operator (account fields, tenant): `wrong` when an operator is used."""
    match = _match(ctx, node, key, value, field, text_field=True)
    if match is not None and (match.kind is not None or match.same_as is not None):
        ctx.problem(node, wrong, key)
        return None
    return match


def _change_test(ctx: RuleContext, node: CommentedMap, field: Any, value: Any) -> ChangeTest | None:
    if field not in CHANGE_FIELDS:
        ctx.problem(node, f"unknown change field '{field}' (use one of {', '.join(CHANGE_FIELDS)})", field)
        return None
    parsed = _match(ctx, node, field, value, field, text_field=field not in FLAG_FIELDS)
    if parsed is None:
        return None
    if field == "current_status" and parsed.values and not set(parsed.values) <= set(STATUSES):
        ctx.problem(node, "'current_status' is open or close", field)
        return None
    never = _never_matched(ctx, str(field), parsed)
    if never is not None:
        ctx.problem(node, never, field)
        return None
    return ChangeTest(str(field), parsed)


def _codes(catalog: Catalog) -> dict[str, tuple[str, ...]]:
    """The catalog's codes by the change field that holds them."""
    groups: list[str] = []
    names: list[str] = []
    for value in catalog.values:
        parts = catalog.parts(value)
        if "group" in parts:
            groups += [] if parts["group"] in groups else [parts["group"]]
            names += [] if parts["name"] in names else [parts["name"]]
    return {"market": catalog.markets, "product": catalog.products, "group": tuple(groups), "name": tuple(names)}


def _lower_case_market(texts: list[str]) -> str | None:
    for value in texts:
        if not is_glob(value) and not MARKET_CODE.match(value) and MARKET_CODE.match(value.upper()):
            return f"'market' is never '{value}': market codes are upper case ('{value.upper()}')"
    return None


def _miscased_type(catalog: Catalog, texts: list[str]) -> str | None:
    for value in texts:
        if not is_glob(value) and value not in catalog:
            meant = [v for v in catalog.values if v.lower() == value.lower()]
            if meant:
                return f"'permission_type' is never '{value}': catalog values are case-sensitive ('{meant[0]}')"
    return None


def _unknown_part(catalog: Catalog, field: str, texts: list[str]) -> str | None:
    known = _codes(catalog).get(field)
    if known is None:
        return None
    for value in texts:
        if is_glob(value) and not any(fnmatchcase(code, value) for code in known):
            return f"'{field}' glob '{value}' matches no {field} of the catalog ({', '.join(known)})"
        if not is_glob(value) and value not in known:
            return f"'{field}' is never '{value}' for a catalog value ({field}s: {', '.join(known)})"
    return None


def _never_matched(ctx: RuleContext, field: str, match: Match) -> str | None:
    """Why a value tested on a part of a policy's change can never match, or None.

    Only catalog values reach a policy (type-in-catalog runs first), so `market: us` or `product: stocks`
    never holds there. A validation judges the type as sent and may test any text."""
    if not ctx.policy:
        return None
    texts = [v for v in match.values if isinstance(v, str)]
    lower_case = _lower_case_market(texts) if field == "market" else None
    if lower_case is not None or ctx.catalog is None:
        return lower_case
    if field == "permission_type":
        return _miscased_type(ctx.catalog, texts)
    return _unknown_part(ctx.catalog, field, texts)


def _account_test(ctx: RuleContext, node: CommentedMap, field: Any, value: Any) -> AccountTest | None:
    if field != "status" and field not in ctx.attributes:
        declared = ", ".join(["status", *sorted(ctx.attributes)])
        ctx.problem(node, f"unknown account field '{field}' (declared: {declared})", field)
        return None
    if field != "status" and ctx.attributes[field].deprecated:
        ctx.problem(node, deprecated_read(str(field)), field)
        return None
    parsed = _values_only(ctx, node, field, value, str(field), f"'{field}' takes values, not operators")
    if parsed is None:
        return None
    never = _never_held(ctx, node, str(field), value)
    for place, text in never:
        ctx.problem_at(place, text)
    return None if never else AccountTest(str(field), parsed)


def _never_held(ctx: RuleContext, node: CommentedMap, field: str, value: Any) -> list[tuple[tuple[int, int], str]]:
    """Each value the test names that the account field never has (by its status or its declaration: a list,
    or a pattern; a glob no allowed value matches), with where it is written. Negated or not, such a value is
    a mistake: under `not:` it would widen the rule to every account."""
    declaration = ACCOUNT_STATUSES if field == "status" else ctx.attributes[field]
    written = list(enumerate(value)) if isinstance(value, CommentedSeq) else [(None, value)]
    found = []
    for index, item in written:
        text = never_is(field, declaration, str(item))
        if text is not None:
            found.append((_value_place(node, field, value, index), text))
    return found


def _value_place(node: CommentedMap, field: str, value: Any, index: int | None) -> tuple[int, int]:
    """Where a value of `field: value` (its index-th item, for a list) is written."""
    try:
        line, col = value.lc.item(index) if index is not None else node.lc.value(field)
    except (AttributeError, KeyError, TypeError, IndexError):
        return position(node, field)
    return line + 1, col + 1


FieldTest = Callable[[RuleContext, CommentedMap, Any, Any], Condition | None]
FIELD_MAPS: dict[str, tuple[str, FieldTest]] = {  # subject: (what its mapping holds, the reader of one field)
    "change": ("'change' maps change fields to what they must match", _change_test),
    "account": ("'account' maps status or declared attributes to what they must match", _account_test),
}


def _field_map(ctx: RuleContext, node: CommentedMap, subject: str, value: Any) -> list[Condition] | None:
    """`change:` or `account:`: a non-empty mapping of fields, each a test of its own (each read, so a mistake
    in one field hides none in the others)."""
    shape, read = FIELD_MAPS[subject]
    if not isinstance(value, CommentedMap) or not value:
        ctx.problem(node, shape, subject)
        return None
    tests = [read(ctx, value, field, match) for field, match in value.items()]
    kept = [test for test in tests if test is not None]
    return kept if len(kept) == len(tests) else None


def _tenant(ctx: RuleContext, node: CommentedMap, subject: str, value: Any) -> list[Condition] | None:
    match = _values_only(ctx, node, subject, value, subject, "'tenant' takes tenant ids")
    return None if match is None else [TenantTest(match)]


def _group(ctx: RuleContext, node: CommentedMap, subject: str, value: Any) -> list[Condition] | None:
    """`all:` or `any:`: a non-empty list of conditions, each read (and reported) on its own."""
    if not isinstance(value, CommentedSeq) or not value:
        ctx.problem(node, f"'{subject}' takes a non-empty list of conditions", subject)
        return None
    items = [parse_condition(ctx, item, value, i) for i, item in enumerate(value)]
    kept = tuple(item for item in items if item is not None)
    if len(kept) != len(items):
        return None
    return [All(kept) if subject == "all" else AnyOf(kept)]


def _negation(ctx: RuleContext, node: CommentedMap, subject: str, value: Any) -> list[Condition] | None:
    inner = parse_condition(ctx, value, node, subject)
    return None if inner is None else [Not(inner)]


def _template_parts(ctx: RuleContext, node: CommentedMap) -> tuple[str, str] | None:
    """The head and tail of `permission: HEAD.TAIL`, each a code, a glob or a placeholder that may stand there."""
    template = node.get("permission")
    head, dot, tail = str(template).partition(".") if isinstance(template, str) else ("", "", "")
    parts = (PART.match(head), PART.match(tail)) if dot else (None, None)
    if not all(parts):
        ctx.problem(
            node, f"'permission' is a type like stock.US or stock.{{market}}, not {shown(template)}", "permission"
        )
        return None
    for found, allowed in zip(parts, (HEAD_PLACEHOLDERS, TAIL_PLACEHOLDERS), strict=True):
        placeholder = found.group("placeholder") if found else None
        if placeholder is not None and placeholder not in allowed:
            ctx.problem(node, f"'{{{placeholder}}}' cannot stand there (use {' or '.join(allowed)})", "permission")
            return None
    unknown = _unknown_permission(ctx.catalog, head, tail)
    if unknown is not None:
        ctx.problem(node, f"'permission' {shown(template)} {unknown}", "permission")
        return None
    return head, tail


def _permission(ctx: RuleContext, node: CommentedMap) -> list[Condition] | None:
    parts = _template_parts(ctx, node)
    if parts is None:
        return None
    states = [k for k in ("before", "after") if k in node]
    if not states:
        ctx.problem(node, "'permission' needs before: or after: (open or close)", "permission")
        return None
    tests: list[Condition] = []
    for state in states:
        if node[state] not in STATUSES:
            ctx.problem(node, f"'{state}' is open or close", state)
            return None
        at = position(node, "permission")
        tests.append(PermissionTest(str(node["permission"]), *parts, state, str(node[state]), at=at))
    return tests


def _unknown_literal(catalog: Catalog, literal: str) -> str | None:
    """Why a template without placeholders (stock.US, stock.*) names no catalog value, or None."""
    if is_glob(literal):
        return None if any(fnmatchcase(v, literal) for v in catalog.values) else "matches no catalog value"
    if literal in catalog:
        return None
    meant = [v for v in catalog.values if v.lower() == literal.lower()]
    hint = f" (catalog values are case-sensitive: '{meant[0]}')" if meant else ""
    return f"is not in the catalog{hint}: it is never set"


def _unknown_permission(catalog: Catalog | None, head: str, tail: str) -> str | None:
    """Why a permission template names no permission of the catalog (only catalog values are stored), or None."""
    if catalog is None:
        return None
    if not head.startswith("{") and not tail.startswith("{"):
        return _unknown_literal(catalog, f"{head}.{tail}")
    heads = {v.partition(".")[0] for v in catalog.values}
    tails = {v.partition(".")[2] for v in catalog.values}
    for part, known, where in ((head, heads, "before"), (tail, tails, "after")):
        if not part.startswith("{") and not any(fnmatchcase(code, part) for code in known):
            return f"names '{part}' {where} the dot, which no catalog value has: it is never set"
    return None


def _relation(ctx: RuleContext, node: CommentedMap) -> list[Condition] | None:
    """The permission tests of a condition (none without `permission:`); before/after need a permission."""
    if "permission" in node:
        return _permission(ctx, node)
    if "before" in node or "after" in node:
        ctx.problem(node, "'before' and 'after' go with a 'permission'", "before" if "before" in node else "after")
        return None
    return []


def _count(ctx: RuleContext, node: CommentedMap, subject: str, value: Any) -> list[Condition] | None:
    """`count: {permission: TEMPLATE, after: open, more_than: N}`: TEMPLATE as a relation's (globs, placeholders
    bound from the change, checked against the catalog), N a whole number of at least 0."""
    example = "{permission: options.*, after: open, more_than: 3}"
    shape = f"'count' is a mapping with {', '.join(COUNT_KEYS)}, e.g. {example}"
    if not isinstance(value, CommentedMap) or not value:
        ctx.problem(node, shape, subject)
        return None
    for key in value:
        if key not in COUNT_KEYS:
            ctx.problem(value, f"unknown key '{key}' in 'count' (use {', '.join(COUNT_KEYS)})", key)
            return None
    for key in COUNT_KEYS:
        if key not in value:
            ctx.problem(node, f"'count' needs '{key}', e.g. {example}", subject)
            return None
    if value["after"] != "open":
        ctx.problem(value, "'after' is open: a count counts the permissions open after the change", "after")
        return None
    bound = value["more_than"]
    if isinstance(bound, bool) or not isinstance(bound, int) or bound < 0:
        ctx.problem(value, "'more_than' is a whole number of at least 0", "more_than")
        return None
    parts = _template_parts(ctx, value)
    if parts is None:
        return None
    return [CountTest(str(value["permission"]), *parts, int(bound), at=position(value, "permission"))]


SubjectReader = Callable[[RuleContext, CommentedMap, str, Any], list[Condition] | None]
SUBJECT_READERS: dict[str, SubjectReader] = {
    "all": _group,
    "any": _group,
    "not": _negation,
    "change": _field_map,
    "account": _field_map,
    "tenant": _tenant,
    "count": _count,
}


def _subject(ctx: RuleContext, node: CommentedMap, subject: Any, value: Any) -> list[Condition] | None:
    read = SUBJECT_READERS.get(subject)
    if read is None:
        ctx.problem(node, f"unknown condition '{subject}' (use {', '.join(SUBJECTS)})", subject)
        return None
    return read(ctx, node, subject, value)


def parse_condition(ctx: RuleContext, node: Any, parent: Any = None, key: Any = None) -> Condition | None:
    """A condition mapping (its keys all hold) as a Condition."""
    if not isinstance(node, CommentedMap) or not node:
        where = parent if parent is not None else node
        ctx.problem(where, f"a condition is a mapping with {', '.join(SUBJECTS)}", key)
        return None
    parts = _relation(ctx, node)
    if parts is None:
        return None
    for subject, value in node.items():
        found = [] if subject in RELATION_KEYS else _subject(ctx, node, subject, value)
        if found is None:
            return None
        parts += found
    return parts[0] if len(parts) == 1 else All(tuple(parts))


def reads(condition: Condition) -> set[str]:
    """Every change field a condition's tests of the change read (same_as included)."""
    return {f for atom in atoms(condition) if isinstance(atom, ChangeTest) for f in Test(False, atom).change_fields}
