"""Plain values the service takes and returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Caller:
    """Who is calling: the tenant and the app key that signed the request."""

    tenant_id: str
    app_key: str


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
    """An account and every permission its tenant's config enables, in catalog order."""

    account_no: str
    account_status: str
    permissions: tuple[PermissionView, ...]
