"""The tenant SaaS config cache: in-process, backed by Redis when configured; never fatal.

Entries are keyed by (tenant, config_version). The version comes with the account row the
service reads anyway, so a config change is seen at once by every worker and host, and the
TTL only bounds how long an entry lives.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

from app import metrics

log = structlog.get_logger("app.config_cache")

DEFAULT_PREFIX = "tps:"  # REDIS_KEY_PREFIX: environments sharing one Redis database keep apart by it
KEY_PREFIX = f"{DEFAULT_PREFIX}tenant-config:"
T = TypeVar("T")


class ConfigCache(Protocol):
    """Where tenants' enabled patterns are cached."""

    def get(self, tenant_id: str, version: int) -> tuple[str, ...] | None: ...

    def put(self, tenant_id: str, version: int, patterns: tuple[str, ...]) -> None: ...

    def invalidate(self, tenant_id: str) -> None: ...


def _glob_escape(text: str) -> str:
    return "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in text)


def _key(tenant_id: str, version: int, prefix: str = KEY_PREFIX) -> str:
    return f"{prefix}{tenant_id}:{version}"


class InProcessConfigCache:
    """A small TTL cache in this process."""

    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, tuple[str, ...]]] = {}

    def get(self, tenant_id: str, version: int) -> tuple[str, ...] | None:
        """The cached patterns, if present and fresh."""
        with self._lock:
            entry = self._entries.get(_key(tenant_id, version))
        if entry is None or entry[0] < self._clock():
            return None
        return entry[1]

    def put(self, tenant_id: str, version: int, patterns: tuple[str, ...]) -> None:
        """Cache patterns for the TTL."""
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[_key(tenant_id, version)] = (self._clock() + self._ttl, patterns)

    def invalidate(self, tenant_id: str) -> None:
        """Forget every version of the tenant's config."""
        prefix = f"{KEY_PREFIX}{tenant_id}:"
        with self._lock:
            for key in [k for k in self._entries if k.startswith(prefix)]:
                del self._entries[key]


class CircuitBreaker:
    """Stops calling a failing dependency for `open_seconds`, then lets one call try it again.

    A dead Redis then costs each worker one timeout per interval instead of one per request.
    """

    def __init__(self, open_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._open_seconds = open_seconds
        self._clock = clock
        self._open_until = 0.0
        self.failures = 0

    @property
    def is_open(self) -> bool:
        return self._clock() < self._open_until

    def allow(self) -> bool:
        """Whether a call may go through now."""
        return not self.is_open

    def failed(self) -> None:
        """A call failed: open (again) for the interval."""
        self.failures += 1
        self._open_until = self._clock() + self._open_seconds

    def succeeded(self) -> None:
        """A call went through: close."""
        self._open_until = 0.0
        self.failures = 0


class RedisConfigCache:
    """Tenants' patterns in Redis, shared by every worker and host; any Redis trouble is a miss.

    Sub-second timeouts, at most one retry, and a circuit breaker: Redis down, slow or holding a corrupt
    entry never fails a request (SPEC §6); the database answers instead, and Redis is used again once it
    answers again.
    """

    def __init__(
        self,
        url: str,
        ttl_seconds: float,
        *,
        breaker_seconds: float = 5.0,
        timeout_seconds: float = 0.25,
        key_prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self._ttl = max(1, int(ttl_seconds))
        self.key_prefix = key_prefix
        self._prefix = f"{key_prefix}tenant-config:"
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 1),
            retry_on_timeout=False,
        )
        self.breaker = CircuitBreaker(breaker_seconds)
        self.fallbacks = 0

    def _call(self, operation: str, call: Callable[[], T]) -> T | None:
        if not self.breaker.allow():
            self.fallbacks += 1
            metrics.REDIS_FALLBACKS.inc()
            return None
        try:
            result = call()
        except redis.ResponseError as exc:
            # Redis is up and answered: the entry is wrong (e.g. WRONGTYPE). A miss; the next put overwrites it.
            log.warning("tenant_config_cache_corrupt", operation=operation, error=str(exc)[:120])
            return None
        except (redis.RedisError, OSError) as exc:
            self.fallbacks += 1
            metrics.REDIS_FALLBACKS.inc()
            metrics.REDIS_BREAKER_OPEN.set(1)
            self.breaker.failed()
            log.warning(
                "redis_unavailable",
                operation=operation,
                error=type(exc).__name__,
                breaker="open",
                failures=self.breaker.failures,
            )
            return None
        if self.breaker.failures:
            log.info("redis_available_again", operation=operation)
            metrics.REDIS_BREAKER_OPEN.set(0)
        self.breaker.succeeded()
        return result

    def health(self) -> str:
        """ok, or why Redis is not being used right now (the database answers meanwhile)."""
        if self.breaker.is_open:
            return "unavailable (circuit breaker open; using the database)"
        return "ok" if self._call("ping", self._redis.ping) else "unavailable (using the database)"

    def get(self, tenant_id: str, version: int) -> tuple[str, ...] | None:
        """The cached patterns, or None on a miss, a Redis error or a corrupt entry."""
        raw = self._call("get", lambda: self._redis.get(_key(tenant_id, version, self._prefix)))
        if raw is None:
            return None
        try:
            patterns = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                raise ValueError("not a list of strings")
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            log.warning("tenant_config_cache_corrupt", tenant=tenant_id)
            return None
        return tuple(patterns)

    def put(self, tenant_id: str, version: int, patterns: tuple[str, ...]) -> None:
        """Cache patterns for the TTL; a Redis error is logged and ignored."""
        key, value = _key(tenant_id, version, self._prefix), json.dumps(list(patterns))
        self._call("set", lambda: self._redis.set(key, value, ex=self._ttl))

    def invalidate(self, tenant_id: str) -> None:
        """Delete every cached version of the tenant's config."""

        def delete_all() -> None:
            pattern = f"{_glob_escape(self._prefix)}{_glob_escape(tenant_id)}:*"
            keys = list(self._redis.scan_iter(match=pattern, count=100))
            if keys:
                self._redis.delete(*keys)

        self._call("invalidate", delete_all)


