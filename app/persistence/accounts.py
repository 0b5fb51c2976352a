"""Accounts, their attributes and their audit trail.

Every write of an account locks its row first (Accounts.get / get_many with lock=True) and reads its
attributes afterwards, in a statement of their own: under READ COMMITTED a SELECT that waited for a lock sees
the other tables as they were before it waited, so a join would miss what the previous holder committed.
The statements are built once, here, as Core statements (see repositories.py for why).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Executable, Table, and_, bindparam, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.persistence.models import Account, AccountAttribute, AccountAudit, Tenant

AccountKey = tuple[str, str]  # (tenant_id, account_no)


@dataclass(frozen=True)
class AccountRecord:
    """What the services need of an account: its row, its tenant's config and credentials versions, its attributes."""

    id: int
    tenant_id: str
    account_no: str
    status: str
    config_version: int
    attributes: Mapping[str, str] = field(default_factory=dict)
    credentials_version: int | None = None


@dataclass(frozen=True)
class AccountAuditRecord:
    """One effective change of an account (a creation has no status or attributes before)."""

    trace_id: str
    tenant_id: str
    app_key: str
    account_no: str
    status_before: str | None
    status_after: str
    attributes_before: Mapping[str, str] | None
    attributes_after: Mapping[str, str]
    rule_set_version: str
    created_at: datetime
    id: int | None = None  # set once stored


@dataclass(frozen=True)
class HeldValue:
    """A stored attribute value, and how many accounts hold it."""

    name: str
    value: str
    accounts: int


@dataclass(frozen=True)
class AttributeChange:
    """An account's attribute set before and after a write."""

    account_id: int
    before: Mapping[str, str]
    after: Mapping[str, str]


_accounts = cast(Table, Account.__table__)
_tenants = cast(Table, Tenant.__table__)
_attributes = cast(Table, AccountAttribute.__table__)
_audit = cast(Table, AccountAudit.__table__)
_INSERTS: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}

_COLUMNS = (
    _accounts.c.id,
    _accounts.c.tenant_id,
    _accounts.c.origin_id,
    _accounts.c.status,
    _tenants.c.config_version,
    _tenants.c.credentials_version,
)
_ACCOUNTS = select(*_COLUMNS).join_from(_accounts, _tenants, _tenants.c.id == _accounts.c.tenant_id)
_ACCOUNT = _ACCOUNTS.where(
    _accounts.c.tenant_id == bindparam("tenant_id"), _accounts.c.origin_id == bindparam("account_no")
)
ACCOUNT_LOCKED = _ACCOUNT.with_for_update(of=_accounts)
_ATTRIBUTES_OF = (
    select(_attributes.c.name, _attributes.c.value)
    .where(_attributes.c.account_id == bindparam("account_id"))
    .order_by(_attributes.c.name)
)
_ATTRIBUTES_OF_MANY = (
    select(_attributes.c.account_id, _attributes.c.name, _attributes.c.value)
    .where(_attributes.c.account_id.in_(bindparam("account_ids", expanding=True)))
    .order_by(_attributes.c.account_id, _attributes.c.name)
)
_SET_STATUS = _accounts.update().where(_accounts.c.id == bindparam("account_id")).values(status=bindparam("new_status"))
_DELETE_ATTRIBUTE = _attributes.delete().where(
    _attributes.c.account_id == bindparam("account_id"), _attributes.c.name == bindparam("attribute")
)
# One row per stored (name, value) and the accounts holding it: an account holds at most one value per name.
_HELD_VALUES = (
    select(_attributes.c.name, _attributes.c.value, func.count())
    .group_by(_attributes.c.name, _attributes.c.value)
    .order_by(_attributes.c.name, _attributes.c.value)
)
_HOLDERS = (
    select(_accounts.c.id, _accounts.c.tenant_id, _accounts.c.origin_id)
    .where(
        _accounts.c.id.in_(
            select(_attributes.c.account_id).where(_attributes.c.name.in_(bindparam("names", expanding=True)))
        ),
        _accounts.c.id > bindparam("after"),
    )
    .order_by(_accounts.c.id)
    .limit(bindparam("limit"))
)
# Plain executemany, which psycopg sends as one pipeline: multi-row INSERTs ("insertmanyvalues") measured
# slower here, psycopg parsing each long statement's placeholders anew.
_AUDIT_INSERT = _audit.insert()


