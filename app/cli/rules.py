"""permctl rules: lint, regression-test, explain and replay a rules directory; propose, review and publish it
(app/cli/publication.py)."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from app.cli.audit_state import audit_state
from app.cli.context import request_loader, settings, unit_of_work
from app.cli.params import UTC_TIME
from app.cli.publication import COMMANDS as PUBLICATION_COMMANDS
from app.cli.publication import stored_refusals

if TYPE_CHECKING:
    from app.rules.language.model import RuleSet
    from app.rules.tools.cases import Case, CaseReport
    from app.rules.tools.explain.recorded import RecordedTrace
    from app.rules.tools.impact.document import Compared
    from app.rules.tools.lint.directory import LintResult
    from app.service.publication import RuleVersions

RULES_OPTION = click.option(
    "--rules",
    "rules_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="The rules directory (default: RULES_DIR or rules/).",
)


def _linted(rules_dir: Path | None, *, contract: bool = True) -> tuple[Path, LintResult]:
    """The directory (default RULES_DIR) and its lint; contract False for the tools that only analyse a set
    (explain, impact, diff): the contract binds what lint, test and reload let go live."""
    from app.rules.tools.lint.directory import lint

    directory = rules_dir or settings().rules_dir
    if not directory.is_dir():
        raise click.ClickException(f"{directory}: no such directory")
    return directory, lint(directory, contract=contract)


def _require_clean(directory: Path, result: LintResult) -> RuleSet:
    if not result.clean or result.rule_set is None:
        for problem in result.errors:
            click.echo(str(problem), err=True)
        raise click.ClickException(
            f"{directory}: {len(result.errors)} problem(s); run `permctl rules lint --rules {directory}`"
        )
    return result.rule_set


@click.group()
def rules() -> None:
    """Rules commands: lint, test, explain, diff, impact, audit-state; propose, proposals, approve, reject,
    publish, approval-policy, versions, export.

    Workers run the version published in the database; RULES_DIR is where a set is written and proposed.

    \b
    Example:
      permctl rules lint && permctl rules test --junit report.xml
      VERSION=$(permctl rules propose --as carol | tail -n 1)
      permctl rules approve "$VERSION" --as ann && permctl rules publish "$VERSION" --as carol
    """


@rules.command("lint")
@RULES_OPTION
@click.option(
    "--against-db",
    is_flag=True,
    help="Also count the stored accounts (DATABASE_URL) holding attributes or values the declarations refuse: "
    "warnings. Without it lint opens no database.",
)
def lint_command(rules_dir: Path | None, against_db: bool) -> None:
    """Check every file under rules/ and print one line per mistake as path:line:col: rule-id: problem.

    --against-db also reads the accounts stored in DATABASE_URL (never without the flag) and warns, per
    attribute and reason (a name not declared, a value not allowed, a deprecated attribute), how many hold what
    these declarations would refuse: a broker resending such an account would be refused. It reads only; the
    exit status stays that of the files. `permctl accounts strip-undeclared` removes what it counts.

    \b
    Examples:
      permctl rules lint --rules rules/
      permctl rules lint --against-db
    """
    directory, result = _linted(rules_dir)
    for problem in result.problems:
        click.echo(str(problem))
    if not result.clean or result.rule_set is None:
        if against_db:
            click.echo(f"{directory}: stored accounts not checked: the declarations must lint clean first", err=True)
        raise SystemExit(1)
    rule_set = result.rule_set
    stored = stored_refusals(directory, rule_set) if against_db else []
    for line in stored:
        click.echo(line)
    warnings = len(result.warnings) + len(stored)
    warned = f" ({warnings} warnings)" if warnings else ""
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
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="rule_set_version", value=version)
    coverage = report.coverage
    ET.SubElement(properties, "property", name="coverage_percent", value=f"{coverage.percent:.1f}")
    for rule in coverage.rules:
        ET.SubElement(
            properties,
            "property",
            name=f"coverage:{rule.rule_id}",
            value=f"fired={'yes' if rule.fired else 'no'} passed={'yes' if rule.passed else 'no'}",
        )
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
@click.option(
    "--coverage",
    "show_coverage",
    is_flag=True,
    help="Print per rule whether a case made it fire and whether one made it pass, and the coverage.",
)
@click.option(
    "--min-coverage",
    type=click.FloatRange(0, 100),
    default=None,
    metavar="PCT",
    help="Exit 1 when the coverage (defined above) is below PCT percent.",
)
def test_command(rules_dir: Path | None, junit: Path | None, show_coverage: bool, min_coverage: float | None) -> None:
    """Run the regression cases under rules/cases/ (no database, no Redis needed).

    Prints a line per case and `N passed, M failed`; warns about rules no case makes fire; exits 1 on failure.

    Coverage: a rule FIRED when some case's answer is decided by it (a validation or deny policy) or reports
    it (a warn policy in data.warnings, a dryrun policy's hit); a rule PASSED when some case reached it for a
    change (no earlier change or rule decided first) and its condition did not hold (outside its window
    counts). Coverage = (rules that fired + rules that passed) / (2 x rules).

    \b
    Example:
      permctl rules test --junit rules-report.xml --coverage --min-coverage 90
    """
    from app.rules.tools.cases import run_cases
    from app.rules.tools.coverage import shown_percent, table

    if junit:
        _check_writable(junit)
    directory, result = _linted(rules_dir)
    rule_set = _require_clean(directory, result)
    report = run_cases(rule_set, result.cases, request_loader())
    for item in report.results:
        mark = "PASS" if item.passed else "FAIL"
        line = f"{mark}  {item.case.path}:{item.case.line}  {item.case.name}"
        for mismatch in item.mismatches:
            line += f"\n      {_printable(mismatch)}"
        click.echo(line)
    held = frozenset().union(*(r.outcome.held for r in report.results))
    for rule_id in report.unexercised:
        shadowed = " (it holds in some case, but an earlier rule always decides first)" if rule_id in held else ""
        click.echo(f"warning: no case makes rule '{rule_id}' fire{shadowed}")
    if show_coverage:
        click.echo("\n".join(table(report.coverage)))
    elif min_coverage is not None:
        click.echo(table(report.coverage)[-1])
    if junit:
        try:
            _write_junit(junit, report, rule_set.version)
        except OSError as exc:
            raise click.ClickException(f"--junit {junit}: {exc.strerror or exc}") from exc
    passed = len(report.results) - report.failed
    click.echo(f"rule-set version {rule_set.version}")
    click.echo(f"{passed} passed, {report.failed} failed")
    below = min_coverage is not None and report.coverage.percent < min_coverage
    if below:
        click.echo(
            f"Error: rule coverage {shown_percent(report.coverage.percent)} is below --min-coverage {min_coverage:g}%",
            err=True,
        )
    if report.failed or below:
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
    from app.rules.tools.cases import Case, Expected

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


def _traced(trace_id: str) -> list[RecordedTrace]:
    """The decisions recorded under a trace id; a one-line error when there is none."""
    from app.rules.tools.explain.recorded import recorded_trace

    with unit_of_work(settings())() as uow:
        found = [recorded_trace(row) for row in uow.decisions.with_trace(trace_id)]
    if not found:
        raise click.ClickException(
            f"no decision recorded with trace id {trace_id!r} (a request refused before the rules records none)"
        )
    return found


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
    "--trace",
    "trace_id",
    default=None,
    help="Explain the decision recorded under this trace id (needs DATABASE_URL), beside what was answered then.",
)
@click.option(
    "--enable", "patterns", multiple=True, help="With --data: a tenant config pattern (repeatable; default '*')."
)
@click.option("--state", "state", multiple=True, help="With --data: current status, TYPE=open|close (repeatable).")
@click.option("--attribute", "attributes", multiple=True, help="With --data: an account attribute, NAME=VALUE.")
@click.option("--at", type=UTC_TIME, default=None, help="With --data: judge at this UTC time (default now).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per explained request (every verdict).")
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="List every rule's verdict for every change and the change's facts (the default is the brief form).",
)
def explain(
    rules_dir: Path | None,
    data: str | None,
    case_name: str | None,
    trace_id: str | None,
    patterns: tuple[str, ...],
    state: tuple[str, ...],
    attributes: tuple[str, ...],
    at: datetime | None,
    as_json: bool,
    verbose: bool,
) -> None:
    """Show, for each change, the rule that decided it (or that it passed), the warn and dryrun rules that held,
    the facts each of them read, and the answer; --verbose lists every rule in order with its verdict.

    A verdict (--verbose and --json) is one of: HOLDS and decides (its outcome is the answer), HOLDS and
    warns, HOLDS as a dryrun, does not hold, outside its window, or not reached (an earlier rule decided the
    change, or an earlier change decided the request). The facts are the change's (type, status, parts,
    current status, in_catalog, enabled_for_tenant, named_earlier), the permissions a rule relates to (before
    and after the request), the account's status and attributes, the tenant and the time. The answer is the
    envelope's code, message and data (failure_index, rule_id, warnings) the caller would get.

    Give --data (with --enable/--state/--attribute/--at), --case, or --trace: --trace judges the request of a
    recorded decision again, with the state it met, and says whether the current rules answer differently.

    \b
    Example:
      permctl rules explain --enable 'stock.*' --state stock.HK=open --data \\
        '{"account_no":"A1","changes":[{"permission_type":"stock.HK","permission_status":"open"}]}'
      permctl rules explain --case 'the first failing change wins over a later one'
      permctl rules explain --trace 0f9c2e5a7b4d4c1e8a6f3b2d1c0e9f8a --json
    """
    from app.container import rules_engine
    from app.rules.tools.cases import case_input
    from app.rules.tools.explain.explanation import explain as explain_request
    from app.rules.tools.explain.render import json_text, text, trace_json, trace_text
    from app.schemas.permissions import load_update_request

    with_data = data is not None or patterns or state or attributes or at
    if case_name is not None and with_data:
        raise click.ClickException(
            "--case explains the case's own request, tenant config and state: give either "
            "--case NAME or --data JSON (with --enable/--state/--attribute/--at), not both"
        )
    if trace_id is not None and (with_data or case_name is not None):
        raise click.ClickException(
            "--trace explains a recorded request with the state it met: give it without --case, --data, "
            "--enable, --state, --attribute or --at"
        )
    if case_name is None and data is None and trace_id is None:
        raise click.UsageError("give --data, --case or --trace")
    directory, result = _linted(rules_dir, contract=False)
    rule_set = _require_clean(directory, result)
    engine = rules_engine(rule_set)
    if trace_id is not None:
        for position, traced in enumerate(_traced(trace_id)):  # a caller may send its own trace id twice
            explanation = explain_request(engine, traced.decision_input)
            if as_json:
                click.echo(json_text(trace_json(traced.answer, explanation)))
                continue
            if position:
                click.echo("")
            click.echo(_printable("\n".join(trace_text(traced.answer, explanation, verbose=verbose))))
        return
    case = _explained(result.cases, case_name, data, patterns, state, attributes, at)
    try:
        request = load_update_request({"account_no": "EXPLAIN", "changes": case.changes})
    except Exception as exc:  # a DomainError from the schema: the request never reaches the rules
        raise click.ClickException(f"the request is refused before the rules: {exc}") from exc
    explanation = explain_request(engine, case_input(case, request["changes"]))
    if as_json:
        from app.rules.tools.explain.render import as_json as explanation_json

        click.echo(json_text(explanation_json(explanation)))
    else:
        click.echo(_printable("\n".join(text(explanation, verbose=verbose))))


class DiffTrouble(click.ClickException):
    """`rules diff` could not compare (exit 2, as diff(1): 0 same, 1 different, 2 trouble)."""

    exit_code = 2


def _diffable(directory: Path) -> RuleSet:
    from app.rules.tools.input_space.partitions import TOO_LARGE
    from app.rules.tools.lint.directory import lint

    if not directory.is_dir():
        raise DiffTrouble(f"{directory}: no such directory")
    result = lint(directory, contract=False)  # any two sets compare; the contract binds what goes live
    if not result.clean or result.rule_set is None:
        run = f"run `permctl rules lint --rules {directory}`"
        too_large = [p for p in result.errors if p.text.startswith(TOO_LARGE)]
        if too_large:  # the rule that makes a permission type too large to compare, named
            raise DiffTrouble(f"{directory}: {len(result.errors)} problem(s), among them {too_large[0]}; {run}")
        raise DiffTrouble(f"{directory}: {len(result.errors)} problem(s); {run}")
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
    dryrun hits change, grouped by the old and new deciding rule: each group with the facts it restricts and up
    to three example requests; then the catalog values and attribute declarations added, removed or changed.
    Exit 0: no answer differs; 1: some do; 2: a directory is missing or does not lint clean, or the two sets
    together make one permission type's inputs too many to compare (one line naming the rule and what it reads).

    \b
    Example:
      cp -r rules /tmp/proposed && $EDITOR /tmp/proposed/policies.yaml
      permctl rules diff rules /tmp/proposed
    """
    from app.rules.tools.diff import as_json as diff_json
    from app.rules.tools.diff import diff, report_lines
    from app.rules.tools.input_space.space import SpaceTooLarge

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
                else "no answer differs, but the declarations above do"
                if result.declarations.any
                else "no difference"
            )
        )
    if result.differs:
        raise SystemExit(1)


