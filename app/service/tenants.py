"""Tenant administration: SaaS config changes (with cache invalidation) and what they enable."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from app.errors import DomainError
from app.persistence.config_cache import ConfigCache
from app.persistence.models import Credential, Tenant, TenantConfig
from app.persistence.unit_of_work import UnitOfWork
from app.rules.model import Catalog

PATTERN = re.compile(r"^[A-Za-z0-9_.*?\[\]!-]{1,64}$")


class TenantNotFound(DomainError):
    """No such tenant."""


class InvalidPattern(DomainError):
    """A SaaS config pattern is not a valid glob."""


@dataclass(frozen=True)
class TenantView:
    """A tenant's config as an operator sees it."""

    tenant_id: str
    config_version: int
    patterns: tuple[str, ...] | None
    enabled: tuple[str, ...]


def validate_patterns(patterns: Sequence[str]) -> tuple[str, ...]:
    """The patterns, or InvalidPattern naming the bad one."""
    for pattern in patterns:
        if not isinstance(pattern, str) or not PATTERN.match(pattern):
            raise InvalidPattern(f"pattern {pattern!r} is not a glob over catalog values (e.g. 'stock.*')")
    return tuple(patterns)


def show(session_factory: sessionmaker[Any], catalog: Catalog, tenant_id: str) -> TenantView:
    """The tenant's stored config and the catalog values it enables."""
    with UnitOfWork(session_factory) as uow:
        version = uow.session.scalar(select(Tenant.config_version).where(Tenant.id == tenant_id))
        if version is None:
            raise TenantNotFound(f"no tenant '{tenant_id}'")
        patterns = uow.tenant_configs.patterns(tenant_id)
    return TenantView(tenant_id, version, patterns, catalog.expand(patterns or ()))


def set_config(
    session_factory: sessionmaker[Any], cache: ConfigCache, tenant_id: str, patterns: Sequence[str]
) -> None:
    """Store the tenant's patterns, move its config version, and drop cached copies."""
    patterns = validate_patterns(patterns)
    now = datetime.now(UTC)
    with UnitOfWork(session_factory, write=True) as uow:
        moved = uow.session.execute(
            update(Tenant).where(Tenant.id == tenant_id).values(config_version=Tenant.config_version + 1)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            raise TenantNotFound(f"no tenant '{tenant_id}'")
        uow.session.merge(TenantConfig(tenant_id=tenant_id, enabled_patterns=json.dumps(list(patterns)),
                                       updated_at=now))
        uow.commit()
    cache.invalidate(tenant_id)


class UnknownKey(DomainError):
    """No credential has this app key."""


def revoke_key(session_factory: sessionmaker[Any], app_key: str) -> str:
    """Delete a credential (e.g. the old one after a rotation); returns its tenant."""
    with UnitOfWork(session_factory, write=True) as uow:
        credential = uow.session.get(Credential, app_key)
        if credential is None:
            raise UnknownKey(f"no credential with app key '{app_key}'")
        tenant_id = credential.tenant_id
        uow.session.delete(credential)
        uow.commit()
    return tenant_id
