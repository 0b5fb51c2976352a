"""Domain errors: each carries its contract code (SPEC §3.3), HTTP status and failure_index."""

from __future__ import annotations

import re
from enum import IntEnum


class Code(IntEnum):
    """Every code of the contract, by name."""

    SUCCESS = 0
    INVALID_REQUEST = 400001
    INVALID_PERMISSION_TYPE = 400101
    INVALID_PERMISSION_STATUS = 400102
    NO_STATE_CHANGE = 400103
    DUPLICATE_PERMISSION_TYPE = 400104
    IDEMPOTENCY_KEY_REUSED = 400105
    PERMISSION_POLICY_DENIED = 400106
    UNAUTHENTICATED = 401001
    NOT_FOUND = 404000
    ACCOUNT_NOT_FOUND = 404001
    METHOD_NOT_ALLOWED = 405000
    ACCOUNT_DEREGISTERED = 409001
    IDEMPOTENCY_KEY_IN_FLIGHT = 409002
    ACCOUNT_BUSY = 409003
    WRITE_FAILED = 500001
    SERVICE_UNAVAILABLE = 503001


class DomainError(Exception):
    """Base of every error the service reports in the envelope."""

    code: Code = Code.INVALID_REQUEST
    http_status: int = 400

    def __init__(self, message: str, *, failure_index: int = 0, rule_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.failure_index = failure_index
        self.rule_id = rule_id
        self.policy_hits: tuple[tuple[str, str], ...] = ()  # (rule id, warn|dryrun) seen before the denial


class InvalidRequest(DomainError):
    """The body is not JSON, has the wrong shape, or breaks a limit."""

    code = Code.INVALID_REQUEST
    http_status = 400


class BodyTooLarge(InvalidRequest):
    """The body is over the size limit."""

    http_status = 413


class ChangeRejected(DomainError):
    """A rule rejected one change: carries the rule's outcome code and the change's index."""

    http_status = 400

    def __init__(self, code: Code, message: str, *, failure_index: int, rule_id: str) -> None:
        super().__init__(message, failure_index=failure_index, rule_id=rule_id)
        self.code = code


class Unauthenticated(DomainError):
    """Any signature failure, replay included."""

    code = Code.UNAUTHENTICATED
    http_status = 401


class AccountNotFound(DomainError):
    """No such account in the caller's tenant."""

    code = Code.ACCOUNT_NOT_FOUND
    http_status = 404


class AccountDeregistered(DomainError):
    """The account exists but is deregistered."""

    code = Code.ACCOUNT_DEREGISTERED
    http_status = 409


class AccountBusy(DomainError):
    """Another request held the account's lock (on SQLite, the database's) past the request path's bound:
    nothing was done, and the caller may retry, signed afresh."""

    code = Code.ACCOUNT_BUSY
    http_status = 409

    @classmethod
    def named(cls, account_no: str) -> AccountBusy:
        """The refusal for this account."""
        return cls(f"account_no '{account_no}': the account is locked by another request; retry")


class RouteNotFound(DomainError):
    """No such route."""

    code = Code.NOT_FOUND
    http_status = 404


class MethodNotAllowed(DomainError):
    """The route exists but not for this method."""

    code = Code.METHOD_NOT_ALLOWED
    http_status = 405


class WriteFailed(DomainError):
    """A database error after validation; nothing was persisted."""

    code = Code.WRITE_FAILED
    http_status = 500


class ServiceUnavailable(DomainError):
    """The database cannot be reached."""

    code = Code.SERVICE_UNAVAILABLE
    http_status = 503

    detail: str | None = None  # for the log line only: what an operator needs, never sent to the caller
    kind: str | None = None  # likewise: the driver's name for the failure (OperationalError, UndefinedTable, …)

    @classmethod
    def database(cls, exc: Exception) -> ServiceUnavailable:
        """The error for a database failure: the caller is told to retry; its kind and detail go to the log."""
        error = cls("the database is unavailable; retry later")
        error.kind = exc.kind if isinstance(exc, StorageError) else type(exc).__name__
        table = missing_table(exc)
        if table is not None:
            error.detail = f"table '{table}' is missing: the schema is not migrated (run permctl db upgrade)"
        return error


_MISSING_TABLE = (re.compile(r"no such table: ([\w.]+)"), re.compile(r'relation "([\w.]+)" does not exist'))


def missing_table(exc: BaseException) -> str | None:
    """The table a database error says is missing (SQLite and PostgreSQL wording), if that is what it says."""
    if isinstance(exc, StorageError) and exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(getattr(exc, "orig", exc))
    for pattern in _MISSING_TABLE:
        found = pattern.search(text)
        if found:
            return found.group(1)
    return None


class IdempotencyKeyReused(DomainError):
    """The Idempotency-Key was first used with a different request."""

    code = Code.IDEMPOTENCY_KEY_REUSED
    http_status = 422


class IdempotencyKeyInFlight(DomainError):
    """A request with the same Idempotency-Key is still being processed."""

    code = Code.IDEMPOTENCY_KEY_IN_FLIGHT
    http_status = 409


class StorageError(Exception):
    """The database failed (unreachable, or it refused a statement). The unit of work raises it in place of the
    driver's error, so the service layer never sees the database library; the original is its __cause__."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class StorageBusy(StorageError):
    """A lock was not granted within the bound the caller set (e.g. a concurrent idempotent repeat) or the
    request path's lock bound (PostgreSQL lock_timeout; SQLite's busy timeout).

    whole_database: the lock was SQLite's database write lock, which every other writing transaction would
    wait for as well (PostgreSQL's are row locks).
    """

    def __init__(self, kind: str, detail: str = "", *, whole_database: bool = False) -> None:
        super().__init__(kind, detail)
        self.whole_database = whole_database


class StorageTimeout(StorageError):
    """A statement ran past the request path's statement bound (PostgreSQL statement_timeout) and was cancelled."""


class MigrationRefused(Exception):
    """A schema migration that would not do what was asked (Alembic would do nothing and say nothing):
    app/persistence/migrate.py raises it, `permctl db upgrade` reports it in one line."""


class CredentialChanged(Exception):
    """The caller's credential changed after this worker cached it (a revocation, a rotation, `permctl load`).

    Not an answer: the request's transaction is rolled back and the request authenticated again from the
    database (app/http/auth.py), which refuses it if the credential no longer signs it.
    """

    def __init__(self, app_key: str) -> None:
        super().__init__(f"the credential of app key {app_key} changed")
        self.app_key = app_key


class ConsoleError(Exception):
    """An act of a console user (permctl --as, or the console) refused; the message is a sentence for them."""


class NotPermitted(ConsoleError):
    """The user's role, or four eyes, does not allow the act."""


class WrongCredentials(ConsoleError):
    """The name or the password is wrong, or the user is disabled; never says which, nor whether the user exists."""

    def __init__(self) -> None:
        super().__init__("the user name or the password is wrong")


class UnknownVersion(ConsoleError):
    """No stored version, or more than one, starts with the given prefix."""


class PublicationRefused(ConsoleError):
    """A version may not go live: an approval is missing or void, the set is broken, or the pointer moved meanwhile."""
