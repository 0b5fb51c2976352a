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
from app.errors import ServiceUnavailable, StorageError, Unauthenticated
from app.service.model import Caller
from app.signature import ALGORITHM, SIGNED_HEADERS, sign, token_digest

if TYPE_CHECKING:  # injected: the service never imports the database library
    from app.persistence.repositories import CredentialRecord
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
    """Verifies signatures against stored credentials and refuses replays across all workers and hosts."""

    def __init__(
        self,
        *,
        unit_of_work: Callable[..., UnitOfWork],
        window_seconds: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._unit_of_work = unit_of_work
        self._window = window_seconds
        self._clock = clock
        self._recorded = itertools.count(1)

    def authenticate(self, request: SignedRequest) -> Caller:
        """The caller, or Unauthenticated: one message for any credential or signature mismatch."""
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
        post = request.method.upper() == "POST"
        try:
            # Two statements that each stand alone: no transaction around them (see UnitOfWork).
            with self._unit_of_work(write=post, autocommit=True) as uow:
                credential = uow.credentials.get(request.app_key)
                caller = self._verify(request, credential, match["signature"])
                if post:
                    self._refuse_replay(uow, request.app_key, match["signature"], now)
        except StorageError as exc:
            raise ServiceUnavailable.database(exc) from exc
        return caller

    @staticmethod
    def _verify(request: SignedRequest, credential: CredentialRecord | None, signature: str) -> Caller:
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
            raise _refused("unknown app key")
        if not token_ok:
            raise _refused("access token does not match the app key", app_key=credential.app_key)
        if not signature_ok:
            raise _refused("signature does not match the request", app_key=credential.app_key)
        return Caller(tenant_id=credential.tenant_id, app_key=credential.app_key)

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

    def _refuse_replay(self, uow: UnitOfWork, app_key: str, signature: str, now: datetime) -> None:
        # Kept twice the window: a timestamp may be up to one window in the future and still valid.
        expires_at = now + timedelta(seconds=2 * self._window)
        if next(self._recorded) % _FORGET_EVERY == 0:
            uow.signatures.forget_expired(now)
        first_use = uow.signatures.record(app_key=app_key, signature=signature, expires_at=expires_at)
        uow.commit()
        if not first_use:
            metrics.REPLAYS_REFUSED.inc()
            raise _refused("replay", message="replayed request: this signature was already accepted", app_key=app_key)


def _refused(reason: str, *, message: str = REFUSED, app_key: str | None = None) -> Unauthenticated:
    """The 401 to raise; the log line says why (the app key only once it names a credential, never a secret)."""
    log.info("authentication_refused", reason=reason, app_key=app_key)
    return Unauthenticated(message)
