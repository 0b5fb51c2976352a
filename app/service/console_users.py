"""Console users (SPEC §7d, §10): viewers, authors and approvers; their passwords (argon2); who may change whom.

Roles are cumulative: an author may do what a viewer does, an approver what an author does. While no active
approver exists anyone with access to the database may add users (that is how the first approver is made);
from then on every change of a user is an approver's act, a change that adds, promotes, demotes or disables an
approver needs an approver other than that user, and the last active approver can be neither demoted nor
disabled (nobody could approve anything again). Every change, and every failed login, is appended to the
console audit with who, when and from where.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from app.errors import ConsoleError, NotPermitted, WrongCredentials

if TYPE_CHECKING:  # injected: the service never imports the database library
    from app.persistence.unit_of_work import UnitOfWork

ROLES = ("viewer", "author", "approver")
_RANK = {role: rank for rank, role in enumerate(ROLES)}
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD, MAX_PASSWORD = 12, 256
BOOTSTRAP = "bootstrap"  # the actor of a user change made while no approver exists

_hasher = PasswordHasher()
_NO_USER_HASH = _hasher.hash("a password nobody has: verified when the user does not exist, to take as long")


@dataclass(frozen=True)
class User:
    """A console user, as the services pass it around (never the password hash)."""

    name: str
    role: str
    disabled: bool = False

    def may(self, role: str) -> bool:
        """Whether the user is active and holds `role` or a higher one."""
        return not self.disabled and _RANK[self.role] >= _RANK[role]


def check_name(name: str) -> str:
    """A user name: 1-64 letters, digits, '.', '_', '@', '-', starting with a letter or digit."""
    if not USER_NAME.match(name):
        raise ConsoleError(
            f"{name[:64]!r} is not a user name: use 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or a digit"
        )
    return name


def check_role(role: str) -> str:
    if role not in _RANK:
        raise ConsoleError(f"{role[:32]!r} is not a role: use one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    """At least 12 characters (OWASP ASVS 2.1.1), at most 256; any characters."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ConsoleError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


class ConsoleUsers:
    """Adding, changing and authenticating console users."""

    def __init__(self, unit_of_work: Callable[..., UnitOfWork], *, now: Callable[[], datetime] | None = None) -> None:
        self._unit_of_work = unit_of_work
        self._now = now or (lambda: datetime.now(UTC))

    def all(self) -> list[User]:
        with self._unit_of_work() as uow:
            return [User(r.name, r.role, r.disabled) for r in uow.console_users.all()]

    def approvers_exist(self) -> bool:
        """Whether an active approver exists (from then on user changes are an approver's act)."""
        with self._unit_of_work() as uow:
            return uow.console_users.active_approvers() > 0

    def authenticate(self, name: str, password: str, *, origin: str) -> User:
        """The user, when the password is theirs and they are active; WrongCredentials otherwise (and the
        failure is audited). Takes as long for a name nobody has."""
        with self._unit_of_work(write=True) as uow:
            record = uow.console_users.get(name) if USER_NAME.match(name) else None
            try:
                _hasher.verify(record.password_hash if record else _NO_USER_HASH, password)
                verified = record is not None and not record.disabled
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                verified = False
            if not verified or record is None:
                # What was typed as a name may be a password typed in the wrong place: kept only if it is a name.
                shown = name if USER_NAME.match(name) else "(not a user name)"
                uow.console_audit.append(
                    at=self._now(), actor=shown, action="login_failed", target=shown, detail={}, origin=origin
                )
                uow.commit()
                raise WrongCredentials()
            if _hasher.check_needs_rehash(record.password_hash):
                uow.console_users.change(name, at=self._now(), password_hash=_hasher.hash(password))
                uow.commit()
            return User(record.name, record.role, record.disabled)

    def add(self, name: str, role: str, password: str, *, actor: User | None, origin: str) -> User:
        """Add a user (see the module's rules for who may)."""
        check_name(name)
        check_role(role)
        check_password(password)
        with self._unit_of_work(write=True) as uow:
            by = self._allowed(uow, actor, target=name, touches_approver=role == "approver")
            if uow.console_users.get(name) is not None:
                raise ConsoleError(f"a user named {name!r} exists already")
            uow.console_users.add(name, role, _hasher.hash(password), self._now())
            uow.console_audit.append(
                at=self._now(), actor=by, action="user_added", target=name, detail={"role": role}, origin=origin
            )
            uow.commit()
        return User(name, role)

    def set_role(self, name: str, role: str, *, actor: User | None, origin: str) -> User:
        check_role(role)
        with self._unit_of_work(write=True) as uow:
            current = uow.console_users.get(name)
            if current is None:
                raise ConsoleError(f"no user named {name[:64]!r}")
            touches = "approver" in (role, current.role)
            by = self._allowed(uow, actor, target=name, touches_approver=touches)
            if current.role == "approver" and role != "approver" and not current.disabled:
                self._not_last_approver(uow, name)
            uow.console_users.change(name, at=self._now(), role=role)
            uow.console_audit.append(
                at=self._now(),
                actor=by,
                action="user_role_set",
                target=name,
                detail={"from": current.role, "to": role},
                origin=origin,
            )
            uow.commit()
        return User(name, role, current.disabled)

    def disable(self, name: str, *, actor: User | None, origin: str) -> User:
        with self._unit_of_work(write=True) as uow:
            current = uow.console_users.get(name)
            if current is None:
                raise ConsoleError(f"no user named {name[:64]!r}")
            by = self._allowed(uow, actor, target=name, touches_approver=current.role == "approver")
            if current.role == "approver" and not current.disabled:
                self._not_last_approver(uow, name)
            uow.console_users.change(name, at=self._now(), disabled=True)
            uow.console_audit.append(
                at=self._now(), actor=by, action="user_disabled", target=name, detail={}, origin=origin
            )
            uow.commit()
        return User(name, current.role, True)

    @staticmethod
    def _allowed(uow: UnitOfWork, actor: User | None, *, target: str, touches_approver: bool) -> str:
        """Who acts (the actor's name, or BOOTSTRAP while there is no approver); NotPermitted when not allowed."""
        if uow.console_users.active_approvers(lock=True) == 0:
            return actor.name if actor is not None else BOOTSTRAP
        if actor is None:
            raise NotPermitted("an approver exists: changing users needs an approver (give --as NAME)")
        if not actor.may("approver"):
            raise NotPermitted(f"{actor.name} is {_article(actor.role)}: only an approver changes users")
        if touches_approver and actor.name == target:
            raise NotPermitted("adding, promoting, demoting or disabling an approver needs another approver")
        return actor.name

    @staticmethod
    def _not_last_approver(uow: UnitOfWork, name: str) -> None:
        if uow.console_users.active_approvers(lock=True) <= 1:
            raise NotPermitted(f"{name} is the last active approver: add another approver first")


def _article(role: str) -> str:
    return ("an " if role[0] in "aeiou" else "a ") + role
