"""Stored attributes against a set of declarations: which the declarations would not store, and their removal.

A declaration that narrows (an attribute removed or declared deprecated, a value list shortened, a pattern
tightened) leaves accounts holding what it no longer allows. Brokers never see it until they resend such an
account: then the upsert is refused. So `permctl rules lint --against-db` and the reload count the stored
accounts that hold what the given declarations refuse (per attribute and why: one grouped query, a row per
stored distinct value, never a row per account), and `permctl accounts strip-undeclared` removes it
(AccountService.strip_refused_attributes), each change an account audit row like any attribute change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.rules.language.attributes import AttributeSet, StoredRefusal

if TYPE_CHECKING:  # injected: the service never imports the database library
    from app.persistence.accounts import HeldValue
    from app.persistence.unit_of_work import UnitOfWork

SHOWN_VALUES = 5  # refused values named per attribute in a report; the count covers them all


@dataclass(frozen=True)
class RefusedHolding:
    """Stored accounts holding an attribute the declarations would not store, for one reason."""

    attribute: str
    refusal: StoredRefusal
    accounts: int
    values: tuple[str, ...]  # the distinct refused values held, in order

    def describe(self) -> str:
        """One line for people: how many accounts hold what, and why it is refused."""
        shown = ", ".join(f"'{v}'" for v in self.values[:SHOWN_VALUES])
        more = f" and {len(self.values) - SHOWN_VALUES} more" if len(self.values) > SHOWN_VALUES else ""
        if self.refusal is StoredRefusal.UNDECLARED:
            why = f"'{self.attribute}', which attributes.yaml does not declare"
        elif self.refusal is StoredRefusal.DEPRECATED:
            why = f"'{self.attribute}', which attributes.yaml declares deprecated"
        else:
            why = f"a value of '{self.attribute}' its declaration does not allow ({shown}{more})"
        return f"{self.accounts} stored account(s) hold {why}"

    def consequence(self) -> str:
        """What it means for a broker resending such an account, and what removes it."""
        if self.refusal is StoredRefusal.DEPRECATED:
            return (
                "a broker may still send it: it is dropped on write, with a warning; `permctl accounts "
                "strip-undeclared` removes the stored values"
            )
        return "a broker resending one is refused; `permctl accounts strip-undeclared` removes them"


def refused_holdings(held: Sequence[HeldValue], attributes: AttributeSet) -> list[RefusedHolding]:
    """The stored values the declarations refuse, grouped per attribute and reason, by attribute name."""
    grouped: dict[tuple[str, StoredRefusal], tuple[int, list[str]]] = {}
    for value in held:
        refusal = attributes.stored_problem(value.name, value.value)
        if refusal is None:
            continue
        accounts, values = grouped.get((value.name, refusal), (0, []))
        grouped[(value.name, refusal)] = (accounts + value.accounts, [*values, value.value])
    return [
        RefusedHolding(name, refusal, accounts, tuple(values))
        for (name, refusal), (accounts, values) in sorted(grouped.items())
    ]


def count_refused(unit_of_work: Callable[[], UnitOfWork], attributes: AttributeSet) -> list[RefusedHolding]:
    """What the stored accounts hold that the declarations refuse (reads only; one grouped query)."""
    with unit_of_work() as uow:
        return refused_holdings(uow.attributes.held_values(), attributes)


def refused_of(stored: Mapping[str, str], attributes: AttributeSet) -> dict[str, StoredRefusal]:
    """The attributes of one stored set the declarations refuse, and why, by name."""
    return {
        name: refusal
        for name, value in sorted(stored.items())
        if (refusal := attributes.stored_problem(name, value)) is not None
    }


@dataclass(frozen=True)
class StrippedAccount:
    """One account whose refused attributes are (or, on a dry run, would be) removed."""

    tenant_id: str
    account_no: str
    removed: Mapping[str, tuple[str, StoredRefusal]]  # name -> (the value held, why it is refused)

    def describe(self) -> str:
        """One line for people: the account and each attribute removed, with its value and why."""
        removed = ", ".join(f"{name} '{value}' ({why})" for name, (value, why) in self.removed.items())
        return f"{self.tenant_id} {self.account_no}: {removed}"


@dataclass
class StripReport:
    """What a strip removed (or would remove): the accounts, and per (attribute, reason) how many of them."""

    accounts: int = 0
    removed: dict[tuple[str, StoredRefusal], int] = field(default_factory=dict)  # (attribute, why) -> accounts

    def add(self, account: StrippedAccount) -> None:
        """Count one account's removals."""
        self.accounts += 1
        for name, (_, why) in account.removed.items():
            self.removed[(name, why)] = self.removed.get((name, why), 0) + 1