class LayeredConfigCache:
    """This process's copies in front of a shared cache (Redis): what a worker uses.

    An entry (tenant, config version) never changes: the version moves with every config change, and a request
    learns it from the account row it reads anyway. So a worker keeps the copies it has read, for the TTL, and
    asks the shared cache only for those it lacks (a new worker, a moved version, an expired copy): a request
    costs no round trip to Redis, a config change is still seen at once by every worker and host, and Redis keeps
    sparing the database a read for each copy a worker makes. Any Redis trouble is a miss, as in the shared cache.
    """

    def __init__(self, shared: RedisConfigCache, ttl_seconds: float) -> None:
        self.shared = shared
        self.local = InProcessConfigCache(ttl_seconds)

    def get(self, tenant_id: str, version: int) -> tuple[str, ...] | None:
        """This process's copy, else the shared cache's (then copied here)."""
        found = self.local.get(tenant_id, version)
        if found is None:
            found = self.shared.get(tenant_id, version)
            if found is not None:
                self.local.put(tenant_id, version, found)
        return found

    def put(self, tenant_id: str, version: int, patterns: tuple[str, ...]) -> None:
        """Keep patterns here and in the shared cache."""
        self.local.put(tenant_id, version, patterns)
        self.shared.put(tenant_id, version, patterns)

    def invalidate(self, tenant_id: str) -> None:
        """Forget every version of the tenant's config here and in the shared cache."""
        self.local.invalidate(tenant_id)
        self.shared.invalidate(tenant_id)

    def health(self) -> str:
        """The shared cache's health."""
        return self.shared.health()


def make_config_cache(
    redis_url: str | None, ttl_seconds: float, breaker_seconds: float = 5.0, key_prefix: str = DEFAULT_PREFIX
) -> ConfigCache:
    """Redis (behind this process's copies) when a URL is given, else in-process."""
    if redis_url:
        shared = RedisConfigCache(redis_url, ttl_seconds, breaker_seconds=breaker_seconds, key_prefix=key_prefix)
        return LayeredConfigCache(shared, ttl_seconds)
    return InProcessConfigCache(ttl_seconds)
