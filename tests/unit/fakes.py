"""A fake unit of work: in-memory repositories with the methods the services call, for unit tests that need no
database (cosmicpython's FakeUnitOfWork). Writes are staged and only become visible on commit()."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.persistence.accounts import AccountRecord
from app.persistence.decision_state import LockedState
from app.persistence.repositories import SignatureToRecord, StoredPermission


@dataclass
class Store:
    """What the fake database holds."""

    accounts: dict[tuple[str, str], AccountRecord] = field(default_factory=dict)
    patterns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    permissions: dict[int, dict[str, StoredPermission]] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    commits: int = 0


class FakeAccounts:
    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, *, tenant_id: str, account_no: str, lock: bool) -> AccountRecord | None:
        return self._store.accounts.get((tenant_id, account_no))


class FakeDecisionStates:
    def __init__(self, store: Store) -> None:
        self._store = store

    def lock(self, *, tenant_id: str, account_no: str, signature: SignatureToRecord | None) -> LockedState:
        assert signature is None, "the fake records no signatures: unit tests call as unsigned callers"
        account = self._store.accounts.get((tenant_id, account_no))
        permissions = {} if account is None else dict(self._store.permissions.get(account.id, {}))
        return LockedState(None, account, permissions)


class FakeTenantConfigs:
    def __init__(self, store: Store) -> None:
        self._store = store

    def patterns(self, tenant_id: str) -> tuple[str, ...] | None:
        return self._store.patterns.get(tenant_id)


class FakePermissions:
    def __init__(self, store: Store) -> None:
        self._store = store

    def of(self, account_id: int) -> dict[str, StoredPermission]:
        return dict(self._store.permissions.get(account_id, {}))

    def set_many(self, account_id: int, statuses: Sequence[tuple[str, str]], at: datetime) -> None:
        held = self._store.permissions.setdefault(account_id, {})
        for permission_type, status in statuses:
            held[permission_type] = StoredPermission(permission_type, status, at)


class FakeAppendOnly:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self._rows = rows

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        self._rows.extend(dict(r) for r in rows)

    def record(self, **fields: Any) -> None:
        self._rows.append(fields)


class FakeUnitOfWork:
    """One fake transaction: the store is copied on entry and written back only on commit()."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __enter__(self) -> FakeUnitOfWork:
        self._staged = copy.deepcopy(self._store)
        self.accounts = FakeAccounts(self._staged)
        self.decision_states = FakeDecisionStates(self._staged)
        self.tenant_configs = FakeTenantConfigs(self._staged)
        self.permissions = FakePermissions(self._staged)
        self.audit = FakeAppendOnly(self._staged.audit)
        self.decisions = FakeAppendOnly(self._staged.decisions)
        return self

    def __exit__(self, *exc: object) -> None:
        return None  # nothing staged survives unless committed

    @contextmanager
    def writing(self) -> Iterator[None]:
        yield

    @contextmanager
    def committing(self) -> Iterator[None]:
        """The block's writes, then the commit (the real one pipelines them on PostgreSQL)."""
        yield
        self.commit()

    def commit(self) -> None:
        commits = self._store.commits + 1
        self._store.__dict__.update(self._staged.__dict__)
        self._store.commits = commits
