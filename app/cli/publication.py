"""permctl rules propose | proposals | proposal | approve | reject | publish | approval-policy | versions | export:
rule-set versions stored in the database, and the four eyes that move the live pointer (SPEC §7d).

Workers run the published version; RULES_DIR is where authors write a set. Each act is a console user's
(--as NAME, their password asked), checked by app/service/publication.py and appended to the console audit.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from app.cli.acting import AS_OPTION, acting_as, origin, rule_versions, units
from app.cli.context import settings

if TYPE_CHECKING:
    from app.rules.language.model import RuleSet
    from app.service.publication import Proposal, Publication, Review, RuleVersions
    from app.settings import Settings

SHOWN = 12  # characters of a version id shown
ALL_PUBLICATIONS = 1_000_000

AS_REQUIRED = click.option(
    "--as",
    "as_name",
    metavar="NAME",
    required=True,
    help="Act as this console user: the password from the terminal, or the next line of standard input.",
)


def utc(at: datetime) -> str:
    """A time as the commands print it: UTC, to the second, with Z."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(version: str | None) -> str:
    return "none" if version is None else version[:SHOWN]


def stored_refusals(directory: Path, rule_set: RuleSet) -> list[str]:
    """A warning line per attribute and reason for the stored accounts (DATABASE_URL) holding what the set's
    declarations refuse: read only, one grouped query."""
    from app.rules.language.attributes import ATTRIBUTES_FILE
    from app.rules.language.loader import shown_path
    from app.service.stored_attributes import count_refused

    shown = shown_path(directory, ATTRIBUTES_FILE)
    return [
        f"{shown}: {holding.attribute}: warning: {holding.describe()} ({holding.consequence()})"
        for holding in count_refused(units(), rule_set.attributes)
    ]


# -- propose ----------------------------------------------------------------------------------------------------


@click.command("propose")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@AS_REQUIRED
def propose(directory: Path | None, as_name: str) -> None:
    """Store the rule set in DIRECTORY (default RULES_DIR) as a version and propose it, with its report.

    The report is computed here and kept with the proposal for the reviewers: lint (the contract included),
    the regression cases, `diff` against the live version, `impact` on the recorded decisions and the state
    audit. The last line printed is the version's id (the hash of every file), which approve and publish take
    (any unique prefix of 4 or more characters). Exit 0 when the set is clean, 1 when its report found
    problems: it is stored and proposed all the same (the evidence is kept), but cannot be approved.

    \b
    Example:
      VERSION=$(permctl rules propose rules/ --as carol | tail -n 1)
    """
    from app.errors import ConsoleError
    from app.rules.lifecycle.stored import UnsafeTree, read_proposed, version_id

    folder = directory or settings().rules_dir
    if not folder.is_dir():
        raise click.ClickException(f"{folder}: no such directory")
    try:
        files = read_proposed(folder)
    except UnsafeTree as exc:
        raise click.ClickException(f"{folder}: {exc}; nothing was proposed") from exc
    versions = rule_versions()
    author = acting_as(as_name)
    version = version_id(files)
    try:
        before = versions.proposal(version)
    except ConsoleError:  # not stored, or stored (adopted) but never proposed
        before = None
    if before is not None:
        _said_before(before)
        return
    report = _report(versions, folder)
    document = report.as_json()
    if document.get("version") != version:
        raise click.ClickException(f"{folder}: its files changed while they were read; propose again")
    proposal, new = versions.propose(files, author=author, report=document, clean=report.clean, origin=origin())
    if not new:  # proposed by someone else meanwhile
        _said_before(proposal)
        return
    for line in report.text():
        click.echo(line)
    if report.clean:  # accepted all the same, but the author sees whom a broker's resend would be refused for
        from app.rules.language.loader import load_rule_set

        for line in stored_refusals(folder, load_rule_set(folder, files)):
            click.echo(line, err=True)
    against = f"against the live version {_short(proposal.against_version)}" if proposal.against_version else ""
    click.echo(
        f"proposed version {_short(version)} by {proposal.author} at {utc(proposal.proposed_at)}"
        + (f", {against}" if against else ", nothing is live yet")
        + (
            "; another approver reviews it: permctl rules approve|reject VERSION --as NAME"
            if report.clean
            else "; it is NOT clean and cannot be approved: fix it and propose again"
        )
    )
    click.echo(version)
    if not report.clean:
        raise SystemExit(1)


