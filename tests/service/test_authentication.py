"""Authenticator (SPEC §4) on a seeded database with an injected clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from sqlalchemy import create_engine, event, func, select
from structlog.testing import capture_logs

from app.errors import Code, CredentialChanged, Unauthenticated
from app.persistence.db import make_engine, make_session_factory
from app.persistence.models import AcceptedSignature
from app.persistence.repositories import CredentialRecord
from app.persistence.unit_of_work import UnitOfWork
from app.service import authentication
from app.service.authentication import _FORGET_EVERY, REFUSED, TIMESTAMP_FORMAT, Authenticator, SignedRequest
from app.service.model import Caller
from app.signature import sign, signature_header, token_digest
from tests.support import DEMO, OTHER, READ_PATH, UPDATE_PATH, Credentials, body_of

NOW = 1795564449
BODY = body_of("ACC-1", ("stock.US", "open"))


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, seconds: float = NOW) -> None:
        self.seconds = seconds

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.seconds, UTC)


def signed(
    method: str = "POST",
    *,
    path: str = UPDATE_PATH,
    query: str = "",
    body: bytes | None = None,
    creds: Credentials = DEMO,
    timestamp: str | None = None,
    sign_timestamp: str | None = None,
    secret: str | None = None,
    header: str | None = None,
) -> SignedRequest:
    """A request signed like the SDK does; the keyword arguments spoil one part of it on purpose."""
    if body is None:
        body = BODY if method == "POST" else b""
    ts = str(NOW) if timestamp is None else timestamp
    signature = sign(
        app_secret=secret or creds.app_secret,
        method=method,
        path=path,
        query=query,
        access_token=creds.access_token,
        app_key=creds.app_key,
        timestamp=ts if sign_timestamp is None else sign_timestamp,
        body=body,
    )
    return SignedRequest(
        method=method,
        path=path,
        query=query,
        body=body,
        app_key=creds.app_key,
        access_token=creds.access_token,
        timestamp=ts,
        signature_header=signature_header(signature) if header is None else header,
    )


@pytest.fixture
def session_factory(seeded):
    engine = make_engine(seeded, request_path=True)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_authenticator(session_factory, clock) -> Callable[..., Authenticator]:
    def make(window_seconds: int = 300) -> Authenticator:
        return Authenticator(
            unit_of_work=lambda **kw: UnitOfWork(session_factory, **kw), window_seconds=window_seconds, clock=clock
        )

    return make


@pytest.fixture
def authenticator(make_authenticator) -> Authenticator:
    return make_authenticator()


def accepted_signatures(session_factory) -> int:
    with UnitOfWork(session_factory) as uow:
        return uow.session.scalar(select(func.count()).select_from(AcceptedSignature))


def accept(authenticator: Authenticator, request: SignedRequest) -> Caller:
    """Authenticate the request and record its signature, as a request's transaction does (a POST's only)."""
    caller = authenticator.authenticate(request)
    authenticator.accept(caller)
    return caller


def refused(authenticator: Authenticator, request: SignedRequest) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as raised:
        accept(authenticator, request)
    error = raised.value
    assert error.code == Code.UNAUTHENTICATED
    assert error.http_status == 401
    assert error.failure_index == 0
    for secret in (DEMO.app_secret, DEMO.access_token, OTHER.app_secret, OTHER.access_token):
        assert secret not in error.message
    return error


# --- the happy path ---------------------------------------------------------------------------------------


def test_valid_post_names_the_caller_and_carries_its_signature(authenticator):
    caller = authenticator.authenticate(signed())
    assert (caller.tenant_id, caller.app_key) == ("sg_mexc", "demo-key")
    assert caller.signature is not None and caller.signature.signature in signed().signature_header
    assert caller.credentials_version is not None


def test_valid_get_names_the_caller_of_another_tenant(authenticator):
    request = signed("GET", path=READ_PATH, query="account_no=OTHER-1", creds=OTHER)
    caller = authenticator.authenticate(request)
    assert (caller.tenant_id, caller.app_key, caller.signature) == ("hk_other", "other-key", None)


# --- timestamp window -------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-300, -299, 0, 299, 300])
def test_timestamps_inside_the_window_are_accepted(authenticator, offset):
    assert authenticator.authenticate(signed(timestamp=str(NOW + offset))).tenant_id == "sg_mexc"


@pytest.mark.parametrize("offset", [-301, 301, -100_000, 100_000])
def test_timestamps_outside_the_window_are_refused(authenticator, offset, session_factory):
    error = refused(authenticator, signed(timestamp=str(NOW + offset)))
    assert "window" in error.message
    assert accepted_signatures(session_factory) == 0


def test_window_edges_hold_when_the_clock_moves(authenticator, clock):
    request = signed("GET", path=READ_PATH, query="account_no=ACC-1")
    clock.seconds = NOW + 300
    authenticator.authenticate(request)
    clock.seconds = NOW - 300
    authenticator.authenticate(request)
    clock.seconds = NOW + 301
    refused(authenticator, request)
    clock.seconds = NOW - 301
    refused(authenticator, request)


def test_fractional_edges(authenticator, clock):
    clock.seconds = NOW + 0.5
    authenticator.authenticate(signed("GET", path=READ_PATH, timestamp=f"{NOW + 300}.5"))
    refused(authenticator, signed("GET", path=READ_PATH, timestamp=f"{NOW + 300}.501"))
    refused(authenticator, signed("GET", path=READ_PATH, timestamp=f"{NOW - 300}.499"))


@pytest.mark.parametrize("timestamp", [f"{NOW}.123", f"{NOW}.0", f"{NOW - 299}.999999999", f"{NOW}.5"])
def test_decimal_timestamps_are_accepted_and_signed_as_sent(authenticator, timestamp):
    assert authenticator.authenticate(signed(timestamp=timestamp)).app_key == "demo-key"


def test_decimal_timestamp_signed_in_another_spelling_is_refused(authenticator):
    # The header says 1795564449.123 but the signature covers 1795564449: not the same signed text.
    error = refused(authenticator, signed(timestamp=f"{NOW}.123", sign_timestamp=str(NOW)))
    assert error.message == REFUSED
    refused(authenticator, signed(timestamp=f"{NOW}.0", sign_timestamp=str(NOW)))


@pytest.mark.parametrize(
    "timestamp",
    [
        "abc",
        "",
        " ",
        "1e9",
        "-1795564449",
        "+1795564449",
        "0x6B05E5A1",
        "1795564449.",
        ".5",
        "1795564449,5",
        "1_795_564_449",
        " 1795564449",
        "1795564449 ",
        "NaN",
        "Infinity",
        "١٧٩٥٥٦٤٤٤٩",
        "1795564449.1.2",
        "9" * 40,
    ],
)
def test_garbage_timestamps_are_refused(authenticator, timestamp):
    refused(authenticator, signed(timestamp=timestamp))


def test_timestamp_with_trailing_newline_is_refused(authenticator):
    # Not Unix seconds: a regex anchored with `$` lets "...\n" through to Decimal(), which strips it.
    refused(authenticator, signed(timestamp=f"{NOW}\n"))


# --- credentials and signature ----------------------------------------------------------------------------


def test_unknown_app_key_is_refused(authenticator):
    error = refused(authenticator, signed(creds=Credentials("nobody", "nobody-secret", "nobody-token")))
    assert error.message == REFUSED


def test_wrong_token_is_refused_even_when_signed_with_it(authenticator):
    # The signature is consistent with the wrong token; the token itself is not the credential's.
    error = refused(authenticator, signed(creds=Credentials("demo-key", "demo-secret", "other-token")))
    assert error.message == REFUSED


def test_token_of_another_credential_is_refused(authenticator):
    refused(authenticator, signed(creds=Credentials("demo-key", "demo-secret", OTHER.access_token)))


def test_wrong_secret_is_refused(authenticator, session_factory):
    error = refused(authenticator, signed(secret="not-the-secret"))
    assert error.message == REFUSED
    refused(authenticator, signed(secret=OTHER.app_secret))
    assert accepted_signatures(session_factory) == 0


class LogRecorder:
    """Stands in for the module's logger: keeps each line's event and fields."""

    def __init__(self) -> None:
        self.lines: list[dict[str, object]] = []

    def info(self, event: str, **fields: object) -> None:
        self.lines.append({"event": event, **fields})


MISMATCHES = {
    "unknown-app-key": signed(creds=Credentials("nobody", "nobody-secret", "nobody-token")),
    "wrong-token": signed(creds=Credentials("demo-key", "demo-secret", "other-token")),
    "wrong-secret": signed(secret="not-the-secret"),
    "other-tenants-secret": signed(secret=OTHER.app_secret),
    "tampered-body": SignedRequest(**{**signed().__dict__, "body": BODY + b" "}),
    "no-token": SignedRequest(**{**signed().__dict__, "access_token": None}),
    "malformed-signature-header": signed(header="garbage"),
}
NO_MATCH = "signature does not match the request"
REASONS = {
    "unknown-app-key": "unknown app key",
    "wrong-token": "access token does not match the app key",
    "wrong-secret": NO_MATCH,
    "other-tenants-secret": NO_MATCH,
    "tampered-body": NO_MATCH,
    "no-token": "missing Authorization header",
    "malformed-signature-header": "malformed X-Api-Signature header",
}


def test_every_credential_or_signature_mismatch_gets_one_message(authenticator, monkeypatch):
    """A holder of an app key cannot tell a wrong token from a wrong signature; the log line can."""
    recorder = LogRecorder()
    monkeypatch.setattr(authentication, "log", recorder)
    messages = {name: refused(authenticator, request).message for name, request in MISMATCHES.items()}
    assert set(messages.values()) == {REFUSED}, messages
    reasons = {name: line["reason"] for name, line in zip(MISMATCHES, recorder.lines, strict=True)}
    assert reasons == REASONS
    assert {line["event"] for line in recorder.lines} == {"authentication_refused"}
    assert recorder.lines[0]["app_key"] is None  # an unknown key may be a secret pasted in the wrong header
    assert recorder.lines[1]["app_key"] == "demo-key"


@pytest.mark.parametrize(
    "spoil",
    [
        lambda r: SignedRequest(**{**r.__dict__, "body": r.body + b" "}),
        lambda r: SignedRequest(**{**r.__dict__, "path": READ_PATH}),
        lambda r: SignedRequest(**{**r.__dict__, "query": "account_no=ACC-2"}),
        lambda r: SignedRequest(**{**r.__dict__, "method": "PUT"}),
        lambda r: SignedRequest(**{**r.__dict__, "timestamp": str(NOW + 1)}),
    ],
    ids=["body", "path", "query", "method", "timestamp"],
)
def test_tampered_requests_are_refused(authenticator, spoil):
    refused(authenticator, spoil(signed()))


@pytest.mark.parametrize(
    "missing",
    ["app_key", "access_token", "timestamp", "signature_header"],
)
@pytest.mark.parametrize("empty", [None, ""])
def test_missing_headers_are_refused(authenticator, missing, empty):
    request = signed()
    error = refused(authenticator, SignedRequest(**{**request.__dict__, missing: empty}))
    assert error.message == (TIMESTAMP_FORMAT if missing == "timestamp" else REFUSED)


def _signature_of(request: SignedRequest) -> str:
    assert request.signature_header is not None
    return request.signature_header.rsplit("Signature=", 1)[1]


@pytest.mark.parametrize(
    "header",
    [
        "{sig}",
        "HMAC-SHA256 {sig}",
        "HMAC-SHA256 Signature={sig}",
        "HMAC-SHA1 SignedHeaders=authorization;x-api-key;x-timestamp, Signature={sig}",
        "hmac-sha256 SignedHeaders=authorization;x-api-key;x-timestamp, Signature={sig}",
        "HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp,Signature={sig}",
        "HMAC-SHA256  SignedHeaders=authorization;x-api-key;x-timestamp, Signature={sig}",
        "HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp, Signature={sig}0",
        "HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp, Signature={short}",
        "HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp, Signature={sig}, Extra=1",
        "HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp, Signature=zz{short}",
        pytest.param(
            "HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp, Signature={sig}\n", id="trailing-newline"
        ),
    ],
)
def test_malformed_signature_headers_are_refused(authenticator, header):
    sig = _signature_of(signed())
    assert refused(authenticator, signed(header=header.format(sig=sig, short=sig[:-2]))).message == REFUSED


@pytest.mark.parametrize(
    "signed_headers",
    [
        "authorization;x-api-key",
        "x-api-key;authorization;x-timestamp",
        "authorization;x-api-key;x-timestamp;host",
        "authorization;x-timestamp",
        "AUTHORIZATION;X-API-KEY;X-TIMESTAMP",
        "",
    ],
)
def test_wrong_signed_headers_are_refused(authenticator, signed_headers):
    sig = _signature_of(signed())
    error = refused(authenticator, signed(header=f"HMAC-SHA256 SignedHeaders={signed_headers}, Signature={sig}"))
    assert error.message == REFUSED


# --- replay -------------------------------------------------------------------------------------------------


def test_get_is_never_recorded_as_replay(authenticator, session_factory):
    request = signed("GET", path=READ_PATH, query="account_no=ACC-1")
    for _ in range(3):
        assert accept(authenticator, request).tenant_id == "sg_mexc"
    assert accepted_signatures(session_factory) == 0


def test_post_replay_is_refused(authenticator, session_factory):
    request = signed()
    accept(authenticator, request)
    assert accepted_signatures(session_factory) == 1
    error = refused(authenticator, request)
    assert "replay" in error.message
    assert accepted_signatures(session_factory) == 1


def test_post_replay_is_refused_by_another_worker(make_authenticator):
    request = signed()
    accept(make_authenticator(), request)
    assert "replay" in refused(make_authenticator(), request).message


def test_a_new_post_with_a_new_signature_is_not_a_replay(authenticator):
    accept(authenticator, signed(timestamp=str(NOW)))
    accept(authenticator, signed(timestamp=str(NOW + 1)))
    accept(authenticator, signed(body=body_of("ACC-1", ("stock.US", "close"))))


def test_refused_post_is_not_recorded(authenticator, session_factory):
    refused(authenticator, signed(secret="wrong"))
    refused(authenticator, signed(timestamp=str(NOW + 301)))
    assert accepted_signatures(session_factory) == 0
    accept(authenticator, signed())  # the genuine request is still first use


def test_replay_record_outlives_the_last_moment_its_timestamp_is_valid(authenticator, clock, session_factory):
    # Signed 300 s in the future (accepted), the request stays valid until its timestamp + 300 s:
    # the replay record must still be there then, even after expired records are swept.
    request = signed(timestamp=str(NOW + 300))
    accept(authenticator, request)
    last_valid = datetime.fromtimestamp(NOW + 600, UTC)
    clock.seconds = NOW + 600
    with UnitOfWork(session_factory, write=True) as uow:
        uow.signatures.forget_expired(last_valid)
        uow.commit()
    assert "replay" in refused(authenticator, request).message


@pytest.mark.parametrize("window", [10, 60, 900])
def test_window_is_configurable(make_authenticator, clock, window):
    authenticator = make_authenticator(window_seconds=window)
    accept(authenticator, signed(timestamp=str(NOW + window)))
    accept(authenticator, signed(timestamp=str(NOW - window)))
    error = refused(authenticator, signed(timestamp=str(NOW + window + 1)))
    assert str(window) in error.message
    refused(authenticator, signed(timestamp=str(NOW - window - 1)))


def test_replay_window_follows_window_seconds(make_authenticator, clock, session_factory):
    authenticator = make_authenticator(window_seconds=10)
    request = signed(timestamp=str(NOW + 10))
    accept(authenticator, request)
    with UnitOfWork(session_factory) as uow:
        expires_at = uow.session.scalar(select(AcceptedSignature.expires_at))
    # Kept at least until the signature's own timestamp leaves the window, and not for a 300 s default.
    assert expires_at >= datetime.fromtimestamp(NOW + 20, UTC)
    assert expires_at - datetime.fromtimestamp(NOW, UTC) < timedelta(seconds=300)
    clock.seconds = NOW + 20
    assert "replay" in refused(authenticator, request).message
    clock.seconds = NOW + 21
    assert "window" in refused(authenticator, request).message


def test_expired_signatures_are_swept_without_losing_live_ones(make_authenticator, clock, session_factory):
    authenticator = make_authenticator(window_seconds=10)
    old = signed(timestamp=str(NOW))
    accept(authenticator, old)
    clock.seconds = NOW + 1000
    fresh = [signed(timestamp=f"{NOW + 1000}.{i:04d}") for i in range(_FORGET_EVERY)]
    for request in fresh:
        accept(authenticator, request)
    # A sweep ran: the record of the long-expired request is gone, every live one stays.
    assert accepted_signatures(session_factory) == len(fresh)
    assert "replay" in refused(authenticator, fresh[0]).message


# --- the credential cache ---------------------------------------------------------------------------------


def test_a_cached_credential_is_read_once_and_checked_where_the_signature_is_recorded(
    authenticator, session_factory, clock
):
    statements: list[str] = []

    def record(_conn, _cursor, text: str, *_args) -> None:  # type: ignore[no-untyped-def]
        if not text.lstrip().upper().startswith("BEGIN"):
            statements.append(text)

    event.listen(session_factory.kw["bind"], "before_cursor_execute", record)
    accept(authenticator, signed(timestamp=str(NOW)))
    reads = [s for s in statements if "FROM credentials" in s and not s.lstrip().upper().startswith("INSERT")]
    assert len(reads) == 1
    statements.clear()
    accept(authenticator, signed(timestamp=str(NOW + 1)))
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("INSERT")  # the signature alone

    with UnitOfWork(session_factory, write=True) as uow:  # revoked behind this worker's back
        assert uow.credentials.revoke(DEMO.app_key, clock()) is not None
        uow.commit()
    caller = authenticator.authenticate(signed(timestamp=str(NOW + 2)))  # the cached copy still verifies it
    with pytest.raises(CredentialChanged):  # but recording its signature finds the credentials version moved
        authenticator.accept(caller)
    assert accepted_signatures(session_factory) == 2
    authenticator.forget(DEMO.app_key)
    assert refused(authenticator, signed(timestamp=str(NOW + 2))).message == REFUSED


def test_a_credential_rotated_since_it_was_cached_is_read_again(authenticator, session_factory, clock):
    accept(authenticator, signed(timestamp=str(NOW)))
    rotated = Credentials(DEMO.app_key, "rotated-secret", "rotated-token")
    with UnitOfWork(session_factory, write=True) as uow:
        uow.credentials.put(
            CredentialRecord(DEMO.app_key, "sg_mexc", rotated.app_secret, token_digest(rotated.access_token)), clock()
        )
        uow.commit()
    assert accept(authenticator, signed(timestamp=str(NOW + 1), creds=rotated)).app_key == DEMO.app_key
    authenticator.forget(DEMO.app_key)
    refused(authenticator, signed(timestamp=str(NOW + 2)))  # the old secret, once the cache has the new one


# --- spending a signature after the request's transaction rolled back ------------------------------------


def spend(session_factory, caller: Caller) -> None:
    authentication.spend_signature(lambda: UnitOfWork(session_factory, write=True), caller)


def test_a_spent_signature_is_a_replay(authenticator, session_factory):
    request = signed()
    spend(session_factory, authenticator.authenticate(request))
    assert accepted_signatures(session_factory) == 1
    assert "replay" in refused(authenticator, request).message


def test_spending_a_signature_already_recorded_or_of_a_get_changes_nothing(authenticator, session_factory):
    caller = accept(authenticator, signed())  # a concurrent identical request got there first
    spend(session_factory, caller)
    spend(session_factory, authenticator.authenticate(signed("GET", path=READ_PATH, query="account_no=ACC-1")))
    assert accepted_signatures(session_factory) == 1


def test_spending_a_signature_whose_credential_changed_leaves_it(authenticator, session_factory, clock, monkeypatch):
    monkeypatch.setattr(authentication, "log", structlog.get_logger("app.auth"))  # uncached: capture_logs sees it
    caller = authenticator.authenticate(signed())
    with UnitOfWork(session_factory, write=True) as uow:
        assert uow.credentials.revoke(DEMO.app_key, clock()) is not None
        uow.commit()
    with capture_logs() as logs:
        spend(session_factory, caller)  # no CredentialChanged: the caller's refusal stays its answer
    assert accepted_signatures(session_factory) == 0
    assert [(e["event"], e["reason"]) for e in logs] == [("signature_not_spent", "credential changed")]


def test_a_database_failure_while_spending_is_logged_without_secrets(authenticator, tmp_path, monkeypatch):
    monkeypatch.setattr(authentication, "log", structlog.get_logger("app.auth"))
    caller = authenticator.authenticate(signed())
    engine = create_engine(f"sqlite:///{tmp_path / 'no-such-directory' / 'db.sqlite'}")  # cannot be opened
    try:
        with capture_logs() as logs:
            spend(make_session_factory(engine), caller)
    finally:
        engine.dispose()
    [warning] = logs
    assert (warning["event"], warning["log_level"], warning["reason"]) == (
        "signature_not_spent",
        "warning",
        "database error",
    )
    assert warning["app_key"] == DEMO.app_key and warning["error"]
    assert not any(secret in repr(warning) for secret in (DEMO.app_secret, DEMO.access_token))
    assert caller.signature is not None and caller.signature.signature not in repr(warning)
