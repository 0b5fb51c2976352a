"""Plain values the service takes and returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.rules.runtime.answer import Answer

ACCOUNT_STATUSES = ("active", "deregistered")


@dataclass(frozen=True)
class PendingSignature:
    """A POST's valid signature, to be recorded in the request's own transaction (replay refusal, SPEC §4)."""

    signature: str
    expires_at: datetime
    verified_at: datetime


@dataclass(frozen=True)
class Caller:
    """Who is calling: the tenant and the app key that signed the request.

    A signed request's caller also carries the credentials version of the credential that verified it (the
    service checks it is still current in the request's transaction) and, for a POST, its signature.
    """

    tenant_id: str
    app_key: str
    credentials_version: int | None = None
    signature: PendingSignature | None = None


@dataclass(frozen=True)
class AppliedChange:
    """One change that was written."""

    permission_type: str
    status_before: str
    status_after: str


@dataclass(frozen=True)
class PermissionView:
    """One catalog value as an account holds it."""

    permission_type: str
    permission_status: str
    updated_at: datetime | None


@dataclass(frozen=True)
class AccountPermissions:
    """An account, every permission its tenant's config enables (in catalog order), and its attributes."""

    account_no: str
    account_status: str
    permissions: tuple[PermissionView, ...]
    attributes: Mapping[str, str]


@dataclass(frozen=True)
class IdempotencyRequest:
    """An Idempotency-Key and the fingerprint of the request it came with."""

    key: str
    request_sha256: str


@dataclass(frozen=True)
class StoredAnswer:
    """The answer a request got, kept with its idempotency key so a repeat gets it again."""

    http_status: int
    code: int
    message: str
    failure_index: int = 0
    rule_id: str | None = None
    data: Mapping[str, Any] | None = None  # the answer's whole `data`; None: failure_index and rule_id make it


@dataclass(frozen=True)
class PolicyWarning:
    """A warn policy that held for a change of an accepted request (data.warnings)."""

    index: int
    rule_id: str
    message: str


@dataclass(frozen=True)
class UpdateResult:
    """What an update did: the changes it applied (and the warnings and dryrun hits of the policies), or the
    stored answer of an earlier identical request."""

    applied: tuple[AppliedChange, ...] = ()
    replayed: StoredAnswer | None = None
    answer: Answer | None = None  # the rules' answer (app/rules/runtime/answer.py); None for a replayed one

    @property
    def data(self) -> Mapping[str, Any]:
        """The envelope's data of the answer: failure_index, and warnings when a warn policy held."""
        return {"failure_index": 0} if self.answer is None else self.answer.data

    @property
    def warnings(self) -> tuple[PolicyWarning, ...]:
        """The warn policies that held (data.warnings)."""
        if self.answer is None:
            return ()
        return tuple(PolicyWarning(h.index, h.rule.id, h.message) for h in self.answer.warnings)

    @property
    def dryrun_by(self) -> tuple[str, ...]:
        """The dryrun policies that held: recorded, never shown."""
        return () if self.answer is None else self.answer.dryrun_by


def iso_utc(value: datetime | None) -> str | None:
    """A UTC time as ISO 8601 with a Z, as the API and the CLI show it."""
    return None if value is None else value.isoformat().replace("+00:00", "Z")
