"""The report of a proposed rule set (SPEC §7d): its lint, regression cases, contract check, `diff` against the
live version, `impact` on the recorded decisions and the state audit, as one document kept with the proposal.

Every part is the existing tool's own answer (app/rules/tools/: lint, cases, contract, diff, impact, audit_state;
app/service/state_audit.py), gathered, never judged again here. A part that cannot run says why in its section
instead of failing the report: no live version to compare with, a set that is not clean (a set that may not go
live is neither compared nor replayed nor audited), a live set that does not load, or two sets whose inputs are
too many to compare.

The document is JSON (stored as the proposal's report); `report_text` draws the short human summary from the
document alone, so a stored report reads the same as a fresh one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.rules.language.loader import VALIDATION_FILE, read_sources, read_tree, shown_path, tree_version
from app.rules.language.model import RuleSet
from app.rules.language.source import Problem
from app.rules.language.version import tree_digest
from app.rules.tools import diff as diff_tool
from app.rules.tools.cases import CaseReport, RequestLoader, run_cases
from app.rules.tools.contract import contract_problems
from app.rules.tools.impact.catalog import catalog_impact
from app.rules.tools.impact.document import Compared, document
from app.rules.tools.impact.replay import Recorded, impact
from app.rules.tools.input_space.space import SpaceTooLarge
from app.rules.tools.lint.directory import LintResult, lint
from app.service.state_audit import audit_state

if TYPE_CHECKING:  # injected: the service never imports the database library
    from app.persistence.snapshot import ReadOnlySnapshot
    from app.persistence.unit_of_work import UnitOfWork

IMPACT_SHOWN = 50  # flipped decisions (and message changes) kept in the report; its counts cover every decision
SHOWN = 5  # items of a section named in the text summary
LIVE_SOURCE = "the live version"


@dataclass(frozen=True)
class ProposalReport:
    """A proposal's report: whether the set may go live (lint clean, the contract kept, every case passing) and
    the document with every part."""

    clean: bool
    document: Mapping[str, Any] = field(hash=False)

    def as_json(self) -> dict[str, Any]:
        """The report as JSON data (keys: version, rule_set_version, made_at, clean, lint, contract, cases, diff,
        impact, state_audit)."""
        return dict(self.document)

    def text(self) -> list[str]:
        """A short summary for people, a section per part."""
        return report_text(self.document)


def _not_run(why: str) -> dict[str, Any]:
    return {"ran": False, "why": why}


def _problem(problem: Problem) -> str:
    return str(problem)


def _contract(directory: Path, tree: dict[str, bytes]) -> list[Problem] | str:
    """The contract's breaches as lint locates them, or why they could not be looked for (the check is the one
    lint runs, cached per rule-set version: asked again here only to tell its problems apart)."""
    sources = read_sources(directory, tree)
    as_read = sources.best_effort()
    if as_read is None:
        return "not checked: the set's files do not load (see lint)"
    if any(p.path == shown_path(directory, VALIDATION_FILE) for p in sources.problems):
        return f"not checked: {VALIDATION_FILE} does not load (see lint)"
    return contract_problems(as_read, directory, tree)


def _cases_section(report: CaseReport) -> dict[str, Any]:
    failing = [
        {"name": r.case.name, "path": r.case.path, "line": r.case.line, "mismatches": r.mismatches}
        for r in report.results
        if not r.passed
    ]
    return {
        "ran": True,
        "passed": len(report.results) - report.failed,
        "failed": report.failed,
        "failing": failing,
        "coverage_percent": round(report.coverage.percent, 1),
        "never_fired": list(report.unexercised),
    }


def _live_rule_set(live_dir: Path) -> RuleSet | str:
    """The live set as `rules diff` reads one (the contract binds what goes live, not what is compared), or why
    it cannot be read."""
    if not live_dir.is_dir():
        return f"the live version's files are not at {live_dir}"
    result = lint(live_dir, contract=False)
    if not result.clean or result.rule_set is None:
        return f"the live version does not lint clean here ({len(result.errors)} problem(s))"
    return result.rule_set


def _diff_section(proposed: RuleSet, live: RuleSet, against: str) -> dict[str, Any]:
    try:
        result = diff_tool.diff(live, proposed)
    except SpaceTooLarge as exc:
        return {**_not_run(f"the two sets cannot be compared: {exc}"), "against": against}
    shown = diff_tool.as_json(result)
    return {
        "ran": True,
        "against": against,
        "against_rule_set_version": result.old_version,
        "differs": result.differs,
        "inputs_compared": result.compared,
        "counts": shown["counts"],
        "groups": shown["groups"],
        "declarations": {"catalog": shown["catalog"], "attributes": shown["attributes"]},
        "trouble": None,
    }


def _impact_section(
    proposed: RuleSet,
    directory: Path,
    live: RuleSet | None,
    live_dir: Path | None,
    live_note: str | None,
    unit_of_work: Callable[[], UnitOfWork],
) -> dict[str, Any]:
    compared = Compared(
        proposed_dir=str(directory),
        old_dir=str(live_dir) if live is not None and live_dir is not None else None,
        old_source=LIVE_SOURCE,
        old_note=live_note,
        limit=IMPACT_SHOWN,
    )
    with unit_of_work() as uow:
        history = (Recorded.of_row(row) for row in uow.decisions.stream(None))
        report = impact(proposed, history, old=live, limit=IMPACT_SHOWN)
        if live is not None:
            report.catalog = catalog_impact(live.catalog, proposed.catalog, uow.tenant_configs.every())
    return {"ran": True, "document": document(report, compared)}


def build_report(
    directory: Path,
    *,
    live_dir: Path | None,
    unit_of_work: Callable[[], UnitOfWork],
    snapshot: Callable[[], ReadOnlySnapshot],
    load_request: RequestLoader,
    now: datetime,
) -> ProposalReport:
    """The report of the set under directory, against the live version's files under live_dir (None: nothing
    is live yet), over the recorded decisions (unit_of_work) and the accounts as they stand (snapshot, read
    only), at now (which windows have expired, when the state audit judges)."""
    directory = Path(directory)
    tree = read_tree(directory)
    result: LintResult = lint(directory, now=now, contract=True)
    contract = _contract(directory, tree)
    breaches = set(contract) if isinstance(contract, list) else set()
    doc: dict[str, Any] = {
        "version": tree_digest(tree),
        "rule_set_version": tree_version(tree),
        "made_at": now.isoformat().replace("+00:00", "Z"),
        "clean": False,
        "lint": {
            "errors": [_problem(p) for p in result.errors if p not in breaches],
            "warnings": [_problem(p) for p in result.warnings if p not in breaches],
        },
        "contract": (
            {"checked": True, "problems": [_problem(p) for p in contract], "why": None}
            if isinstance(contract, list)
            else {"checked": False, "problems": [], "why": contract}
        ),
    }
    proposed = result.rule_set
    if proposed is None:
        doc["cases"] = _not_run("the set's files do not load (see lint)")
        cases_pass = False
    else:
        cases = _cases_section(run_cases(proposed, result.cases, load_request))
        doc["cases"] = cases
        cases_pass = cases["failed"] == 0
    clean = result.clean and proposed is not None and cases_pass
    doc["clean"] = clean
    if not clean or proposed is None:
        why = _unclean_why(doc)
        doc["diff"] = {**_not_run(why), "against": None}
        doc["impact"] = _not_run(why)
        doc["state_audit"] = _not_run(why)
        return ProposalReport(False, doc)
    live: RuleSet | None = None
    live_note: str | None = None
    if live_dir is None:
        live_note = "no version is live yet"
        doc["diff"] = {**_not_run("no version is live yet: nothing to compare with"), "against": None}
    else:
        against = tree_digest(read_tree(live_dir)) if live_dir.is_dir() else None
        found = _live_rule_set(live_dir)
        if isinstance(found, str):
            live_note = found
            doc["diff"] = {**_not_run(found), "against": against}
        else:
            live = found
            doc["diff"] = _diff_section(proposed, live, against or "")
    doc["impact"] = _impact_section(proposed, directory, live, live_dir, live_note, unit_of_work)
    audit = audit_state(snapshot=snapshot, rule_set=proposed, judged_at=now.replace(microsecond=0))
    doc["state_audit"] = {"ran": True, "document": audit.document()}
    return ProposalReport(True, doc)


def _unclean_why(doc: Mapping[str, Any]) -> str:
    errors = len(doc["lint"]["errors"]) + len(doc["contract"]["problems"])
    failed = doc["cases"].get("failed", 0)
    reasons = [f"{errors} lint error(s)" if errors else "", f"{failed} failing case(s)" if failed else ""]
    said = " and ".join(r for r in reasons if r) or "its files do not load"
    return f"not run: the set is not clean ({said}); a set that may not go live is not compared, replayed or audited"


def _first(items: list[str], indent: str = "  ") -> list[str]:
    lines = [f"{indent}{item}" for item in items[:SHOWN]]
    if len(items) > SHOWN:
        lines.append(f"{indent}... and {len(items) - SHOWN} more")
    return lines


def report_text(doc: Mapping[str, Any]) -> list[str]:
    """The summary of a report's document: a section per part with its counts and first few items."""
    lines = [
        f"version {doc['version'][:12]} (rule-set version {doc['rule_set_version'] or '-'}): "
        + ("clean" if doc["clean"] else "NOT clean: it may not go live"),
    ]
    lint_part, contract = doc["lint"], doc["contract"]
    lines.append(f"lint: {len(lint_part['errors'])} error(s), {len(lint_part['warnings'])} warning(s)")
    lines += _first(lint_part["errors"]) + _first(lint_part["warnings"])
    if contract["checked"]:
        breached = contract["problems"]
        lines.append(f"contract: {len(breached)} breach(es)" if breached else "contract: kept")
        lines += _first(breached)
    else:
        lines.append(f"contract: {contract['why']}")
    cases = doc["cases"]
    if cases["ran"]:
        lines.append(
            f"cases: {cases['passed']} passed, {cases['failed']} failed; coverage {cases['coverage_percent']:g}%"
        )
        failing = cases["failing"]
        lines += _first([f"{c['path']}:{c['line']} {c['name']}: {'; '.join(c['mismatches'])}" for c in failing])
    else:
        lines.append(f"cases: {cases['why']}")
    lines += _diff_text(doc["diff"]) + _impact_text(doc["impact"]) + _audit_text(doc["state_audit"])
    return lines


