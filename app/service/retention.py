"""Retention: prune recorded decisions older than a cut-off, and replay records and idempotency keys that have
expired, in small transactions so the service keeps writing meanwhile."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Protocol

from app.persistence.retention import Retention

BATCH = 1000


class RetentionWork(Protocol):
    """A unit of work with the retention repository (one short transaction per batch)."""

    retention: Retention

    def __enter__(self) -> RetentionWork: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def commit(self) -> None: ...


@dataclass(frozen=True)
class Pruned:
    """How many rows of each kind went."""

    decisions: int
    signatures: int
    idempotency_keys: int


def _drain(unit_of_work: Callable[[], RetentionWork], step: Callable[[Retention], int]) -> int:
    total = 0
    while True:
        with unit_of_work() as uow:
            removed = step(uow.retention)
            uow.commit()
        total += removed
        if removed < BATCH:
            return total


def prune(
    unit_of_work: Callable[[], RetentionWork],
    *,
    decisions_older_than_days: float | None,
    now: datetime | None = None,
) -> Pruned:
    """Delete, batch by batch, decisions older than the cut-off (when given) and every expired replay record and
    idempotency key."""
    now = now or datetime.now(UTC)
    decisions = 0
    if decisions_older_than_days is not None:
        cut = now - timedelta(days=decisions_older_than_days)
        decisions = _drain(unit_of_work, lambda r: r.decisions_before(cut, BATCH))
    signatures = _drain(unit_of_work, lambda r: r.signatures_expired(now, BATCH))
    keys = _drain(unit_of_work, lambda r: r.idempotency_keys_expired(now, BATCH))
    return Pruned(decisions, signatures, keys)
