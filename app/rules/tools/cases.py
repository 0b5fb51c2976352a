"""Regression cases kept under rules/cases/: load (with lint), run without a database, report."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from app.errors import Code, DomainError
from app.rules.language.allowed_values import declared_as
from app.rules.language.attributes import NO_ATTRIBUTES, AttributeSet
from app.rules.language.loader import Problem, RulesTree, read_tree, shown_path
from app.rules.language.model import ACCOUNT_STATUSES, Catalog, RuleSet
from app.rules.language.source import YamlReader as _Reader
from app.rules.language.source import position
from app.rules.runtime.answer import answer_of
from app.rules.runtime.decision import decide
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.tools.coverage import NOTHING, Coverage, Exercised, coverage_of, exercised

CASES_DIR = "cases"
CASE_KEYS = {"name", "tenant", "tenant_config", "account", "account_status", "attributes", "at", "changes", "expect"}
EXPECT_KEYS = {"code", "failure_index", "rule_id", "message", "warnings"}
CASE_CODES = {
    "SUCCESS",
    "INVALID_REQUEST",
    "INVALID_PERMISSION_TYPE",
    "INVALID_PERMISSION_STATUS",
    "NO_STATE_CHANGE",
    "DUPLICATE_PERMISSION_TYPE",
    "PERMISSION_POLICY_DENIED",
}
CASE_TENANT = "case-tenant"

RequestLoader = Callable[[Mapping[str, Any]], Mapping[str, Any]]
"""The API's loader of an update request's body (the HTTP and CLI edges pass the request schema's
load_update_request): the request with its changes, or a DomainError with the message a caller gets. A case is
judged through it so that one expecting INVALID_REQUEST reads the caller's exact message; the rules do not import
the API's schemas."""


@dataclass(frozen=True)
class Expected:
    """What a case expects: a code name, and for a rejected change its index and rule."""

    code: str
    failure_index: int = 0
    rule_id: str | None = None
    message: str | None = None  # checked only when the case gives it
    warnings: tuple[str, ...] | None = None  # rule ids of data.warnings, checked only when given


@dataclass(frozen=True)
class Case:
    """One regression case: tenant config, account state and request → expected outcome."""

    name: str
    path: str
    line: int
    tenant_config: tuple[str, ...]
    account: dict[str, str]
    changes: list[Any]
    expect: Expected
    tenant: str = CASE_TENANT
    account_status: str = "active"
    attributes: dict[str, str] = field(default_factory=dict)
    at: datetime | None = None  # the time the request is judged at; None: now


@dataclass(frozen=True)
class Outcome:
    """What the rules decided for a case's request."""

    code: str
    failure_index: int = 0
    rule_id: str | None = None
    message: str = "success"
    warnings: tuple[str, ...] = ()
    held: frozenset[str] = frozenset()  # every rule that held for some change
    exercised: Exercised = NOTHING  # the rules it fired and the rules it let pass (app/rules/tools/coverage.py)


@dataclass
class CaseResult:
    """A case, what happened, and whether it matched."""

    case: Case
    outcome: Outcome

    @property
    def passed(self) -> bool:
        return not self.mismatches

    @property
    def mismatches(self) -> list[str]:
        """What differs from the expectation, each naming the expected and the actual value, as a person reads
        them: `expected success, got PERMISSION_POLICY_DENIED (400106) at change 0 by 'otc-freeze'`."""
        e, o = self.case.expect, self.outcome
        found = []
        if (e.code, e.failure_index, e.rule_id) != (o.code, o.failure_index, o.rule_id):
            found.append(
                f"expected {_answer_shown(e.code, e.failure_index, e.rule_id)}, "
                f"got {_answer_shown(o.code, o.failure_index, o.rule_id)}"
            )
        if e.message is not None and e.message != o.message:
            found.append(f"expected message {_quoted(e.message)}, got {_quoted(o.message)}")
        if e.warnings is not None and tuple(e.warnings) != o.warnings:
            found.append(f"expected {_warnings_shown(e.warnings)}, got {_warnings_shown(o.warnings)}")
        return found


def _quoted(text: str) -> str:
    """Text in single quotes, whatever quotes it holds; line breaks and tabs shown as \\n and \\t."""
    return "'" + text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + "'"


def _answer_shown(code: str, failure_index: int, rule_id: str | None) -> str:
    """An answer as a case line names it: success, or the code (its number too), the change and the rule."""
    if code == "SUCCESS" and failure_index == 0 and rule_id is None:
        return "success"
    number = f" ({int(Code[code])})" if code in Code.__members__ else ""
    at = f" at change {failure_index}" if rule_id is not None or failure_index != 0 else ""
    by = f" by {_quoted(rule_id)}" if rule_id is not None else ""
    return f"{code}{number}{at}{by}"


