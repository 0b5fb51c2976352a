"""The tenant-config cache (SPEC §6): in-process TTL, Redis that never fails a request, and EnabledPermissions."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from app.persistence.config_cache import (
    KEY_PREFIX,
    InProcessConfigCache,
    LayeredConfigCache,
    RedisConfigCache,
    make_config_cache,
)
from app.persistence.db import make_engine, make_session_factory
from app.persistence.unit_of_work import UnitOfWork
from app.rules.language.loader import load_rule_set
from app.rules.language.model import Catalog
from app.service import tenants
from app.service.tenant_config import NO_CONFIG, EnabledPermissions
from tests.conftest import need_server
from tests.support import SHIPPED_RULES

CATALOG = load_rule_set(SHIPPED_RULES).catalog
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- InProcessConfigCache ---------------------------------------------------------------------------------


def test_in_process_put_get():
    cache = InProcessConfigCache(30, clock=Ticks())
    assert cache.get("t1", 1) is None
    cache.put("t1", 1, ("stock.*", "account.*"))
    assert cache.get("t1", 1) == ("stock.*", "account.*")
    assert cache.get("t1", 2) is None  # keyed by config version
    assert cache.get("t2", 1) is None  # and by tenant


def test_in_process_ttl():
    ticks = Ticks()
    cache = InProcessConfigCache(30, clock=ticks)
    cache.put("t1", 1, ("stock.*",))
    ticks.now += 29.999
    assert cache.get("t1", 1) == ("stock.*",)
    ticks.now += 0.002
    assert cache.get("t1", 1) is None
    cache.put("t1", 1, ("options.US",))  # a fresh put starts a new TTL
    ticks.now += 29
    assert cache.get("t1", 1) == ("options.US",)


def test_in_process_empty_patterns_are_cached_as_a_hit():
    cache = InProcessConfigCache(30, clock=Ticks())
    cache.put("t1", 1, NO_CONFIG)
    assert cache.get("t1", 1) == ()


def test_in_process_invalidate_drops_every_version_of_one_tenant():
    cache = InProcessConfigCache(30, clock=Ticks())
    cache.put("t1", 1, ("a.*",))
    cache.put("t1", 2, ("b.*",))
    cache.put("t10", 1, ("c.*",))
    cache.put("t2", 1, ("d.*",))
    cache.invalidate("t1")
    assert cache.get("t1", 1) is None
    assert cache.get("t1", 2) is None
    assert cache.get("t10", 1) == ("c.*",)  # a tenant whose id merely starts with "t1" keeps its entry
    assert cache.get("t2", 1) == ("d.*",)
    cache.invalidate("nobody")  # nothing to drop is fine


def test_make_config_cache_picks_by_url():
    assert isinstance(make_config_cache(None, 30), InProcessConfigCache)
    assert isinstance(make_config_cache("", 30), InProcessConfigCache)
    layered = make_config_cache(CLOSED_PORT_URL, 30)
    assert isinstance(layered, LayeredConfigCache) and isinstance(layered.shared, RedisConfigCache)


# --- RedisConfigCache against a missing server -----------------------------------------------------------------


def test_redis_at_a_closed_port_is_a_quick_miss():
    cache = RedisConfigCache(CLOSED_PORT_URL, 30)
    started = time.monotonic()
    assert cache.get("t1", 1) is None
    cache.put("t1", 1, ("stock.*",))
    cache.invalidate("t1")
    assert cache.get("t1", 1) is None
    assert time.monotonic() - started < 1.0


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung Redis."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def test_redis_that_never_answers_is_a_bounded_miss(silent_port):
    cache = RedisConfigCache(f"redis://127.0.0.1:{silent_port}/0", 30)
    started = time.monotonic()
    assert cache.get("t1", 1) is None
    assert time.monotonic() - started < 1.0


# --- RedisConfigCache against real Redis ---------------------------------------------------------------------


@pytest.fixture
def live_redis(redis_url) -> str:
    url = need_server("TEST_REDIS_URL", "Redis")
    assert redis_url == url
    return url


@pytest.fixture
def raw_redis(live_redis):
    client = redis.Redis.from_url(live_redis)
    yield client
    client.close()


def unique_tenant() -> str:
    return f"cache-test-{uuid.uuid4().hex[:10]}"


@pytest.mark.redis
def test_redis_put_get(live_redis, raw_redis):
    cache = RedisConfigCache(live_redis, 30)
    tenant = unique_tenant()
    assert cache.get(tenant, 3) is None
    cache.put(tenant, 3, ("stock.*", "options.US"))
    assert cache.get(tenant, 3) == ("stock.*", "options.US")
    assert cache.get(tenant, 4) is None
    assert cache.get(unique_tenant(), 3) is None
    cache.put(tenant, 5, ())
    assert cache.get(tenant, 5) == ()
    # Stored as JSON under the documented prefix, with the TTL set.
    key = f"{KEY_PREFIX}{tenant}:3"
    assert json.loads(raw_redis.get(key)) == ["stock.*", "options.US"]
    assert 0 < raw_redis.ttl(key) <= 30


@pytest.mark.redis
def test_redis_shared_between_instances(live_redis):
    tenant = unique_tenant()
    RedisConfigCache(live_redis, 30).put(tenant, 1, ("trade.*",))
    assert RedisConfigCache(live_redis, 30).get(tenant, 1) == ("trade.*",)


@pytest.mark.redis
def test_redis_invalidate_deletes_every_version(live_redis, raw_redis):
    cache = RedisConfigCache(live_redis, 30)
    tenant, other = unique_tenant(), unique_tenant()
    for version in (1, 2, 3):
        cache.put(tenant, version, ("stock.*",))
    cache.put(other, 1, ("account.*",))
    cache.invalidate(tenant)
    assert [raw_redis.exists(f"{KEY_PREFIX}{tenant}:{v}") for v in (1, 2, 3)] == [0, 0, 0]
    assert cache.get(tenant, 1) is None
    assert cache.get(other, 1) == ("account.*",)
    raw_redis.delete(f"{KEY_PREFIX}{other}:1")


@pytest.mark.redis
def test_redis_invalidate_of_many_keys(live_redis, raw_redis):
    cache = RedisConfigCache(live_redis, 30)
    tenant = unique_tenant()
    for version in range(250):  # more than one SCAN page
        cache.put(tenant, version, ("stock.*",))
    cache.invalidate(tenant)
    assert list(raw_redis.scan_iter(match=f"{KEY_PREFIX}{tenant}:*")) == []


@pytest.mark.redis
def test_redis_key_prefix_keeps_environments_sharing_one_database_apart(live_redis, raw_redis):
    staging = RedisConfigCache(live_redis, 30, key_prefix="staging:")
    production = RedisConfigCache(live_redis, 30, key_prefix="production:")
    tenant = unique_tenant()
    staging.put(tenant, 1, ("stock.*",))
    assert production.get(tenant, 1) is None  # the same tenant and version, another environment's entry
    production.put(tenant, 1, ("account.*",))
    assert (staging.get(tenant, 1), production.get(tenant, 1)) == (("stock.*",), ("account.*",))
    assert raw_redis.exists(f"staging:tenant-config:{tenant}:1") and not raw_redis.exists(f"{KEY_PREFIX}{tenant}:1")
    staging.invalidate(tenant)
    assert (staging.get(tenant, 1), production.get(tenant, 1)) == (None, ("account.*",))
    production.invalidate(tenant)


def test_settings_prefix_reaches_the_cache():
    cache = make_config_cache(CLOSED_PORT_URL, 30, 5, "staging:")
    assert isinstance(cache, LayeredConfigCache) and cache.shared.key_prefix == "staging:"


# --- LayeredConfigCache: this process's copies in front of Redis -------------------------------------------------


@pytest.mark.redis
def test_layered_cache_answers_from_its_copy_without_redis(live_redis, raw_redis):
    cache = make_config_cache(live_redis, 30)
    assert isinstance(cache, LayeredConfigCache)
    tenant = unique_tenant()
    cache.put(tenant, 1, ("stock.*",))
    assert json.loads(raw_redis.get(f"{KEY_PREFIX}{tenant}:1")) == ["stock.*"]  # shared with other workers
    raw_redis.set(f"{KEY_PREFIX}{tenant}:1", json.dumps(["account.*"]))  # only to tell which layer answers
    assert cache.get(tenant, 1) == ("stock.*",)  # this process's copy: no round trip to Redis
    raw_redis.delete(f"{KEY_PREFIX}{tenant}:1")
    assert cache.get(tenant, 1) == ("stock.*",)


@pytest.mark.redis
def test_layered_cache_copies_what_another_worker_shared(live_redis, raw_redis):
    tenant = unique_tenant()
    make_config_cache(live_redis, 30).put(tenant, 4, ("trade.*",))  # another worker read it from the database
    worker = make_config_cache(live_redis, 30)
    assert worker.get(tenant, 4) == ("trade.*",)  # from Redis
    raw_redis.delete(f"{KEY_PREFIX}{tenant}:4")
    assert worker.get(tenant, 4) == ("trade.*",)  # now its own copy
    assert worker.get(tenant, 5) is None  # a moved version is a miss in both layers
    worker.invalidate(tenant)
    assert worker.get(tenant, 4) is None


def test_layered_cache_works_on_while_redis_is_down():
    cache = make_config_cache(CLOSED_PORT_URL, 30, 5)
    started = time.monotonic()
    assert cache.get("t1", 1) is None
    cache.put("t1", 1, ("stock.*",))
    assert cache.get("t1", 1) == ("stock.*",)
    assert cache.health().startswith("unavailable")
    assert time.monotonic() - started < 2.0


CORRUPT = [
    b"not json",
    b'{"patterns": ["stock.*"]}',
    b"[1, 2]",
    b'"stock.*"',
    b"null",
    b"",
    b'["stock.*", null]',
    pytest.param(b"\xff\xfe\x00garbage", id="not-utf8"),
    pytest.param(b"[" * 100_000, id="deeply-nested"),
]


class GetSpy:
    """Records what every redis GET of one key returned (or that it raised), to prove a test saw its garbage.

    Other test runs sharing this Redis flush tps:* keys when their tests start; an entry that vanished before
    it was read would make a corrupt-entry test pass without testing anything.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, key: str) -> None:
        self.key = key
        self.saw_entry = False
        real_get = redis.Redis.get

        def get(client, name):  # type: ignore[no-untyped-def]
            try:
                value = real_get(client, name)
            except Exception:
                self.saw_entry = self.saw_entry or name == key
                raise
            self.saw_entry = self.saw_entry or (name == key and value is not None)
            return value

        monkeypatch.setattr(redis.Redis, "get", get)


