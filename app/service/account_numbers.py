"""The account number rule of SPEC §8 (1-64 printable ASCII, no space at either end), and the accounts stored
under a number that breaks it.

1 to 64 printable ASCII characters with no leading or trailing space. ' ACC-1' next to 'ACC-1' would be a
second account that no operator can tell apart on a screen; a number of spaces only names nothing; a
look-alike in another script (a Cyrillic A in ACC-1) is the same trap. The rule is told here once: every
route, import and fixture file applies it through app/schemas/account_no.py.

The rule came after accounts did: those stored earlier stay readable and are never changed behind their
owner's back (no rename here: which account ' ACC-1' was meant to be is the broker's to say). This finds
them, for `permctl accounts check`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # injected: the service never imports the database library
    from app.persistence.unit_of_work import UnitOfWork

MAX_ACCOUNT_NO = 64
# No space at either end, printable ASCII between (the pattern is also the OpenAPI document's).
ACCOUNT_NO_PATTERN = rf"^[!-~](?:[ -~]{{0,{MAX_ACCOUNT_NO - 2}}}[!-~])?$"
RULE = f"1 to {MAX_ACCOUNT_NO} printable ASCII characters with no leading or trailing space"
_PATTERN = re.compile(ACCOUNT_NO_PATTERN)


def account_no_problem(value: str) -> str | None:
    """Why value cannot be a new account's number, or None when it can."""
    if _PATTERN.fullmatch(value) is not None:  # fullmatch: `$` alone would let a final newline through
        return None
    if not 1 <= len(value) <= MAX_ACCOUNT_NO:
        return f"must be {RULE} (got {len(value)} characters)"
    if not all(" " <= c <= "~" for c in value):
        return f"must be {RULE} (it has a character outside printable ASCII)"
    return f"must be {RULE} (it has a space at the start or end)"


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
