"""What an update's rules read, under the account's lock: the opening of every update's transaction.

In order: the POST's signature is recorded (a replay goes no further), the account row is locked, then its
attributes and its permissions are read. On PostgreSQL with psycopg these go out in one pipeline as three
statements (one reads both the attributes and the permissions), one round trip where they took four. They still
run one after another on the server, each with a snapshot of its own under READ COMMITTED, so the read queued
after the lock sees what the lock's previous holder committed (a join in the locking statement would not: see
accounts.py). The read finds the account by its key rather than by the id the lock returns, which is not known
yet when it is sent. Elsewhere (SQLite, where a statement costs no round trip) the repositories run the four
statements one by one, and stop at a replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import psycopg
from sqlalchemy import ClauseElement, Table, bindparam, literal_column, null, select, union_all
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from app.persistence import driver
from app.persistence.accounts import ACCOUNT_LOCKED, AccountRecord, Accounts
from app.persistence.models import Account, AccountAttribute, AccountPermission
from app.persistence.repositories import (
    RECORD_SIGNATURE,
    Permissions,
    SignatureRecorded,
    Signatures,
    SignatureToRecord,
    StoredPermission,
)


@dataclass(frozen=True)
class LockedState:
    """What the locking found: the signature's fate (None when none was to be recorded), the account with its
    attributes (None when there is no such account), and its stored permissions by type."""

    signature: SignatureRecorded | None
    account: AccountRecord | None
    permissions: dict[str, StoredPermission] = field(default_factory=dict)


_accounts = cast(Table, Account.__table__)
_attributes = cast(Table, AccountAttribute.__table__)
_permissions = cast(Table, AccountPermission.__table__)
_ACCOUNT_ID = (
    select(_accounts.c.id)
    .where(_accounts.c.tenant_id == bindparam("tenant_id"), _accounts.c.origin_id == bindparam("account_no"))
    .scalar_subquery()
)
# The account's attributes and permissions in one statement: ("attribute", name, value, NULL) and
# ("permission", type, status, updated_at) rows.
_STATE_OF_KEY = union_all(
    select(
        literal_column("'attribute'"),
        _attributes.c.name,
        _attributes.c.value,
        sql_cast(null(), _permissions.c.updated_at.type),
    ).where(_attributes.c.account_id == _ACCOUNT_ID),
    select(
        literal_column("'permission'"), _permissions.c.permission_type, _permissions.c.status, _permissions.c.updated_at
    ).where(_permissions.c.account_id == _ACCOUNT_ID),
)

_SQL_RECORD_SIGNATURE = driver.postgresql_sql(cast(ClauseElement, RECORD_SIGNATURE["postgresql"]))
_SQL_LOCK = driver.postgresql_sql(ACCOUNT_LOCKED)
_SQL_STATE = driver.postgresql_sql(_STATE_OF_KEY)


class DecisionStates:
    """Locks an account for an update and reads what its rules need."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def lock(self, *, tenant_id: str, account_no: str, signature: SignatureToRecord | None) -> LockedState:
        """Record the signature (when given), lock the account and read its attributes and permissions."""
        psycopg_connection = driver.psycopg_of(self.session.connection())
        if psycopg_connection is None:
            return self._one_by_one(tenant_id, account_no, signature)
        try:
            return self._pipelined(psycopg_connection, tenant_id, account_no, signature)
        except psycopg.Error as exc:
            raise driver.storage_error(exc) from exc

    def _one_by_one(self, tenant_id: str, account_no: str, signature: SignatureToRecord | None) -> LockedState:
        recorded = None
        if signature is not None:
            recorded = Signatures(self.session).record(**vars(signature))
            if recorded is not SignatureRecorded.FIRST_USE:
                return LockedState(recorded, None)
        account = Accounts(self.session).get(tenant_id=tenant_id, account_no=account_no, lock=True)
        permissions = {} if account is None else Permissions(self.session).of(account.id)
        return LockedState(recorded, account, permissions)

    def _pipelined(
        self,
        connection: psycopg.Connection[Any],
        tenant_id: str,
        account_no: str,
        signature: SignatureToRecord | None,
    ) -> LockedState:
        key = {"tenant_id": tenant_id, "account_no": account_no}
        with connection.pipeline():
            signed = None
            if signature is not None:
                signed = connection.execute(
                    _SQL_RECORD_SIGNATURE, {**vars(signature), "expires_at": driver.aware(signature.expires_at)}
                )
            locked = connection.execute(_SQL_LOCK, key)
            state = connection.execute(_SQL_STATE, key)
            first_use = None if signed is None else signed.fetchone() is not None
            row = locked.fetchone()
            state_rows = state.fetchall()
        recorded = None
        if signature is not None:
            recorded = (
                SignatureRecorded.FIRST_USE
                if first_use
                else Signatures(self.session).why_not_recorded(signature.app_key, signature.signature)
            )
        if row is None:
            return LockedState(recorded, None)
        account_id, account_tenant, origin_id, status, config_version, credentials_version = row
        account = AccountRecord(
            account_id,
            account_tenant,
            origin_id,
            status,
            config_version,
            attributes=dict(sorted((name, value) for kind, name, value, _ in state_rows if kind == "attribute")),
            credentials_version=credentials_version,
        )
        stored = {
            permission_type: StoredPermission(permission_type, status, driver.in_utc(updated_at))
            for kind, permission_type, status, updated_at in state_rows
            if kind == "permission"
        }
        return LockedState(recorded, account, stored)
