"""Deleting what has outlived its use, a bounded batch at a time (so no statement holds long locks)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session

from app.persistence.models import AcceptedSignature, IdempotencyKey, RecordedDecision


class Retention:
    """Batched deletes of recorded decisions, expired replay records and expired idempotency keys."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def decisions_before(self, moment: datetime, limit: int) -> int:
        """Delete up to `limit` of the oldest decisions recorded before `moment`; how many went."""
        oldest = select(RecordedDecision.id).where(RecordedDecision.created_at < moment)
        ids = list(self.session.scalars(oldest.order_by(RecordedDecision.id).limit(limit)))
        if ids:
            self.session.execute(delete(RecordedDecision).where(RecordedDecision.id.in_(ids)))
        return len(ids)

    def signatures_expired(self, now: datetime, limit: int) -> int:
        """Delete up to `limit` replay records whose window has passed."""
        found = select(AcceptedSignature.app_key, AcceptedSignature.signature).where(AcceptedSignature.expires_at < now)
        rows = [tuple(row) for row in self.session.execute(found.limit(limit))]
        if rows:
            key = tuple_(AcceptedSignature.app_key, AcceptedSignature.signature)
            self.session.execute(delete(AcceptedSignature).where(key.in_(rows)))
        return len(rows)

    def idempotency_keys_expired(self, now: datetime, limit: int) -> int:
        """Delete up to `limit` idempotency keys past their 24 h."""
        found = select(IdempotencyKey.tenant_id, IdempotencyKey.idempotency_key).where(IdempotencyKey.expires_at < now)
        rows = [tuple(row) for row in self.session.execute(found.limit(limit))]
        if rows:
            key = tuple_(IdempotencyKey.tenant_id, IdempotencyKey.idempotency_key)
            self.session.execute(delete(IdempotencyKey).where(key.in_(rows)))
        return len(rows)