def _diff_text(part: Mapping[str, Any]) -> list[str]:
    if not part["ran"]:
        return [f"diff: {part['why']}"]
    against = f"the live version {part['against'][:12]}"
    if not part["differs"]:
        return [f"diff against {against}: no answer differs ({part['inputs_compared']} inputs compared)"]
    counts = ", ".join(f"{n} {kind}" for kind, n in part["counts"].items() if n)
    lines = [f"diff against {against}: {len(part['groups'])} group(s) differ ({counts} input(s))"]
    return lines + _first([f"{g['kind']}: {g['old']} -> {g['new']} ({g['inputs']} input(s))" for g in part["groups"]])


def _impact_text(part: Mapping[str, Any]) -> list[str]:
    if not part["ran"]:
        return [f"impact: {part['why']}"]
    doc = part["document"]
    summary = doc["summary"]
    against = doc["old"]["rule_set_version"]
    lines = [
        f"impact: {summary['replayed']} recorded decision(s) replayed, {summary['flipped']} would flip "
        f"({summary['newly_refused']} newly refused, {summary['newly_accepted']} newly accepted, "
        f"{summary['closes_newly_refused']} close(s) newly refused), {summary['message_changes']} message change(s)"
        + (f"; old set: {against}" if against else f"; no old set ({doc['old']['note']})")
    ]
    flips = [
        f"decision {f['decision_id']} ({f['tenant']} {f['account_no']}): {_side(f['old'])} -> {_side(f['new'])}"
        for f in doc["flips"]["items"]
    ]
    return lines + _first(flips)


def _side(outcome: Mapping[str, Any]) -> str:
    return " ".join(filter(None, (outcome["name"], outcome["rule_id"])))


def _audit_text(part: Mapping[str, Any]) -> list[str]:
    if not part["ran"]:
        return [f"state audit: {part['why']}"]
    doc = part["document"]
    lines = [
        f"state audit: {doc['accounts_checked']} account(s) judged, {len(doc['violations'])} deny violation(s), "
        f"{len(doc['hits'])} warn/dryrun hit(s), {len(doc['outside_catalog'])} outside the catalog, "
        f"{len(doc['not_enabled'])} no longer enabled"
    ]
    shown = [
        f"{v['tenant']} {v['account_no']} '{v['permission_type']}': {v['rule_id']}: {v['message']}"
        for v in doc["violations"]
    ]
    return lines + _first(shown)