def _warnings_shown(warnings: Sequence[str]) -> str:
    return "warnings " + ", ".join(_quoted(w) for w in warnings) if warnings else "no warnings"


@dataclass
class CaseReport:
    """Every case result, the rules no case made fire, and the coverage of every rule."""

    results: list[CaseResult] = field(default_factory=list)
    unexercised: list[str] = field(default_factory=list)
    coverage: Coverage = field(default_factory=lambda: Coverage(()))

    @property
    def failed(self) -> int:
        return sum(not r.passed for r in self.results)


def _plain(value: Any) -> Any:
    if isinstance(value, CommentedMap):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, CommentedSeq):
        return [_plain(v) for v in value]
    return value


# Reading a case file. A case (and its expect) is checked by an ordered tuple of checks, each a declaration of
# one key: what a valid value is and what lint says of one that is not. A problem is found at a node of the YAML
# document (which keeps line and column) and, when the key is in that mapping, at the key.

Found = tuple[Any, Any, str]  # (node, key, text): where a problem is and what lint says


@dataclass(frozen=True)
class Known:
    """What a case is checked against (None: not known, not checked): the rule ids, the catalog, the names of
    the attributes the rule set declares, and the declarations its values are checked against (those that
    could be read, even when the names are not known)."""

    rule_ids: Collection[str] | None
    catalog: Catalog | None
    declared: Collection[str] | None
    attributes: AttributeSet = NO_ATTRIBUTES


@dataclass(frozen=True)
class ValueOf:
    """Where a problem is when it is a value's: the value of `key` in this mapping (not the key)."""

    mapping: Any  # a CommentedMap, which knows where its values are


Check = Callable[[CommentedMap, Known], Iterator[Found]]
Entries = Callable[[CommentedMap, Any, Known], Iterator[Found]]  # (mapping, a valid value, known)


@dataclass(frozen=True)
class Field:
    """One key of a mapping: checked when it is given (or always, its value None when it is not); a valid
    value's entries are checked next, when they need to be."""

    key: str
    valid: Callable[[Any], bool]
    problem: str | Callable[[Any], str]  # the text, or the text for the value
    always: bool = False
    entries: Entries | None = None

    def __call__(self, node: CommentedMap, known: Known) -> Iterator[Found]:
        if self.key not in node and not self.always:
            return
        value = node.get(self.key)
        if not self.valid(value):
            yield node, self.key, self.problem if isinstance(self.problem, str) else self.problem(value)
        elif self.entries is not None:
            yield from self.entries(node, value, known)


@dataclass(frozen=True)
class Only:
    """The keys a mapping may have; any other is reported, in the order written."""

    keys: frozenset[str]
    text: str  # with {} for the key

    def __call__(self, node: CommentedMap, known: Known) -> Iterator[Found]:
        for key in node:
            if key not in self.keys:
                yield node, key, self.text.format(key)


@dataclass(frozen=True)
class Required:
    """The keys a mapping must have, each reported when missing."""

    keys: tuple[str, ...]

    def __call__(self, node: CommentedMap, known: Known) -> Iterator[Found]:
        for key in self.keys:
            if key not in node:
                yield node, None, f"missing key '{key}'"


def checked(node: CommentedMap, checks: Sequence[Check], known: Known) -> Iterator[Found]:
    """Every problem of node, check after check."""
    for check in checks:
        yield from check(node, known)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _patterns(value: Any) -> bool:
    return isinstance(value, list) and all(_text(p) for p in value)


def _text_values(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(w, str) for w in value)


def _account_entries(node: CommentedMap, account: dict[Any, Any], known: Known) -> Iterator[Found]:
    for permission_type, status in account.items():
        if known.catalog is not None and permission_type not in known.catalog:
            yield account, permission_type, f"account names '{permission_type}', which is not in the catalog"
        if status not in ("open", "close"):
            yield account, permission_type, f"account status of '{permission_type}' is open or close"


def _declared(node: CommentedMap, attributes: dict[Any, Any], known: Known) -> Iterator[Found]:
    for attribute, value in attributes.items():
        declaration = known.attributes.get(str(attribute))
        if known.declared is not None and attribute not in known.declared:
            yield attributes, attribute, f"attribute '{attribute}' is not declared in attributes.yaml"
        elif declaration is not None and not declaration.allows(value):
            yield ValueOf(attributes), attribute, f"'{attribute}' is never '{value}': {declared_as(declaration)}"