@rules.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def reload() -> None:
    """Retired: workers run the published version from the database (propose, approve, publish)."""
    raise click.ClickException(
        "rules reload is retired: workers run the version published in the database; store RULES_DIR with "
        "`permctl rules propose --as NAME`, have another approver `permctl rules approve`, then "
        "`permctl rules publish VERSION --as NAME` (docs/deploy.md)"
    )


def _stored_versions() -> RuleVersions:
    """The rule-set versions stored in DATABASE_URL, written out under INSTANCE_DIR/rule-versions/ to be read."""
    from app.container import rule_versions
    from app.rules.lifecycle.published import VERSIONS_DIR

    s = settings()
    return rule_versions(unit_of_work(s), load_request=request_loader(), versions_dir=s.instance_dir / VERSIONS_DIR)


def _stored_version(versions: RuleVersions, prefix: str) -> tuple[str, Path]:
    """The stored version a prefix names and the directory its files are written out in; one line otherwise."""
    from app.errors import ConsoleError

    try:
        version = versions.resolve(prefix)
        return version, versions.directory(version)
    except ConsoleError as exc:
        raise click.ClickException(str(exc)) from exc


def _live_rules(versions: RuleVersions) -> tuple[RuleSet | None, Compared] | None:
    """The published live version as the old set, or None when nothing is published yet."""
    from app.rules.lifecycle.stored import shown
    from app.rules.tools.impact.document import Compared

    live = versions.live()
    if live is None:
        return None
    source = f"the live version {shown(live.version)}"
    directory = versions.directory(live.version)
    _, result = _linted(directory, contract=False)
    if not result.clean or result.rule_set is None:
        return None, Compared("", None, source, f"{source} does not lint clean here; give --old-rules")
    return result.rule_set, Compared("", str(directory), source)


