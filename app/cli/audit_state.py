"""permctl rules audit-state: judge every active account's current permissions against a rule set's holding
policies (SPEC §7c) and list what would be refused today.

Exit status: 0 with no deny violation, 1 with some, 2 when the audit could not run (a usage error, rules that do
not lint clean, an unknown tenant, an unwritable --out, the database): always one line, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from app.cli.context import session_factory, settings
from app.cli.errors import one_line

CANNOT_RUN = 2  # the audit did not run: not to be read as "no violation" (0) or "violations" (1)


class AuditCannotRun(click.ClickException):
    """A one-line error of a state audit that did not run."""

    exit_code = CANNOT_RUN


class _OneLineUsage(click.Command):
    """A usage error (an unknown option, a format not offered) is one line too, with exit status 2."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise AuditCannotRun(exc.format_message()) from exc


class _Bar:
    """The progress bar on stderr (click.progressbar), shown when stderr is a terminal or when forced."""

    def __init__(self, shown: bool) -> None:
        self._shown = shown
        self._bar: Any = None

    def start(self, total: int) -> None:
        if self._shown:
            self._bar = click.progressbar(length=total, label="accounts", file=sys.stderr, show_pos=True)
            self._bar.__enter__()

    def advance(self, accounts: int) -> None:
        if self._bar is not None:
            self._bar.update(accounts)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _rule_set(rules_dir: Path | None) -> Any:
    """The rule set of DIR (default: RULES_DIR, as `rules lint` resolves it), if it lints clean."""
    from app.rules.tools.lint.directory import lint

    directory = rules_dir or settings().rules_dir
    if not directory.is_dir():
        raise AuditCannotRun(f"{directory}: no such directory")
    result = lint(directory)
    if not result.clean or result.rule_set is None:
        raise AuditCannotRun(
            f"{directory}: {len(result.errors)} problem(s); run `permctl rules lint --rules {directory}`"
        )
    return result.rule_set


def _check_writable(path: Path) -> None:
    """Refuse, before reading anything, an --out that cannot be written."""
    if path.is_dir():
        raise AuditCannotRun(f"--out {path}: is a directory")
    if not path.parent.is_dir():
        raise AuditCannotRun(f"--out {path}: no such directory {path.parent}")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise AuditCannotRun(f"--out {path}: not writable")


def _shown(doc: dict[str, Any], output: str) -> str:
    from app.rules.tools.audit_state.render import FORMATS

    if output == "json":
        return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    return FORMATS[output](doc)


@click.command("audit-state", cls=_OneLineUsage)
@click.option(
    "--rules",
    "rules_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="The rule set to judge with (default: RULES_DIR, the live set).",
)
@click.option("--tenant", "tenant_id", default=None, help="Only the accounts of this tenant.")
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "json", "csv", "markdown"]),
    default="text",
    show_default=True,
    help="text for a terminal, json for tools, csv for a spreadsheet, markdown for a ticket.",
)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write the report here, not stdout.")
@click.option("--progress/--no-progress", default=None, help="Show a progress bar on stderr (default: on a terminal).")
def audit_state(
    rules_dir: Path | None, tenant_id: str | None, output: str, out: Path | None, progress: bool | None
) -> None:
    """Judge every active account's open permissions against the holding policies of a rule set, each as if it
    were opened now in a request of its own; list deny violations, warn and dryrun hits, open permissions
    outside the catalog or no longer enabled for the tenant, and the deregistered accounts skipped.

    Reads one consistent snapshot, in batches, and writes nothing. Exit 0: no deny violation; 1: some; 2: the
    audit could not run. A policy with `applies_to: opening` (a freeze) is left out.

    \b
    Example:
      cp -r rules /tmp/proposed && $EDITOR /tmp/proposed/policies.yaml
      permctl rules audit-state --rules /tmp/proposed --format csv --out remediation.csv
    """
    try:
        denied = _audit(rules_dir, tenant_id, output, out, progress)
    except click.ClickException as exc:
        raise AuditCannotRun(exc.format_message()) from exc
    except Exception as exc:
        error = one_line(exc)
        if error is None:
            raise
        raise AuditCannotRun(error.format_message()) from exc
    if denied:
        raise SystemExit(1)


def _audit(rules_dir: Path | None, tenant_id: str | None, output: str, out: Path | None, progress: bool | None) -> bool:
    from app.container import snapshots
    from app.service.state_audit import audit_state as run_audit

    if out is not None:
        _check_writable(out)
    rule_set = _rule_set(rules_dir)
    bar = _Bar(sys.stderr.isatty() if progress is None else progress)
    try:
        report = run_audit(
            snapshot=snapshots(session_factory(settings())),
            rule_set=rule_set,
            judged_at=datetime.now(UTC).replace(microsecond=0),
            tenant_id=tenant_id,
            progress=bar,
        )
    finally:
        bar.finish()
    shown = _shown(report.document(), output)
    if out is None:
        click.echo(shown, nl=False)
    else:
        out.write_text(shown, encoding="utf-8")
    return report.denied
