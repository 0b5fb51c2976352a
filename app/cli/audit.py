"""permctl audit: an account's audit trail, or its permissions as they stood at a given time."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
from sqlalchemy.exc import SQLAlchemyError

from app.cli.context import database_error, rule_set, session_factory, settings
from app.errors import DomainError
from app.service.audit import enabled_values, permissions_at, trail
from app.service.model import iso_utc


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-25T08:30:00Z)") from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@click.command()
@click.argument("account_no")
@click.option("--at", "at", default=None, help="Show the permissions as they stood at this UTC time (ISO 8601).")
@click.option("--tenant", "tenant_id", default=None, help="The tenant, when several have this account number.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def audit(account_no: str, at: str | None, tenant_id: str | None, as_json: bool) -> None:
    """Print the audit trail of ACCOUNT_NO, oldest first; with --at, its permissions at that time.

    \b
    Examples:
      permctl audit L6VQEU00121996
      permctl audit L6VQEU00121996 --at 2026-11-25T08:30:00Z --json
    """
    s = settings()
    factory = session_factory(s)
    when = _parse_time(at) if at else None
    try:
        tenant, entries = trail(factory, account_no=account_no, tenant_id=tenant_id, until=when)
        if when is not None:
            views = permissions_at(entries, enabled_values(factory, rule_set(s).catalog, tenant))
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    except SQLAlchemyError as exc:
        raise database_error(exc) from exc
    if when is not None:
        if as_json:
            click.echo(json.dumps({"account_no": account_no, "tenant": tenant, "at": iso_utc(when), "permissions": [
                {"permission_type": v.permission_type, "permission_status": v.permission_status,
                 "updated_at": iso_utc(v.updated_at)} for v in views]}))
        else:
            click.echo(f"{account_no} (tenant {tenant}) as of {iso_utc(when)}:")
            for v in views:
                click.echo(f"  {v.permission_type:<22} {v.permission_status:<5}  {iso_utc(v.updated_at) or '-'}")
        return
    for e in entries:
        record = {"id": e.id, "at": iso_utc(e.at), "tenant": e.tenant_id, "app_key": e.app_key, "trace_id": e.trace_id,
                  "permission_type": e.permission_type, "status_before": e.status_before,
                  "status_after": e.status_after, "rule_set_version": e.rule_set_version}
        if as_json:
            click.echo(json.dumps(record))
        else:
            click.echo(f"{record['at']}  {e.permission_type:<22} {e.status_before:>5} -> {e.status_after:<5}  "
                       f"trace={e.trace_id} key={e.app_key} rules={e.rule_set_version}")
    if not entries and not as_json:
        click.echo(f"no audit rows for {account_no} (tenant {tenant})")