def _old_rules(old_dir: Path | None, versions: RuleVersions) -> tuple[RuleSet | None, Compared]:
    """The rule set to compare against: --old-rules, else the version published live in the database, else this
    host's last good snapshot, else RULES_DIR. Only an --old-rules that does not lint clean is an error; a
    default one that cannot be loaded leaves the old set out (the report says why)."""
    from app.rules.lifecycle.last_good import snapshot_path
    from app.rules.tools.impact.document import Compared

    s = settings()
    if old_dir is not None:
        directory, result = _linted(old_dir, contract=False)
        return _require_clean(directory, result), Compared("", str(directory), "--old-rules")
    live = _live_rules(versions)
    if live is not None:
        return live
    snapshot = snapshot_path(s.instance_dir)
    directory, source = (snapshot, "the last good snapshot") if snapshot.is_dir() else (s.rules_dir, "RULES_DIR")
    if not directory.is_dir():
        return None, Compared("", None, source, f"{directory}: no such directory")
    _, result = _linted(directory, contract=False)
    if not result.clean or result.rule_set is None:
        note = f"{source} {directory} does not lint clean; give --old-rules"
        return None, Compared("", None, source, note)
    return result.rule_set, Compared("", str(directory), source)


@rules.command()
@RULES_OPTION
@click.option(
    "--old-rules",
    "old_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="The rule set to compare with, for old messages and the catalog edit (default: the version published "
    "live in the database, else this host's last good snapshot under INSTANCE_DIR, else RULES_DIR).",
)
@click.option(
    "--version",
    "version_prefix",
    default=None,
    metavar="PREFIX",
    help="Replay under this stored version (any unique prefix of its id) instead of --rules DIR.",
)
@click.option(
    "--as-recorded",
    is_flag=True,
    help="Replay each decision under the stored version it was recorded with: a flip means the replay is not "
    "exact; a decision whose version is not stored is listed as not replayable.",
)
@click.option(
    "--since",
    type=UTC_TIME,
    default=None,
    help="Only decisions recorded at or after this time (ISO 8601, e.g. 2026-11-01T00:00:00Z; no offset means UTC).",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "markdown", "json"]),
    default="text",
    show_default=True,
    help="text for a terminal, markdown for a pull request, json: one document with everything markdown shows.",
)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Show at most N flipped decisions (and N message changes): the first N by decision id. Totals stay exact.",
)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=None,
    help="Show a random N flipped decisions instead (the same --seed picks the same ones). Totals stay exact.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="The seed of --sample.")