def _per_dialect(build: Any) -> dict[str, Executable]:
    return {name: build(insert) for name, insert in _INSERTS.items()}


def _upsert_attributes(insert: Any) -> Executable:
    stmt = insert(_attributes)
    return stmt.on_conflict_do_update(index_elements=["account_id", "name"], set_={"value": stmt.excluded.value})


def _create_accounts(insert: Any) -> Executable:
    # A concurrent writer may create the same account first: its row wins and this one is not returned.
    return (
        insert(_accounts)
        .on_conflict_do_nothing(index_elements=["tenant_id", "origin_id"])
        .returning(_accounts.c.id, _accounts.c.tenant_id, _accounts.c.origin_id)
    )


_UPSERT_ATTRIBUTES = _per_dialect(_upsert_attributes)
_CREATE_ACCOUNTS = _per_dialect(_create_accounts)


class Accounts:
    """Accounts, looked up within their tenant."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, *, tenant_id: str, account_no: str, lock: bool) -> AccountRecord | None:
        """The account with its attributes; lock=True holds its row until commit (then reads the attributes)."""
        connection = self.session.connection()
        row = connection.execute(
            ACCOUNT_LOCKED if lock else _ACCOUNT, {"tenant_id": tenant_id, "account_no": account_no}
        ).one_or_none()
        if row is None:
            return None
        attributes = {name: value for name, value in connection.execute(_ATTRIBUTES_OF, {"account_id": row[0]})}
        return AccountRecord(*row[:5], attributes=attributes, credentials_version=row[5])

    def get_many(self, keys: Iterable[AccountKey], *, lock: bool) -> dict[AccountKey, AccountRecord]:
        """The accounts of keys that exist, with their attributes: two statements for any number of keys.

        lock=True locks their rows in id order, so two writers of overlapping sets cannot deadlock.
        """
        by_tenant: dict[str, set[str]] = {}
        for tenant_id, account_no in keys:
            by_tenant.setdefault(tenant_id, set()).add(account_no)
        if not by_tenant:
            return {}
        connection = self.session.connection()
        # Per tenant, origin_id IN (...): both databases then use the unique index (a row-value IN scans).
        query = _ACCOUNTS.where(
            or_(
                *(
                    and_(_accounts.c.tenant_id == tenant_id, _accounts.c.origin_id.in_(sorted(numbers)))
                    for tenant_id, numbers in sorted(by_tenant.items())
                )
            )
        ).order_by(_accounts.c.id)
        rows = connection.execute(query.with_for_update(of=_accounts) if lock else query).all()
        attributes: dict[int, dict[str, str]] = {row[0]: {} for row in rows}
        if rows:
            for account_id, name, value in connection.execute(_ATTRIBUTES_OF_MANY, {"account_ids": list(attributes)}):
                attributes[account_id][name] = value
        return {
            (row[1], row[2]): AccountRecord(*row[:5], attributes=attributes[row[0]], credentials_version=row[5])
            for row in rows
        }

    def tenants_of(self, account_no: str, *, tenant_id: str | None = None) -> list[str]:
        """The tenants that have an account with this number (only tenant_id, when given)."""
        query = select(_accounts.c.tenant_id).where(_accounts.c.origin_id == account_no)
        if tenant_id is not None:
            query = query.where(_accounts.c.tenant_id == tenant_id)
        return list(self.session.connection().scalars(query.order_by(_accounts.c.tenant_id)))

    def numbers(self) -> Iterator[tuple[str, str, str]]:
        """Every account as (tenant_id, account_no, status), by tenant and number: streamed, for any number of them."""
        query = (
            select(_accounts.c.tenant_id, _accounts.c.origin_id, _accounts.c.status)
            .order_by(_accounts.c.tenant_id, _accounts.c.origin_id)
            .execution_options(yield_per=5_000)  # a server-side cursor on PostgreSQL, not every row in memory
        )
        for row in self.session.connection().execute(query):
            yield row.tenant_id, row.origin_id, row.status

    def create_many(self, accounts: Sequence[tuple[AccountKey, str]], at: datetime) -> dict[AccountKey, int]:
        """Create each ((tenant_id, account_no), status) in one statement; the ids of those this call created.

        An account a concurrent writer created first is left out: lock and read it as an existing one.
        """
        if not accounts:
            return {}
        connection = self.session.connection()
        rows = connection.execute(
            _CREATE_ACCOUNTS[connection.dialect.name],
            [{"tenant_id": t, "origin_id": n, "status": s, "created_at": at} for (t, n), s in accounts],
        ).all()
        return {(tenant_id, account_no): account_id for account_id, tenant_id, account_no in rows}

    def refresh_statistics(self) -> None:
        """PostgreSQL: ANALYZE accounts and account_attributes (nothing to do on SQLite).

        After a bulk load into a young table the planner still thinks it nearly empty and looks a batch's accounts
        up by tenant alone, reading every account of the tenant per batch: an import grows quadratic.
        """
        connection = self.session.connection()
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("ANALYZE accounts, account_attributes")

    def set_statuses(self, statuses: Sequence[tuple[int, str]]) -> None:
        """Set each (account id, status): one executemany."""
        if statuses:
            self.session.connection().execute(
                _SET_STATUS, [{"account_id": account_id, "new_status": s} for account_id, s in statuses]
            )


class AccountAttributes:
    """The declared attributes of accounts, a row per account and name."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def held_values(self) -> list[HeldValue]:
        """Every stored (name, value) with the number of accounts holding it, by name and value: one grouped
        query (its rows are as many as the distinct values, not the accounts)."""
        rows = self.session.connection().execute(_HELD_VALUES)
        return [HeldValue(name, value, accounts) for name, value, accounts in rows]

    def holders(self, names: Collection[str], *, after: int, limit: int) -> list[tuple[int, AccountKey]]:
        """The accounts (id, (tenant_id, account_no)) that hold an attribute of one of names, with an id above
        `after`, at most `limit` of them in id order: a page of them."""
        if not names:
            return []
        rows = self.session.connection().execute(_HOLDERS, {"names": sorted(names), "after": after, "limit": limit})
        return [(account_id, (tenant_id, account_no)) for account_id, tenant_id, account_no in rows]

    def replace(self, changes: Sequence[AttributeChange]) -> None:
        """Make each account's stored set its `after`: delete what went, upsert what is new or changed."""
        gone = [
            {"account_id": c.account_id, "attribute": name} for c in changes for name in c.before if name not in c.after
        ]
        put = [
            {"account_id": c.account_id, "name": name, "value": value}
            for c in changes
            for name, value in c.after.items()
            if c.before.get(name) != value
        ]
        connection = self.session.connection()
        if gone:
            connection.execute(_DELETE_ATTRIBUTE, gone)
        if put:
            connection.execute(_UPSERT_ATTRIBUTES[connection.dialect.name], put)


class AccountAuditTrail:
    """The append-only trail of account changes (status and attributes)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def append(self, records: Sequence[AccountAuditRecord]) -> None:
        """Insert audit rows in one statement."""
        if records:
            rows = [
                {
                    "trace_id": r.trace_id,
                    "tenant_id": r.tenant_id,
                    "app_key": r.app_key,
                    "account_no": r.account_no,
                    "status_before": r.status_before,
                    "status_after": r.status_after,
                    "attributes_before": r.attributes_before,
                    "attributes_after": r.attributes_after,
                    "rule_set_version": r.rule_set_version,
                    "created_at": r.created_at,
                }
                for r in records
            ]
            self.session.connection().execute(_AUDIT_INSERT, rows)

    def of_account(self, *, tenant_id: str, account_no: str) -> list[AccountAuditRecord]:
        """The account's audit rows, oldest first."""
        query = (
            select(_audit)
            .where(_audit.c.tenant_id == tenant_id, _audit.c.account_no == account_no)
            .order_by(_audit.c.id)
        )
        return [AccountAuditRecord(**row._mapping) for row in self.session.connection().execute(query)]
