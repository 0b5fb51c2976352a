"""Regression cases kept under rules/cases/: load (with lint), run without a database, report."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from app.errors import Code, DomainError
from app.rules.language.loader import Problem, RulesTree, read_tree, shown_path
from app.rules.language.model import ACCOUNT_STATUSES, Catalog, RuleSet
from app.rules.language.source import YamlReader as _Reader
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
        """What differs from the expectation, each naming the expected and the actual value."""
        e, o = self.case.expect, self.outcome
        found = []
        if (e.code, e.failure_index, e.rule_id) != (o.code, o.failure_index, o.rule_id):
            found.append(
                f"expected {e.code} at {e.failure_index} by {e.rule_id}, "
                f"got {o.code} at {o.failure_index} by {o.rule_id}"
            )
        if e.message is not None and e.message != o.message:
            found.append(f"expected message {e.message!r}, got {o.message!r}")
        if e.warnings is not None and tuple(e.warnings) != o.warnings:
            found.append(f"expected warnings {list(e.warnings)}, got {list(o.warnings)}")
        return found


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


def load_cases(
    rules_dir: Path,
    rule_set: RuleSet | None,
    tree: RulesTree | None = None,
    *,
    rule_ids: Collection[str] | None = None,
    catalog: Catalog | None = None,
) -> tuple[list[Case], list[Problem]]:
    """Every case under rules_dir/cases, checked against the rule set (when it loaded), or else against the
    rule ids the rule files declare and the catalog as read (lint of a broken set still checks the cases)."""
    cases: list[Case] = []
    problems: list[Problem] = []
    tree = read_tree(rules_dir) if tree is None else tree
    if rule_set is not None:
        rule_ids, catalog = {r.id for r in rule_set.rules}, rule_set.catalog
    declared = {a.name for a in rule_set.attributes} if rule_set else None
    for name in sorted(n for n in tree if n.startswith(f"{CASES_DIR}/") and n.endswith(".yaml") and n.count("/") == 1):
        shown = shown_path(rules_dir, name)
        reader = _Reader(tree[name], shown)
        doc = reader.load_items("cases")
        if doc is None:
            if not reader.problems:
                reader.problem(None, "cases", "file is empty")
            problems += reader.problems
            continue
        if not isinstance(doc, CommentedMap) or not isinstance(doc.get("cases"), CommentedSeq):
            reader.problem(doc, "cases", "must be a mapping with a 'cases' list")
            problems += reader.problems
            continue
        for key in doc:
            if key != "cases":
                reader.problem(doc, "cases", f"unknown key '{key}'", key)
        for i, item in enumerate(doc["cases"]):
            case = _case(reader, doc["cases"], i, item, rule_ids, catalog, declared)
            if case is not None:
                cases.append(case)
        problems += reader.problems
    seen: dict[str, Case] = {}
    for case in cases:
        if case.name in seen:
            problems.append(Problem(case.path, case.line, 1, "cases", f"duplicate case name '{case.name}'"))
        seen[case.name] = case
    return cases, problems


def _case(
    reader: _Reader,
    seq: CommentedSeq,
    i: int,
    item: Any,
    rule_ids: Collection[str] | None,
    catalog: Catalog | None,
    declared: set[str] | None,
) -> Case | None:
    if not isinstance(item, CommentedMap):
        reader.problem(seq, "cases", "each case is a mapping", i)
        return None
    name = item.get("name")
    label = name if isinstance(name, str) else f"cases[{i}]"
    before = len(reader.problems)
    for key in item:
        if key not in CASE_KEYS:
            reader.problem(item, label, f"unknown key '{key}'", key)
    for key in ("name", "changes", "expect"):
        if key not in item:
            reader.problem(item, label, f"missing key '{key}'")
    if "name" in item and (not isinstance(name, str) or not name.strip()):
        reader.problem(item, label, "'name' must be non-empty text", "name")
    config = item.get("tenant_config", ["*"])
    if not isinstance(config, list) or not all(isinstance(p, str) and p for p in config):
        reader.problem(item, label, "'tenant_config' is a list of glob patterns", "tenant_config")
    account = item.get("account", {})
    if not isinstance(account, dict):
        reader.problem(item, label, "'account' maps permission types to open or close", "account")
        account = {}
    for permission_type, status in account.items():
        if catalog is not None and permission_type not in catalog:
            reader.problem(
                account, label, f"account names '{permission_type}', which is not in the catalog", permission_type
            )
        if status not in ("open", "close"):
            reader.problem(account, label, f"account status of '{permission_type}' is open or close", permission_type)
    tenant = item.get("tenant", CASE_TENANT)
    if not isinstance(tenant, str) or not tenant:
        reader.problem(item, label, "'tenant' is a tenant id", "tenant")
    account_status = item.get("account_status", "active")
    if account_status not in ACCOUNT_STATUSES:
        reader.problem(item, label, "'account_status' is active or deregistered", "account_status")
    attributes = item.get("attributes", {})
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        reader.problem(item, label, "'attributes' maps declared attribute names to text values", "attributes")
        attributes = {}
    for attribute in attributes:
        if declared is not None and attribute not in declared:
            reader.problem(attributes, label, f"attribute '{attribute}' is not declared in attributes.yaml", attribute)
    at = _moment(item.get("at"))
    if "at" in item and at is None:
        reader.problem(item, label, "'at' is a UTC time like 2026-01-01T00:00:00Z", "at")
    expect = item.get("expect")
    expected = None
    if "expect" in item:
        if not isinstance(expect, CommentedMap):
            reader.problem(item, label, "'expect' is a mapping with code (and failure_index, rule_id)", "expect")
        else:
            for key in expect:
                if key not in EXPECT_KEYS:
                    reader.problem(expect, label, f"unknown key '{key}' in expect", key)
            code = expect.get("code")
            if code not in CASE_CODES:
                reader.problem(
                    expect,
                    label,
                    f"unknown code {code!r} (use one of {', '.join(sorted(CASE_CODES))})",
                    "code" if "code" in expect else None,
                )
            index = expect.get("failure_index", 0)
            if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                reader.problem(expect, label, "'failure_index' is a whole number from 0", "failure_index")
            rule_id = expect.get("rule_id")
            if rule_id is not None and rule_ids is not None and rule_id not in rule_ids:
                reader.problem(expect, label, f"rule_id '{rule_id}' names no rule", "rule_id")
            if code in ("SUCCESS", "INVALID_REQUEST") and rule_id is not None:
                reader.problem(expect, label, f"{code} has no rule_id", "rule_id")
            if code not in ("SUCCESS", "INVALID_REQUEST") and code in CASE_CODES and rule_id is None:
                reader.problem(expect, label, f"{code} needs the rule_id that decides it", "code")
            message = expect.get("message")
            if "message" in expect and not isinstance(message, str):
                reader.problem(expect, label, "'message' is the exact text the caller gets", "message")
            warnings = expect.get("warnings")
            if "warnings" in expect and (
                not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings)
            ):
                reader.problem(expect, label, "'warnings' lists the rule ids of data.warnings, in order", "warnings")
                warnings = None
            for warned in warnings or ():
                if rule_ids is not None and warned not in rule_ids:
                    reader.problem(expect, label, f"warning '{warned}' names no rule", "warnings")
            expected = Expected(
                str(code),
                index if isinstance(index, int) else 0,
                rule_id if isinstance(rule_id, str) else None,
                message if isinstance(message, str) else None,
                tuple(warnings) if isinstance(warnings, list) else None,
            )
    if len(reader.problems) != before or expected is None:
        return None
    return Case(
        name=name,
        path=reader.shown,
        line=item.lc.line + 1,
        tenant_config=tuple(config),
        account=dict(account),
        changes=_plain(item["changes"]),
        expect=expected,
        tenant=str(tenant),
        account_status=str(account_status),
        attributes={str(k): str(v) for k, v in attributes.items()},
        at=at,
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
