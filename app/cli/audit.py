"""permctl audit: an account's audit trail (account and permission events in time order), or the account as it
stood at a given time (status, attributes and permissions)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from app.cli.context import rule_set, settings, unit_of_work
from app.cli.params import UTC_TIME

if TYPE_CHECKING:
    from app.service.audit import AccountHistory, Event


def _attributes(attributes: Mapping[str, str] | None) -> str:
    if attributes is None:
        return "-"
    return "{" + ", ".join(f"{k}: {v}" for k, v in attributes.items()) + "}"


def _record(event: Event) -> dict[str, Any]:
    from app.service.audit import AccountEntry
    from app.service.model import iso_utc

    common = {"id": event.id, "at": iso_utc(event.at), "tenant": event.tenant_id, "app_key": event.app_key}
    if isinstance(event, AccountEntry):
        return {
            "kind": "account",
            **common,
            "trace_id": event.trace_id,
            "status_before": event.status_before,
            "status_after": event.status_after,
            "attributes_before": None if event.attributes_before is None else dict(event.attributes_before),
            "attributes_after": dict(event.attributes_after),
            "rule_set_version": event.rule_set_version,
        }
    return {
        "kind": "permission",
        **common,
        "trace_id": event.trace_id,
        "permission_type": event.permission_type,
        "status_before": event.status_before,
        "status_after": event.status_after,
        "rule_set_version": event.rule_set_version,
    }


def _line(record: dict[str, Any]) -> str:
    where = f"trace={record['trace_id']} key={record['app_key']} rules={record['rule_set_version']}"
    if record["kind"] == "account":
        status = f"{record['status_before'] or 'new':>12} -> {record['status_after']:<12}"
        attributes = f"{_attributes(record['attributes_before'])} -> {_attributes(record['attributes_after'])}"
        return f"{record['at']}  {'account':<22} {status}  {attributes}  {where}"
    return (
        f"{record['at']}  {record['permission_type']:<22} {record['status_before']:>5} -> "
        f"{record['status_after']:<5}  {where}"
    )


def _as_of(s: Any, account_no: str, found: AccountHistory, when: datetime, as_json: bool) -> None:
    from app.service.audit import enabled_values, permissions_at
    from app.service.model import iso_utc

    factory = unit_of_work(s)
    state = found.account_at(when)
    views = permissions_at(found.until(when), enabled_values(factory, rule_set(s).catalog, found.tenant_id))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "account_no": account_no,
                    "tenant": found.tenant_id,
                    "at": iso_utc(when),
                    "account_status": None if state is None else state.status,
                    "attributes": None if state is None else dict(state.attributes),
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
        return
    click.echo(f"{account_no} (tenant {found.tenant_id}) as of {iso_utc(when)}:")
    if state is None:
        click.echo("  not created yet")
        return
    click.echo(f"  {'status':<22} {state.status}")
    click.echo(f"  {'attributes':<22} {_attributes(state.attributes)}")
    for v in views:
        click.echo(f"  {v.permission_type:<22} {v.permission_status:<5}  {iso_utc(v.updated_at) or '-'}")


@click.command()
@click.argument("account_no")
@click.option(
    "--at",
    "when",
    type=UTC_TIME,
    default=None,
    help="Show the account as it stood at this time: status, attributes, permissions (ISO 8601; no offset = UTC).",
)
@click.option("--tenant", "tenant_id", default=None, help="The tenant, when several have this account number.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per event without --at).")
def audit(account_no: str, when: datetime | None, tenant_id: str | None, as_json: bool) -> None:
    """Print the audit trail of ACCOUNT_NO, oldest first: changes of the account (status, attributes) and of
    its permissions, in time order. With --at, the account as it stood then.

    \b
    Examples:
      permctl audit L6VQEU00121996
      permctl audit L6VQEU00121996 --at 2026-11-25T08:30:00Z --json
    """
    from app.service.audit import history

    s = settings()
    found = history(unit_of_work(s), account_no=account_no, tenant_id=tenant_id)
    if when is not None:
        _as_of(s, account_no, found, when, as_json)
        return
    for event in found.events:
        record = _record(event)
        click.echo(json.dumps(record) if as_json else _line(record))
    if not found.events and not as_json:
        click.echo(f"no audit rows for {account_no} (tenant {found.tenant_id})")
