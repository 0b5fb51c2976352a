"""Console users (viewers, authors, approvers) and the append-only console audit (SPEC §7d, §10)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.persistence.models import ConsoleAuditEntry, ConsoleUser


@dataclass(frozen=True)
class UserRecord:
    """A console user as stored (the password hash never leaves the persistence and service layers' check)."""

    name: str
    role: str
    password_hash: str
    disabled: bool
    created_at: datetime
    changed_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    """One line of the console audit."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, object]
    origin: str


def _user(row: ConsoleUser) -> UserRecord:
    return UserRecord(row.name, row.role, row.password_hash, row.disabled, row.created_at, row.changed_at)


class ConsoleUsers:
    """The people who use the console and act on rule sets."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, name: str) -> UserRecord | None:
        row = self.session.get(ConsoleUser, name)
        return None if row is None else _user(row)

    def all(self) -> list[UserRecord]:
        return [_user(row) for row in self.session.scalars(select(ConsoleUser).order_by(ConsoleUser.name))]

    def active_approvers(self, *, lock: bool = False) -> int:
        """How many active approvers there are; lock: hold their rows until the transaction ends (PostgreSQL), so two
        approvers disabling each other at once cannot both see the other as the one left."""
        if not lock:
            query = select(func.count()).where(ConsoleUser.role == "approver", ConsoleUser.disabled.is_(False))
            return self.session.scalar(query) or 0
        names = select(ConsoleUser.name).where(ConsoleUser.role == "approver", ConsoleUser.disabled.is_(False))
        return len(list(self.session.scalars(names.with_for_update())))

    def add(self, name: str, role: str, password_hash: str, at: datetime) -> None:
        self.session.add(
            ConsoleUser(name=name, role=role, password_hash=password_hash, disabled=False, created_at=at, changed_at=at)
        )
        self.session.flush()

    def change(
        self,
        name: str,
        *,
        at: datetime,
        role: str | None = None,
        disabled: bool | None = None,
        password_hash: str | None = None,
    ) -> None:
        row = self.session.get(ConsoleUser, name, with_for_update=True)
        if row is None:
            raise KeyError(name)
        if role is not None:
            row.role = role
        if disabled is not None:
            row.disabled = disabled
        if password_hash is not None:
            row.password_hash = password_hash
        row.changed_at = at
        self.session.flush()


class ConsoleAudit:
    """Who did what, when, from where. Only appended to."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def append(
        self, *, at: datetime, actor: str, action: str, target: str, detail: dict[str, object], origin: str
    ) -> None:
        self.session.add(
            ConsoleAuditEntry(
                at=at,
                actor=actor[:128],
                action=action,
                target=target[:255],
                detail=json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str),
                origin=origin[:255],
            )
        )
        self.session.flush()

    def actors(self, target: str, actions: tuple[str, ...]) -> set[str]:
        """Who did any of actions to target (e.g. who added a user, or changed their role)."""
        query = select(ConsoleAuditEntry.actor).where(
            ConsoleAuditEntry.target == target, ConsoleAuditEntry.action.in_(actions)
        )
        return set(self.session.scalars(query.distinct()))

    def latest(self, limit: int = 100) -> list[AuditEntry]:
        """The newest entries first."""
        query = select(ConsoleAuditEntry).order_by(ConsoleAuditEntry.id.desc()).limit(limit)
        return [
            AuditEntry(row.id, row.at, row.actor, row.action, row.target, json.loads(row.detail), row.origin)
            for row in self.session.scalars(query)
        ]
