"""What a catalog edit does to each tenant: the values its SaaS config patterns newly match, or no longer match.

A tenant's config is a list of glob patterns over the catalog (`stock.*`), so adding `stock.KR` to the catalog
silently enables it for every tenant whose config says `stock.*`; nothing in the recorded traffic shows that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from app.rules.language.model import Catalog


@dataclass(frozen=True)
class TenantValues:
    """One tenant whose enabled values differ between the old and the new catalog."""

    tenant_id: str
    patterns: tuple[str, ...]
    newly_enabled: tuple[str, ...]  # in the new catalog's order
    newly_disabled: tuple[str, ...]  # in the old catalog's order


@dataclass(frozen=True)
class CatalogImpact:
    """The catalog edit: values added and removed, and every tenant whose enabled values change."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    tenants_compared: int
    tenants: tuple[TenantValues, ...]


def catalog_impact(old: Catalog, new: Catalog, configs: Mapping[str, tuple[str, ...]]) -> CatalogImpact:
    """Each tenant's patterns expanded over the old and the new catalog; tenants with no difference are left out."""
    changed = []
    for tenant_id, patterns in sorted(configs.items()):
        before, after = old.expand(patterns), new.expand(patterns)
        enabled = tuple(sorted(set(after) - set(before), key=after.index))
        disabled = tuple(sorted(set(before) - set(after), key=before.index))
        if enabled or disabled:
            changed.append(TenantValues(tenant_id, patterns, enabled, disabled))
    return CatalogImpact(
        added=tuple(v for v in new.values if v not in old),
        removed=tuple(v for v in old.values if v not in new),
        tenants_compared=len(configs),
        tenants=tuple(changed),
    )