def impact(
    rules_dir: Path | None,
    old_dir: Path | None,
    version_prefix: str | None,
    as_recorded: bool,
    since: datetime | None,
    output: str,
    as_json: bool,
    limit: int | None,
    sample: int | None,
    seed: int,
) -> None:
    """Replay the decisions the service recorded through a proposed rules directory; report what would change.

    Per flipped decision: what it asked (each change) next to old -> new (code, failure index, rule, message),
    a close newly refused marked; exact counts per rule, per tenant and per old -> new code over the whole
    history (read in batches); message changes; and, against the old rule set, the values a catalog edit newly
    enables or disables for each tenant's SaaS config.

    --version PREFIX replays through a version stored in the database instead of a directory. --as-recorded
    replays each decision under the stored version it was recorded with (the one its worker ran; for a decision
    recorded before versions were stored, a stored version deciding as its rule-set version) and compares with
    what was recorded: a decision recorded normally never flips, so this shows the replay is exact. A decision
    whose version is not stored is counted and listed as not replayable.

    \b
    Example:
      cp -r rules /tmp/proposed && $EDITOR /tmp/proposed/validation.yaml
      permctl rules impact --rules /tmp/proposed --since 2026-11-01
      permctl rules impact --rules /tmp/proposed --old-rules rules --format markdown --limit 50 > impact.md
      permctl rules impact --version 3f2a9c --since 2026-11-01
      permctl rules impact --as-recorded --format json
    """
    from app.rules.tools.impact.render import markdown, text

    _check_impact_options(rules_dir, old_dir, version_prefix, as_recorded, output, as_json, limit, sample)
    versions = _stored_versions()
    shown_limit, shown_seed = sample or limit, seed if sample else None
    if as_recorded:
        doc = _as_recorded(versions, since, limit=shown_limit, seed=shown_seed)
    elif version_prefix is not None:
        stored_version, directory = _stored_version(versions, version_prefix)
        doc = _replayed(directory, old_dir, versions, since, shown_limit, shown_seed, stored_version)
    else:
        directory = rules_dir or settings().rules_dir
        doc = _replayed(directory, old_dir, versions, since, shown_limit, shown_seed, None)
    if as_json or output == "json":
        shown = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    else:
        shown = markdown(doc) if output == "markdown" else text(doc)
    # A recorded value may hold what cannot be printed (a lone surrogate): escaped, it stays valid JSON too.
    click.echo(_printable(shown), nl=False)


