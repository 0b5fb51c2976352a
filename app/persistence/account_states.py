"""What the state audit reads of the accounts (`permctl rules audit-state`): each active account's open
permissions and attributes, a batch at a time in account order (keyset pagination on accounts.id), and how many
accounts are deregistered. Read only: nothing here writes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from app.persistence.models import Account, AccountAttribute, AccountPermission

ACTIVE, DEREGISTERED = "active", "deregistered"

_accounts = cast(Table, Account.__table__)
_permissions = cast(Table, AccountPermission.__table__)
_attributes = cast(Table, AccountAttribute.__table__)


@dataclass(frozen=True)
class HeldState:
    """One active account as the audit judges it: its open permissions (sorted) and its attributes."""

    account_id: int
    tenant_id: str
    account_no: str
    open_permissions: tuple[str, ...]
    attributes: Mapping[str, str]


def _of_tenant(statement: Any, tenant_id: str | None) -> Any:
    return statement if tenant_id is None else statement.where(_accounts.c.tenant_id == tenant_id)


class AccountStates:
    """The accounts' stored state, read in batches for the state audit."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def count(self, *, status: str, tenant_id: str | None = None) -> int:
        """How many accounts (of the tenant, if given) have this status."""
        statement = select(func.count()).select_from(_accounts).where(_accounts.c.status == status)
        return int(self._session.execute(_of_tenant(statement, tenant_id)).scalar_one())

    def active_batch(self, *, after_id: int, size: int, tenant_id: str | None = None) -> list[HeldState]:
        """The next `size` active accounts with an id above after_id, in id order, each with its open permissions
        and attributes (three statements: the accounts, then the permissions and attributes of their id range)."""
        accounts = self._session.execute(
            _of_tenant(
                select(_accounts.c.id, _accounts.c.tenant_id, _accounts.c.origin_id)
                .where(_accounts.c.status == ACTIVE, _accounts.c.id > after_id)
                .order_by(_accounts.c.id)
                .limit(size),
                tenant_id,
            )
        ).all()
        if not accounts:
            return []
        first, last = accounts[0].id, accounts[-1].id
        opened: defaultdict[int, list[str]] = defaultdict(list)
        for account_id, permission_type in self._session.execute(
            select(_permissions.c.account_id, _permissions.c.permission_type).where(
                _permissions.c.account_id >= first, _permissions.c.account_id <= last, _permissions.c.status == "open"
            )
        ):
            opened[account_id].append(permission_type)
        attributes: defaultdict[int, dict[str, str]] = defaultdict(dict)
        for account_id, name, value in self._session.execute(
            select(_attributes.c.account_id, _attributes.c.name, _attributes.c.value).where(
                _attributes.c.account_id >= first, _attributes.c.account_id <= last
            )
        ):
            attributes[account_id][name] = value
        return [
            HeldState(a.id, a.tenant_id, a.origin_id, tuple(sorted(opened.get(a.id, ()))), attributes.get(a.id, {}))
            for a in accounts
        ]