def with_garbage(raw_redis, spy: GetSpy, garbage: bytes, action):  # type: ignore[no-untyped-def]
    """Write garbage at the spied key and run action until action's read really met the garbage."""
    for _ in range(20):
        spy.saw_entry = False
        raw_redis.set(spy.key, garbage)
        result = action()
        if spy.saw_entry:
            return result
    pytest.fail(f"{spy.key} kept vanishing before it was read (another run flushing Redis?)")


@pytest.mark.redis
@pytest.mark.parametrize("garbage", CORRUPT)
def test_redis_corrupt_entry_is_a_miss(live_redis, raw_redis, garbage, monkeypatch):
    cache = RedisConfigCache(live_redis, 30)
    tenant = unique_tenant()
    spy = GetSpy(monkeypatch, f"{KEY_PREFIX}{tenant}:1")
    assert with_garbage(raw_redis, spy, garbage, lambda: cache.get(tenant, 1)) is None


# --- EnabledPermissions ------------------------------------------------------------------------------------------


@pytest.fixture
def session_factory(seeded):
    engine = make_engine(seeded, request_path=False)
    yield make_session_factory(engine)
    engine.dispose()


def config_version(session_factory, tenant_id: str) -> int:
    return tenants.show(unit_of_work(session_factory), CATALOG, tenant_id).config_version


