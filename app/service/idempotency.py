"""Idempotency keys (SPEC §3.4, after the IETF Idempotency-Key draft): one answer per key and request."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from app.errors import (
    DomainError,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    ServiceUnavailable,
    StorageBusy,
    StorageError,
)
from app.service.authentication import record_signature, spend_signature
from app.service.model import Caller, IdempotencyRequest, StoredAnswer

if TYPE_CHECKING:  # injected: the service never imports the database library
    from app.persistence.unit_of_work import UnitOfWork

RETENTION = timedelta(hours=24)
# What IdempotencyKeys.claim refuses a request with. The request authenticated but its transaction rolls back,
# signature included: each caller spends the signature afterwards (spend_signature), so the same bytes sent
# again are a replay (401001), not this refusal again.
KEY_REFUSALS = (IdempotencyKeyReused, IdempotencyKeyInFlight)
_FORGET_EVERY = 256


class IdempotencyKeys:
    """Claims a key inside the caller's transaction and stores the answer with the work."""

    def __init__(self, *, wait_seconds: float = 5.0, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._wait_ms = int(wait_seconds * 1000)
        self._clock = clock
        self._claims = itertools.count(1)

    def claim(self, uow: UnitOfWork, caller: Caller, request: IdempotencyRequest) -> StoredAnswer | None:
        """None when this request now owns the key; the stored answer when it is a repeat.

        A concurrent repeat waits (bounded) for the first request's transaction; past the bound it gets
        409002. The same key with another request gets 400105.
        """
        now = self._clock()
        try:
            with uow.writing():
                if next(self._claims) % _FORGET_EVERY == 0:
                    uow.idempotency_keys.forget_expired(now)
                stored = uow.idempotency_keys.claim(
                    tenant_id=caller.tenant_id,
                    key=request.key,
                    request_sha256=request.request_sha256,
                    now=now,
                    expires_at=now + RETENTION,
                    wait_ms=self._wait_ms,
                )
        except StorageBusy as exc:
            raise IdempotencyKeyInFlight(
                f"Idempotency-Key '{request.key}': a request with this key is still being processed; retry"
            ) from exc
        if stored is None:
            return None
        if stored.request_sha256 != request.request_sha256:
            raise IdempotencyKeyReused(f"Idempotency-Key '{request.key}' was used with a different request")
        if stored.response is None or stored.http_status is None:
            raise IdempotencyKeyInFlight(
                f"Idempotency-Key '{request.key}': a request with this key is still being processed; retry"
            )
        return StoredAnswer(http_status=stored.http_status, **json.loads(stored.response))

    @staticmethod
    def answer(uow: UnitOfWork, caller: Caller, request: IdempotencyRequest, answer: StoredAnswer) -> None:
        """Store the answer under the key claimed in this transaction."""
        response = {
            "code": answer.code,
            "message": answer.message,
            "failure_index": answer.failure_index,
            "rule_id": answer.rule_id,
        }
        if answer.data is not None:
            response["data"] = dict(answer.data)
        uow.idempotency_keys.answer(
            tenant_id=caller.tenant_id, key=request.key, http_status=answer.http_status, response=json.dumps(response)
        )

    def remember(
        self, unit_of_work: Callable[..., UnitOfWork], caller: Caller, request: IdempotencyRequest, error: DomainError
    ) -> StoredAnswer | None:
        """Store a rejection found before the service ran (a malformed body); return a repeat's stored answer."""
        try:
            with unit_of_work(write=True) as uow:
                record_signature(uow, caller)
                stored = self.claim(uow, caller, request)
                if stored is None:
                    self.answer(uow, caller, request, answer_for(error))
                uow.commit()
                if stored is not None:
                    return stored
        except KEY_REFUSALS:
            spend_signature(lambda: unit_of_work(write=True), caller)
            raise
        except StorageError as exc:
            raise ServiceUnavailable.database(exc) from exc
        return None


def answer_for(error: DomainError, data: Mapping[str, Any] | None = None) -> StoredAnswer:
    """The stored form of a domain error's answer (with the answer's whole `data` when given)."""
    return StoredAnswer(
        http_status=error.http_status,
        code=int(error.code),
        message=error.message,
        failure_index=error.failure_index,
        rule_id=error.rule_id,
        data=data,
    )


SUCCESS = StoredAnswer(http_status=200, code=0, message="success")
