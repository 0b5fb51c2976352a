"""Accounts stored under a number that breaks SPEC §8's rule (1-64 printable ASCII, no space at either end).

The rule came after accounts did: those stored earlier stay readable and are never changed behind their
owner's back (no rename here: which account ' ACC-1' was meant to be is the broker's to say). This finds
them, for `permctl accounts check`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.schemas.account_no import account_no_problem

if TYPE_CHECKING:  # injected: the service never imports the database library
    from app.persistence.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class IrregularAccount:
    """A stored account whose number breaks the rule, and how."""

    tenant_id: str
    account_no: str
    status: str
    problem: str


def irregular_accounts(*, unit_of_work: Callable[[], UnitOfWork]) -> Iterator[IrregularAccount]:
    """Every stored account whose number breaks the rule, by tenant and number (streamed: one pass)."""
    with unit_of_work() as uow:
        for tenant_id, account_no, status in uow.accounts.numbers():
            problem = account_no_problem(account_no)
            if problem is not None:
                yield IrregularAccount(tenant_id, account_no, status, problem)