def read_patterns(enabled: EnabledPermissions, session_factory, tenant_id: str) -> tuple[str, ...]:
    with UnitOfWork(session_factory) as uow:
        return enabled.patterns(
            uow.tenant_configs, tenant_id=tenant_id, config_version=config_version(session_factory, tenant_id)
        )


@pytest.mark.redis
@pytest.mark.parametrize("garbage", CORRUPT)
def test_corrupt_redis_entry_is_replaced_on_read_through(seeded, session_factory, raw_redis, garbage, monkeypatch):
    assert seeded.redis_url is not None
    cache = RedisConfigCache(seeded.redis_url, 30)
    version = config_version(session_factory, "sg_mexc")
    spy = GetSpy(monkeypatch, f"{KEY_PREFIX}sg_mexc:{version}")
    enabled = EnabledPermissions(cache)
    stored = ("account.*", "stock.*", "options.US", "trade.*")
    for _ in range(20):
        patterns = with_garbage(raw_redis, spy, garbage, lambda: read_patterns(enabled, session_factory, "sg_mexc"))
        assert patterns == stored
        replaced = raw_redis.get(spy.key)
        if replaced is not None:  # else flushed by another run right after the write: try again
            break
    assert json.loads(replaced) == list(stored)
    assert cache.get("sg_mexc", version) == stored


