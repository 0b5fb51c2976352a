"""permctl audit: an account's audit trail."""

from __future__ import annotations

import json

import click
from sqlalchemy.exc import SQLAlchemyError

from app.cli.context import database_error, session_factory, settings
from app.persistence.unit_of_work import UnitOfWork


@click.command()
@click.argument("account_no")
@click.option("--tenant", "tenant_id", default=None, help="Only this tenant's rows.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per row.")
def audit(account_no: str, tenant_id: str | None, as_json: bool) -> None:
    """Print the audit trail of ACCOUNT_NO, oldest first.

    \b
    Example:
      permctl audit L6VQEU00121996
    """
    s = settings()
    try:
        with UnitOfWork(session_factory(s)) as uow:
            records = [
                {
                    "id": row.id, "at": row.created_at.isoformat().replace("+00:00", "Z"), "tenant": row.tenant_id,
                    "app_key": row.app_key, "trace_id": row.trace_id, "permission_type": row.permission_type,
                    "status_before": row.status_before, "status_after": row.status_after,
                    "rule_set_version": row.rule_set_version,
                }
                for row in uow.audit.of_account(tenant_id=tenant_id, account_no=account_no)
            ]
    except SQLAlchemyError as exc:
        raise database_error(exc) from exc
    for record in records:
        if as_json:
            click.echo(json.dumps(record))
        else:
            click.echo(f"{record['at']}  {record['tenant']:<10} {record['permission_type']:<22} "
                       f"{record['status_before']:>5} -> {record['status_after']:<5}  trace={record['trace_id']} "
                       f"rules={record['rule_set_version']} key={record['app_key']}")
    if not records and not as_json:
        click.echo(f"no audit rows for {account_no}")
