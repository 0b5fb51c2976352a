"""The audit trail of an account, and its permissions as they stood at any time, rebuilt from audit rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from app.errors import DomainError
from app.persistence.models import Account
from app.persistence.unit_of_work import UnitOfWork
from app.rules.model import Catalog
from app.service.model import PermissionView


class AmbiguousAccount(DomainError):
    """The account number exists in several tenants and none was named."""


class UnknownAccount(DomainError):
    """No account has this number."""


@dataclass(frozen=True)
class AuditEntry:
    """One audit row, as plain values."""

    id: int
    at: datetime
    tenant_id: str
    app_key: str
    trace_id: str
    permission_type: str
    status_before: str
    status_after: str
    rule_set_version: str


def _tenant_of(uow: UnitOfWork, account_no: str, tenant_id: str | None) -> str:
    query = select(Account.tenant_id).where(Account.origin_id == account_no)
    if tenant_id is not None:
        query = query.where(Account.tenant_id == tenant_id)
    tenants = list(uow.session.scalars(query))
    if not tenants:
        raise UnknownAccount(f"no account '{account_no}'" + (f" in tenant '{tenant_id}'" if tenant_id else ""))
    if len(tenants) > 1:
        raise AmbiguousAccount(
            f"account '{account_no}' exists in tenants {', '.join(sorted(tenants))}: name one with --tenant"
        )
    return tenants[0]


def trail(
    session_factory: sessionmaker[Any], *, account_no: str, tenant_id: str | None = None, until: datetime | None = None
) -> tuple[str, list[AuditEntry]]:
    """The account's tenant and its audit rows (up to `until`), oldest first."""
    with UnitOfWork(session_factory) as uow:
        tenant = _tenant_of(uow, account_no, tenant_id)
        rows = uow.audit.of_account(tenant_id=tenant, account_no=account_no)
        entries = [
            AuditEntry(
                r.id,
                r.created_at,
                r.tenant_id,
                r.app_key,
                r.trace_id,
                r.permission_type,
                r.status_before,
                r.status_after,
                r.rule_set_version,
            )
            for r in rows
        ]
    if until is not None:
        entries = [e for e in entries if e.at <= until]
    return tenant, entries


def permissions_at(entries: list[AuditEntry], enabled: tuple[str, ...]) -> tuple[PermissionView, ...]:
    """The permissions as GET showed them after the given rows: each enabled value, in catalog order."""
    last: dict[str, AuditEntry] = {}
    for entry in entries:
        last[entry.permission_type] = entry
    return tuple(
        PermissionView(t, last[t].status_after, last[t].at) if t in last else PermissionView(t, "close", None)
        for t in enabled
    )


def enabled_values(session_factory: sessionmaker[Any], catalog: Catalog, tenant_id: str) -> tuple[str, ...]:
    """The catalog values the tenant's current config enables."""
    with UnitOfWork(session_factory) as uow:
        patterns = uow.tenant_configs.patterns(tenant_id)
    return catalog.expand(patterns or ())