def _names_a_rule(expect: CommentedMap, known: Known) -> Iterator[Found]:
    rule_id = expect.get("rule_id")
    if rule_id is not None and known.rule_ids is not None and rule_id not in known.rule_ids:
        yield expect, "rule_id", f"rule_id '{rule_id}' names no rule"


def _rule_for_the_code(expect: CommentedMap, known: Known) -> Iterator[Found]:
    """SUCCESS and INVALID_REQUEST name no rule; every other code names the rule that decides it."""
    code, rule_id = expect.get("code"), expect.get("rule_id")
    if code in NO_RULE_CODES and rule_id is not None:
        yield expect, "rule_id", f"{code} has no rule_id"
    if code not in NO_RULE_CODES and _a_case_code(code) and rule_id is None:
        yield expect, "code", f"{code} needs the rule_id that decides it"


def _warnings_name_rules(expect: CommentedMap, warnings: list[Any], known: Known) -> Iterator[Found]:
    for warned in warnings:
        if known.rule_ids is not None and warned not in known.rule_ids:
            yield expect, "warnings", f"warning '{warned}' names no rule"


def _a_case_code(code: Any) -> bool:
    return isinstance(code, str) and code in CASE_CODES


def _unknown_code(code: Any) -> str:
    codes = ", ".join(sorted(CASE_CODES))
    if code is None:
        return f"'code' is missing or empty (use one of {codes})"
    if not isinstance(code, str):
        return f"'code' is one name, not a list or a number (use one of {codes})"
    return f"unknown code '{code}' (use one of {codes})"


NO_RULE_CODES = ("SUCCESS", "INVALID_REQUEST")
EXPECT_CHECKS: tuple[Check, ...] = (
    Only(frozenset(EXPECT_KEYS), "unknown key '{}' in expect"),
    Field("code", _a_case_code, _unknown_code, always=True),
    Field("failure_index", _whole_number, "'failure_index' is a whole number from 0"),
    _names_a_rule,
    _rule_for_the_code,
    Field("message", lambda m: isinstance(m, str), "'message' is the exact text the caller gets"),
    Field("warnings", _texts, "'warnings' lists the rule ids of data.warnings, in order", entries=_warnings_name_rules),
)


def _expect_entries(item: CommentedMap, expect: CommentedMap, known: Known) -> Iterator[Found]:
    return checked(expect, EXPECT_CHECKS, known)


CASE_CHECKS: tuple[Check, ...] = (
    Only(frozenset(CASE_KEYS), "unknown key '{}'"),
    Required(("name", "changes", "expect")),
    Field("name", lambda n: isinstance(n, str) and bool(n.strip()), "'name' must be non-empty text"),
    Field("tenant_config", _patterns, "'tenant_config' is a list of glob patterns"),
    Field(
        "account",
        lambda a: isinstance(a, dict),
        "'account' maps permission types to open or close",
        entries=_account_entries,
    ),
    Field("tenant", _text, "'tenant' is a tenant id"),
    Field("account_status", lambda s: s in ACCOUNT_STATUSES, "'account_status' is active or deregistered"),
    Field(
        "attributes",
        _text_values,
        "'attributes' maps declared attribute names to text values",
        entries=_declared,
    ),
    Field("at", lambda at: _moment(at) is not None, "'at' is a UTC time like 2026-01-01T00:00:00Z"),
    Field(
        "expect",
        lambda e: isinstance(e, CommentedMap),
        "'expect' is a mapping with code (and failure_index, rule_id)",
        entries=_expect_entries,
    ),
)


def load_cases(
    rules_dir: Path,
    rule_set: RuleSet | None,
    tree: RulesTree | None = None,
    *,
    rule_ids: Collection[str] | None = None,
    catalog: Catalog | None = None,
    attributes: AttributeSet = NO_ATTRIBUTES,
) -> tuple[list[Case], list[Problem]]:
    """Every case under rules_dir/cases, checked against the rule set (when it loaded), or else against the
    rule ids the rule files declare, the catalog and the attribute declarations as read (lint of a broken set
    still checks the cases)."""
    tree = read_tree(rules_dir) if tree is None else tree
    if rule_set is not None:
        declarations = rule_set.attributes
        known = Known({r.id for r in rule_set.rules}, rule_set.catalog, declarations.names, declarations)
    else:
        known = Known(rule_ids, catalog, None, attributes)
    cases: list[Case] = []
    problems: list[Problem] = []
    for name in sorted(n for n in tree if n.startswith(f"{CASES_DIR}/") and n.endswith(".yaml") and n.count("/") == 1):
        reader = _Reader(tree[name], shown_path(rules_dir, name))
        cases += _cases_of(reader, known)
        problems += reader.problems
    return cases, problems + _duplicates(cases)