class CountingCache(InProcessConfigCache):
    def __init__(self) -> None:
        super().__init__(30, clock=Ticks())
        self.gets = self.hits = 0

    def get(self, tenant_id, version):
        self.gets += 1
        found = super().get(tenant_id, version)
        self.hits += found is not None
        return found


def test_patterns_read_through_then_hit(session_factory):
    cache = CountingCache()
    enabled = EnabledPermissions(cache)
    first = read_patterns(enabled, session_factory, "hk_other")
    second = read_patterns(enabled, session_factory, "hk_other")
    assert first == second == ("stock.*",)
    assert (cache.gets, cache.hits) == (2, 1)


def test_tenant_without_config_fails_closed(session_factory):
    enabled = EnabledPermissions(InProcessConfigCache(30, clock=Ticks()))
    patterns = read_patterns(enabled, session_factory, "no_config")
    assert patterns == NO_CONFIG == ()
    assert enabled.values(CATALOG, "v1", patterns) == ()
    # ... and stays closed on the cached path too.
    assert read_patterns(enabled, session_factory, "no_config") == ()


def test_unknown_tenant_fails_closed(session_factory):
    enabled = EnabledPermissions(InProcessConfigCache(30, clock=Ticks()))
    with UnitOfWork(session_factory) as uow:
        assert enabled.patterns(uow.tenant_configs, tenant_id="ghost", config_version=0) == ()


def test_values_are_in_catalog_order(session_factory):
    enabled = EnabledPermissions(InProcessConfigCache(30, clock=Ticks()))
    values = enabled.values(CATALOG, "v1", ("trade.*", "options.US", "stock.*", "account.trade"))
    expected = [v for v in CATALOG.values if v.startswith(("trade.", "stock.")) or v in ("options.US", "account.trade")]
    assert list(values) == expected
    assert values[0] == "account.trade"
    assert values[-1] == "trade.openapi"
    assert len(values) == 1 + 9 + 1 + 4