def _said_before(proposal: Proposal) -> None:
    click.echo(
        f"version {_short(proposal.version)} was proposed before, by {proposal.author} at "
        f"{utc(proposal.proposed_at)}: {proposal.state}"
    )
    click.echo(proposal.version)
    if not proposal.clean:
        raise SystemExit(1)


def _report(versions: RuleVersions, folder: Path) -> Any:
    """The proposal report of the set in folder, against the live version (written out here)."""
    from app.cli.context import request_loader, session_factory
    from app.container import snapshots
    from app.service.proposal_report import build_report

    live = versions.live()
    live_dir = None if live is None else versions.directory(live.version)
    return build_report(
        folder,
        live_dir=live_dir,
        unit_of_work=units(),
        snapshot=snapshots(session_factory(settings())),
        load_request=request_loader(),
        now=datetime.now(UTC),
    )


# -- proposals, proposal ----------------------------------------------------------------------------------------


def _review_json(
    review: Review, live_id: int | None, used: dict[int, int], versions_of: dict[int, str]
) -> dict[str, Any]:
    against = review.against_publication
    return {
        "id": review.id,
        "reviewer": review.reviewer,
        "verdict": review.verdict,
        "comment": review.comment,
        "reviewed_at": utc(review.reviewed_at),
        "against_publication": against,
        "against_version": None if against is None else versions_of.get(against),
        "used_by_publication": used.get(review.id),
        "void": review.id not in used and against != live_id,
    }


def _publication_json(publication: Publication) -> dict[str, Any]:
    return {
        "id": publication.id,
        "version": publication.version,
        "kind": publication.kind,
        "published_by": publication.published_by,
        "published_at": utc(publication.published_at),
        "approval_id": publication.approval_id,
        "reason": publication.reason,
    }


class Listing:
    """What the proposal commands show beside each proposal: the live publication, which publication used which
    approval, and the version each review was given against."""

    def __init__(self, versions: RuleVersions) -> None:
        history = versions.publications_before(None, ALL_PUBLICATIONS)
        self.live = history[0] if history else None
        self.used = {p.approval_id: p.id for p in history if p.approval_id is not None}
        self.versions_of = {p.id: p.version for p in history}

    def proposal_json(self, proposal: Proposal, *, report: bool) -> dict[str, Any]:
        live_id = None if self.live is None else self.live.id
        shown: dict[str, Any] = {
            "version": proposal.version,
            "author": proposal.author,
            "proposed_at": utc(proposal.proposed_at),
            "against_version": proposal.against_version,
            "clean": proposal.clean,
            "state": proposal.state,
            "reviews": [_review_json(r, live_id, self.used, self.versions_of) for r in proposal.reviews],
        }
        if report:
            shown["report"] = proposal.report
        return shown

    def proposal_lines(self, proposal: Proposal) -> list[str]:
        lines = [
            f"{_short(proposal.version)}  {proposal.author}  {utc(proposal.proposed_at)}  {proposal.state}"
            + ("" if proposal.clean else " (its report found problems)")
        ]
        for review in self.proposal_json(proposal, report=False)["reviews"]:
            against = review["against_publication"]
            said = (
                "nothing live"
                if against is None
                else f"version {_short(review['against_version'])} (publication {against})"
            )
            status = (
                f"used by publication {review['used_by_publication']}"
                if review["used_by_publication"] is not None
                else "void: another version went live since"
                if review["void"]
                else "current"
            )
            comment = f": {review['comment']!r}" if review["comment"] else ""
            lines.append(
                f"    {review['verdict']:<7} by {review['reviewer']} at {review['reviewed_at']} against {said}; "
                f"{status}{comment}"
            )
        return lines

    def live_line(self) -> str:
        if self.live is None:
            return "live: nothing is published yet (`permctl db upgrade` adopts the set running today)"
        p = self.live
        return (
            f"live: version {_short(p.version)}, publication {p.id} ({p.kind}) by {p.published_by} at "
            f"{utc(p.published_at)}"
        )