def _check_impact_options(
    rules_dir: Path | None,
    old_dir: Path | None,
    version_prefix: str | None,
    as_recorded: bool,
    output: str,
    as_json: bool,
    limit: int | None,
    sample: int | None,
) -> None:
    """Refuse the combinations of impact's options that cannot be honoured, with a usage error."""
    if limit is not None and sample is not None:
        raise click.UsageError("give --limit N (the first N) or --sample N (a random N), not both")
    if as_json and output not in ("text", "json"):
        raise click.UsageError(f"--json is --format json: it cannot be combined with --format {output}")
    chosen = [
        n for n, v in (("--rules", rules_dir), ("--version", version_prefix), ("--as-recorded", as_recorded)) if v
    ]
    if len(chosen) > 1:
        raise click.UsageError(f"give one of --rules, --version and --as-recorded, not {' and '.join(chosen)}")
    if as_recorded and old_dir is not None:
        raise click.UsageError("--as-recorded compares each decision with what was recorded: give no --old-rules")


def _replayed(
    directory: Path,
    old_dir: Path | None,
    versions: RuleVersions,
    since: datetime | None,
    limit: int | None,
    seed: int | None,
    stored_version: str | None,
) -> dict[str, object]:
    """The impact document of replaying the recorded decisions through the set in directory (a stored version's
    files when stored_version is given), against the old set."""
    from dataclasses import replace

    from app.rules.tools.impact.catalog import catalog_impact
    from app.rules.tools.impact.document import document
    from app.rules.tools.impact.replay import Recorded
    from app.rules.tools.impact.replay import impact as impact_of

    directory, result = _linted(directory, contract=False)
    proposed = _require_clean(directory, result)
    old, compared = _old_rules(old_dir, versions)
    compared = replace(
        compared, proposed_dir=str(directory), since=since, limit=limit, seed=seed, proposed_version=stored_version
    )
    with unit_of_work(settings())() as uow:
        history = (Recorded.of_row(row) for row in uow.decisions.stream(since))
        report = impact_of(proposed, history, old=old, limit=compared.limit, seed=compared.seed)
        if old is not None:
            report.catalog = catalog_impact(old.catalog, proposed.catalog, uow.tenant_configs.every())
    return document(report, compared)


def _as_recorded(
    versions: RuleVersions, since: datetime | None, *, limit: int | None, seed: int | None
) -> dict[str, object]:
    """The impact document of replaying each decision under the stored version it was recorded with."""
    from app.rules.tools.impact.document import Compared, document
    from app.rules.tools.impact.replay import Recorded
    from app.service.replay_versions import replay_as_recorded

    note = "each decision is replayed under the stored version it was recorded with"
    compared = Compared(None, None, "as recorded", note, since=since, limit=limit, seed=seed)
    with unit_of_work(settings())() as uow:
        history = (Recorded.of_row(row) for row in uow.decisions.stream(since))
        report = replay_as_recorded(versions, history, limit=limit, seed=seed)
    return document(report, compared)


rules.add_command(audit_state)
for command in PUBLICATION_COMMANDS:
    rules.add_command(command)