def _cases_of(reader: _Reader, known: Known) -> list[Case]:
    """The cases of one file that have no problem; every problem is left with the reader."""
    doc = reader.load_items("cases")
    if doc is None:
        if not reader.problems:
            reader.problem(None, "cases", "file is empty")
        return []
    if not isinstance(doc, CommentedMap) or not isinstance(doc.get("cases"), CommentedSeq):
        reader.problem(doc, "cases", "must be a mapping with a 'cases' list")
        return []
    for node, key, text in Only(frozenset({"cases"}), "unknown key '{}'")(doc, known):
        reader.problem(node, "cases", text, key)
    found = (_case(reader, doc["cases"], i, item, known) for i, item in enumerate(doc["cases"]))
    return [case for case in found if case is not None]


def _duplicates(cases: list[Case]) -> list[Problem]:
    problems = []
    seen: set[str] = set()
    for case in cases:
        if case.name in seen:
            problems.append(Problem(case.path, case.line, 1, "cases", f"duplicate case name '{case.name}'"))
        seen.add(case.name)
    return problems


def _case(reader: _Reader, seq: CommentedSeq, i: int, item: Any, known: Known) -> Case | None:
    """The case, or None when it has a problem (each reported under the case's name, or its place)."""
    if not isinstance(item, CommentedMap):
        reader.problem(seq, "cases", "each case is a mapping", i)
        return None
    name = item.get("name")
    label = name if isinstance(name, str) else f"cases[{i}]"
    found = list(checked(item, CASE_CHECKS, known))
    for node, key, text in found:
        if isinstance(node, ValueOf):
            line, column = _value_place(node.mapping, key)
            reader.problems.append(Problem(reader.shown, line, column, label, text))
        else:
            reader.problem(node, label, text, key)
    return None if found else _built(reader.shown, item)


def _value_place(mapping: CommentedMap, key: Any) -> tuple[int, int]:
    """Where the value of key is written in the mapping (at the key, when ruamel does not know)."""
    try:
        line, column = mapping.lc.value(key)
    except (KeyError, TypeError):
        return position(mapping, key)
    return line + 1, column + 1


def _built(path: str, item: CommentedMap) -> Case:
    """A case that passed every check."""
    expect = item["expect"]
    warnings = expect.get("warnings")
    rule_id = expect.get("rule_id")
    expected = Expected(
        str(expect["code"]),
        expect.get("failure_index", 0),
        rule_id if isinstance(rule_id, str) else None,
        expect.get("message"),
        None if warnings is None else tuple(warnings),
    )
    return Case(
        name=item["name"],
        path=path,
        line=item.lc.line + 1,
        tenant_config=tuple(item.get("tenant_config", ["*"])),
        account=dict(item.get("account", {})),
        changes=_plain(item["changes"]),
        expect=expected,
        tenant=str(item.get("tenant", CASE_TENANT)),
        account_status=str(item.get("account_status", "active")),
        attributes={str(k): str(v) for k, v in item.get("attributes", {}).items()},
        at=_moment(item.get("at")),
    )


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    return None


def case_input(case: Case, changes: list[Any]) -> DecisionInput:
    """The DecisionInput of a case, as the service would build it for the same request and state."""
    return DecisionInput.of(
        tenant_id=case.tenant,
        patterns=case.tenant_config,
        changes=changes,
        stored=case.account,
        account_status=case.account_status,
        attributes=case.attributes,
        at=case.at,
    )


def run_case(engine: DurableRulesEngine, case: Case, load_request: RequestLoader) -> Outcome:
    """Run one case's request through the request loader and decide(), as the service would."""
    try:
        request = load_request({"account_no": "CASE", "changes": case.changes})
    except DomainError as exc:
        return Outcome(Code(exc.code).name, 0, None, exc.message)
    decision = decide(engine, case_input(case, request["changes"]))
    answer = answer_of(decision)
    held = frozenset().union(*decision.held) if decision.held else frozenset()
    return Outcome(
        answer.code_name,
        answer.failure_index,
        answer.rule_id,
        answer.message,
        answer.warned_by,
        held,
        exercised(decision),
    )


def run_cases(rule_set: RuleSet, cases: list[Case], load_request: RequestLoader) -> CaseReport:
    """Run every case (each request through load_request, see RequestLoader); report results, the coverage, and
    the rules that no case made fire."""
    engine = DurableRulesEngine(rule_set)
    report = CaseReport()
    for case in cases:
        report.results.append(CaseResult(case, run_case(engine, case, load_request)))
    report.coverage = coverage_of(rule_set.rules, (r.outcome.exercised for r in report.results))
    report.unexercised = report.coverage.never_fired
    return report
