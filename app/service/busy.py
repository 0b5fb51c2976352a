"""A request refused because another held its account's lock past the request path's bound (SPEC §3.3 409003, §8)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from app.errors import AccountBusy, StorageBusy
from app.service.authentication import spend_signature
from app.service.model import Caller

if TYPE_CHECKING:  # injected: the service never imports the database library
    from app.persistence.unit_of_work import UnitOfWork


def account_busy(
    busy: StorageBusy, *, account_no: str, caller: Caller, unit_of_work: Callable[[], UnitOfWork]
) -> AccountBusy:
    """The refusal for a lock not granted in time (unit_of_work: a writer's, to spend the signature in).

    The request authenticated, then its transaction rolled back, signature and all, as with an Idempotency-Key
    refusal (KEY_REFUSALS): its signature is spent in a transaction of its own, so the same bytes sent again are a
    replay (401001) and a copy of a request the caller was told is refused cannot take effect later; a retry is
    signed afresh (README). Not after SQLite's database lock: a spend would wait for that same lock as long again
    (doubling the answer's time) and then most likely fail as well; there the request was refused at BEGIN,
    before its signature or anything else was written.
    """
    if not busy.whole_database:
        spend_signature(unit_of_work, caller)
    return AccountBusy.named(account_no)