def test_values_ignore_patterns_outside_the_catalog():
    enabled = EnabledPermissions(InProcessConfigCache(30, clock=Ticks()))
    assert enabled.values(CATALOG, "v1", ("flag.*", "nothing.*", "Stock.US")) == ()
    assert enabled.values(CATALOG, "v1", ("*",)) == CATALOG.values


def test_values_memo_is_keyed_by_rule_set_version():
    enabled = EnabledPermissions(InProcessConfigCache(30, clock=Ticks()), memo_size=2)
    small = CATALOG
    assert enabled.values(small, "v1", ("stock.*",))[0] == "stock.HK"
    other = Catalog(values=("stock.XX",))
    assert enabled.values(other, "v2", ("stock.*",)) == ("stock.XX",)
    assert enabled.values(small, "v1", ("stock.*",))[0] == "stock.HK"
    for i in range(5):  # the memo stays bounded and correct past its size
        assert enabled.values(other, f"v{i + 10}", ("stock.*",)) == ("stock.XX",)
    assert enabled.values(small, "v1", ("stock.*",))[0] == "stock.HK"


def test_config_change_is_seen_through_a_warm_cache(seeded, session_factory):
    cache = InProcessConfigCache(3600, clock=Ticks())
    enabled = EnabledPermissions(cache)
    assert read_patterns(enabled, session_factory, "sg_mexc") == ("account.*", "stock.*", "options.US", "trade.*")
    before = config_version(session_factory, "sg_mexc")
    tenants.set_config(unit_of_work(session_factory), cache, "sg_mexc", ["va.*"])
    assert config_version(session_factory, "sg_mexc") == before + 1
    assert read_patterns(enabled, session_factory, "sg_mexc") == ("va.*",)


def test_read_through_survives_redis_down(session_factory):
    enabled = EnabledPermissions(RedisConfigCache(CLOSED_PORT_URL, 30))
    started = time.monotonic()
    assert read_patterns(enabled, session_factory, "hk_other") == ("stock.*",)
    assert read_patterns(enabled, session_factory, "no_config") == ()
    assert time.monotonic() - started < 2.0


def test_breaker_stops_calling_a_dead_redis_until_its_interval_passes():
    """One failed call opens the breaker: later reads skip Redis (no timeout) until it half-opens."""
    import time as _time

    from app.persistence.config_cache import RedisConfigCache
    from tests.e2e.server import free_port

    cache = RedisConfigCache(f"redis://127.0.0.1:{free_port()}/0", 30, breaker_seconds=60)
    assert cache.get("t", 1) is None
    assert cache.breaker.is_open and cache.fallbacks == 1
    started = _time.perf_counter()
    for _ in range(100):
        assert cache.get("t", 1) is None
    assert _time.perf_counter() - started < 0.05  # no network attempts while open
    assert cache.fallbacks == 101 and cache.breaker.failures == 1


@pytest.mark.redis
def test_breaker_half_opens_and_closes_when_redis_answers(redis_url):
    from app.persistence.config_cache import CircuitBreaker, RedisConfigCache
    from tests.conftest import need_server

    url = redis_url or need_server("TEST_REDIS_URL", "Redis")
    now = [0.0]
    cache = RedisConfigCache(url, 30, breaker_seconds=5)
    cache.breaker = CircuitBreaker(5, clock=lambda: now[0])
    cache.breaker.failed()
    cache.put("breaker-tenant", 1, ("stock.*",))
    assert cache.get("breaker-tenant", 1) is None  # open: Redis not asked
    now[0] = 6.0
    cache.put("breaker-tenant", 1, ("stock.*",))  # half-open: this call goes through and closes it
    assert not cache.breaker.is_open and cache.breaker.failures == 0
    assert cache.get("breaker-tenant", 1) == ("stock.*",)


def unit_of_work(sessions):  # type: ignore[no-untyped-def]
    """The unit-of-work factory the services take, over these sessions."""
    from app.persistence.unit_of_work import UnitOfWork

    return lambda **kw: UnitOfWork(sessions, **kw)
