"""Authenticate a signed request (SPEC §4): credential, token, timestamp window, signature, replay."""

from __future__ import annotations

import hmac
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

import structlog

from app import metrics
from app.errors import CredentialChanged, ServiceUnavailable, StorageError, Unauthenticated
from app.persistence.repositories import SignatureRecorded, SignatureToRecord
from app.service.model import Caller, PendingSignature
from app.signature import ALGORITHM, SIGNED_HEADERS, sign, token_digest

if TYPE_CHECKING:  # injected: the service never imports the database library
    from app.persistence.repositories import CredentialRecord, StampedCredential
    from app.persistence.unit_of_work import UnitOfWork

SIGNATURE_HEADER = re.compile(
    rf"{ALGORITHM} SignedHeaders=(?P<headers>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{{64}})"
)
TIMESTAMP = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")
# One answer for every credential or signature mismatch (unknown app key, wrong token, wrong signature,
# missing or malformed headers): telling them apart would let a holder of an app key test candidate tokens
# without the secret. The log line keeps the precise reason. The timestamp and replay answers stay their own:
# the first is about the clock and comes before any credential is looked at, the second needs a valid signature.
REFUSED = "the request is not signed by a valid credential (X-Api-Key, Authorization, X-Api-Signature)"
TIMESTAMP_FORMAT = "X-Timestamp must be Unix seconds (integer or decimal)"
log = structlog.get_logger("app.auth")
# A dummy secret and digest keep the work done for an unknown app key the same as for a known one.
_DUMMY_SECRET = "unknown-app-key"
_DUMMY_DIGEST = token_digest("unknown-app-key")
_FORGET_EVERY = 256


@dataclass(frozen=True)
class SignedRequest:
    """The parts of an HTTP request that the signature covers, as plain values."""

    method: str
    path: str
    query: str
    body: bytes
    app_key: str | None
    access_token: str | None
    timestamp: str | None
    signature_header: str | None