def _break_glass_line(publication: Publication) -> str:
    return (
        f"{_short(publication.version)}  publication {publication.id} by {publication.published_by} at "
        f"{utc(publication.published_at)}: {publication.reason}"
    )


@click.command("proposals")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the reports are left out).")
def proposals(as_json: bool) -> None:
    """List the proposals, oldest first: version, author, when (UTC), state (pending, approved, rejected,
    approval void, live, published before, broken) and each review (who, approve or reject, against which live
    version, and whether it is void); then the break-glass publications no second approver has confirmed yet,
    the live version and the approval policy."""
    versions = rule_versions()
    listing = Listing(versions)
    every = versions.proposals()
    unconfirmed = versions.unconfirmed_break_glass()
    policy = versions.approval_policy()
    if as_json:
        shown = {
            "proposals": [listing.proposal_json(p, report=False) for p in every],
            "unconfirmed_break_glass": [_publication_json(p) for p in unconfirmed],
            "live": None if listing.live is None else _publication_json(listing.live),
            "approval_policy": policy,
        }
        click.echo(json.dumps(shown, ensure_ascii=False))
        return
    if not every:
        click.echo("no proposals yet: `permctl rules propose DIR --as NAME` makes one")
    for proposal in every:
        for line in listing.proposal_lines(proposal):
            click.echo(line)
    if unconfirmed:
        click.echo("break-glass publications not confirmed yet (another approver approves the version to confirm):")
        for publication in unconfirmed:
            click.echo(f"    {_break_glass_line(publication)}")
    click.echo(listing.live_line())
    click.echo(f"approval policy: {policy}")


@click.command("proposal")
@click.argument("version")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, the stored report included.")
def proposal_command(version: str, as_json: bool) -> None:
    """Show one proposal (VERSION: any unique prefix of 4 or more characters) with its reviews and the report
    stored when it was proposed."""
    versions = rule_versions()
    proposal = versions.proposal(version)
    listing = Listing(versions)
    if as_json:
        click.echo(json.dumps(listing.proposal_json(proposal, report=True), ensure_ascii=False))
        return
    for line in listing.proposal_lines(proposal):
        click.echo(line)
    click.echo(f"version {proposal.version}")
    click.echo(f"report (made when it was proposed, against version {_short(proposal.against_version)}):")
    for line in _report_lines(proposal.report):
        click.echo(f"  {line}")


def _report_lines(report: dict[str, Any]) -> list[str]:
    from app.service.proposal_report import report_text

    try:
        return report_text(report)
    except (KeyError, TypeError, IndexError):  # a report of another shape: shown as it is stored
        return json.dumps(report, ensure_ascii=False, indent=2).splitlines()


# -- approve, reject --------------------------------------------------------------------------------------------


def _review(version: str, as_name: str, comment: str | None, *, approve: bool) -> None:
    versions = rule_versions()
    reviewer = acting_as(as_name)
    review = versions.review(version, reviewer=reviewer, approve=approve, comment=comment, origin=origin())
    live = versions.live()
    against = (
        "with nothing live"
        if review.against_publication is None or live is None
        else f"against the live version {_short(live.version)} (publication {review.against_publication})"
    )
    said = "approved" if approve else "rejected"
    click.echo(f"{reviewer.name} {said} version {_short(review.version)} {against}")
    if approve:
        click.echo(
            "it counts until another version goes live; publish it with "
            f"`permctl rules publish {_short(review.version)} --as NAME`"
        )


