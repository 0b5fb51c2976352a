"""Regression cases kept under rules/cases/: load (with lint), run without a database, report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from app.errors import Code, DomainError
from app.rules.engine import DurableRulesEngine
from app.rules.loader import Problem, RulesTree, _Reader, read_tree, shown_path
from app.rules.messages import rejection
from app.rules.model import RuleSet
from app.schemas.permissions import load_update_request

CASES_DIR = "cases"
CASE_KEYS = {"name", "tenant_config", "account", "changes", "expect"}
EXPECT_KEYS = {"code", "failure_index", "rule_id"}
CASE_CODES = {
    "SUCCESS",
    "INVALID_REQUEST",
    "INVALID_PERMISSION_TYPE",
    "INVALID_PERMISSION_STATUS",
    "NO_STATE_CHANGE",
    "DUPLICATE_PERMISSION_TYPE",
}


@dataclass(frozen=True)
class Expected:
    """What a case expects: a code name, and for a rejected change its index and rule."""

    code: str
    failure_index: int = 0
    rule_id: str | None = None


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


@dataclass(frozen=True)
class Outcome:
    """What the rules decided for a case's request."""

    code: str
    failure_index: int = 0
    rule_id: str | None = None
    message: str = "success"


@dataclass
class CaseResult:
    """A case, what happened, and whether it matched."""

    case: Case
    outcome: Outcome

    @property
    def passed(self) -> bool:
        e, o = self.case.expect, self.outcome
        return (e.code, e.failure_index, e.rule_id) == (o.code, o.failure_index, o.rule_id)


@dataclass
class CaseReport:
    """Every case result and the rules no case made fire."""

    results: list[CaseResult] = field(default_factory=list)
    unexercised: list[str] = field(default_factory=list)

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
    rules_dir: Path, rule_set: RuleSet | None, tree: RulesTree | None = None
) -> tuple[list[Case], list[Problem]]:
    """Every case under rules_dir/cases, checked against the rule set (when it loaded)."""
    cases: list[Case] = []
    problems: list[Problem] = []
    tree = read_tree(rules_dir) if tree is None else tree
    rule_ids = {r.id for r in rule_set.rules} if rule_set else None
    catalog = rule_set.catalog if rule_set else None
    for name in sorted(n for n in tree if n.startswith(f"{CASES_DIR}/") and n.endswith(".yaml") and n.count("/") == 1):
        shown = shown_path(rules_dir, name)
        reader = _Reader(tree[name], shown)
        doc = reader.load()
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
            case = _case(reader, doc["cases"], i, item, rule_ids, catalog)
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
    reader: _Reader, seq: CommentedSeq, i: int, item: Any, rule_ids: set[str] | None, catalog: Any
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
            expected = Expected(
                str(code), index if isinstance(index, int) else 0, rule_id if isinstance(rule_id, str) else None
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
    )


def decide(engine: DurableRulesEngine, case: Case) -> Outcome:
    """Run one case's request through the request schema and the engine, as the service would."""
    try:
        request = load_update_request({"account_no": "CASE", "changes": case.changes})
    except DomainError as exc:
        return Outcome(Code(exc.code).name, 0, None, exc.message)
    catalog = engine.rule_set.catalog
    enabled = frozenset(catalog.expand(case.tenant_config))
    verdicts = engine.evaluate(request["changes"], enabled=enabled, current=case.account)
    failed = next((v for v in verdicts if not v.passed), None)
    if failed is None:
        return Outcome("SUCCESS")
    error = rejection(failed, request["changes"][failed.index])
    return Outcome(Code(error.code).name, error.failure_index, error.rule_id, error.message)


def run_cases(rule_set: RuleSet, cases: list[Case]) -> CaseReport:
    """Run every case; report results and the rules that no case made fire."""
    engine = DurableRulesEngine(rule_set)
    report = CaseReport()
    fired: set[str] = set()
    for case in cases:
        result = CaseResult(case, decide(engine, case))
        report.results.append(result)
        if result.outcome.rule_id:
            fired.add(result.outcome.rule_id)
    report.unexercised = [r.id for r in rule_set.rules if r.id not in fired]
    return report