class Authenticator:
    """Verifies signatures against credentials cached in this worker, each stamped with its tenant's credentials
    version; the request's transaction checks the stamp (record_signature, ensure_current)."""

    def __init__(
        self,
        *,
        unit_of_work: Callable[..., UnitOfWork],
        window_seconds: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        cache_size: int = 10_000,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._window = window_seconds
        self._clock = clock
        self._cache: dict[str, StampedCredential] = {}
        self._cache_size = cache_size

    def authenticate(self, request: SignedRequest) -> Caller:
        """The caller, or Unauthenticated: one message for any credential or signature mismatch.

        A POST's caller carries its signature, which the service records in the request's transaction.
        """
        now = self._clock()
        self._check_timestamp(request.timestamp, now)
        assert request.timestamp is not None
        for name, value in (
            ("X-Api-Key", request.app_key),
            ("Authorization", request.access_token),
            ("X-Api-Signature", request.signature_header),
        ):
            if not value:
                raise _refused(f"missing {name} header")
        assert request.app_key and request.access_token and request.signature_header
        match = SIGNATURE_HEADER.fullmatch(request.signature_header)
        if match is None or match["headers"] != SIGNED_HEADERS:
            raise _refused("malformed X-Api-Signature header")
        signature = match["signature"]
        cached = self._cache.get(request.app_key)
        # A cached copy that does not verify the request may be older than the credential (a rotated secret or
        # token): the database decides.
        if cached is None or _mismatch(request, cached.credential, signature) is not None:
            cached = self._read(request.app_key)
            mismatch = _mismatch(request, cached.credential if cached else None, signature)
            if mismatch is not None:
                raise _refused(mismatch, app_key=cached.credential.app_key if cached else None)
        assert cached is not None
        pending = None
        if request.method.upper() == "POST":
            # Kept twice the window: a timestamp may be up to one window in the future and still valid.
            pending = PendingSignature(signature, now + timedelta(seconds=2 * self._window), now)
        credential = cached.credential
        return Caller(credential.tenant_id, credential.app_key, cached.version, pending)

    def accept(self, caller: Caller) -> None:
        """Record a POST's signature in a transaction of its own: for a request refused before any service ran."""
        try:
            with self._unit_of_work(write=True) as uow:
                record_signature(uow, caller)
                uow.commit()
        except StorageError as exc:
            raise ServiceUnavailable.database(exc) from exc

    def forget(self, app_key: str) -> None:
        """Drop this worker's copy of a credential (it changed): the next request reads it again."""
        self._cache.pop(app_key, None)

    def _read(self, app_key: str) -> StampedCredential | None:
        try:
            with self._unit_of_work(autocommit=True) as uow:  # one statement: no transaction around it
                stamped = uow.credentials.stamped(app_key)
        except StorageError as exc:
            raise ServiceUnavailable.database(exc) from exc
        if stamped is not None:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[app_key] = stamped
        else:
            self._cache.pop(app_key, None)
        return stamped

    def _check_timestamp(self, raw: str | None, now: datetime) -> None:
        if not raw or not TIMESTAMP.fullmatch(raw):
            raise _refused("malformed or missing X-Timestamp", message=TIMESTAMP_FORMAT)
        try:
            sent = Decimal(raw)
        except InvalidOperation as exc:
            raise _refused("malformed X-Timestamp", message=TIMESTAMP_FORMAT) from exc
        skew = abs(Decimal(str(now.timestamp())) - sent)
        if skew > self._window:
            raise _refused(
                "X-Timestamp outside the window",
                message=f"X-Timestamp is outside the allowed window of ±{self._window} s",
            )


def _mismatch(request: SignedRequest, credential: CredentialRecord | None, signature: str) -> str | None:
    """Why credential does not verify the request (None when it does); the same work whether it exists or not."""
    assert request.access_token is not None and request.app_key is not None and request.timestamp is not None
    expected = sign(
        app_secret=credential.app_secret if credential else _DUMMY_SECRET,
        method=request.method,
        path=request.path,
        query=request.query,
        access_token=request.access_token,
        app_key=request.app_key,
        timestamp=request.timestamp,
        body=request.body,
    )
    token_ok = hmac.compare_digest(
        token_digest(request.access_token), credential.access_token_sha256 if credential else _DUMMY_DIGEST
    )
    signature_ok = hmac.compare_digest(expected, signature)
    if credential is None:
        return "unknown app key"
    if not token_ok:
        return "access token does not match the app key"
    if not signature_ok:
        return "signature does not match the request"
    return None


def record_signature(uow: UnitOfWork, caller: Caller) -> None:
    """Record a POST's signature in the request's transaction (its first statement), so it is kept only if the
    request commits; refuse a replay (Unauthenticated) and a credential changed since it was cached
    (CredentialChanged: authenticate again).

    Exact across workers and hosts: a concurrent request with the same signature waits for this transaction and
    then finds the signature recorded, or records it if this one rolled back.
    """
    pending = signature_to_record(uow, caller)
    if pending is not None:
        check_recorded(caller, uow.signatures.record(**vars(pending)))


def spend_signature(unit_of_work: Callable[[], UnitOfWork], caller: Caller) -> None:
    """Record a POST's signature in a transaction of its own (unit_of_work: a writer's) and commit: for a request
    that authenticated and was then refused in a transaction that rolled back (an Idempotency-Key refusal), so
    that the same bytes sent again are a replay.

    Never raises: the refusal stays the answer. A signature recorded meanwhile (a concurrent identical request)
    or a credential changed since it was cached leaves nothing to spend; a database failure is logged.
    """
    if caller.signature is None:
        return
    try:
        with unit_of_work() as uow:
            pending = signature_to_record(uow, caller)
            assert pending is not None
            recorded = uow.signatures.record(**vars(pending))
            uow.commit()
    except StorageError as exc:
        log.warning("signature_not_spent", reason="database error", error=exc.kind, app_key=caller.app_key)
        return
    if recorded is SignatureRecorded.STALE_CREDENTIAL:
        log.info("signature_not_spent", reason="credential changed", app_key=caller.app_key)


def signature_to_record(uow: UnitOfWork, caller: Caller) -> SignatureToRecord | None:
    """What record_signature records, for a caller that records it with other statements (None for a read);
    now and then first drops the signatures whose window has passed."""
    pending = caller.signature
    if pending is None:
        return None
    assert caller.credentials_version is not None
    if next(_recorded) % _FORGET_EVERY == 0:
        uow.signatures.forget_expired(pending.verified_at)
    return SignatureToRecord(
        app_key=caller.app_key,
        signature=pending.signature,
        expires_at=pending.expires_at,
        tenant_id=caller.tenant_id,
        credentials_version=caller.credentials_version,
    )


def check_recorded(caller: Caller, recorded: SignatureRecorded | None) -> None:
    """Refuse a replay (Unauthenticated) and a credential changed since it was cached (CredentialChanged)."""
    if recorded is SignatureRecorded.REPLAY:
        metrics.REPLAYS_REFUSED.inc()
        raise _refused(
            "replay", message="replayed request: this signature was already accepted", app_key=caller.app_key
        )
    if recorded is SignatureRecorded.STALE_CREDENTIAL:
        raise CredentialChanged(caller.app_key)


def ensure_current(caller: Caller, credentials_version: int | None) -> None:
    """CredentialChanged when the tenant's credentials version read in the transaction is not the caller's."""
    if caller.credentials_version is not None and credentials_version != caller.credentials_version:
        raise CredentialChanged(caller.app_key)


_recorded = itertools.count(1)


def _refused(reason: str, *, message: str = REFUSED, app_key: str | None = None) -> Unauthenticated:
    """The 401 to raise; the log line says why (the app key only once it names a credential, never a secret)."""
    log.info("authentication_refused", reason=reason, app_key=app_key)
    return Unauthenticated(message)