@click.command("approve")
@click.argument("version")
@AS_REQUIRED
@click.option("--comment", default=None, help="Why, for the record.")
def approve(version: str, as_name: str, comment: str | None) -> None:
    """Approve a proposed version (an approver other than its author), against the version live now: the
    approval is void once another version goes live. Approving a break-glass publication's version after the
    fact confirms it."""
    _review(version, as_name, comment, approve=True)


@click.command("reject")
@click.argument("version")
@AS_REQUIRED
@click.option("--comment", default=None, help="Why, for the author.")
def reject(version: str, as_name: str, comment: str | None) -> None:
    """Reject a proposed version (an approver other than its author): it cannot be published until a later
    review against the same live version approves it."""
    _review(version, as_name, comment, approve=False)


# -- publish ----------------------------------------------------------------------------------------------------


@click.command("publish")
@click.argument("version")
@AS_REQUIRED
@click.option(
    "--break-glass",
    is_flag=True,
    help="Publish without an approval (an approver only, with --reason); listed until another approver confirms.",
)
@click.option("--reason", default=None, help="Why the break-glass publication cannot wait (required with it).")
def publish(version: str, as_name: str, break_glass: bool, reason: str | None) -> None:
    """Make VERSION the live version of every worker on every host: publication moves the live pointer.

    With the approval policy `required` it needs an approval of that version by an approver other than its
    author, given against the version live now; with `off` none. Either way the set must pass the go-live gate
    (lint clean, the contract, every case). Rollback is publishing an earlier version (it needs a fresh
    approval, or break-glass). Workers pick the publication up within RULES_RELOAD_CHECK_SECONDS; GET /readyz on
    each names the version it runs.

    \b
    Example:
      permctl rules publish 3f2a9c --as carol
      permctl rules publish 3f2a9c --as ann --break-glass --reason 'regulator freeze at 14:00'
    """
    if reason is not None and not break_glass:
        raise click.UsageError("--reason goes with --break-glass")
    versions = rule_versions()
    actor = acting_as(as_name)
    published = versions.publish(version, actor=actor, origin=origin(), break_glass=break_glass, reason=reason)
    seconds = settings().rules_reload_check_seconds
    click.echo(
        f"published version {_short(published.version)} as publication {published.id} ({published.kind}) by "
        f"{published.published_by} at {utc(published.published_at)}"
    )
    click.echo(
        f"workers on every host pick it up within RULES_RELOAD_CHECK_SECONDS ({seconds:g} s); "
        "GET /readyz names the version each runs"
    )
    if published.kind == "break_glass":
        click.echo(
            "break-glass: `permctl rules proposals` lists it until an approver other than "
            f"{published.published_by} approves version {_short(published.version)}"
        )


# -- approval policy, versions, export --------------------------------------------------------------------------


@click.command("approval-policy")
@click.argument("policy", required=False, type=click.Choice(["required", "off"]))
@AS_OPTION
def approval_policy(policy: str | None, as_name: str | None) -> None:
    """Show the approval policy, or set it (an approver's act, --as NAME, audited).

    `required` (the default): publishing needs another approver's approval. `off`: any author publishes
    (recorded as unreviewed). It lives in the database only: no setting or environment variable changes it.
    """
    versions = rule_versions()
    if policy is None:
        if as_name is not None:
            raise click.UsageError("--as is for setting the policy: give required or off")
        click.echo(f"approval policy: {versions.approval_policy()}")
        return
    if as_name is None:
        raise click.UsageError("setting the approval policy is an approver's act: give --as NAME")
    actor = acting_as(as_name)
    versions.set_approval_policy(policy, actor=actor, origin=origin())
    click.echo(f"approval policy: {policy} (set by {actor.name})")


