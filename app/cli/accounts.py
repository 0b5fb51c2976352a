"""permctl accounts import: many accounts from a .jsonl or .csv file, in batches, through the account service."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from app.cli.context import rule_set, settings, unit_of_work

if TYPE_CHECKING:
    from app.service.account_import import ImportReport, Line
    from app.service.accounts import AccountService


@click.group()
def accounts() -> None:
    """Accounts as the broker keeps them.

    \b
    Examples:
      permctl accounts import accounts.jsonl
      permctl accounts check
      permctl accounts strip-undeclared --dry-run
    """


def _counts(report: ImportReport) -> str:
    busy = f" ({report.busy} busy)" if report.busy else ""
    return (
        f"{report.created} created, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.refused} refused{busy}"
    )


def _summary(file: Path, report: ImportReport) -> str:
    met = [
        f"{report.replanned} line(s) planned again (their account was created meanwhile)" if report.replanned else "",
        f"{report.retried} batch attempt(s) rolled back and retried" if report.retried else "",
    ]
    concurrent = "; beside concurrent writers: " + ", ".join(m for m in met if m) if any(met) else ""
    return f"imported {file}: {report.lines} lines: {_counts(report)}{concurrent}"


@accounts.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=1000,
    show_default=True,
    help="Lines per transaction: a batch that fails to write leaves nothing behind; earlier batches stay.",
)
def import_(file: Path, batch_size: int) -> None:
    """Create or update the accounts listed in FILE (.jsonl or .csv); safe to run again.

    \b
    .jsonl: one object a line:
      {"tenant": "sg_mexc", "account_no": "L6VQEU00121996", "status": "active",
       "attributes": {"account_type": "margin", "residency": "SG"}}
      ("attributes" omitted: the stored ones are kept; {}: cleared)
    .csv: a header tenant,account_no,status and one column per attribute
      (an empty cell: the account does not have that attribute)

    Each line goes through the same checks as the upsert API (attributes declared in rules/attributes.yaml,
    deregistered is final) and every change is in the account audit trail. An attribute declared deprecated
    is accepted but not stored: a closing warning names each and how many lines sent it. Refused lines are
    listed in line order with their line number and reason (a CSV record over several lines: its first) and
    the rest is imported; the exit status is 1 when any line was refused. Beside live traffic a batch that
    meets the API creating or locking its accounts is planned again and retried with back-off; a line still
    contended then is refused as "busy, retry" (import the file again for it) and the batch goes on.
    Prints a progress bar on a terminal, progress lines otherwise, and a summary.

    \b
    Example:
      permctl accounts import accounts.jsonl
    """
    from app.cli.account_file import FORMATS, UnreadableFile, read_lines
    from app.service.account_import import BatchFailed
    from app.service.accounts import AccountService

    if file.suffix.lower() not in FORMATS:
        raise click.ClickException(f"{file}: the file must end in {' or '.join(FORMATS)}")
    s = settings()
    rules = rule_set(s)
    units = unit_of_work(s)
    service = AccountService(unit_of_work=lambda: units(write=True), rule_set=lambda: rules)
    try:
        stream = file.open("rb")
    except FileNotFoundError:
        raise click.ClickException(f"{file}: no such file") from None
    size = max(file.stat().st_size, 1)

    def refused(number: int, reason: str) -> None:
        click.echo(f"{file}:{number}: {reason}", err=True)

    with stream:
        try:
            report = _run(read_lines(file, stream), service, batch_size, size, refused)
        except BatchFailed as exc:
            click.echo(_summary(file, exc.report) + " before the failure")
            raise click.ClickException(exc.message) from exc
        except UnreadableFile as exc:
            raise click.ClickException(f"{file}: {exc.message}") from exc
    click.echo(_summary(file, report))
    if report.dropped:
        named = ", ".join(f"'{name}' on {count} line(s)" for name, count in sorted(report.dropped.items()))
        click.echo(f"warning: deprecated attributes accepted but not stored: {named} (stop sending them)", err=True)
    if report.refused:
        shown = ", ".join(str(n) for n, _ in report.refusals[:20]) + (", ..." if report.refused > 20 else "")
        busy = f" ({report.busy} busy: import the file again for them)" if report.busy else ""
        raise click.ClickException(f"{report.refused} line(s) refused{busy}: {shown}")


def _run(
    lines: Iterator[Line],
    service: AccountService,
    batch_size: int,
    size: int,
    refused: Callable[[int, str], None],
) -> ImportReport:
    """Import with a progress bar on a terminal, and plain progress lines otherwise (one per batch)."""
    from app.service.account_import import import_accounts

    if sys.stderr.isatty():
        with click.progressbar(length=size, label="importing", file=sys.stderr) as bar:
            done = [0]

            def advance(report: ImportReport, offset: int) -> None:
                bar.update(offset - done[0])
                done[0] = offset

            return import_accounts(lines, service, batch_size=batch_size, refused=refused, progress=advance)

    def plain(report: ImportReport, offset: int) -> None:
        click.echo(f"progress: {report.lines} lines done ({100 * offset // size}% read): {_counts(report)}", err=True)

    return import_accounts(lines, service, batch_size=batch_size, refused=refused, progress=plain)


@accounts.command("check")
def check() -> None:
    """List the stored accounts whose number breaks the account number rule; exit 1 when there is any.

    An account number is 1 to 64 printable ASCII characters with no leading or trailing space. The API, imports
    and fixture files refuse any other for a new account or a change; accounts stored before the rule stay
    readable (GET, permctl audit) and are listed here, one a line: tenant, the number as a JSON string (so a
    space or a non-ASCII character shows), status and what is wrong with it.

    \b
    Example:
      permctl accounts check
    """
    import json

    from app.service.account_numbers import irregular_accounts

    found = 0
    for account in irregular_accounts(unit_of_work=unit_of_work(settings())):
        found += 1
        click.echo(f"{account.tenant_id} {json.dumps(account.account_no)} {account.status}: {account.problem}")
    if found:
        raise click.ClickException(f"{found} stored account(s) break the account number rule")
    click.echo("every stored account number follows the rule")


@accounts.command("strip-undeclared")
@click.option("--dry-run", is_flag=True, help="Print what would be removed and write nothing.")
def strip_undeclared(dry_run: bool) -> None:
    """Remove from stored accounts the attributes rules/attributes.yaml would not store now.

    That is: a name it no longer declares, a value its declaration no longer allows, or an attribute it
    declares deprecated. Run it after narrowing a declaration (`permctl rules lint --against-db` counts what
    it would remove): a broker that resends such an account is then accepted again. Each account changed is
    one account audit row (app key strip-undeclared), like any attribute change, under the rule-set version of
    RULES_DIR; a deregistered account is stripped too. Prints a line per account (tenant, number, each
    attribute removed with its value and why) and the counts. --dry-run prints the same and writes nothing.

    \b
    Examples:
      permctl accounts strip-undeclared --dry-run
      permctl accounts strip-undeclared
    """
    from app.service.accounts import AccountService
    from app.service.stored_attributes import StrippedAccount

    s = settings()
    rules = rule_set(s)
    units = unit_of_work(s)
    service = AccountService(unit_of_work=lambda: units(write=True), reader=lambda: units(), rule_set=lambda: rules)

    def show(account: StrippedAccount) -> None:
        click.echo(("would remove " if dry_run else "removed ") + account.describe())

    report = service.strip_refused_attributes(dry_run=dry_run, stripped=show)
    per = "; ".join(f"{name} ({why}): {count}" for (name, why), count in sorted(report.removed.items()))
    verb = "would strip" if dry_run else "stripped"
    written = " (dry run: nothing written)" if dry_run else ""
    click.echo(f"{verb} {report.accounts} account(s){': ' + per if per else ''}{written}")
