"""A tenant's enabled catalog values: config read through the cache, expanded over the catalog."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from app import metrics
from app.persistence.config_cache import ConfigCache
from app.persistence.repositories import TenantConfigs
from app.rules.language.model import Catalog

NO_CONFIG: tuple[str, ...] = ()


@dataclass(frozen=True)
class Enabled:
    """The catalog values a config enables: in catalog order (for reads) and as a set (for the rules)."""

    ordered: tuple[str, ...]
    members: frozenset[str]


class EnabledPermissions:
    """Resolves (tenant, config version) to the catalog values the tenant may use; fails closed."""

    def __init__(self, cache: ConfigCache, memo_size: int = 1024) -> None:
        self._cache = cache
        self._memo: OrderedDict[tuple[str, tuple[str, ...]], Enabled] = OrderedDict()
        self._memo_size = memo_size

    def patterns(self, configs: TenantConfigs, *, tenant_id: str, config_version: int) -> tuple[str, ...]:
        """The tenant's patterns: from the cache, else the database (then cached)."""
        cached = self._cache.get(tenant_id, config_version)
        if cached is not None:
            metrics.TENANT_CONFIG_CACHE.labels(result="hit").inc()
            return cached
        metrics.TENANT_CONFIG_CACHE.labels(result="miss").inc()
        stored = configs.patterns(tenant_id)
        patterns = NO_CONFIG if stored is None else stored
        self._cache.put(tenant_id, config_version, patterns)
        return patterns

    def values(self, catalog: Catalog, catalog_version: str, patterns: tuple[str, ...]) -> tuple[str, ...]:
        """Catalog values the patterns enable, in catalog order (memoised per rule-set version)."""
        return self._enabled(catalog, catalog_version, patterns).ordered

    def members(self, catalog: Catalog, catalog_version: str, patterns: tuple[str, ...]) -> frozenset[str]:
        """The same values as a set, built once per memo entry rather than per request."""
        return self._enabled(catalog, catalog_version, patterns).members

    def _enabled(self, catalog: Catalog, catalog_version: str, patterns: tuple[str, ...]) -> Enabled:
        key = (catalog_version, patterns)
        found = self._memo.get(key)
        if found is None:
            ordered = catalog.expand(patterns)
            found = Enabled(ordered, frozenset(ordered))
            self._memo[key] = found
            if len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
        return found
