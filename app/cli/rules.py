"""permctl rules: lint, regression-test, explain, replay and reload the compliance-owned rules/ directory."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from app.cli.context import session_factory, settings
from app.cli.params import UTC_TIME

if TYPE_CHECKING:
    from app.rules.cases import Case, CaseReport
    from app.rules.impact import Recorded
    from app.rules.lint import LintResult
    from app.rules.model import RuleSet

RULES_OPTION = click.option(
    "--rules",
    "rules_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="The rules directory (default: RULES_DIR or rules/).",
)


def _linted(rules_dir: Path | None) -> tuple[Path, LintResult]:
    from app.rules.lint import lint

    directory = rules_dir or settings().rules_dir
    if not directory.is_dir():
        raise click.ClickException(f"{directory}: no such directory")
    return directory, lint(directory)


def _require_clean(directory: Path, result: LintResult) -> RuleSet:
    if not result.clean or result.rule_set is None:
        for problem in result.problems:
            click.echo(str(problem), err=True)
        raise click.ClickException(f"{directory}: {len(result.problems)} problem(s); run `permctl rules lint`")
    return result.rule_set


@click.group()
def rules() -> None:
    """Rules commands: lint, test, explain, diff, impact, reload.

    \b
    Example:
      permctl rules lint && permctl rules test --junit report.xml
    """


@rules.command("lint")
@RULES_OPTION
def lint_command(rules_dir: Path | None) -> None:
    """Check every file under rules/ and print one line per mistake as path:line:col: rule-id: problem.

    \b
    Example:
      permctl rules lint --rules rules/
    """
    directory, result = _linted(rules_dir)
    for problem in result.problems:
        click.echo(str(problem))
    if not result.clean or result.rule_set is None:
        raise SystemExit(1)
    rule_set = result.rule_set
    warned = f" ({len(result.warnings)} warnings)" if result.warnings else ""
    click.echo(
        f"{directory}: clean{warned} — {len(rule_set.rules)} rules, {len(rule_set.catalog)} catalog values, "
        f"{len(result.cases)} cases; rule-set version {rule_set.version}"
    )


def _check_writable(path: Path) -> None:
    """Refuse, before running anything, a report path that cannot be written."""
    folder = path.parent
    if path.is_dir():
        raise click.ClickException(f"--junit {path}: is a directory")
    if not folder.is_dir():
        raise click.ClickException(f"--junit {path}: no such directory {folder}")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise click.ClickException(f"--junit {path}: not writable")


def _write_junit(path: Path, report: CaseReport, version: str) -> None:
    import xml.etree.ElementTree as ET

    suite = ET.Element(
        "testsuite", name="rules", tests=str(len(report.results)), failures=str(report.failed), errors="0", skipped="0"
    )
    ET.SubElement(ET.SubElement(suite, "properties"), "property", name="rule_set_version", value=version)
    for result in report.results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=Path(result.case.path).stem,
            name=result.case.name,
            file=result.case.path,
            line=str(result.case.line),
        )
        if not result.passed:
            failure = ET.SubElement(case, "failure", message="; ".join(result.mismatches))
            failure.text = result.outcome.message
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


@rules.command("test")
@RULES_OPTION
@click.option("--junit", type=click.Path(path_type=Path), default=None, help="Write a JUnit XML report here.")
def test_command(rules_dir: Path | None, junit: Path | None) -> None:
    """Run the regression cases under rules/cases/ (no database, no Redis needed).

    Prints a line per case and `N passed, M failed`; lists rules no case makes fire; exits 1 on failure.

    \b
    Example:
      permctl rules test --junit rules-report.xml
    """
    from app.rules.cases import run_cases

    if junit:
        _check_writable(junit)
    directory, result = _linted(rules_dir)
    rule_set = _require_clean(directory, result)
    report = run_cases(rule_set, result.cases)
    for item in report.results:
        mark = "PASS" if item.passed else "FAIL"
        line = f"{mark}  {item.case.path}:{item.case.line}  {item.case.name}"
        for mismatch in item.mismatches:
            line += f"\n      {mismatch}"
        click.echo(line)
    for rule_id in report.unexercised:
        click.echo(f"warning: no case makes rule '{rule_id}' hold")
    if junit:
        try:
            _write_junit(junit, report, rule_set.version)
        except OSError as exc:
            raise click.ClickException(f"--junit {junit}: {exc.strerror or exc}") from exc
    passed = len(report.results) - report.failed
    click.echo(f"rule-set version {rule_set.version}")
    click.echo(f"{passed} passed, {report.failed} failed")
    if report.failed:
        raise SystemExit(1)


def _state(pairs: tuple[str, ...]) -> dict[str, str]:
    state = {}
    for pair in pairs:
        permission_type, _, status = pair.partition("=")
        if status not in ("open", "close"):
            raise click.BadParameter(f"{pair!r}: use TYPE=open or TYPE=close", param_hint="--state")
        state[permission_type] = status
    return state


def _attributes(pairs: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise click.BadParameter(f"{pair!r}: use NAME=VALUE", param_hint="--attribute")
        found[name] = value
    return found


def _explained(
    cases: list[Case],
    case_name: str | None,
    data: str | None,
    patterns: tuple[str, ...],
    state: tuple[str, ...],
    attributes: tuple[str, ...],
    at: datetime | None,
) -> Case:
    """The case to explain: a regression case by name, or one made of --data and the options."""
    from app.rules.cases import Case, Expected

    if case_name is not None:
        case = next((c for c in cases if c.name == case_name), None)
        if case is None:
            raise click.ClickException(f"no case named {case_name!r}")
        return case
    try:
        body = json.loads(data or "")
    except ValueError as exc:
        raise click.ClickException(f"--data is not valid JSON: {exc}") from exc
    changes = body.get("changes") if isinstance(body, dict) else body
    if not isinstance(changes, list):
        raise click.ClickException('--data must be {"account_no": ..., "changes": [...]} or a list of changes')
    return Case(
        name="--data",
        path="-",
        line=1,
        tenant_config=patterns or ("*",),
        account=_state(state),
        changes=changes,
        expect=Expected("SUCCESS"),
        attributes=_attributes(attributes),
        at=at,
    )


def _printable(text: str) -> str:
    """Text a terminal can take: what cannot be encoded (a lone surrogate) as an escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _shown(change: object) -> str:
    """A change as JSON, readable; escaped where the text cannot be printed (e.g. a lone surrogate)."""
    text = json.dumps(change, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(change)
    return text


@rules.command()
@RULES_OPTION
@click.option("--data", default=None, help='The request body as JSON: {"account_no": ..., "changes": [...]}.')
@click.option(
    "--case",
    "case_name",
    default=None,
    help="Explain a regression case by name instead (its own changes, tenant config and state).",
)
@click.option(
    "--enable", "patterns", multiple=True, help="With --data: a tenant config pattern (repeatable; default '*')."
)
@click.option("--state", "state", multiple=True, help="With --data: current status, TYPE=open|close (repeatable).")
@click.option("--attribute", "attributes", multiple=True, help="With --data: an account attribute, NAME=VALUE.")
@click.option("--at", type=UTC_TIME, default=None, help="With --data: judge at this UTC time (default now).")
def explain(
    rules_dir: Path | None,
    data: str | None,
    case_name: str | None,
    patterns: tuple[str, ...],
    state: tuple[str, ...],
    attributes: tuple[str, ...],
    at: datetime | None,
) -> None:
    """Show, for each change, every rule in order with the engine's verdict, and which rule decided.

    Give either --data (with --enable and --state) or --case: a case brings its own request, tenant config
    and state, so combining them is refused rather than silently ignoring one.

    \b
    Example:
      permctl rules explain --enable 'stock.*' --state stock.HK=open --data \\
        '{"account_no":"A1","changes":[{"permission_type":"stock.HK","permission_status":"open"}]}'
      permctl rules explain --case 'the first failing change wins over a later one'
    """
    from app.rules.cases import case_input
    from app.rules.decision import decide
    from app.rules.engine import DurableRulesEngine
    from app.schemas.permissions import load_update_request

    if case_name is not None and (data is not None or patterns or state or attributes or at):
        raise click.ClickException(
            "--case explains the case's own request, tenant config and state: give either "
            "--case NAME or --data JSON (with --enable/--state/--attribute/--at), not both"
        )
    if case_name is None and data is None:
        raise click.UsageError("give --data or --case")
    directory, result = _linted(rules_dir)
    rule_set = _require_clean(directory, result)
    case = _explained(result.cases, case_name, data, patterns, state, attributes, at)
    try:
        request = load_update_request({"account_no": "EXPLAIN", "changes": case.changes})
    except Exception as exc:  # a DomainError from the schema: the request never reaches the rules
        raise click.ClickException(f"the request is refused before the rules: {exc}") from exc
    engine = DurableRulesEngine(rule_set)
    decision_input = case_input(case, request["changes"])
    decision = decide(engine, decision_input, use_memo=False)
    facts = engine.facts_of(decision_input)
    click.echo(
        f"rule-set version {rule_set.version}; tenant {case.tenant} config {list(case.tenant_config)}; "
        f"account {case.account_status} {case.attributes or '{}'}; at {decision_input.at.isoformat()}"
    )
    opened = {p["type"]: (p["before"], p["after"]) for p in facts.permissions}
    click.echo(
        f"permissions open before/after the request: { {k: f'{b}->{a}' for k, (b, a) in opened.items()} or 'none' }"
    )
    stop = decision.denial.index if decision.denial else None
    for index, held in enumerate(decision.held):
        change = request["changes"][index]
        shown_facts = {k: v for k, v in facts.changes[index].items() if k not in ("t", "index")}
        click.echo(f"\nchanges[{index}] {_shown(change)}")
        click.echo(f"  facts: {_shown(shown_facts)}")
        if stop is not None and index > stop:
            click.echo(f"  (the service stops at changes[{stop}]; shown for information)")
        for position, rule in enumerate(rule_set.rules, start=1):
            holds = rule.id in held
            kind = "" if rule.enforcement == "deny" else f" [{rule.enforcement}]"
            note = (
                "  <- decides"
                if decision.denial and decision.denial.index == index and decision.denial.rule.id == rule.id
                else ""
            )
            click.echo(f"  {position:>2}. {rule.id:<32} {'HOLDS' if holds else 'pass'}{kind}{note}")
    for hit in decision.warnings:
        click.echo(f"\nwarning: {hit.rule.id}: {_printable(hit.message)}")
    for hit in decision.dryruns:
        click.echo(f"\ndryrun (the caller sees nothing): {hit.rule.id}: {_printable(hit.message)}")
    if decision.denial is None:
        click.echo("\nrequest: SUCCESS (every change would be written)")
    else:
        hit = decision.denial
        click.echo(f"\nrequest: {hit.rule.outcome} at changes[{hit.index}] by {hit.rule.id}")
        click.echo(f"message: {_printable(hit.message)}")


class DiffTrouble(click.ClickException):
    """`rules diff` could not compare (exit 2, as diff(1): 0 same, 1 different, 2 trouble)."""

    exit_code = 2


def _diffable(directory: Path) -> RuleSet:
    from app.rules.lint import lint

    if not directory.is_dir():
        raise DiffTrouble(f"{directory}: no such directory")
    result = lint(directory)
    if not result.clean or result.rule_set is None:
        raise DiffTrouble(f"{directory}: {len(result.errors)} problem(s); run `permctl rules lint --rules {directory}`")
    return result.rule_set


@rules.command("diff")
@click.argument("old_dir", type=click.Path(path_type=Path))
@click.argument("new_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with every group and examples.")
def diff_command(old_dir: Path, new_dir: Path, as_json: bool) -> None:
    """Compare two rule sets over every input that matters (no database, no recorded traffic).

    Judges every catalog value (and malformed or unknown ones) x requested and current status x named
    earlier x enabled for the tenant x account status and attributes x tenant x time (each window) x the
    states of related permissions with both sets, and lists the inputs whose verdict, message, warnings or
    dryrun hits change, grouped by the old and new deciding rule. Exit 0: no difference; 1: differences;
    2: a directory is missing or does not lint clean.

    \b
    Example:
      cp -r rules /tmp/proposed && $EDITOR /tmp/proposed/policies.yaml
      permctl rules diff rules /tmp/proposed
    """
    from app.rules.diff import as_json as diff_json
    from app.rules.diff import diff, report_lines
    from app.rules.space import SpaceTooLarge

    old, new = _diffable(old_dir), _diffable(new_dir)
    try:
        result = diff(old, new)
    except SpaceTooLarge as exc:
        raise DiffTrouble(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(diff_json(result), ensure_ascii=False))
    else:
        for line in report_lines(result):
            click.echo(line)
        verdicts = result.count("verdict")
        click.echo(
            f"{old_dir} (version {old.version}) -> {new_dir} (version {new.version}): "
            f"{result.compared} inputs compared; "
            + (
                f"{verdicts} change verdict, {len(result.groups)} group(s) differ"
                if result.differs
                else "no difference"
            )
        )
    if result.differs:
        raise SystemExit(1)


def _same_directory(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()


@rules.command()
@click.option(
    "--rules",
    "rules_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Only a check: must be the service's RULES_DIR, which is what workers reload.",
)
def reload(rules_dir: Path | None) -> None:
    """Ask every running worker on every host (sharing DATABASE_URL) to reload its own RULES_DIR.

    Workers check within RULES_RELOAD_CHECK_SECONDS (2 s) and reload the directory they were started with,
    never one named here: so this command lints RULES_DIR as set for it (run it with the service's
    environment) and prints that directory's rule-set version, the one the workers will run if their copy
    holds the same files; GET /readyz on each host names the version it runs. `--rules DIR` naming another
    directory is refused: copy a proposed set into RULES_DIR first (after `permctl rules impact --rules DIR`).

    A worker whose rules do not lint clean keeps its last good rule set and logs `rules_reload_failed`; this
    command exits 1 when the local copy is broken (the request is still sent; workers keep their last good set).

    \b
    Example:
      permctl rules lint && permctl rules test && permctl rules reload
    """
    from app.persistence.unit_of_work import UnitOfWork

    s = settings()
    if rules_dir is not None and not _same_directory(rules_dir, s.rules_dir):
        raise click.ClickException(
            f"--rules {rules_dir}: workers reload RULES_DIR ({s.rules_dir}), not another "
            "directory; copy the rule set there, or run with the service's RULES_DIR"
        )
    directory, result = _linted(s.rules_dir)
    for problem in result.problems:
        click.echo(str(problem), err=True)
    with UnitOfWork(session_factory(s), write=True) as uow:
        generation = uow.rules_reloads.request(datetime.now(UTC))
        uow.commit()
    if not result.clean or result.rule_set is None:
        click.echo(
            f"reload requested (generation {generation}), but {directory} is broken: running workers "
            "keep their last good rule set",
            err=True,
        )
        raise SystemExit(1)
    click.echo(
        f"reload requested (generation {generation}): within {s.rules_reload_check_seconds:g} s workers "
        f"reload RULES_DIR {directory}, here rule-set version {result.rule_set.version} "
        "(each host reads its own copy; its /readyz names the version it runs)"
    )


def _recorded(since: datetime | None) -> list[Recorded]:
    from app.persistence.unit_of_work import UnitOfWork
    from app.rules.impact import Recorded

    with UnitOfWork(session_factory(settings())) as uow:
        return [Recorded.of_row(d) for d in uow.decisions.since(since)]


@rules.command()
@RULES_OPTION
@click.option(
    "--since",
    type=UTC_TIME,
    default=None,
    help="Only decisions recorded at or after this time (ISO 8601, e.g. 2026-11-01T00:00:00Z; no offset means UTC).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per changed decision.")
def impact(rules_dir: Path | None, since: datetime | None, as_json: bool) -> None:
    """Replay the decisions the service recorded through a proposed rules directory; list what would change.

    \b
    Example:
      cp -r rules /tmp/proposed && $EDITOR /tmp/proposed/validation.yaml
      permctl rules impact --rules /tmp/proposed --since 2026-11-01
    """
    from app.rules.impact import impact as impact_of
    from app.service.model import iso_utc

    directory, result = _linted(rules_dir)
    proposed = _require_clean(directory, result)
    report = impact_of(proposed, _recorded(since))
    for flip in report.flips:
        d = flip.decision
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "decision_id": d.id,
                        "trace_id": d.trace_id,
                        "tenant": d.tenant_id,
                        "account_no": d.account_no,
                        "at": iso_utc(d.created_at),
                        "recorded_rule_set_version": d.rule_set_version,
                        "old": {
                            "code": d.outcome.code,
                            "failure_index": d.outcome.failure_index,
                            "rule_id": d.outcome.rule_id,
                        },
                        "new": {
                            "code": flip.new.code,
                            "failure_index": flip.new.failure_index,
                            "rule_id": flip.new.rule_id,
                        },
                    }
                )
            )
        else:
            click.echo(
                f"decision {d.id} trace={d.trace_id} tenant={d.tenant_id} account={d.account_no} "
                f"({d.created_at:%Y-%m-%d %H:%M:%S}Z): {d.outcome} -> {flip.new}"
            )
    if as_json:
        return
    for rule_id, count in sorted(report.newly_decided_by.items()):
        click.echo(f"rule {rule_id}: would newly decide {count} decision(s)")
    for rule_id, count in sorted(report.no_longer_decided_by.items()):
        click.echo(f"rule {rule_id}: would no longer decide {count} decision(s)")
    for rule_id, ids in sorted(report.dryrun_hits.items()):
        click.echo(
            f"dryrun rule {rule_id}: would deny {len(ids)} decision(s) if enforced "
            f"(decisions {', '.join(map(str, ids[:10]))}{', ...' if len(ids) > 10 else ''})"
        )
    click.echo(
        f"{report.replayed} decisions replayed through rule-set version {proposed.version}; "
        f"{len(report.flips)} would change"
    )
