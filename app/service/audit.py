"""An account's audit trail (account and permission events, interleaved in time order), and the account as it
stood at any time (status, attributes, permissions), rebuilt from those rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from app.errors import DomainError
from app.persistence.accounts import AccountAuditRecord
from app.rules.language.model import Catalog
from app.service.model import PermissionView

if TYPE_CHECKING:  # injected: the service never imports the database library
    from app.persistence.unit_of_work import UnitOfWork


class AmbiguousAccount(DomainError):
    """The account number exists in several tenants and none was named."""


class UnknownAccount(DomainError):
    """No account has this number."""


@dataclass(frozen=True)
class AuditEntry:
    """One permission change, as plain values."""

    id: int
    at: datetime
    tenant_id: str
    app_key: str
    trace_id: str
    permission_type: str
    status_before: str
    status_after: str
    rule_set_version: str


@dataclass(frozen=True)
class AccountEntry:
    """One change of the account itself: its status and attributes before (None: it was created) and after."""

    id: int
    at: datetime
    tenant_id: str
    app_key: str
    trace_id: str
    status_before: str | None
    status_after: str
    attributes_before: Mapping[str, str] | None
    attributes_after: Mapping[str, str]
    rule_set_version: str


Event = AccountEntry | AuditEntry


@dataclass(frozen=True)
class AccountState:
    """An account's status and attributes at some time."""

    status: str
    attributes: Mapping[str, str]


@dataclass(frozen=True)
class AccountHistory:
    """Everything the trail knows of one account: its tenant, its events oldest first, and its state now."""

    tenant_id: str
    events: tuple[Event, ...]
    current: AccountState

    def until(self, when: datetime | None) -> list[Event]:
        """The events up to and including `when` (all when None)."""
        return [e for e in self.events if when is None or e.at <= when]

    def account_at(self, when: datetime) -> AccountState | None:
        """Status and attributes as they stood at `when`; None when the account did not exist yet.

        Accounts older than the account trail (migration 0005) have no creation row: before their first
        recorded change they stood as that change's `before`, and without any change as they stand now.
        """
        changes = [e for e in self.events if isinstance(e, AccountEntry)]
        last = next((e for e in reversed(changes) if e.at <= when), None)
        if last is not None:
            return AccountState(last.status_after, last.attributes_after)
        if not changes:
            return self.current
        first = changes[0]
        if first.status_before is None:
            return None  # created after `when`
        return AccountState(first.status_before, first.attributes_before or {})


def _in_time_order(event: Event) -> tuple[datetime, int, int]:
    # At the same instant (one transaction, e.g. a fixtures load) the account comes before its permissions.
    return event.at, 0 if isinstance(event, AccountEntry) else 1, event.id


def _account_entry(record: AccountAuditRecord) -> AccountEntry:
    assert record.id is not None
    return AccountEntry(
        record.id,
        record.created_at,
        record.tenant_id,
        record.app_key,
        record.trace_id,
        record.status_before,
        record.status_after,
        record.attributes_before,
        record.attributes_after,
        record.rule_set_version,
    )


def history(
    unit_of_work: Callable[..., UnitOfWork], *, account_no: str, tenant_id: str | None = None
) -> AccountHistory:
    """The account's tenant, its account and permission events in time order, and its current state."""
    with unit_of_work() as uow:
        tenants = uow.accounts.tenants_of(account_no, tenant_id=tenant_id)
        if not tenants:
            raise UnknownAccount(f"no account '{account_no}'" + (f" in tenant '{tenant_id}'" if tenant_id else ""))
        if len(tenants) > 1:
            raise AmbiguousAccount(
                f"account '{account_no}' exists in tenants {', '.join(sorted(tenants))}: name one with --tenant"
            )
        tenant = tenants[0]
        account = uow.accounts.get(tenant_id=tenant, account_no=account_no, lock=False)
        assert account is not None
        permissions: Sequence[Event] = [
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
            for r in uow.audit.of_account(tenant_id=tenant, account_no=account_no)
        ]
        changes = [_account_entry(r) for r in uow.account_audit.of_account(tenant_id=tenant, account_no=account_no)]
    events = tuple(sorted([*changes, *permissions], key=_in_time_order))
    return AccountHistory(tenant, events, AccountState(account.status, account.attributes))


def permissions_at(events: Sequence[Event], enabled: tuple[str, ...]) -> tuple[PermissionView, ...]:
    """The permissions as GET showed them after the given events: each enabled value, in catalog order."""
    last: dict[str, AuditEntry] = {}
    for event in events:
        if isinstance(event, AuditEntry):
            last[event.permission_type] = event
    return tuple(
        PermissionView(t, last[t].status_after, last[t].at) if t in last else PermissionView(t, "close", None)
        for t in enabled
    )


def enabled_values(unit_of_work: Callable[..., UnitOfWork], catalog: Catalog, tenant_id: str) -> tuple[str, ...]:
    """The catalog values the tenant's current config enables."""
    with unit_of_work() as uow:
        patterns = uow.tenant_configs.patterns(tenant_id)
    return catalog.expand(patterns or ())