@click.command("versions")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="The latest N.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
def versions_command(limit: int, as_json: bool) -> None:
    """The publication history, newest first: id, version, kind (adopted, approved, unreviewed, break_glass),
    by whom, when (UTC) and the break-glass reason. The first line is the live version."""
    history = rule_versions().publications_before(None, limit)
    if as_json:
        click.echo(json.dumps([_publication_json(p) for p in history], ensure_ascii=False))
        return
    if not history:
        click.echo("nothing is published yet (`permctl db upgrade` adopts the set running today)")
        return
    for publication in history:
        reason = f"  {publication.reason}" if publication.reason else ""
        click.echo(
            f"{publication.id:>4}  {_short(publication.version)}  {publication.kind:<11}  "
            f"{publication.published_by}  {utc(publication.published_at)}{reason}"
        )


@click.command("export")
@click.argument("version", required=False)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="An empty or new directory to write the files into.",
)
def export(version: str | None, out: Path) -> None:
    """Write a stored version's files (default: the live one) into an empty or new directory: to start a change
    from what runs, or to read what a rollback would put live."""
    from app.rules.lifecycle.stored import check_tree

    versions = rule_versions()
    if version is None:
        live = versions.live()
        if live is None:
            raise click.ClickException("nothing is published yet: name a VERSION")
        chosen = live.version
    else:
        chosen = versions.resolve(version)
    files = versions.files(chosen)
    check_tree(files)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise click.ClickException(f"--out {out}: not an empty directory; nothing was written")
    for path, data in files.items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    click.echo(f"wrote version {_short(chosen)} ({len(files)} files) to {out}")


COMMANDS = (propose, proposals, proposal_command, approve, reject, publish, approval_policy, versions_command, export)


# -- adoption (db upgrade, serve --demo) ------------------------------------------------------------------------


def adopt_running_set(s: Settings, *, by: str = "permctl db upgrade") -> str:
    """When nothing is published yet, make the set this host runs today the first published version (adopted):
    RULES_DIR when it passes the go-live gate, else the host's last good snapshot. One line saying what was done.
    """
    import tempfile

    from app.cli.context import request_loader, unit_of_work
    from app.container import rule_versions as make_rule_versions
    from app.rules.language.loader import read_tree
    from app.rules.language.source import RuleSetInvalid
    from app.rules.lifecycle.gate import load_clean
    from app.rules.lifecycle.last_good import snapshot_path
    from app.rules.lifecycle.stored import materialize

    with tempfile.TemporaryDirectory(prefix="permctl-adopt-") as scratch:
        versions = make_rule_versions(unit_of_work(s), load_request=request_loader(), versions_dir=Path(scratch))
        live = versions.live()
        if live is not None:
            return f"live rule set: version {_short(live.version)} (publication {live.id}, {live.kind})"
        refused = []
        for source, directory in (
            ("RULES_DIR", s.rules_dir),
            ("the last good snapshot", snapshot_path(s.instance_dir)),
        ):
            if not directory.is_dir():
                refused.append(f"{source} {directory}: no such directory")
                continue
            files = read_tree(directory)
            try:  # the copy that is checked is the one adopted, even if the directory changes meanwhile
                load_clean(materialize(files, Path(scratch)), request_loader())
            except RuleSetInvalid as exc:
                refused.append(f"{source} {directory} may not go live ({len(exc.problems)} problem(s))")
                continue
            adopted = versions.adopt(files, by=by, origin=origin())
            if adopted is None:  # another host adopted first
                live = versions.live()
                assert live is not None
                return f"live rule set: version {_short(live.version)} (publication {live.id}, {live.kind})"
            return (
                f"adopted {source} {directory} as the first published rule set: version "
                f"{_short(adopted.version)} (publication {adopted.id})"
            )
        return f"nothing published: {'; '.join(refused)}; propose and publish a set (`permctl rules propose`)"
