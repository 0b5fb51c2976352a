"""Tenant administration: SaaS config changes (with cache invalidation), what they enable, key revocation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from app.errors import DomainError
from app.rules.language.model import Catalog, is_config_pattern

if TYPE_CHECKING:  # injected: the service never imports the database library
    from app.persistence.config_cache import ConfigCache
    from app.persistence.repositories import Revocation
    from app.persistence.unit_of_work import UnitOfWork


class TenantNotFound(DomainError):
    """No such tenant."""


class InvalidPattern(DomainError):
    """A SaaS config pattern is not a valid glob."""


class UnknownKey(DomainError):
    """No credential has this app key."""


@dataclass(frozen=True)
class TenantView:
    """A tenant's config as an operator sees it."""

    tenant_id: str
    config_version: int
    patterns: tuple[str, ...] | None
    enabled: tuple[str, ...]


@dataclass(frozen=True)
class Revoked:
    """The outcome of a revocation: the key's tombstone, and whether this call made it."""

    revocation: Revocation
    already: bool


def pattern_problem(pattern: object) -> str | None:
    """Why pattern is not a SaaS config pattern, or None when it is one."""
    if is_config_pattern(pattern):
        return None
    return (
        f"pattern {pattern!r} is not a glob over catalog values (letters, digits, '.', '_', '-', '*', '?' "
        "and closed [...] sets, at most 64 characters; e.g. 'stock.*')"
    )


def validate_patterns(patterns: Sequence[str]) -> tuple[str, ...]:
    """The patterns, or InvalidPattern naming the first bad one."""
    for pattern in patterns:
        problem = pattern_problem(pattern)
        if problem is not None:
            raise InvalidPattern(problem)
    return tuple(patterns)


def show(unit_of_work: Callable[..., UnitOfWork], catalog: Catalog, tenant_id: str) -> TenantView:
    """The tenant's stored config and the catalog values it enables."""
    with unit_of_work() as uow:
        version = uow.tenants.config_version(tenant_id)
        if version is None:
            raise TenantNotFound(f"no tenant '{tenant_id}'")
        patterns = uow.tenant_configs.patterns(tenant_id)
    return TenantView(tenant_id, version, patterns, catalog.expand(patterns or ()))


def set_config(
    unit_of_work: Callable[..., UnitOfWork], cache: ConfigCache, tenant_id: str, patterns: Sequence[str]
) -> None:
    """Store the tenant's patterns, move its config version, and drop cached copies."""
    patterns = validate_patterns(patterns)
    now = datetime.now(UTC)
    with unit_of_work(write=True) as uow:
        if not uow.tenants.move_config_version(tenant_id):
            raise TenantNotFound(f"no tenant '{tenant_id}'")
        uow.tenant_configs.replace(tenant_id, patterns, now)
        uow.commit()
    cache.invalidate(tenant_id)


def revoke_key(unit_of_work: Callable[..., UnitOfWork], app_key: str) -> Revoked:
    """Delete a credential (e.g. the old one after a rotation) and keep its key as revoked for good.

    Revoking a revoked key again changes nothing; `permctl load` never restores a revoked key.
    """
    with unit_of_work(write=True) as uow:
        revocation = uow.credentials.revoke(app_key, datetime.now(UTC))
        if revocation is None:
            earlier = uow.credentials.revocation(app_key)
            if earlier is None:
                raise UnknownKey(f"no credential with app key '{app_key}'")
            return Revoked(earlier, already=True)
        uow.commit()
    return Revoked(revocation, already=False)
