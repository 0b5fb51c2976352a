"""permctl audit: an account's audit trail, or its permissions as they stood at a given time."""

from __future__ import annotations

import json
from datetime import datetime

import click

from app.cli.context import rule_set, session_factory, settings
from app.cli.params import UTC_TIME


@click.command()
@click.argument("account_no")
@click.option(
    "--at",
    "when",
    type=UTC_TIME,
    default=None,
    help="Show the permissions as they stood at this time (ISO 8601; no offset means UTC).",
)
@click.option("--tenant", "tenant_id", default=None, help="The tenant, when several have this account number.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def audit(account_no: str, when: datetime | None, tenant_id: str | None, as_json: bool) -> None:
    """Print the audit trail of ACCOUNT_NO, oldest first; with --at, its permissions at that time.

    \b
    Examples:
      permctl audit L6VQEU00121996
      permctl audit L6VQEU00121996 --at 2026-11-25T08:30:00Z --json
    """
    from app.service.audit import enabled_values, permissions_at, trail
    from app.service.model import iso_utc

    s = settings()
    factory = session_factory(s)
    tenant, entries = trail(factory, account_no=account_no, tenant_id=tenant_id, until=when)
    if when is not None:
        views = permissions_at(entries, enabled_values(factory, rule_set(s).catalog, tenant))
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "account_no": account_no,
                        "tenant": tenant,
                        "at": iso_utc(when),
                        "permissions": [
                            {
                                "permission_type": v.permission_type,
                                "permission_status": v.permission_status,
                                "updated_at": iso_utc(v.updated_at),
                            }
                            for v in views
                        ],
                    }
                )
            )
        else:
            click.echo(f"{account_no} (tenant {tenant}) as of {iso_utc(when)}:")
            for v in views:
                click.echo(f"  {v.permission_type:<22} {v.permission_status:<5}  {iso_utc(v.updated_at) or '-'}")
        return
    for e in entries:
        record = {
            "id": e.id,
            "at": iso_utc(e.at),
            "tenant": e.tenant_id,
            "app_key": e.app_key,
            "trace_id": e.trace_id,
            "permission_type": e.permission_type,
            "status_before": e.status_before,
            "status_after": e.status_after,
            "rule_set_version": e.rule_set_version,
        }
        if as_json:
            click.echo(json.dumps(record))
        else:
            click.echo(
                f"{record['at']}  {e.permission_type:<22} {e.status_before:>5} -> {e.status_after:<5}  "
                f"trace={e.trace_id} key={e.app_key} rules={e.rule_set_version}"
            )
    if not entries and not as_json:
        click.echo(f"no audit rows for {account_no} (tenant {tenant})")
